//! The vendor mask (Intel) and override (AMD) MSRs: which exist on which CPU, how their two
//! halves map to CPUID registers, their boot defaults and the values for a domain
//! (reference `xen-levelling.md` 2.1, 3.3, 3.4).
//!
//! Intel's are AND masks applied after the fast-forwarded bits (OSXSAVE, APIC) are filled in:
//! they can only hide. AMD's are overrides: CPUID returns the MSR's value, so they can
//! advertise features the CPU lacks, and are only ever built from the host's real values.

use super::generation::Generation;
use crate::cpuid::{CpuidRegs, Signature, Vendor};
use crate::feature::{COMMON_1D, Feature};
use crate::featureset::Featureset;
use crate::policy::CpuPolicy;

/// The CPUID registers one mask MSR covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MaskKind {
    /// `CPUID.01H:ECX` and `EDX` (Xen `_1cd`).
    Leaf1,
    /// `CPUID.80000001H:ECX` and `EDX` (Xen `e1cd`).
    Extd1,
    /// `CPUID.0DH.1:EAX` (Xen `Da1`; Intel V3 only).
    Xsave1,
    /// `CPUID.06H:ECX` (Xen `_6c`; AMD family 15h only).
    Thermal,
    /// `CPUID.07H.0:EAX` and `EBX` (Xen `_7ab0`; AMD only).
    Leaf7,
}

impl MaskKind {
    /// Every kind, in the order the context switch writes them.
    pub const ALL: [MaskKind; 5] = [
        MaskKind::Leaf1,
        MaskKind::Extd1,
        MaskKind::Xsave1,
        MaskKind::Thermal,
        MaskKind::Leaf7,
    ];

    /// Index into per-kind arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The (leaf, subleaf) it masks.
    pub const fn leaf(self) -> (u32, u32) {
        match self {
            MaskKind::Leaf1 => (0x1, 0),
            MaskKind::Extd1 => (0x8000_0001, 0),
            MaskKind::Xsave1 => (0xd, 1),
            MaskKind::Thermal => (0x6, 0),
            MaskKind::Leaf7 => (0x7, 0),
        }
    }

    /// Xen's short name (`1cd`, `e1cd`, `Da1`, `6c`, `7ab0`).
    pub const fn name(self) -> &'static str {
        match self {
            MaskKind::Leaf1 => "1cd",
            MaskKind::Extd1 => "e1cd",
            MaskKind::Xsave1 => "Da1",
            MaskKind::Thermal => "6c",
            MaskKind::Leaf7 => "7ab0",
        }
    }

    /// The MSR value for CPUID registers `regs` of this leaf, in `vendor`'s layout. Registers
    /// the MSR does not cover are all-ones in the half Xen keeps all-ones.
    pub const fn encode(self, vendor: Vendor, regs: &CpuidRegs) -> u64 {
        let amd = vendor.is_amd_like();
        match self {
            // Intel: low = ECX, high = EDX. AMD: low = EDX, high = ECX.
            MaskKind::Leaf1 | MaskKind::Extd1 if amd => (regs.c as u64) << 32 | regs.d as u64,
            MaskKind::Leaf1 | MaskKind::Extd1 => (regs.d as u64) << 32 | regs.c as u64,
            MaskKind::Xsave1 => 0xffff_ffff_0000_0000 | regs.a as u64,
            MaskKind::Thermal => 0xffff_ffff_0000_0000 | regs.c as u64,
            // AMD leaf 7: low = EBX, high = EAX.
            MaskKind::Leaf7 => (regs.a as u64) << 32 | regs.b as u64,
        }
    }

    /// The registers an MSR value stands for: the inverse of [`MaskKind::encode`] on the
    /// covered registers; uncovered registers are returned as `!0`.
    pub const fn decode(self, vendor: Vendor, value: u64) -> CpuidRegs {
        let (lo, hi) = (value as u32, (value >> 32) as u32);
        let amd = vendor.is_amd_like();
        let all = !0;
        match self {
            MaskKind::Leaf1 | MaskKind::Extd1 if amd => CpuidRegs::new(all, all, hi, lo),
            MaskKind::Leaf1 | MaskKind::Extd1 => CpuidRegs::new(all, all, lo, hi),
            MaskKind::Xsave1 => CpuidRegs::new(lo, all, all, all),
            MaskKind::Thermal => CpuidRegs::new(all, all, lo, all),
            MaskKind::Leaf7 => CpuidRegs::new(hi, lo, all, all),
        }
    }

    /// The featureset words the MSR masks, with the register each lives in.
    pub const fn words(self) -> &'static [usize] {
        match self {
            MaskKind::Leaf1 => &[0, 1],
            MaskKind::Extd1 => &[2, 3],
            MaskKind::Xsave1 => &[4],
            MaskKind::Thermal => &[],
            // EAX of leaf 7.0 is the max subleaf, not features: only EBX (word 5) is masked.
            MaskKind::Leaf7 => &[5],
        }
    }
}

