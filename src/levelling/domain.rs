//! A domain's precomputed levelling, and the fail-closed rule.
//!
//! Computed once when a domain's policy is set, never in the switch path. For a levelled PV
//! guest it also works out what native CPUID would show under the available mechanism and
//! compares it with the policy: a feature the guest would see but its policy lacks cannot be
//! hidden, and starting the guest is refused with that list, unless the caller explicitly
//! accepts best effort. The list is kept with the domain either way.

use core::fmt;

use super::masks::{MaskKind, MaskValues, domain_masks, without_osxsave};
use super::{Levelling, Mechanism};
use crate::feature::{Feature, KNOWN};
use crate::featureset::Featureset;
use crate::policy::system::DomainKind;
use crate::policy::{CpuPolicy, WORD_HOMES, WordHome};

/// Who a domain is, as far as levelling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainRole {
    /// The control domain (dom0): full host features unless `level_dom0` is configured.
    Control,
    /// Any other domain.
    Guest,
}

/// Features native CPUID would show a PV guest that its policy does not have, on this host's
/// mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unenforceable {
    /// The features that cannot be hidden.
    pub features: Featureset,
    /// The mechanism that falls short.
    pub mechanism: Mechanism,
}

impl fmt::Display for Unenforceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.mechanism {
            Mechanism::Faulting { .. } => "with CPUID faulting",
            Mechanism::Masking(_) => "with this CPU's mask MSRs",
            Mechanism::None => "without faulting or mask MSRs",
        };
        write!(f, "cannot hide {how}: {}", self.features.names())
    }
}

impl core::error::Error for Unenforceable {}

/// Everything a guest's CPUID may show whatever its level says: [`EXPOSED_BY_DESIGN`], the
/// host's FPU behaviour that every domain policy copies
/// ([`crate::policy::system::FPU_BEHAVIOUR`]), and on AMD the copies of CPUID.01H:EDX in
/// CPUID.80000001H:EDX that every AMD domain policy carries (the unnamed bits of
/// [`crate::feature::COMMON_1D`] in word 2, which say nothing leaf 1 does not). Leave these out
/// when comparing what a guest saw, or the policy it was given, with a pool level.
pub fn not_levelled() -> Featureset {
    let mut fs = Featureset::of(&EXPOSED_BY_DESIGN);
    for f in crate::policy::system::FPU_BEHAVIOUR {
        fs.insert(f);
    }
    let amd_copies = crate::feature::COMMON_1D & !KNOWN.word(2);
    fs.set_word(2, fs.word(2) | amd_copies);
    fs
}

/// Bits that native CPUID shows by design, whatever the policy: fast-forwarded from live
/// state (OSXSAVE, OSPKE, APIC) or forced from the host so that the unmaskable topology
/// leaves read consistently (HTT, X2APIC, CMP_LEGACY).
pub const EXPOSED_BY_DESIGN: [Feature; 6] = [
    Feature::OSXSAVE,
    Feature::OSPKE,
    Feature::APIC,
    Feature::HTT,
    Feature::X2APIC,
    Feature::CMP_LEGACY,
];

/// A domain's levelling, precomputed from its policy by [`Levelling::assess`] (or
/// [`Levelling::domain_levelling`]) and read-only after: the mask values, the faulting switch
/// and the fail-closed list stay those of the policy they were computed from:
///
/// ```compile_fail,E0616
/// use xen_levelling::host::Host;
/// use xen_levelling::levelling::DomainRole;
/// use xen_levelling::policy::system::DomainKind;
/// let host = Host::UNBOOTED;
/// let policy = host.system().pv_default;
/// let mut guest = host.levelling().assess(DomainKind::Pv, DomainRole::Guest, &policy);
/// guest.unenforceable = xen_levelling::Featureset::EMPTY;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainLevelling {
    kind: DomainKind,
    mechanism: Mechanism,
    levelled: bool,
    faulting: bool,
    masks: MaskValues,
    masks_without_osxsave: MaskValues,
    xsave: bool,
    unenforceable: Featureset,
    not_shown: Featureset,
    best_effort: bool,
}

impl DomainLevelling {
    /// PV or HVM.
    pub fn kind(&self) -> DomainKind {
        self.kind
    }

    /// The host's mechanism when this was computed (none once a levelling MSR had faulted).
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// This domain's CPUIDs are levelled (a guest, or dom0 when configured).
    pub fn levelled(&self) -> bool {
        self.levelled
    }

    /// Faulting is on while it runs (a levelled PV domain on faulting hardware).
    pub fn faulting(&self) -> bool {
        self.faulting
    }

    /// The mask values loaded while it runs (the defaults for unlevelled and HVM domains).
    pub fn masks(&self) -> &MaskValues {
        &self.masks
    }

    /// What to load instead while the vCPU's CR4.OSXSAVE is clear: for every PV domain,
    /// levelled or not, OSXSAVE cleared in the leaf 1 mask, so that hardware does not
    /// fast-forward Xen's own CR4 to a kernel that has not enabled XSAVE; for HVM domains the
    /// same as [`DomainLevelling::masks`]. Precomputed, so the switch only picks one.
    pub fn masks_without_osxsave(&self) -> &MaskValues {
        &self.masks_without_osxsave
    }

    /// Its policy has XSAVE: OSXSAVE may be fast-forwarded when its CR4.OSXSAVE is set.
    pub fn xsave(&self) -> bool {
        self.xsave
    }

