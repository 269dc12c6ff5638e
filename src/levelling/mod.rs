//! The levelling mechanism: what makes a PV guest's native CPUID show only its policy.
//!
//! At boot, [`crate::host::Host::boot`] finds what the CPU offers ([`probe`]): CPUID faulting
//! (every levelled CPUID traps and is emulated from the policy, [`trap`]) or vendor mask MSRs
//! ([`masks`]), each verified by effect. When a domain's policy is set,
//! [`Levelling::domain_levelling`] precomputes its [`DomainLevelling`]: faulting on or off, the
//! mask values, and what the hardware cannot hide (fail closed, [`domain`]). On every context
//! switch the per-CPU [`LevellingState`] writes only the MSRs whose value differs ([`switch`]).
//!
//! Xen itself and dom0 keep the full host features by default (Xen 4.7 / XenServer Dundee);
//! [`LevellingConfig::level_dom0`] levels dom0 too, as current Xen does. HVM guests exit on
//! CPUID anyway and need neither mechanism.

pub mod domain;
pub mod generation;
pub mod masks;
/// The levelling MSRs (defined in [`crate::msr`]).
pub use crate::msr;
pub mod probe;
pub mod switch;
pub mod trap;

pub use domain::{DomainLevelling, DomainRole, Unenforceable};
pub use probe::{LevellingCaps, Mechanism, ProbeOptions, ProbeReport};
pub use switch::{LevellingState, SwitchStats, SwitchTo};

use masks::{MaskValues, boot_defaults};

use crate::cpuid::Vendor;
use crate::featureset::Featureset;
use crate::hardware::{Hardware, MsrFault};
use crate::policy::CpuPolicy;

/// Host-wide choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevellingConfig {
    /// Level dom0 like a guest (current Xen) instead of giving it full host features (Xen 4.7,
    /// XenServer Dundee, the default).
    pub level_dom0: bool,
}

/// What the host's CPU offers for levelling, found once at boot and read by every CPU. Only
/// [`crate::host::Host::boot`] makes one, from its probe and the host policy's features. The
/// embedder reads it; records a levelling MSR that faulted ([`Levelling::mark_failed`] on a
/// copy it keeps, [`crate::host::Host::mark_levelling_failed`] on the host's own); and may
/// choose, on a copy, whether dom0 is levelled ([`Levelling::set_level_dom0`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levelling {
    /// What probing found.
    report: ProbeReport,
    /// The mask values Xen and unlevelled domains run with (from the probed values).
    defaults: MaskValues,
    /// Host-wide choices.
    config: LevellingConfig,
    /// The raw CPUID the CPU reports without levelling: what a PV guest sees natively where
    /// nothing hides it.
    raw: CpuPolicy,
    /// The host's features (topology bits are forced into every mask from these).
    host: Featureset,
    /// The first levelling MSR access that faulted after probing, if any.
    failure: Option<MsrFault>,
}

impl Levelling {
    /// Before the boot probe: no mechanism, nothing known about the CPU. A `const`, so that
    /// an embedder can keep the host in a `static` and boot it in place
    /// ([`crate::host::Host::boot_in_place`]).
    pub(crate) const UNPROBED: Levelling = Levelling {
        report: ProbeReport::NOTHING,
        defaults: MaskValues([0; 5]),
        config: LevellingConfig { level_dom0: false },
        raw: CpuPolicy::EMPTY,
        host: Featureset::EMPTY,
        failure: None,
    };

    /// Probe the CPU `hw` runs on. `raw` is its raw policy, read through `hw` before any
    /// levelling is loaded. The host features start as the raw ones; once the host policy is
    /// derived (it needs to know whether faulting works), give it with
    /// [`Levelling::set_host_features`].
    pub(crate) fn probe(
        hw: &mut impl Hardware,
        raw: &CpuPolicy,
        options: ProbeOptions,
        config: LevellingConfig,
    ) -> Levelling {
        let report = probe::probe(hw, raw, options);
        let defaults = boot_defaults(raw.vendor(), raw, &report.probed_masks);
        Levelling {
            report,
            defaults,
            config,
            raw: *raw,
            host: raw.featureset(),
            failure: None,
        }
    }

    /// The host's features, after `cpuid=no-…`: the topology bits forced into every domain's
    /// masks come from these.
    pub(crate) fn set_host_features(&mut self, host: &Featureset) {
        self.host = *host;
    }

    /// True if the mechanism is CPUID faulting (the host policy's `cpuid_faulting`).
    pub fn faulting(&self) -> bool {
        matches!(self.mechanism(), Mechanism::Faulting { .. })
    }

    /// The mechanism probing found, which the context switch drives.
    pub fn mechanism(&self) -> Mechanism {
        self.report.mechanism
    }

    /// The mechanism that can still be relied on: none once a levelling MSR has faulted.
    pub fn guaranteed_mechanism(&self) -> Mechanism {
        if self.failure.is_some() {
            Mechanism::None
        } else {
            self.report.mechanism
        }
    }

    /// Record that a levelling MSR faulted (as after a microcode update that withdrew it).
    /// From now on no new levelled PV guest can be guaranteed its policy, so starting one is
    /// refused unless best effort is asked for; running ones are listed by
    /// [`crate::abi::domain::DomainTable::unguaranteed`].
    pub fn mark_failed(&mut self, fault: MsrFault) {
        self.failure.get_or_insert(fault);
    }

    /// The fault that broke the mechanism, if one did.
    pub fn failure(&self) -> Option<MsrFault> {
        self.failure
    }

    /// What probing found, expected versus found.
    pub fn report(&self) -> &ProbeReport {
        &self.report
    }

    /// The mask values Xen and unlevelled domains run with: the firmware's values as probed,
    /// with what Xen adds at boot.
    pub fn defaults(&self) -> &MaskValues {
        &self.defaults
    }

    /// Host-wide choices.
    pub fn config(&self) -> LevellingConfig {
        self.config
    }

    /// Level dom0 like a guest, or give it full host features. Only the levelling of domains
    /// assessed from now on depends on it ([`Levelling::assess`]): a hypervisor chooses before
    /// it creates dom0 (as Xen's command line does), or on a copy to see what either choice
    /// gives.
    ///
    /// ```
    /// use xen_levelling::host::Host;
    /// use xen_levelling::levelling::DomainRole;
    /// use xen_levelling::policy::system::DomainKind;
    /// let host = Host::UNBOOTED;
    /// let policy = host.system().pv_default;
    /// let mut levelling = *host.levelling();
    /// let dom0 = levelling.assess(DomainKind::Pv, DomainRole::Control, &policy);
    /// assert!(!dom0.levelled());
    /// levelling.set_level_dom0(true);
    /// let dom0 = levelling.assess(DomainKind::Pv, DomainRole::Control, &policy);
    /// assert!(dom0.levelled());
    /// assert!(!host.levelling().config().level_dom0, "the host's own is unchanged");
    /// ```
    pub fn set_level_dom0(&mut self, level_dom0: bool) {
        self.config.level_dom0 = level_dom0;
    }

    /// The CPU vendor.
    pub fn vendor(&self) -> Vendor {
        self.report.vendor
    }

    /// The raw CPUID policy probing saw.
    pub fn raw(&self) -> &CpuPolicy {
        &self.raw
    }

    /// The host's features.
    pub fn host_features(&self) -> &Featureset {
        &self.host
    }
}
