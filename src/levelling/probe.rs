//! Probing what levelling the CPU offers: CPUID faulting, then the mask MSRs, each checked
//! by presence and then by effect (reference `xen-levelling.md` 1.2, 2.3).
//!
//! Presence alone proves nothing under an emulator: QEMU's TCG accepts every MSR, reads 0 and
//! drops writes (`qemu-facts.md` 5). So every mechanism found is exercised: a mask MSR must
//! actually hide a feature the CPU has and give it back; faulting must actually make CPL 3
//! CPUID fault (where the `Hardware` can run CPL 3 code) and stop when turned off. What is
//! present but has no effect is reported as ineffective and not used.

use bitflags::bitflags;

use super::masks::{MaskKind, MaskMsrs, MaskValues, expected_mask_msrs};
use super::msr::{self, Hwcr, MiscFeaturesEnables, PlatformInfo};
use crate::cpuid::{CpuidRegs, Signature, Vendor};
use crate::feature::Feature;
use crate::hardware::{Hardware, MsrFault, UserCpuid};
use crate::policy::CpuPolicy;

bitflags! {
    /// Levelling capabilities, Xen's current `LCAP_*` values (one bit each).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct LevellingCaps: u32 {
        /// CPUID faulting (Intel) or CpuidUserDis (AMD).
        const FAULTING = 1 << 0;
        /// Mask of `CPUID.01H:ECX/EDX`.
        const MASK_1CD = 1 << 1;
        /// Mask of `CPUID.80000001H:ECX/EDX`.
        const MASK_E1CD = 1 << 2;
        /// Mask of `CPUID.0DH.1:EAX` (Intel V3).
        const MASK_DA1 = 1 << 3;
        /// Mask of `CPUID.06H:ECX` (AMD family 15h).
        const MASK_6C = 1 << 4;
        /// Mask of `CPUID.07H.0:EAX/EBX` (AMD).
        const MASK_7AB0 = 1 << 5;
    }
}

impl LevellingCaps {
    /// The capability a mask kind gives.
    pub const fn of_mask(kind: MaskKind) -> LevellingCaps {
        match kind {
            MaskKind::Leaf1 => LevellingCaps::MASK_1CD,
            MaskKind::Extd1 => LevellingCaps::MASK_E1CD,
            MaskKind::Xsave1 => LevellingCaps::MASK_DA1,
            MaskKind::Thermal => LevellingCaps::MASK_6C,
            MaskKind::Leaf7 => LevellingCaps::MASK_7AB0,
        }
    }
}

/// Which MSR turns CPUID faulting on and off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultingControl {
    /// Intel `MSR_MISC_FEATURES_ENABLES[0]` (0x140), enumerated by `MSR_PLATFORM_INFO[31]`.
    Intel,
    /// AMD `HWCR[35]` (0xC0010015), enumerated by `CPUID.80000021H:EAX[17]`.
    Amd,
}

impl FaultingControl {
    /// The control `vendor`'s CPUs have: AMD's and Hygon's `HWCR[35]`, everyone else's
    /// `MSR_MISC_FEATURES_ENABLES[0]`.
    pub const fn of(vendor: Vendor) -> FaultingControl {
        if vendor.is_amd_like() {
            FaultingControl::Amd
        } else {
            FaultingControl::Intel
        }
    }

    /// The MSR and the bit in it.
    pub const fn msr_and_bit(self) -> (u32, u64) {
        match self {
            FaultingControl::Intel => (
                msr::MISC_FEATURES_ENABLES,
                MiscFeaturesEnables::CPUID_FAULTING.bits(),
            ),
            FaultingControl::Amd => (msr::AMD_HWCR, Hwcr::CPUID_USER_DIS.bits()),
        }
    }
}

/// How faulting was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultingCheck {
    /// CPL 3 CPUID faulted with faulting on and did not with it off.
    Verified,
    /// Enumerated and the MSR accepts the bit, but this `Hardware` cannot run CPL 3 code to
    /// check the effect (as Xen, which never checks).
    Unverifiable,
    /// Not probed: what the CPU's generation and its enumeration promise (a toolstack judging a
    /// CPU it does not run on).
    ByGeneration,
}

/// The levelling mechanism in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// CPUID faulting: every levelled PV CPUID traps and is emulated.
    Faulting {
        /// The controlling MSR.
        control: FaultingControl,
        /// How it was checked.
        check: FaultingCheck,
    },
    /// Mask or override MSRs that proved effective.
    Masking(MaskMsrs),
    /// Nothing: PV guests see the hardware's CPUID.
    None,
}