    /// Features native CPUID shows that the policy lacks (refused unless best effort).
    pub fn unenforceable(&self) -> Featureset {
        self.unenforceable
    }

    /// Policy features native CPUID does not show (an AND mask cannot add them): the guest
    /// sees fewer features than its policy, which is safe.
    pub fn not_shown(&self) -> Featureset {
        self.not_shown
    }

    /// It was computed with best effort accepted although
    /// [`DomainLevelling::unenforceable`] is not empty.
    pub fn best_effort(&self) -> bool {
        self.best_effort
    }

    /// The refusal of a start without best effort, if the hardware cannot hide everything.
    pub fn refusal(&self) -> Option<Unenforceable> {
        (!self.unenforceable.is_empty()).then_some(Unenforceable {
            features: self.unenforceable,
            mechanism: self.mechanism,
        })
    }
}

impl Levelling {
    /// Precompute the levelling of a domain of `kind` and `role` with `policy`. A levelled PV
    /// domain whose policy the hardware cannot enforce is refused with the features at fault,
    /// unless `best_effort`.
    pub fn domain_levelling(
        &self,
        kind: DomainKind,
        role: DomainRole,
        policy: &CpuPolicy,
        best_effort: bool,
    ) -> Result<DomainLevelling, Unenforceable> {
        let mut d = self.assess(kind, role, policy);
        if let Some(refusal) = d.refusal() {
            if !best_effort {
                return Err(refusal);
            }
            d.best_effort = true;
        }
        Ok(d)
    }

    /// The levelling of a domain of `kind` and `role` with `policy`, with what the hardware
    /// cannot hide listed rather than refused.
    pub fn assess(
        &self,
        kind: DomainKind,
        role: DomainRole,
        policy: &CpuPolicy,
    ) -> DomainLevelling {
        let is_pv = kind == DomainKind::Pv;
        let levelled = role == DomainRole::Guest || self.config.level_dom0;
        let mechanism = self.guaranteed_mechanism();
        let mut d = DomainLevelling {
            kind,
            mechanism,
            levelled,
            faulting: false,
            masks: self.defaults,
            masks_without_osxsave: self.defaults,
            xsave: policy.featureset().contains(Feature::XSAVE),
            unenforceable: Featureset::EMPTY,
            not_shown: Featureset::EMPTY,
            best_effort: false,
        };
        if !(is_pv && levelled) {
            d.masks_without_osxsave = self.masks_without_osxsave(kind, &d.masks);
            return d;
        }
        match mechanism {
            Mechanism::Faulting { .. } => d.faulting = true,
            Mechanism::Masking(msrs) => {
                let masks = domain_masks(self.vendor(), &self.defaults, &self.host, policy);
                // Only kinds with an MSR differ from the defaults, so that the switch can
                // compare all values at once.
                for kind in MaskKind::ALL {
                    if msrs.get(kind).is_some() {
                        d.masks.set(kind, masks.get(kind));
                    }
                }
            }
            Mechanism::None => {}
        }
        d.masks_without_osxsave = self.masks_without_osxsave(kind, &d.masks);
        let wanted = policy.featureset();
        let native = self.native_view(mechanism, &d, &wanted);
        let exposed = Featureset::of(&EXPOSED_BY_DESIGN);
        d.unenforceable = (native - wanted - exposed) & KNOWN;
        d.not_shown = (wanted - native - exposed) & KNOWN & cpuid_words();
        d
    }

    /// `masks` for a vCPU of a `kind` domain whose CR4.OSXSAVE is clear.
    fn masks_without_osxsave(&self, kind: DomainKind, masks: &MaskValues) -> MaskValues {
        let mut m = *masks;
        if kind == DomainKind::Pv {
            let leaf1 = m.get(MaskKind::Leaf1);
            m.set(MaskKind::Leaf1, without_osxsave(self.vendor(), leaf1));
        }
        m
    }

    /// The features native CPUID at CPL 3 shows while `d` is loaded. With faulting, every
    /// CPUID is emulated: exactly the policy.
    fn native_view(
        &self,
        mechanism: Mechanism,
        d: &DomainLevelling,
        wanted: &Featureset,
    ) -> Featureset {
        let raw = self.raw.featureset() & cpuid_words();
        let masks = match mechanism {
            Mechanism::Faulting { .. } => return *wanted & cpuid_words(),
            Mechanism::Masking(msrs) => msrs,
            Mechanism::None => return raw,
        };
        let vendor = self.vendor();
        let mut native = raw;
        for (kind, _) in masks.kinds() {
            let shown = kind.decode(vendor, d.masks.get(kind));
            for &word in kind.words() {
                let WordHome::Cpuid { reg, .. } = WORD_HOMES[word] else {
                    continue;
                };
                let masked = reg.get(&shown);
                // Intel ANDs with what the CPU has; AMD reports the override as it stands.
                let value = if vendor.is_amd_like() {
                    masked
                } else {
                    raw.word(word) & masked
                };
                native.set_word(word, value);
            }
        }
        native
    }
}

/// Every featureset word that lives in CPUID (not MSR_ARCH_CAPS, which a PV guest can only
/// read through an emulated RDMSR).
fn cpuid_words() -> Featureset {
    let mut fs = Featureset::EMPTY;
    for (word, home) in WORD_HOMES.iter().enumerate() {
        if matches!(home, WordHome::Cpuid { .. }) {
            fs.set_word(word, !0);
        }
    }
    fs
}
