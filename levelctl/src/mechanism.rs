//! Which levelling mechanism Xen would use on a CPU, judged from its vendor, family and model
//! and from how it enumerates CPUID faulting (reference `xen-levelling.md` sections 1 and 2.1).
//!
//! This is a judgement **by generation**: the silicon model that would confirm it by probing
//! the MSRs (by presence and by effect) is not part of levelctl yet, and every report says so.
//!
//! | CPU | mechanism | featureset words it can hide |
//! |---|---|---|
//! | Intel, MSR 0xCE[31] set (IvyBridge on) | CPUID faulting (MSR 0x140) | all: every CPUID traps |
//! | Intel family 6 model 0x17, 0x1d (Penryn, Dunnington) | mask V1, MSR 0x478 | 1d, 1c |
//! | Intel family 6 model 0x1a, 0x1e, 0x1f, 0x25, 0x2c, 0x2e, 0x2f (Nehalem, Westmere) | mask V2, MSRs 0x130-0x131 | 1d, 1c, e1d, e1c |
//! | Intel family 6 model 0x2a, 0x2d (SandyBridge) | mask V3, MSRs 0x132-0x134 | 1d, 1c, e1d, e1c, Da1 |
//! | AMD/Hygon with CPUID.80000021H:EAX[17] (CpuidUserDis) | CPUID faulting (HWCR bit 35) | all |
//! | AMD/Hygon otherwise, except family 0x11 and family 0xF before model 0x20 | override MSRs 0xC0011004/5 (+0xC0011002 with leaf 7, +0xC0011003 on family 0x15) | 1d, 1c, e1d, e1c (+ 7b0) |
//!
//! HVM guests need none of this: every CPUID they execute exits to Xen.

use serde::Serialize;
use xen_levelling::feature::{KNOWN, WORDS};
use xen_levelling::{Featureset, Vendor};

use crate::model::CpuSignature;
use crate::report::names;

/// A levelling mechanism for PV guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// CPUID faulting: every PV CPUID traps and Xen answers from the guest's policy.
    Faulting,
    /// Intel Penryn-era AND mask of leaf 1 (MSR 0x478).
    IntelMaskV1,
    /// Intel Nehalem/Westmere AND masks of leaves 1 and 0x80000001 (MSRs 0x130, 0x131).
    IntelMaskV2,
    /// Intel SandyBridge AND masks of leaves 1, 0x80000001 and 0xD:1 (MSRs 0x132-0x134).
    IntelMaskV3,
    /// AMD/Hygon override MSRs.
    AmdOverride,
    /// Nothing: a PV guest sees the host's CPUID; Xen refuses such guests unless told to do
    /// its best.
    None,
    /// The vendor is not one Xen levels.
    Unknown,
}

impl Mechanism {
    /// A short description.
    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::Faulting => "CPUID faulting",
            Mechanism::IntelMaskV1 => "Intel mask MSR V1 (0x478)",
            Mechanism::IntelMaskV2 => "Intel mask MSRs V2 (0x130, 0x131)",
            Mechanism::IntelMaskV3 => "Intel mask MSRs V3 (0x132, 0x133, 0x134)",
            Mechanism::AmdOverride => "AMD override MSRs",
            Mechanism::None => "none",
            Mechanism::Unknown => "unknown",
        }
    }
}

/// What [`assess`] concludes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MechanismReport {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// How sure: always "by generation, not yet verified on the model" for now.
    pub basis: String,
    /// The faulting enumeration, when the input shows it.
    pub faulting_enumerated: Option<bool>,
    /// Where the enumeration comes from (`MSR 0xCE[31] = 1`, `CPUID.80000021H:EAX[17] = 0`,
    /// or why it is unknown).
    pub enumeration: String,
    /// Why this generation gets this mechanism.
    pub generation: String,
    /// The MSRs it would use.
    pub msrs: Vec<String>,
    /// Featureset words whose bits it can hide from PV guests.
    pub hideable_words: Vec<String>,
    /// Host features a PV guest should not see but would, natively (words the mechanism
    /// cannot mask); empty when the input has no CPUID data or the mechanism hides all.
    pub cannot_hide: Vec<String>,
    /// Host features the PV default hides and the mechanism can hide.
    pub can_hide: usize,
    /// Further remarks.
    pub notes: Vec<String>,
}