impl Mechanism {
    /// A stable short name, the same for every CPU of a kind (`levelctl`'s JSON carries it):
    /// `faulting`; for masks the family their MSRs belong to, `intel-mask-v1` (0x478),
    /// `intel-mask-v2` (0x130, 0x131), `intel-mask-v3` (0x132-0x134) or `amd-override`
    /// (0xC0011002-0xC0011005); `none`.
    pub fn name(&self) -> &'static str {
        let Mechanism::Masking(masks) = self else {
            return match self {
                Mechanism::Faulting { .. } => "faulting",
                _ => "none",
            };
        };
        let has = |family: &[u32]| masks.kinds().any(|(_, index)| family.contains(&index));
        if has(&[
            msr::AMD_OVERRIDE_LEAF1,
            msr::AMD_OVERRIDE_EXTD1,
            msr::AMD_OVERRIDE_LEAF6,
            msr::AMD_OVERRIDE_LEAF7,
        ]) {
            "amd-override"
        } else if has(&[
            msr::INTEL_MASK_V3_LEAF1,
            msr::INTEL_MASK_V3_EXTD1,
            msr::INTEL_MASK_V3_XSAVE1,
        ]) {
            "intel-mask-v3"
        } else if has(&[msr::INTEL_MASK_V2_LEAF1, msr::INTEL_MASK_V2_EXTD1]) {
            "intel-mask-v2"
        } else if has(&[msr::INTEL_MASK_V1_LEAF1]) {
            "intel-mask-v1"
        } else {
            "none"
        }
    }
}

/// `CPUID faulting (Intel MSR 0x140, verified)`, `mask MSRs 1cd=0x132 e1cd=0x133`, `none`.
impl core::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mechanism::Faulting { control, check } => {
                let (msr, _) = control.msr_and_bit();
                let how = match check {
                    FaultingCheck::Verified => "verified",
                    FaultingCheck::Unverifiable => "enumerated, effect not checkable here",
                    FaultingCheck::ByGeneration => "expected by generation, not probed",
                };
                write!(f, "CPUID faulting (MSR {msr:#x}, {how})")
            }
            Mechanism::Masking(msrs) => {
                f.write_str("mask MSRs")?;
                for (kind, index) in msrs.kinds() {
                    write!(f, " {}={index:#x}", kind.name())?;
                }
                Ok(())
            }
            Mechanism::None => f.write_str("none"),
        }
    }
}

/// Options Xen takes from its environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Xen itself runs under a hypervisor (`CPUID.01H:ECX[31]`): probe faulting on Intel family
    /// 0Fh and via the Intel MSRs on AMD, which a hypervisor may emulate.
    pub virtualised: bool,
}

/// Everything probing found, expected versus found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The CPU's vendor.
    pub vendor: Vendor,
    /// Its family, model, stepping.
    pub signature: Signature,
    /// What Xen expects this generation to have.
    pub expected: LevellingCaps,
    /// What exists by presence: the MSR reads and accepts a write of its own value (faulting:
    /// enumerated and its control MSR readable).
    pub present: LevellingCaps,
    /// What proved to work by effect, and is used.
    pub effective: LevellingCaps,
    /// Present, but the CPU reports no feature through it, so there is nothing to hide and
    /// no way to prove it works: not used, and not needed.
    pub untested: LevellingCaps,
    /// The mask MSRs expected for this generation (used or not).
    pub expected_masks: MaskMsrs,
    /// The mechanism chosen.
    pub mechanism: Mechanism,
    /// The values the mask MSRs held when probed (firmware's), in MSR layout.
    pub probed_masks: MaskValues,
    /// The faulting control MSR's value when probed (the shadow's starting value).
    pub probed_faulting_msr: u64,
}

impl ProbeReport {
    /// Before probing: nothing expected, present or used.
    pub(crate) const NOTHING: ProbeReport = ProbeReport {
        vendor: Vendor::Unknown,
        signature: Signature {
            family: 0,
            model: 0,
            stepping: 0,
        },
        expected: LevellingCaps::empty(),
        present: LevellingCaps::empty(),
        effective: LevellingCaps::empty(),
        untested: LevellingCaps::empty(),
        expected_masks: MaskMsrs([None; 5]),
        mechanism: Mechanism::None,
        probed_masks: MaskValues([0; 5]),
        probed_faulting_msr: 0,
    };