/// One MSR per [`MaskKind`], or `None` where the CPU has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaskMsrs(pub(crate) [Option<u32>; 5]);

impl MaskMsrs {
    /// These, with `msr` for `kind`.
    pub const fn with(mut self, kind: MaskKind, msr: u32) -> MaskMsrs {
        self.0[kind.index()] = Some(msr);
        self
    }

    /// The MSR for `kind`.
    pub const fn get(&self, kind: MaskKind) -> Option<u32> {
        self.0[kind.index()]
    }

    /// Kinds that have an MSR.
    pub fn kinds(&self) -> impl Iterator<Item = (MaskKind, u32)> + '_ {
        MaskKind::ALL
            .into_iter()
            .filter_map(|k| self.get(k).map(|m| (k, m)))
    }

    /// True if no kind has an MSR.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// The mask MSRs Xen expects on a CPU, by vendor, family and model: its row of
/// `data/generations.tbl` ([`Generation`]). `max_leaf` is CPUID.00H:EAX; `leaf6_ecx` is
/// CPUID.06H:ECX.
pub fn expected_mask_msrs(
    vendor: Vendor,
    sig: Signature,
    max_leaf: u32,
    leaf6_ecx: u32,
) -> MaskMsrs {
    Generation::of(vendor, sig).map_or_else(MaskMsrs::default, |generation| {
        generation.mask_msrs(max_leaf, leaf6_ecx)
    })
}

/// Values for every mask MSR, in MSR layout (Xen's `struct cpuidmasks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaskValues(pub(crate) [u64; 5]);

impl MaskValues {
    /// The value for `kind`.
    pub const fn get(&self, kind: MaskKind) -> u64 {
        self.0[kind.index()]
    }

    /// Set the value for `kind`.
    pub fn set(&mut self, kind: MaskKind, value: u64) {
        self.0[kind.index()] = value;
    }

    /// True if any value differs: branch-free, for the context switch's common case (a plain
    /// `==` on the array becomes a call to `memcmp`).
    #[inline]
    pub(crate) fn differs_from(&self, other: &MaskValues) -> bool {
        let mut diff = 0;
        for (a, b) in self.0.iter().zip(&other.0) {
            diff |= a ^ b;
        }
        diff != 0
    }
}

/// The fast-forward bits hardware fills in from live state before an Intel mask applies, and
/// that an AMD override must have set to report the live state: OSXSAVE (`CPUID.01H:ECX[27]`,
/// when XSAVE exists) and APIC (`CPUID.01H:EDX[9]`).
fn fast_forward_leaf1(regs: &mut CpuidRegs, xsave: bool) {
    if xsave {
        regs.c |= Feature::OSXSAVE.mask();
    }
    regs.d |= Feature::APIC.mask();
}

/// Boot defaults: what Xen and unlevelled domains run with (reference 3.3). `raw` is the raw
/// CPUID of the CPU; `probed` the values the MSRs held when probed.
pub(crate) fn boot_defaults(vendor: Vendor, raw: &CpuPolicy, probed: &MaskValues) -> MaskValues {
    let leaf = |kind: MaskKind| {
        let (l, s) = kind.leaf();
        raw.leaf(l, s).unwrap_or_default()
    };
    let xsave = raw.featureset().contains(Feature::XSAVE);
    let mut d = *probed;
    let mut leaf1 = leaf(MaskKind::Leaf1);
    fast_forward_leaf1(&mut leaf1, xsave);
    if vendor.is_amd_like() {
        // Overrides: replace with the real values, never AND with what firmware left there.
        d.set(MaskKind::Leaf1, MaskKind::Leaf1.encode(vendor, &leaf1));
        let mut e1 = leaf(MaskKind::Extd1);
        e1.d |= Feature::APIC.mask(); // the common-1d copy of APIC is fast-forwarded too
        d.set(MaskKind::Extd1, MaskKind::Extd1.encode(vendor, &e1));
        let l7 = MaskKind::Leaf7.encode(vendor, &leaf(MaskKind::Leaf7));
        d.set(MaskKind::Leaf7, probed.get(MaskKind::Leaf7) & l7);
        let l6 = MaskKind::Thermal.encode(vendor, &leaf(MaskKind::Thermal));
        d.set(MaskKind::Thermal, probed.get(MaskKind::Thermal) & l6);
    } else {
        for (kind, regs) in [
            (MaskKind::Leaf1, leaf1),
            (MaskKind::Extd1, leaf(MaskKind::Extd1)),
            (MaskKind::Xsave1, leaf(MaskKind::Xsave1)),
        ] {
            d.set(kind, probed.get(kind) & kind.encode(vendor, &regs));
        }
    }
    d
}

