//! A silicon model: a [`Hardware`] that behaves like a given real CPU's levelling hardware.
//!
//! Built from the CPU's raw CPUID (any [`CpuidSource`], typically a real dump from
//! `data/cpuid-dumps/`), it models, from the facts in the reference (`xen-levelling.md`
//! 1.1, 2.1–2.2, 3.2–3.4) and the vendor manuals:
//!
//! - MSR_ARCH_CAPABILITIES (read-only) where `CPUID.07H.0:EDX[29]` enumerates it;
//! - which levelling MSRs exist for the vendor, family and model: Intel V1/V2/V3 masks
//!   (Penryn, Nehalem/Westmere, Sandy Bridge), MSR_PLATFORM_INFO from Nehalem on with the
//!   faulting bit and MSR_MISC_FEATURES_ENABLES from Ivy Bridge on; AMD's override MSRs
//!   (family 0Fh from model 20h, 10h and later but not 11h; leaf 7 with leaf 7; leaf 6 on
//!   family 15h) and HWCR, with CpuidUserDis where `CPUID.80000021H:EAX[17]` enumerates it;
//! - #GP on an absent MSR, a reserved bit, or (family 0Fh) a mask access without the passcode;
//! - Intel AND semantics applied after the fast-forwarded bits (OSXSAVE from CR4, APIC from
//!   APIC_BASE.EN) are filled in; AMD override semantics, where the fast-forwarded bits
//!   report live state only if set in the override;
//! - CPUID as seen at a given CPL: #GP at CPL > 0 with faulting on;
//! - an "emulator quirk" mode, like QEMU's TCG: every MSR reads 0, writes vanish without #GP,
//!   CPUID is never masked or faulted;
//! - a fault injection: an MSR that starts raising #GP mid-run (as after a microcode update).
//!
//! Every MSR write is recorded in order. The model's power-on mask values are all-ones for
//! Intel AND masks and the real CPUID values for AMD overrides (what firmware leaves).
//! It is `no_std`, so the QEMU shim runs the same model under the kernel.

use crate::cpuid::{CpuidRegs, CpuidSource, Signature, Vendor};
use crate::feature::Feature;
use crate::hardware::{Hardware, MsrFault, UserCpuid};
use crate::levelling::generation::{Generation, PlatformInfoPresence};
use crate::levelling::masks::MaskKind;
use crate::levelling::msr::{self, PlatformInfo};
use crate::policy::{CpuPolicy, RawMsrs};

/// How many MSR writes the log keeps (the count goes on past it).
pub const WRITE_LOG_CAPACITY: usize = 256;
/// How many MSRs can be made to fault at once.
pub const MAX_FAILING_MSRS: usize = 4;

/// One recorded MSR write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrWrite {
    /// The MSR.
    pub msr: u32,
    /// The value written.
    pub value: u64,
    /// It raised #GP.
    pub faulted: bool,
}

/// The modelled levelling MSRs of one CPU (their current values; `None` = absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LevellingMsrs {
    platform_info: Option<u64>,
    /// MSR_ARCH_CAPABILITIES, read-only, where `CPUID.07H.0:EDX[29]` enumerates it.
    arch_caps: Option<u64>,
    misc_features_enables: Option<u64>,
    hwcr: Option<u64>,
    /// Per [`MaskKind`]: the MSR index and its value.
    masks: [Option<(u32, u64)>; 5],
}

/// A modelled CPU.
#[derive(Clone, Copy, Debug)]
pub struct SiliconModel {
    raw: CpuPolicy,
    vendor: Vendor,
    msrs: LevellingMsrs,
    passcode_required: bool,
    emulator_quirk: bool,
    cr4_osxsave: bool,
    apic_enabled: bool,
    failing: [Option<u32>; MAX_FAILING_MSRS],
    log: [MsrWrite; WRITE_LOG_CAPACITY],
    writes: usize,
}