    /// Present, testable, and without effect: what an emulator that accepts every MSR looks like.
    pub fn ineffective(&self) -> LevellingCaps {
        self.present - self.effective - self.untested
    }

    /// Expected but not present.
    pub fn missing(&self) -> LevellingCaps {
        self.expected - self.present
    }
}

/// Probe the CPU `hw` runs on. `raw` is its raw CPUID policy (read through `hw` at CPL 0
/// before any levelling is loaded).
pub fn probe(hw: &mut impl Hardware, raw: &CpuPolicy, options: ProbeOptions) -> ProbeReport {
    let vendor = raw.vendor();
    let signature = raw.signature();
    let mut report = ProbeReport {
        vendor,
        signature,
        ..ProbeReport::NOTHING
    };
    if let Some((control, value)) = faulting_present(hw, raw, options, &mut report) {
        report.present |= LevellingCaps::FAULTING;
        report.probed_faulting_msr = value;
        if let Some(check) = faulting_works(hw, control, value) {
            report.effective |= LevellingCaps::FAULTING;
            report.mechanism = Mechanism::Faulting { control, check };
            // Faulting and masking are exclusive, and faulting wins (as in Xen).
            return report;
        }
    }
    let leaf6_ecx = raw.leaf(6, 0).unwrap_or_default().c;
    let expected = expected_mask_msrs(vendor, signature, raw.max_basic_leaf(), leaf6_ecx);
    report.expected_masks = expected;
    let mut used = MaskMsrs::default();
    for (kind, index) in expected.kinds() {
        let cap = LevellingCaps::of_mask(kind);
        report.expected |= cap;
        let access = MaskAccess {
            index,
            amd: vendor.is_amd_like(),
        };
        let Ok(value) = access
            .read(hw)
            .and_then(|v| access.write(hw, v).map(|()| v))
        else {
            continue;
        };
        report.present |= cap;
        report.probed_masks.set(kind, value);
        match mask_check(hw, vendor, kind, access, value) {
            MaskCheck::Works => {
                report.effective |= cap;
                used.0[kind.index()] = Some(index);
            }
            MaskCheck::NothingToHide => report.untested |= cap,
            MaskCheck::NoEffect => {}
        }
    }
    if !used.is_empty() {
        report.mechanism = Mechanism::Masking(used);
    }
    report
}

/// Faulting enumerated and its control MSR readable: the control and its current value.
fn faulting_present(
    hw: &mut impl Hardware,
    raw: &CpuPolicy,
    options: ProbeOptions,
    report: &mut ProbeReport,
) -> Option<(FaultingControl, u64)> {
    let vendor = raw.vendor();
    let intel_probe = match vendor {
        // Netburst raises spurious #GPs on these MSRs unless a hypervisor emulates them.
        Vendor::Intel | Vendor::Centaur | Vendor::Shanghai => {
            raw.signature().family != 0xf || options.virtualised
        }
        // On AMD the Intel MSRs only exist when a hypervisor provides them.
        Vendor::Amd | Vendor::Hygon => options.virtualised,
        Vendor::Unknown => false,
    };
    // Faulting is expected where it is enumerated: MSR_PLATFORM_INFO[31], or
    // CPUID.80000021H:EAX[17] on AMD.
    if intel_probe {
        let info = hw
            .rdmsr_safe(msr::PLATFORM_INFO)
            .map(PlatformInfo::from_bits_retain);
        if info.is_ok_and(|i| i.contains(PlatformInfo::CPUID_FAULTING)) {
            report.expected |= LevellingCaps::FAULTING;
            if let Ok(value) = hw.rdmsr_safe(msr::MISC_FEATURES_ENABLES) {
                return Some((FaultingControl::Intel, value));
            }
        }
    }
    if vendor.is_amd_like() && raw.featureset().contains(Feature::CPUID_USER_DIS) {
        report.expected |= LevellingCaps::FAULTING;
        if let Ok(value) = hw.rdmsr_safe(msr::AMD_HWCR) {
            return Some((FaultingControl::Amd, value));
        }
    }
    None
}

