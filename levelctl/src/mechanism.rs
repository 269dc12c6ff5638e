//! Which levelling mechanism Xen would use on a CPU, judged two ways:
//!
//! - **by generation** ([`assess`]): from the vendor, family and model, through the core's
//!   table of CPU generations (`data/generations.tbl`: which mask MSRs, whether
//!   MSR_PLATFORM_INFO and its faulting bit exist), and from how the CPU enumerates CPUID
//!   faulting (`MSR_PLATFORM_INFO[31]` on Intel, `CPUID.80000021H:EAX[17]` on AMD). Works from
//!   any input that names the CPU; marked "by generation, not yet verified on the model".
//! - **on the silicon model** ([`on_model`]): when the input has CPUID data, the core boots
//!   on its model of that CPU exactly as Xen would ([`boot`]: probe by presence and by effect,
//!   then the system policies with faulting as probed), and the PV default policy of that same
//!   boot is assessed against what native CPUID would then show.
//!
//! HVM guests need none of this: every CPUID they execute exits to Xen.
//!
//! Both judge with the core's own [`Mechanism`], the type the hypervisor probes into; its
//! stable [`Mechanism::name`] is what the JSON carries (`faulting`, `intel-mask-v1` ...
//! `intel-mask-v3`, `amd-override`, `none`, and `unknown` for a vendor Xen does not level).

use serde::{Serialize, Serializer};
use xen_levelling::cpuid::Signature;
use xen_levelling::feature::{KNOWN, WORDS};
use xen_levelling::host::HostConfig;
use xen_levelling::levelling::generation::{Generation, PlatformInfoPresence};
use xen_levelling::levelling::masks::{MaskMsrs, expected_mask_msrs};
use xen_levelling::levelling::probe::{FaultingCheck, FaultingControl};
use xen_levelling::levelling::{DomainRole, LevellingCaps, Mechanism};
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::system::DomainKind;
use xen_levelling::silicon::SiliconModel;
use xen_levelling::{CpuidSource, Featureset, Vendor};

use crate::model::CpuSignature;
use crate::report::names;

/// The stable name of `mechanism` ([`Mechanism::name`]), `unknown` for `None` (a vendor Xen
/// does not level).
pub fn name(mechanism: Option<&Mechanism>) -> &'static str {
    mechanism.map_or("unknown", Mechanism::name)
}

/// A short description of `mechanism` (`None`: a vendor Xen does not level), by its kind.
pub fn describe(mechanism: Option<&Mechanism>) -> &'static str {
    match name(mechanism) {
        "faulting" => "CPUID faulting",
        "intel-mask-v1" => "Intel mask MSR V1 (0x478)",
        "intel-mask-v2" => "Intel mask MSRs V2 (0x130, 0x131)",
        "intel-mask-v3" => "Intel mask MSRs V3 (0x132, 0x133, 0x134)",
        "amd-override" => "AMD override MSRs",
        other => other,
    }
}

/// `mechanism`'s stable name in JSON.
fn serialize_name<S: Serializer>(mechanism: &Mechanism, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mechanism.name())
}

/// `mechanism`'s stable name in JSON, `unknown` for a vendor Xen does not level.
fn serialize_name_or_unknown<S: Serializer>(
    mechanism: &Option<Mechanism>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(name(mechanism.as_ref()))
}

/// What [`assess`] concludes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MechanismReport {
    /// The mechanism (`None`: the vendor is not one Xen levels). Faulting here is
    /// [`FaultingCheck::ByGeneration`]; masks are the generation's mask MSRs.
    #[serde(serialize_with = "serialize_name_or_unknown")]
    pub mechanism: Option<Mechanism>,
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

/// Words that mirror an MSR (MSR_ARCH_CAPABILITIES) are read with RDMSR, which a PV guest
/// cannot execute natively: never leaked by CPUID.
fn is_msr_word(word: usize) -> bool {
    WORDS[word].register.starts_with("MSR")
}