impl SiliconModel {
    /// A model of the CPU whose CPUID `source` reports. `dumped` holds MSR values recorded from
    /// that CPU where known (MSR_PLATFORM_INFO, ARCH_CAPABILITIES); where unknown, the
    /// generation decides.
    pub fn new(source: &impl CpuidSource, dumped: RawMsrs) -> SiliconModel {
        let raw = CpuPolicy::from_source(source, RawMsrs::default());
        let vendor = raw.vendor();
        let signature = raw.signature();
        let msrs = levelling_msrs(&raw, vendor, signature, dumped);
        SiliconModel {
            raw,
            vendor,
            msrs,
            passcode_required: Generation::of(vendor, signature).is_some_and(|g| g.passcode),
            emulator_quirk: false,
            cr4_osxsave: true,
            apic_enabled: true,
            failing: [None; MAX_FAILING_MSRS],
            log: [MsrWrite::default(); WRITE_LOG_CAPACITY],
            writes: 0,
        }
    }

    /// The same CPU as an emulator presents it: every MSR reads 0 and swallows writes.
    pub fn with_emulator_quirk(mut self) -> SiliconModel {
        self.emulator_quirk = true;
        self
    }

    /// The CPU's CPUID table, unmasked.
    pub fn raw(&self) -> &CpuPolicy {
        &self.raw
    }

    /// Set the live CR4.OSXSAVE that CPUID fast-forwards (`CPUID.01H:ECX[27]`).
    pub fn set_cr4_osxsave(&mut self, on: bool) {
        self.cr4_osxsave = on;
    }

    /// Make `index` raise #GP on every access from now on. `false` if the table is full.
    pub fn fail_msr(&mut self, index: u32) -> bool {
        match self.failing.iter_mut().find(|f| f.is_none()) {
            Some(slot) => {
                *slot = Some(index);
                true
            }
            None => false,
        }
    }

    /// MSR writes since the model was made or the log cleared.
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// The first [`WRITE_LOG_CAPACITY`] writes since the log was cleared, in order.
    pub fn write_log(&self) -> &[MsrWrite] {
        &self.log[..self.writes.min(WRITE_LOG_CAPACITY)]
    }

    /// Forget recorded writes.
    pub fn clear_write_log(&mut self) {
        self.writes = 0;
    }

    /// CPUID executed at privilege level `cpl` under the currently loaded MSRs: `Err` where
    /// it raises #GP (faulting on, CPL > 0).
    pub fn cpuid_at(&self, cpl: u8, leaf: u32, subleaf: u32) -> Result<CpuidRegs, CpuidFaulted> {
        if cpl > 0 && self.faulting_on() {
            return Err(CpuidFaulted);
        }
        let mut r = self.raw_cpuid(leaf, subleaf);
        let xsave = self.raw.has(Feature::XSAVE);
        let ff_leaf1 = leaf == 1;
        // Fast-forward: live state replaces these bits before any mask applies.
        if ff_leaf1 {
            assign(&mut r.c, Feature::OSXSAVE.mask(), xsave && self.cr4_osxsave);
            assign(&mut r.d, Feature::APIC.mask(), self.apic_enabled);
        }
        if self.emulator_quirk {
            return Ok(r);
        }
        for kind in MaskKind::ALL {
            let Some((_, value)) = self.msrs.masks[kind.index()] else {
                continue;
            };
            if kind.leaf() != (leaf, subleaf_of(leaf, subleaf)) {
                continue;
            }
            let shown = kind.decode(self.vendor, value);
            if self.vendor.is_amd_like() {
                r = override_registers(kind, r, shown);
                if ff_leaf1 || kind == MaskKind::Extd1 {
                    // An override reports live state for a fast-forward bit it has set.
                    let apic = self.apic_enabled && shown.d & Feature::APIC.mask() != 0;
                    assign(&mut r.d, Feature::APIC.mask(), apic);
                }
                if ff_leaf1 {
                    let osxsave =
                        xsave && self.cr4_osxsave && shown.c & Feature::OSXSAVE.mask() != 0;
                    assign(&mut r.c, Feature::OSXSAVE.mask(), osxsave);
                }
            } else {
                // Intel: AND, after fast-forwarding.
                r = CpuidRegs::new(r.a & shown.a, r.b & shown.b, r.c & shown.c, r.d & shown.d);
            }
        }
        Ok(r)
    }

