//! What Xen does for levelling when a host boots: read the raw CPUID and MSRs, probe the
//! levelling mechanism, derive the system policies. One sequence for the test hypervisor on
//! real instructions, for the silicon model in tests and tools, and for `levelctl inspect`.

use crate::feature::Feature;
use crate::featureset::Featureset;
use crate::hardware::{Hardware, HardwareCpuid, MsrFault};
use crate::levelling::{Levelling, LevellingConfig, ProbeOptions};
use crate::policy::system::{HostOptions, SpecCtrlOptions, SystemPolicies};
use crate::policy::{CpuPolicy, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, RawMsrs};

/// How the host is booted (Xen's command line and environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Probing options (running virtualised).
    pub probe: ProbeOptions,
    /// Levelling choices (level dom0 or not).
    pub levelling: LevellingConfig,
    /// Features removed with `cpuid=no-…`.
    pub disabled: Featureset,
    /// HVM guests use hardware-assisted paging.
    pub hap: bool,
    /// Xen's `spec-ctrl=` choices that shape the guest policies.
    pub spec_ctrl: SpecCtrlOptions,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            probe: ProbeOptions::default(),
            levelling: LevellingConfig::default(),
            disabled: Featureset::EMPTY,
            hap: true,
            spec_ctrl: SpecCtrlOptions::default(),
        }
    }
}

/// What the hypervisor knows about the host: its system policies and levelling, derived
/// together at boot and read-only after it (the policies depend on what the probe found, the
/// levelling on the host policy's features). The one change a running host sees is a
/// levelling MSR that faults: [`Host::mark_levelling_failed`].
///
/// Neither part can be replaced from outside:
///
/// ```compile_fail,E0616
/// use xen_levelling::host::Host;
/// let mut host = Host::UNBOOTED;
/// host.levelling = *Host::UNBOOTED.levelling();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Host {
    system: SystemPolicies,
    levelling: Levelling,
}

impl Host {
    /// Before boot: no policies, no levelling. A `const`, so that a hypervisor can keep its
    /// host in a `static` and boot it there with [`Host::boot_in_place`].
    pub const UNBOOTED: Host = Host {
        system: SystemPolicies::EMPTY,
        levelling: Levelling::UNPROBED,
    };

    /// Boot on the CPU `hw` runs on, before any levelling is loaded: the raw policy through
    /// `hw` (MSR_PLATFORM_INFO only where the generation has it, ARCH_CAPABILITIES only where
    /// enumerated), the probe, then the system policies with faulting as probed.
    ///
    /// The host is 14 KB: a hypervisor whose boot stack cannot hold that uses
    /// [`Host::boot_in_place`] instead.
    pub fn boot(hw: &mut impl Hardware, config: HostConfig) -> Host {
        let mut host = Host::UNBOOTED;
        host.boot_in_place(hw, config);
        host
    }

    /// [`Host::boot`] into `self` (e.g. a `static` holding [`Host::UNBOOTED`]): no more than
    /// one policy at a time passes through the stack.
    pub fn boot_in_place(&mut self, hw: &mut impl Hardware, config: HostConfig) {
        let raw = read_raw(hw);
        self.levelling = Levelling::probe(hw, &raw, config.probe, config.levelling);
        let options = HostOptions {
            disabled: config.disabled,
            cpuid_faulting: self.levelling.faulting(),
            hap: config.hap,
            spec_ctrl: config.spec_ctrl,
        };
        self.system.derive_into(&raw, options);
        self.levelling
            .set_host_features(&self.system.host.featureset());
    }

    /// Raw, host, PV/HVM max and default policies.
    pub fn system(&self) -> &SystemPolicies {
        &self.system
    }

    /// The levelling mechanism probing found, and whether it has failed since.
    pub fn levelling(&self) -> &Levelling {
        &self.levelling
    }

    /// Record that a levelling MSR faulted ([`Levelling::mark_failed`]): from now on new
    /// levelled PV guests fail closed.
    pub fn mark_levelling_failed(&mut self, fault: MsrFault) {
        self.levelling.mark_failed(fault);
    }
}

/// The raw policy as read through `hw`: CPUID, then MSR_PLATFORM_INFO where the CPU's
/// generation has it and MSR_ARCH_CAPABILITIES where `CPUID.07H.0:EDX[29]` enumerates it.
fn read_raw(hw: &mut impl Hardware) -> CpuPolicy {
    let cpuid_only = CpuPolicy::from_source(&HardwareCpuid(&*hw), RawMsrs::default());
    let platform_info = RawMsrs::platform_info_exists(cpuid_only.vendor(), cpuid_only.signature())
        .then(|| hw.rdmsr_safe(MSR_PLATFORM_INFO).ok())
        .flatten();
    let arch_caps = cpuid_only
        .featureset()
        .contains(Feature::ARCH_CAPS)
        .then(|| hw.rdmsr_safe(MSR_ARCH_CAPABILITIES).ok())
        .flatten();
    CpuPolicy::from_source(
        &HardwareCpuid(&*hw),
        RawMsrs {
            platform_info,
            arch_caps,
        },
    )
}