/// Turn faulting on, check CPL 3 CPUID faults; off, check it does not; restore. `None` if
/// the control MSR refuses the bit or the effect is wrong.
fn faulting_works(
    hw: &mut impl Hardware,
    control: FaultingControl,
    value: u64,
) -> Option<FaultingCheck> {
    let (index, bit) = control.msr_and_bit();
    let on = hw.wrmsr_safe(index, value | bit).is_ok()
        && hw.rdmsr_safe(index).is_ok_and(|v| v & bit != 0);
    let when_on = hw.cpuid_user(0, 0);
    let off = hw.wrmsr_safe(index, value & !bit).is_ok();
    let when_off = hw.cpuid_user(0, 0);
    let restored = hw.wrmsr_safe(index, value).is_ok();
    if !(on && off && restored) {
        return None;
    }
    match (when_on, when_off) {
        (UserCpuid::Faulted, UserCpuid::Returned(_)) => Some(FaultingCheck::Verified),
        (UserCpuid::Unavailable, _) | (_, UserCpuid::Unavailable) => {
            Some(FaultingCheck::Unverifiable)
        }
        _ => None,
    }
}

/// A mask MSR and how to reach it (AMD's want the passcode in EDI).
#[derive(Clone, Copy, Debug)]
struct MaskAccess {
    index: u32,
    amd: bool,
}

impl MaskAccess {
    fn read(self, hw: &mut impl Hardware) -> Result<u64, MsrFault> {
        if self.amd {
            hw.rdmsr_amd_safe(self.index)
        } else {
            hw.rdmsr_safe(self.index)
        }
    }

    fn write(self, hw: &mut impl Hardware, value: u64) -> Result<(), MsrFault> {
        if self.amd {
            hw.wrmsr_amd_safe(self.index, value)
        } else {
            hw.wrmsr_safe(self.index, value)
        }
    }
}

/// What exercising a mask MSR showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaskCheck {
    /// It hid a feature and gave it back.
    Works,
    /// CPUID did not change (or a write faulted).
    NoEffect,
    /// The CPU reports no feature through it.
    NothingToHide,
}

/// Hide one feature the CPU reports through this mask, check CPUID stops reporting it, put
/// the firmware value back, check it returns.
fn mask_check(
    hw: &mut impl Hardware,
    vendor: Vendor,
    kind: MaskKind,
    access: MaskAccess,
    firmware: u64,
) -> MaskCheck {
    let (leaf, subleaf) = kind.leaf();
    let visible = hw.cpuid(leaf, subleaf);
    let Some(bit) = test_bit(vendor, kind, &visible) else {
        return MaskCheck::NothingToHide;
    };
    // Intel ANDs: clear the bit in what is there. AMD overrides: state the real value less it.
    let full = if vendor.is_amd_like() {
        kind.encode(vendor, &visible)
    } else {
        firmware
    };
    let hides = access.write(hw, full & !bit).is_ok() && !reports(hw, vendor, kind, bit);
    let restores = access.write(hw, full).is_ok() && reports(hw, vendor, kind, bit);
    let back_to_firmware = access.write(hw, firmware).is_ok();
    if hides && restores && back_to_firmware {
        MaskCheck::Works
    } else {
        MaskCheck::NoEffect
    }
}

/// A bit (as an MSR-layout mask) of a feature the CPU reports through `kind`'s registers,
/// avoiding the fast-forwarded and hypervisor bits and non-feature fields.
fn test_bit(vendor: Vendor, kind: MaskKind, visible: &CpuidRegs) -> Option<u64> {
    let avoid = match kind {
        MaskKind::Leaf1 | MaskKind::Extd1 => {
            // OSXSAVE and APIC are fast-forwarded from live state (APIC also in the AMD copy
            // at the same EDX bit of leaf 0x80000001); HYPERVISOR is not the CPU's.
            let mut r = CpuidRegs::ZERO;
            r.c = Feature::OSXSAVE.mask() | Feature::HYPERVISOR.mask();
            r.d = Feature::APIC.mask();
            kind.encode(vendor, &r)
        }
        // The high halves are EAX of leaf 7.0 (the max subleaf, not features) or unused.
        MaskKind::Leaf7 | MaskKind::Xsave1 | MaskKind::Thermal => 0xffff_ffff_0000_0000,
    };
    let candidates = kind.encode(vendor, visible) & !avoid;
    (candidates != 0).then(|| 1 << candidates.trailing_zeros())
}

/// True if CPUID reports the feature at MSR-layout `bit` of `kind`.
fn reports(hw: &mut impl Hardware, vendor: Vendor, kind: MaskKind, bit: u64) -> bool {
    let (leaf, subleaf) = kind.leaf();
    let now = hw.cpuid(leaf, subleaf);
    kind.encode(vendor, &now) & bit != 0
}