    fn raw_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.raw.leaf(leaf, subleaf).unwrap_or_default()
    }

    fn faulting_on(&self) -> bool {
        if self.emulator_quirk {
            return false;
        }
        let intel = self.msrs.misc_features_enables.is_some_and(|v| v & 1 != 0);
        let amd = self.msrs.hwcr.is_some_and(|v| v & (1 << 35) != 0);
        intel || amd
    }

    fn failing(&self, index: u32) -> bool {
        self.failing.contains(&Some(index))
    }

    fn mask_slot(&self, index: u32) -> Option<usize> {
        self.msrs
            .masks
            .iter()
            .position(|m| m.is_some_and(|(i, _)| i == index))
    }

    fn read(&self, index: u32, passcode: bool) -> Result<u64, MsrFault> {
        let fault = Err(MsrFault { msr: index });
        if self.emulator_quirk {
            return Ok(0);
        }
        if self.failing(index) {
            return fault;
        }
        if let Some(slot) = self.mask_slot(index) {
            if self.passcode_required && !passcode {
                return fault;
            }
            return Ok(self.msrs.masks[slot].map_or(0, |(_, v)| v));
        }
        let value = match index {
            msr::PLATFORM_INFO => self.msrs.platform_info,
            crate::policy::MSR_ARCH_CAPABILITIES => self.msrs.arch_caps,
            msr::MISC_FEATURES_ENABLES => self.msrs.misc_features_enables,
            msr::AMD_HWCR => self.msrs.hwcr,
            _ => None,
        };
        value.ok_or(MsrFault { msr: index })
    }

    fn write(&mut self, index: u32, value: u64, passcode: bool) -> Result<(), MsrFault> {
        let result = self.apply_write(index, value, passcode);
        if self.writes < WRITE_LOG_CAPACITY {
            self.log[self.writes] = MsrWrite {
                msr: index,
                value,
                faulted: result.is_err(),
            };
        }
        self.writes += 1;
        result
    }

    fn apply_write(&mut self, index: u32, value: u64, passcode: bool) -> Result<(), MsrFault> {
        let fault = Err(MsrFault { msr: index });
        if self.emulator_quirk {
            return Ok(());
        }
        if self.failing(index) {
            return fault;
        }
        if let Some(slot) = self.mask_slot(index) {
            if self.passcode_required && !passcode {
                return fault;
            }
            if let Some((i, _)) = self.msrs.masks[slot] {
                self.msrs.masks[slot] = Some((i, value));
            }
            return Ok(());
        }
        match index {
            // Only bit 0 (CPUID faulting) is defined here; the rest are reserved.
            msr::MISC_FEATURES_ENABLES
                if self.msrs.misc_features_enables.is_some() && value & !1 == 0 =>
            {
                self.msrs.misc_features_enables = Some(value);
                Ok(())
            }
            msr::AMD_HWCR if self.msrs.hwcr.is_some() => {
                // HWCR[35] is reserved unless CpuidUserDis is enumerated.
                let user_dis = self.raw.has(Feature::CPUID_USER_DIS);
                if value & (1 << 35) != 0 && !user_dis {
                    return fault;
                }
                self.msrs.hwcr = Some(value);
                Ok(())
            }
            _ => fault,
        }
    }
}

/// CPUID raised #GP (CPUID faulting at CPL > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidFaulted;