/// The mechanism a set of expected (or effective) mask MSRs amounts to.
fn masking(masks: &MaskMsrs) -> Mechanism {
    if masks.is_empty() {
        Mechanism::None
    } else {
        Mechanism::Masking(*masks)
    }
}

/// Faulting as the generation and enumeration promise it (not probed).
fn faulting_by_generation(vendor: Vendor) -> Mechanism {
    Mechanism::Faulting {
        control: FaultingControl::of(vendor),
        check: FaultingCheck::ByGeneration,
    }
}

/// `0x132 (1cd)` for every MSR of `masks`.
fn mask_msr_names(masks: &MaskMsrs) -> Vec<String> {
    masks
        .kinds()
        .map(|(kind, msr)| format!("{msr:#x} ({})", kind.name()))
        .collect()
}

/// The featureset words `masks` can hide, as Xen names them.
fn mask_words(masks: &MaskMsrs) -> Vec<usize> {
    masks
        .kinds()
        .flat_map(|(kind, _)| kind.words().iter().copied())
        .collect()
}

fn faulting_msr(vendor: Vendor) -> String {
    match vendor {
        Vendor::Amd | Vendor::Hygon => "0xc0010015 (HWCR bit 35, CpuidUserDis)".to_string(),
        _ => "0x140 (MISC_FEATURES_ENABLES bit 0)".to_string(),
    }
}

/// Where the faulting enumeration comes from (`MSR 0xCE[31] = 1`, `CPUID.80000021H:EAX[17] =
/// 0`), or why it is unknown.
fn enumeration(vendor: Vendor, faulting_enumerated: Option<bool>) -> String {
    match (vendor, faulting_enumerated) {
        (Vendor::Intel | Vendor::Centaur | Vendor::Shanghai, Some(on)) => {
            format!("MSR 0xCE (PLATFORM_INFO) bit 31 = {}", u8::from(on))
        }
        (Vendor::Intel | Vendor::Centaur | Vendor::Shanghai, None) => {
            "MSR 0xCE not in this input: faulting cannot be confirmed".to_string()
        }
        (Vendor::Amd | Vendor::Hygon, Some(on)) => {
            format!("CPUID.80000021H:EAX[17] (CpuidUserDis) = {}", u8::from(on))
        }
        (Vendor::Amd | Vendor::Hygon, None) => {
            "CPUID.80000021H not in this input: faulting cannot be confirmed".to_string()
        }
        (Vendor::Unknown, _) => "unknown vendor".to_string(),
    }
}

