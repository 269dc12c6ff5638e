//! CPU generations as far as levelling hardware goes, compiled from `data/generations.tbl`:
//! which mask/override MSRs a vendor, family and model has, whether MSR_PLATFORM_INFO exists
//! and what its CPUID-faulting bit says, and whether the AMD passcode is needed. The one
//! source for the probe's expectations, the raw MSR fill, the silicon model, `levelctl` and
//! the tests; adding a generation is one row of the table.

use super::masks::{MaskKind, MaskMsrs};
use super::msr;
use super::probe::{FaultingCheck, FaultingControl, Mechanism};
use crate::cpuid::{Signature, Vendor};
use crate::feature::Feature;
use crate::policy::CpuPolicy;

/// The vendors the table has rows for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationVendor {
    /// GenuineIntel.
    Intel,
    /// AuthenticAMD and HygonGenuine (a Zen derivative with AMD's levelling MSRs).
    AmdLike,
}

impl GenerationVendor {
    /// The table vendor a CPU vendor is described by, if any.
    pub const fn of(vendor: Vendor) -> Option<GenerationVendor> {
        match vendor {
            Vendor::Intel => Some(GenerationVendor::Intel),
            Vendor::Amd | Vendor::Hygon => Some(GenerationVendor::AmdLike),
            _ => None,
        }
    }
}

/// MSR_PLATFORM_INFO (0xCE) on a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformInfoPresence {
    /// No such MSR (on Penryn, 0xCE is something else).
    Absent,
    /// Present; `MSR_PLATFORM_INFO[31]` (CPUID faulting) clear by generation.
    Present,
    /// Present with `MSR_PLATFORM_INFO[31]` set by generation.
    Faulting,
}

/// When a generation's mask MSR exists, beyond the generation itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskCondition {
    /// Always.
    Always,
    /// Only where leaf 7 exists (`CPUID.00H:EAX >= 7`).
    Leaf7,
    /// Only where `CPUID.00H:EAX >= 6` and `CPUID.06H:ECX` is non-zero.
    Leaf6Ecx,
}

/// One mask MSR of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationMask {
    /// The CPUID registers it masks.
    pub kind: MaskKind,
    /// Its MSR number.
    pub msr: u32,
    /// When it exists.
    pub condition: MaskCondition,
}

/// One row of `data/generations.tbl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The generation's name, e.g. `SandyBridge`.
    pub name: &'static str,
    vendor: GenerationVendor,
    families: (u32, u32),
    models: &'static [(u32, u32)],
    /// MSR_PLATFORM_INFO by generation.
    pub platform_info: PlatformInfoPresence,
    /// Mask MSR accesses fault unless EDI holds AMD's passcode.
    pub passcode: bool,
    /// The mask/override MSRs the generation has (subject to their conditions).
    pub masks: &'static [GenerationMask],
    /// Why the row says what it says.
    pub reason: &'static str,
    /// Where the facts come from.
    pub source: &'static str,
    /// The row's line in `data/generations.tbl`.
    pub line: u32,
}

include!(concat!(env!("OUT_DIR"), "/generations.rs"));

impl Generation {
    /// The generation of a CPU, or `None` where the table has no row for it (no levelling
    /// MSRs expected, no MSR_PLATFORM_INFO).
    pub fn of(vendor: Vendor, sig: Signature) -> Option<&'static Generation> {
        let vendor = GenerationVendor::of(vendor)?;
        let within = |(lo, hi): (u32, u32), value: u32| lo <= value && value <= hi;
        GENERATIONS.iter().find(|g| {
            g.vendor == vendor
                && within(g.families, sig.family)
                && g.models.iter().any(|&range| within(range, sig.model))
        })
    }

    /// The generation of the CPU `raw` describes.
    pub fn of_policy(raw: &CpuPolicy) -> Option<&'static Generation> {
        Generation::of(raw.vendor(), raw.signature())
    }

    /// Whether MSR_PLATFORM_INFO exists on the generation.
    pub const fn has_platform_info(&self) -> bool {
        !matches!(self.platform_info, PlatformInfoPresence::Absent)
    }

    /// The mask MSRs a CPU of this generation has: `max_leaf` is `CPUID.00H:EAX`, `leaf6_ecx`
    /// is `CPUID.06H:ECX`.
    pub fn mask_msrs(&self, max_leaf: u32, leaf6_ecx: u32) -> MaskMsrs {
        let mut msrs = MaskMsrs::default();
        for mask in self.masks {
            let present = match mask.condition {
                MaskCondition::Always => true,
                MaskCondition::Leaf7 => max_leaf >= 7,
                MaskCondition::Leaf6Ecx => max_leaf >= 6 && leaf6_ecx != 0,
            };
            if present {
                msrs.0[mask.kind.index()] = Some(mask.msr);
            }
        }
        msrs
    }
}

/// The mechanism a CPU's generation promises, by the table alone: CPUID faulting where it is
/// enumerated (`MSR_PLATFORM_INFO[31]` as `recorded` or, where not recorded, as the generation
/// says; on AMD `CPUID.80000021H:EAX[17]`), else the generation's mask MSRs that have a
/// feature to hide on this CPU (a mask over registers reporting nothing cannot be shown to
/// work, and is not needed). What probing by effect must find on faithful hardware.
pub fn expected_mechanism(raw: &CpuPolicy, recorded: crate::policy::RawMsrs) -> Mechanism {
    let Some(generation) = Generation::of_policy(raw) else {
        return Mechanism::None;
    };
    let faulting = |control| Mechanism::Faulting {
        control,
        check: FaultingCheck::Verified,
    };
    let intel_faulting = match generation.platform_info {
        PlatformInfoPresence::Absent => false,
        PlatformInfoPresence::Present | PlatformInfoPresence::Faulting => {
            recorded.platform_info.map_or(
                generation.platform_info == PlatformInfoPresence::Faulting,
                |value| {
                    msr::PlatformInfo::from_bits_retain(value)
                        .contains(msr::PlatformInfo::CPUID_FAULTING)
                },
            )
        }
    };
    let features = raw.featureset();
    if intel_faulting {
        return faulting(FaultingControl::Intel);
    }
    // CPUID.80000021H:EAX[17] CpuidUserDis.
    if raw.vendor().is_amd_like() && features.contains(Feature::CPUID_USER_DIS) {
        return faulting(FaultingControl::Amd);
    }
    let available =
        generation.mask_msrs(raw.max_basic_leaf(), raw.leaf(6, 0).unwrap_or_default().c);
    let mut used = MaskMsrs::default();
    for (kind, index) in available.kinds() {
        let words = kind.words();
        if words.is_empty() || words.iter().any(|&word| features.word(word) != 0) {
            used.0[kind.index()] = Some(index);
        }
    }
    if used.is_empty() {
        Mechanism::None
    } else {
        Mechanism::Masking(used)
    }
}