impl Hardware for SiliconModel {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.cpuid_at(0, leaf, subleaf).unwrap_or_default()
    }

    fn rdmsr_safe(&self, msr: u32) -> Result<u64, MsrFault> {
        self.read(msr, false)
    }

    fn wrmsr_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault> {
        self.write(msr, value, false)
    }

    /// Models EDI = `AMD_MSR_PASSCODE`: family 0Fh refuses mask access without it.
    fn rdmsr_amd_safe(&self, msr: u32) -> Result<u64, MsrFault> {
        self.read(msr, true)
    }

    fn wrmsr_amd_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault> {
        self.write(msr, value, true)
    }

    fn cpuid_user(&mut self, leaf: u32, subleaf: u32) -> UserCpuid {
        match self.cpuid_at(3, leaf, subleaf) {
            Ok(regs) => UserCpuid::Returned(regs),
            Err(CpuidFaulted) => UserCpuid::Faulted,
        }
    }
}

fn assign(reg: &mut u32, mask: u32, on: bool) {
    if on { *reg |= mask } else { *reg &= !mask }
}

/// Leaves 0xD and 7 have the masked subleaf; the others ignore the subleaf.
fn subleaf_of(leaf: u32, subleaf: u32) -> u32 {
    if matches!(leaf, 0x7 | 0xd) {
        subleaf
    } else {
        0
    }
}

/// An AMD override replaces the registers it covers.
fn override_registers(kind: MaskKind, mut r: CpuidRegs, shown: CpuidRegs) -> CpuidRegs {
    match kind {
        MaskKind::Leaf1 | MaskKind::Extd1 => {
            r.c = shown.c;
            r.d = shown.d;
        }
        MaskKind::Thermal => r.c = shown.c,
        MaskKind::Leaf7 => {
            r.a = shown.a;
            r.b = shown.b;
        }
        MaskKind::Xsave1 => r.a = shown.a,
    }
    r
}

/// The levelling MSRs this generation has, from the vendor documentation's facts.
fn levelling_msrs(
    raw: &CpuPolicy,
    vendor: Vendor,
    sig: Signature,
    dumped: RawMsrs,
) -> LevellingMsrs {
    let mut m = LevellingMsrs {
        platform_info: None,
        arch_caps: raw
            .featureset()
            .contains(Feature::ARCH_CAPS)
            .then(|| dumped.arch_caps.unwrap_or(0)),
        misc_features_enables: None,
        // MSR_K8_HWCR exists on every AMD-like CPU.
        hwcr: vendor.is_amd_like().then_some(0),
        masks: [None; 5],
    };
    let Some(generation) = Generation::of(vendor, sig) else {
        return m;
    };
    let mask_msrs =
        generation.mask_msrs(raw.max_basic_leaf(), raw.leaf(6, 0).unwrap_or_default().c);
    for (kind, index) in mask_msrs.kinds() {
        // Intel's AND masks power on all-ones; AMD's overrides hold the CPU's own CPUID.
        let power_on = if vendor.is_amd_like() {
            let (leaf, subleaf) = kind.leaf();
            kind.encode(vendor, &raw.leaf(leaf, subleaf).unwrap_or_default())
        } else {
            u64::MAX
        };
        m.masks[kind.index()] = Some((index, power_on));
    }
    // MSR_PLATFORM_INFO where the generation has it, with `MSR_PLATFORM_INFO[31]` (CPUID
    // faulting) as the generation says; a dumped value wins where there is one.
    let by_generation = match generation.platform_info {
        PlatformInfoPresence::Absent => None,
        PlatformInfoPresence::Present => Some(0),
        PlatformInfoPresence::Faulting => Some(PlatformInfo::CPUID_FAULTING.bits()),
    };
    m.platform_info = by_generation.map(|value| dumped.platform_info.unwrap_or(value));
    let faulting = m.platform_info.is_some_and(|value| {
        PlatformInfo::from_bits_retain(value).contains(PlatformInfo::CPUID_FAULTING)
    });
    if faulting {
        m.misc_features_enables = Some(0);
    }
    m
}