/// Judge the mechanism for a CPU by its generation. `hardware` is the CPU's own featureset
/// and `pv_default` what Xen offers PV guests by default; with both, the report lists what the
/// mechanism could not hide. Without `max_basic_leaf` (inputs without CPUID), an AMD CPU is
/// taken to have leaf 7 if any of its featuresets has a leaf 7 feature.
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
    let enumeration = enumeration(vendor, faulting_enumerated);
    let leaf7_features = (hardware.unwrap_or_default() | pv_default).word(5) != 0;
    let max_leaf = max_basic_leaf.unwrap_or(if leaf7_features { 7 } else { 1 });
    let core_sig = Signature {
        family: sig.family,
        model: sig.model,
        stepping: sig.stepping,
    };
    // Leaf 6 ECX only decides the AMD family 15h thermal MSR, which masks no featureset word.
    let masks = expected_mask_msrs(vendor, core_sig, max_leaf, 1);
    if vendor == Vendor::Intel && sig.family == 0xf {
        notes.push(
            "Xen skips the faulting probe on family 0xF (Netburst) unless it runs virtualised: \
             these MSRs raise spurious #GP there"
                .to_string(),
        );
    }
    let (mechanism, generation) = judge(vendor, sig, faulting_enumerated, &masks);
    if mechanism.is_some_and(|m| m.name() == "amd-override") {
        if sig.family >= 0x15 {
            notes.push("AMD masking is not fully effective from family 0x15 on".to_string());
        }
        notes.push(
            "AMD MSRs override rather than mask: they can also advertise features; every access \
             passes the passcode EDI = 0x9C5A203A"
                .to_string(),
        );
    }
    let (msrs, words) = match mechanism {
        Some(Mechanism::Faulting { .. }) => {
            (vec![faulting_msr(vendor)], (0..WORDS.len()).collect())
        }
        Some(Mechanism::Masking(masks)) => (mask_msr_names(&masks), mask_words(&masks)),
        Some(Mechanism::None) | None => (Vec::new(), Vec::new()),
    };
    let (cannot_hide, can_hide) = match hardware {
        Some(hw) => hiding(hw, pv_default, &words),
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

/// The mechanism the generation of a CPU with signature `sig` promises, and why: faulting
/// where enumerated (or, on Intel, expected of the generation), else the generation's `masks`.
fn judge(
    vendor: Vendor,
    sig: CpuSignature,
    faulting_enumerated: Option<bool>,
    masks: &MaskMsrs,
) -> (Option<Mechanism>, String) {
    let generation = Generation::of(
        vendor,
        Signature {
            family: sig.family,
            model: sig.model,
            stepping: sig.stepping,
        },
    );
    let by_masks = masking(masks);
    match (vendor, faulting_enumerated) {
        (Vendor::Unknown, _) => (None, "unknown vendor".to_string()),
        (_, Some(true)) => (
            Some(faulting_by_generation(vendor)),
            "CPUID faulting is enumerated; faulting wins over masks".to_string(),
        ),
        (_, _) if by_masks != Mechanism::None => (
            Some(by_masks),
            format!(
                "family {:#x} model {:#x} ({}): this generation has {}",
                sig.family,
                sig.model,
                generation.map_or("unknown generation", |g| g.name),
                describe(Some(&by_masks))
            ),
        ),
        (Vendor::Intel, None)
            if generation.is_some_and(|g| g.platform_info == PlatformInfoPresence::Faulting) =>
        {
            (
                Some(faulting_by_generation(vendor)),
                format!(
                    "family 6 model {:#x} ({}): this generation has CPUID faulting (expected, \
                     not enumerated in this input)",
                    sig.model,
                    generation.map_or("", |g| g.name)
                ),
            )
        }
        _ => (
            Some(Mechanism::None),
            format!(
                "family {:#x} model {:#x}: no mask MSRs for this generation and no faulting \
                 enumerated",
                sig.family, sig.model
            ),
        ),
    }
}

/// Of the host features `hardware` has and `pv_default` hides: the names of those outside the
/// mechanism's `words` (a PV guest sees them natively), and how many it can hide. Words that
/// mirror an MSR never leak through CPUID.
fn hiding(hardware: Featureset, pv_default: Featureset, words: &[usize]) -> (Vec<String>, usize) {
    let hidden = (hardware & KNOWN) - pv_default;
    let mut cannot = Featureset::EMPTY;
    let mut can = 0;
    for f in hidden.iter().filter(|f| !is_msr_word(f.word())) {
        if words.contains(&f.word()) {
            can += 1;
        } else {
            cannot.insert(f);
        }
    }
    (names(&cannot), can)
}

/// What booting the core's levelling on the silicon model of a CPU found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelVerdict {
    /// The mechanism probing chose (for masks named by the generation's mask MSRs, not only
    /// those that proved worth using: see `msrs`).
    #[serde(serialize_with = "serialize_name")]
    pub mechanism: Mechanism,
    /// How it was established.
    pub basis: String,
    /// For faulting: whether its effect was verified at CPL 3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faulting_check: Option<String>,
    /// What Xen expects of this generation (Xen's `LCAP_*` names).
    pub expected: Vec<String>,
    /// What exists (reads, and accepts a write of its own value).
    pub present: Vec<String>,
    /// What proved to work by effect, and is used.
    pub effective: Vec<String>,
    /// Present, but the CPU reports no feature through it: nothing to hide, not used.
    pub untested: Vec<String>,
    /// Present but without effect (as under an emulator).
    pub ineffective: Vec<String>,
    /// Expected but absent.
    pub missing: Vec<String>,
    /// The MSRs in use (for masking: those that proved effective).
    pub msrs: Vec<String>,
    /// Featureset words the mechanism in use can hide.
    pub hideable_words: Vec<String>,
    /// Features a PV guest at the PV default would see natively though its policy lacks them
    /// (Xen refuses such guests unless best effort is asked for).
    pub cannot_hide: Vec<String>,
    /// PV default features native CPUID would not show (an AND mask cannot add them): the
    /// guest sees fewer features than its policy, which is safe.
    pub not_shown: Vec<String>,
}