/// The MSR words 16 and 17 (MSR_ARCH_CAPABILITIES) are read with RDMSR, which a PV guest
/// cannot execute natively: never leaked by CPUID.
const MSR_WORDS: [usize; 2] = [16, 17];

/// Judge the mechanism for a CPU. `hardware` is the CPU's own featureset and `pv_default`
/// what Xen offers PV guests by default; with both, the report lists what the mechanism
/// could not hide.
pub fn assess(
    vendor: Vendor,
    signature: Option<CpuSignature>,
    max_basic_leaf: Option<u32>,
    faulting_enumerated: Option<bool>,
    hardware: Option<Featureset>,
    pv_default: Featureset,
) -> MechanismReport {
    let sig = signature.unwrap_or(CpuSignature {
        family: 0,
        model: 0,
        stepping: 0,
    });
    let mut notes = Vec::new();
    let mut msrs = Vec::new();
    let enumeration = match (vendor, faulting_enumerated) {
        (Vendor::Intel | Vendor::Centaur, Some(on)) => {
            format!("MSR 0xCE (PLATFORM_INFO) bit 31 = {}", u8::from(on))
        }
        (Vendor::Intel | Vendor::Centaur, None) => {
            "MSR 0xCE not in this input: faulting cannot be confirmed".to_string()
        }
        (Vendor::Amd | Vendor::Hygon, Some(on)) => {
            format!("CPUID.80000021H:EAX[17] (CpuidUserDis) = {}", u8::from(on))
        }
        (Vendor::Amd | Vendor::Hygon, None) => {
            "CPUID.80000021H not in this input: faulting cannot be confirmed".to_string()
        }
        (Vendor::Unknown, _) => "unknown vendor".to_string(),
    };
    let (mechanism, generation) = match vendor {
        Vendor::Intel | Vendor::Centaur => {
            let mask = if sig.family == 6 {
                match sig.model {
                    0x17 | 0x1d => Some(Mechanism::IntelMaskV1),
                    0x1a | 0x1e | 0x1f | 0x25 | 0x2c | 0x2e | 0x2f => Some(Mechanism::IntelMaskV2),
                    0x2a | 0x2d => Some(Mechanism::IntelMaskV3),
                    _ => None,
                }
            } else {
                None
            };
            if sig.family == 0xf {
                notes.push(
                    "Xen skips the faulting probe on family 0xF (Netburst) unless it runs \
                     virtualised: these MSRs raise spurious #GP there"
                        .to_string(),
                );
            }
            match (faulting_enumerated, mask) {
                (Some(true), _) => (
                    Mechanism::Faulting,
                    "MSR_PLATFORM_INFO enumerates CPUID faulting; faulting wins over masks"
                        .to_string(),
                ),
                (_, Some(m)) => (
                    m,
                    format!(
                        "family {:#x} model {:#x} is a masking generation (Penryn to SandyBridge)",
                        sig.family, sig.model
                    ),
                ),
                (None, None) if sig.family == 6 => (
                    Mechanism::Faulting,
                    format!(
                        "family 6 model {:#x} is past SandyBridge: Intel has CPUID faulting from \
                         IvyBridge on (expected, not enumerated in this input)",
                        sig.model
                    ),
                ),
                _ => (
                    Mechanism::None,
                    format!(
                        "family {:#x} model {:#x}: no mask MSRs for this generation and no \
                         faulting enumerated",
                        sig.family, sig.model
                    ),
                ),
            }
        }
        Vendor::Amd | Vendor::Hygon => {
            if faulting_enumerated == Some(true) {
                (
                    Mechanism::Faulting,
                    "CpuidUserDis (MSR_K8_HWCR bit 35) is enumerated; faulting wins over masks"
                        .to_string(),
                )
            } else if sig.family == 0x11 || (sig.family == 0xf && sig.model < 0x20) {
                (
                    Mechanism::None,
                    format!(
                        "family {:#x} model {:#x}: Xen does not use the mask MSRs of this \
                         generation",
                        sig.family, sig.model
                    ),
                )
            } else {
                if sig.family >= 0x15 {
                    notes.push(
                        "AMD masking is not fully effective from family 0x15 on".to_string(),
                    );
                }
                notes.push(
                    "AMD MSRs override rather than mask: they can also advertise features; \
                     every access passes the passcode EDI = 0x9C5A203A"
                        .to_string(),
                );
                (
                    Mechanism::AmdOverride,
                    format!(
                        "family {:#x}: AMD feature override MSRs, no CpuidUserDis",
                        sig.family
                    ),
                )
            }
        }
        Vendor::Unknown => (Mechanism::Unknown, "unknown vendor".to_string()),
    };
    let leaf7 = max_basic_leaf.is_some_and(|l| l >= 7);
    let words: Vec<usize> = match mechanism {
        Mechanism::Faulting => (0..WORDS.len()).collect(),
        Mechanism::IntelMaskV1 => {
            msrs.push("0x478 MASK_V1_CPUID1".to_string());
            vec![0, 1]
        }
        Mechanism::IntelMaskV2 => {
            msrs.extend(["0x130 MASK_V2_CPUID1", "0x131 MASK_V2_CPUID80000001"].map(String::from));
            vec![0, 1, 2, 3]
        }
        Mechanism::IntelMaskV3 => {
            msrs.extend(
                [
                    "0x132 MASK_V3_CPUID1",
                    "0x133 MASK_V3_CPUID80000001",
                    "0x134 MASK_V3_CPUIDD_01",
                ]
                .map(String::from),
            );
            vec![0, 1, 2, 3, 4]
        }
        Mechanism::AmdOverride => {
            msrs.extend(["0xC0011004 K8_FEATURE_MASK", "0xC0011005 K8_EXT_FEATURE_MASK"].map(String::from));
            let mut w = vec![0, 1, 2, 3];
            if leaf7 {
                msrs.push("0xC0011002 AMD_L7S0_FEATURE_MASK".to_string());
                w.push(5);
            }
            if sig.family == 0x15 {
                msrs.push("0xC0011003 AMD_THRM_FEATURE_MASK (leaf 6 ECX)".to_string());
            }
            w
        }
        Mechanism::None | Mechanism::Unknown => Vec::new(),
    };
    if mechanism == Mechanism::Faulting {
        msrs.push(match vendor {
            Vendor::Amd | Vendor::Hygon => "0xC0010015 K8_HWCR bit 35 (CpuidUserDis)".to_string(),
            _ => "0x140 MISC_FEATURES_ENABLES bit 0".to_string(),
        });
    }
    let (cannot_hide, can_hide) = match hardware {
        Some(hw) => {
            let hidden = (hw & KNOWN) - pv_default;
            let mut cannot = Featureset::EMPTY;
            let mut can = 0;
            for f in hidden.iter() {
                if MSR_WORDS.contains(&f.word()) {
                    continue;
                }
                if words.contains(&f.word()) {
                    can += 1;
                } else {
                    cannot.insert(f);
                }
            }
            (names(&cannot), can)
        }
        None => (Vec::new(), 0),
    };
    if !cannot_hide.is_empty() {
        notes.push(format!(
            "a PV guest would see {} host features its policy does not offer (native CPUID in \
             words the mechanism cannot mask); HVM guests are exact (CPUID always exits)",
            cannot_hide.len()
        ));
    }
    MechanismReport {
        mechanism,
        basis: "by generation, not yet verified on the model".to_string(),
        faulting_enumerated,
        enumeration,
        generation,
        msrs,
        hideable_words: words.iter().map(|&w| WORDS[w].name.to_string()).collect(),
        cannot_hide,
        can_hide,
        notes,
    }
}