/// The mask values for a domain with `policy` (reference 3.4): the defaults ANDed with the
/// policy's features, the host's topology bits forced in (native CPUID must report the
/// unmaskable topology leaves consistently), and the fast-forward bits set.
pub(crate) fn domain_masks(
    vendor: Vendor,
    defaults: &MaskValues,
    host: &Featureset,
    policy: &CpuPolicy,
) -> MaskValues {
    let amd = vendor.is_amd_like();
    let fs = policy.featureset();
    let mut m = *defaults;

    let mut leaf1 = policy.leaf(1, 0).unwrap_or_default();
    for f in [Feature::X2APIC, Feature::HTT] {
        if host.contains(f) {
            set_bit(&mut leaf1, f);
        }
    }
    fast_forward_leaf1(&mut leaf1, fs.contains(Feature::XSAVE));
    if amd && fs.contains(Feature::HYPERVISOR) {
        leaf1.c |= Feature::HYPERVISOR.mask(); // an override can add the hypervisor bit
    }
    m.set(
        MaskKind::Leaf1,
        defaults.get(MaskKind::Leaf1) & MaskKind::Leaf1.encode(vendor, &leaf1),
    );

    let mut e1 = policy.leaf(0x8000_0001, 0).unwrap_or_default();
    if host.contains(Feature::CMP_LEGACY) {
        set_bit(&mut e1, Feature::CMP_LEGACY);
    }
    if !policy.vendor().is_amd_like() {
        e1.d &= !COMMON_1D;
    }
    if amd {
        e1.d |= Feature::APIC.mask();
    }
    m.set(
        MaskKind::Extd1,
        defaults.get(MaskKind::Extd1) & MaskKind::Extd1.encode(vendor, &e1),
    );

    if amd {
        let l6 = policy.leaf(6, 0).unwrap_or_default();
        m.set(
            MaskKind::Thermal,
            defaults.get(MaskKind::Thermal) & MaskKind::Thermal.encode(vendor, &l6),
        );
        // EAX is the max subleaf: taken from the policy whole; EBX is ANDed.
        let l7 = policy.leaf(7, 0).unwrap_or_default();
        let ebx = defaults.get(MaskKind::Leaf7) as u32 & l7.b;
        m.set(
            MaskKind::Leaf7,
            (policy.max_feat_subleaf() as u64) << 32 | ebx as u64,
        );
    } else {
        let d1 = policy.leaf(0xd, 1).unwrap_or_default();
        m.set(
            MaskKind::Xsave1,
            defaults.get(MaskKind::Xsave1) & MaskKind::Xsave1.encode(vendor, &d1),
        );
    }
    m
}

fn set_bit(regs: &mut CpuidRegs, feature: Feature) {
    let reg = match crate::policy::WORD_HOMES[feature.word()] {
        crate::policy::WordHome::Cpuid { reg, .. } => reg,
        _ => return,
    };
    *reg.get_mut(regs) |= feature.mask();
}

/// Clear OSXSAVE in a leaf 1 mask value: for a PV vCPU whose virtual CR4.OSXSAVE is clear, so
/// that hardware does not fast-forward Xen's own CR4 (`CPUID.01H:ECX[27]`).
pub(crate) const fn without_osxsave(vendor: Vendor, leaf1_mask: u64) -> u64 {
    let bit = Feature::OSXSAVE.mask() as u64;
    // Intel keeps ECX in the low half, AMD in the high half.
    if vendor.is_amd_like() {
        leaf1_mask & !(bit << 32)
    } else {
        leaf1_mask & !bit
    }
}