fn caps(c: LevellingCaps) -> Vec<String> {
    c.iter_names()
        .map(|(name, _)| name.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

/// Boot the core on the silicon model of the CPU `source` describes, as Xen would
/// ([`xen_levelling::host::Host::boot`]): probe the levelling by presence and by effect, then
/// derive the system policies with `disabled` removed and CPUID faulting as probed. `dumped`
/// holds the MSRs the input recorded (where unknown, the model decides by generation).
///
/// This is the only boot of a CPU levelctl does: the host's featuresets and the
/// [`on_model`] verdict both come from it.
pub fn boot(
    source: &impl CpuidSource,
    dumped: RawMsrs,
    disabled: Featureset,
) -> xen_levelling::host::Host {
    let mut model = SiliconModel::new(source, dumped);
    xen_levelling::host::Host::boot(
        &mut model,
        HostConfig {
            disabled,
            ..HostConfig::default()
        },
    )
}

/// What the [`boot`] of a CPU found about its levelling: the mechanism probing chose, and a
/// PV guest at the booted PV default policy assessed against what native CPUID would then
/// show.
pub fn on_model(booted: &xen_levelling::host::Host) -> ModelVerdict {
    let levelling = booted.levelling();
    let pv_default = &booted.system().pv_default;
    let report = levelling.report();
    let vendor = report.vendor;
    let (mechanism, faulting_check, msrs, words) = match report.mechanism {
        faulting @ Mechanism::Faulting { check, .. } => (
            faulting,
            Some(match check {
                FaultingCheck::Verified => "verified: CPL 3 CPUID faults with it on, not off",
                FaultingCheck::Unverifiable => "enumerated and accepted, effect not checkable",
                FaultingCheck::ByGeneration => "expected by generation, not probed",
            }),
            vec![faulting_msr(vendor)],
            (0..WORDS.len()).collect::<Vec<_>>(),
        ),
        // Name the generation by what it has, not by what proved worth using (a mask with
        // nothing to hide is left untested).
        Mechanism::Masking(masks) => (
            masking(&report.expected_masks),
            None,
            mask_msr_names(&masks),
            mask_words(&masks),
        ),
        Mechanism::None => (Mechanism::None, None, Vec::new(), Vec::new()),
    };
    let d = levelling.assess(DomainKind::Pv, DomainRole::Guest, pv_default);
    ModelVerdict {
        mechanism,
        basis: "probed on the silicon model of this CPU, by presence and by effect".to_string(),
        faulting_check: faulting_check.map(str::to_string),
        expected: caps(report.expected),
        present: caps(report.present),
        effective: caps(report.effective),
        untested: caps(report.untested),
        ineffective: caps(report.ineffective()),
        missing: caps(report.missing()),
        msrs,
        hideable_words: words.iter().map(|&w| WORDS[w].name.to_string()).collect(),
        cannot_hide: names(&d.unenforceable()),
        not_shown: names(&d.not_shown()),
    }
}
