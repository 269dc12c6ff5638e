//! [`CpuPolicy`]: the CPUID leaves and MSRs a domain (or the system) may see.
//!
//! The leaf table has Xen's bounds (`xen/include/xen/lib/x86/cpu-policy.h`): basic leaves
//! 0–0xD, leaf 4 subleaves 0–5, leaf 7 subleaves 0–2, leaf 0xB subleaves 0–1, leaf 0xD
//! subleaves 0–62, extended leaves 0x80000000–0x80000021, and the two Xen leaf limits at
//! 0x40000000/0x40000100. The MSR part holds MSR_PLATFORM_INFO (0xCE) and
//! MSR_ARCH_CAPABILITIES (0x10A). A policy is plain data: `Copy`, comparable, serialisable.
//!
//! Submodules: [`system`] derives raw → host → PV/HVM max and default, and builds domain
//! policies; [`guest`] answers a guest's CPUID; [`serialise`] converts to and from Xen's
//! hypercall arrays; [`compat`] checks a domain policy against a max policy.

pub mod compat;
pub mod guest;
pub mod serialise;
pub mod system;

use crate::cpuid::{CpuidRegs, CpuidSource, NO_SUBLEAF, Signature, Vendor};
use crate::feature::NR_WORDS;
use crate::featureset::Featureset;
use crate::nospec;

/// Basic leaves a policy holds: 0 to 0xD (Xen's `CPUID_GUEST_NR_BASIC`).
pub const NR_BASIC: usize = 0xe;
/// Leaf 4 (deterministic cache parameters) subleaves: 0 to 5.
pub const NR_CACHE: usize = 6;
/// Leaf 7 (structured extended features) subleaves: 0 to 2.
pub const NR_FEAT: usize = 3;
/// Leaf 0xB (extended topology) subleaves: 0 and 1.
pub const NR_TOPO: usize = 2;
/// Leaf 0xD (XSAVE state components) subleaves: 0 to 62.
pub const NR_XSTATE: usize = 63;
/// Extended leaves 0x80000000 to 0x80000021 (Xen's `CPUID_GUEST_NR_EXTD_AMD`).
pub const NR_EXTD: usize = 0x22;
/// The first extended leaf.
pub const EXTD_BASE: u32 = 0x8000_0000;
/// Xen's hypervisor leaves, and their relocated copy when Viridian takes the first range.
pub const XEN_LEAVES: u32 = 0x4000_0000;
/// Where the Xen leaves move when Viridian occupies [`XEN_LEAVES`].
pub const XEN_LEAVES_RELOCATED: u32 = 0x4000_0100;

/// MSR_PLATFORM_INFO and IA32_ARCH_CAPABILITIES, the two MSRs a policy carries (defined in
/// [`crate::msr`]).
pub use crate::msr::{
    ARCH_CAPABILITIES as MSR_ARCH_CAPABILITIES, PLATFORM_INFO as MSR_PLATFORM_INFO,
};
/// `MSR_PLATFORM_INFO[31]`: CPUID faulting supported (MSR 0x140 exists), in the 32 bits a
/// policy keeps.
pub const PLATFORM_INFO_CPUID_FAULTING: u32 =
    crate::msr::PlatformInfo::CPUID_FAULTING.bits() as u32;

/// Where a (leaf, subleaf) lives in a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A basic leaf without subleaves (subleaf ignored).
    Basic(usize),
    /// Leaf 4, subleaf n.
    Cache(usize),
    /// Leaf 7, subleaf n.
    Feat(usize),
    /// Leaf 0xB, subleaf n.
    Topo(usize),
    /// Leaf 0xD, subleaf n.
    Xstate(usize),
    /// Extended leaf 0x80000000 + n.
    Extd(usize),
}

impl Slot {
    /// True for the leaves that take a subleaf: 4, 7, 0xB and 0xD.
    pub const fn leaf_has_subleaves(leaf: u32) -> bool {
        matches!(leaf, 0x4 | 0x7 | 0xb | 0xd)
    }

    /// The slot for `(leaf, subleaf)`, if the policy can hold it. Leaves without subleaves
    /// ignore `subleaf`. Limits are the array bounds, not the policy's max leaves.
    pub const fn of(leaf: u32, subleaf: u32) -> Option<Slot> {
        let s = subleaf as usize;
        match leaf {
            0x4 if s < NR_CACHE => Some(Slot::Cache(s)),
            0x7 if s < NR_FEAT => Some(Slot::Feat(s)),
            0xb if s < NR_TOPO => Some(Slot::Topo(s)),
            0xd if s < NR_XSTATE => Some(Slot::Xstate(s)),
            0x4 | 0x7 | 0xb | 0xd => None,
            l if (l as usize) < NR_BASIC => Some(Slot::Basic(l as usize)),
            l if l >= EXTD_BASE && ((l - EXTD_BASE) as usize) < NR_EXTD => {
                Some(Slot::Extd((l - EXTD_BASE) as usize))
            }
            _ => None,
        }
    }
}

/// Which register of a CPUID result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// EAX
    A,
    /// EBX
    B,
    /// ECX
    C,
    /// EDX
    D,
}

impl Reg {
    /// This register of `regs`.
    pub const fn get(self, regs: &CpuidRegs) -> u32 {
        match self {
            Reg::A => regs.a,
            Reg::B => regs.b,
            Reg::C => regs.c,
            Reg::D => regs.d,
        }
    }

    /// This register of `regs`, for writing.
    pub fn get_mut(self, regs: &mut CpuidRegs) -> &mut u32 {
        match self {
            Reg::A => &mut regs.a,
            Reg::B => &mut regs.b,
            Reg::C => &mut regs.c,
            Reg::D => &mut regs.d,
        }
    }
}

/// Where a featureset word lives: a CPUID register, or a half of MSR_ARCH_CAPABILITIES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordHome {
    /// CPUID `leaf`.`subleaf`:`reg`.
    Cpuid {
        /// The leaf.
        leaf: u32,
        /// The subleaf (0 for leaves without subleaves).
        subleaf: u32,
        /// The register.
        reg: Reg,
    },
    /// MSR_ARCH_CAPABILITIES bits 31:0.
    ArchCapsLow,
    /// MSR_ARCH_CAPABILITIES bits 63:32.
    ArchCapsHigh,
}

const fn cpuid_home(leaf: u32, subleaf: u32, reg: Reg) -> WordHome {
    WordHome::Cpuid { leaf, subleaf, reg }
}

/// The home of every featureset word, in Xen's order (`FEATURESET_*` in `cpu-policy.h`). A
/// test checks it against the locators of the feature table.
pub const WORD_HOMES: [WordHome; NR_WORDS] = [
    cpuid_home(0x1, 0, Reg::D),         // 1d
    cpuid_home(0x1, 0, Reg::C),         // 1c
    cpuid_home(0x8000_0001, 0, Reg::D), // e1d
    cpuid_home(0x8000_0001, 0, Reg::C), // e1c
    cpuid_home(0xd, 1, Reg::A),         // Da1
    cpuid_home(0x7, 0, Reg::B),         // 7b0
    cpuid_home(0x7, 0, Reg::C),         // 7c0
    cpuid_home(0x8000_0007, 0, Reg::D), // e7d
    cpuid_home(0x8000_0008, 0, Reg::B), // e8b
    cpuid_home(0x7, 0, Reg::D),         // 7d0
    cpuid_home(0x7, 1, Reg::A),         // 7a1
    cpuid_home(0x8000_0021, 0, Reg::A), // e21a
    cpuid_home(0x7, 1, Reg::B),         // 7b1
    cpuid_home(0x7, 2, Reg::D),         // 7d2
    cpuid_home(0x7, 1, Reg::C),         // 7c1
    cpuid_home(0x7, 1, Reg::D),         // 7d1
    WordHome::ArchCapsLow,              // m10Al
    WordHome::ArchCapsHigh,             // m10Ah
    cpuid_home(0x8000_0021, 0, Reg::C), // e21c
];

/// The CPUID leaves and MSRs a domain, or the system, may see.
///
/// 2036 bytes, and kept below 2048: from there glibc's `memset` and `memcpy` (the zeroing
/// of a fresh policy, its copies) switch to `rep stosb`/`rep movsb`, slower for this size
/// on the machines measured (`BENCHMARKS.md`), so the type is not aligned to 16 (2048).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuPolicy {
    basic: [CpuidRegs; NR_BASIC],
    cache: [CpuidRegs; NR_CACHE],
    feat: [CpuidRegs; NR_FEAT],
    topo: [CpuidRegs; NR_TOPO],
    xstate: [CpuidRegs; NR_XSTATE],
    extd: [CpuidRegs; NR_EXTD],
    /// The 19 featureset words, then MSR_PLATFORM_INFO: what the compatibility check tests
    /// for a subset. Words 16 and 17 (MSR_ARCH_CAPABILITIES, low and high half) and 19
    /// (MSR_PLATFORM_INFO, the 32 bits Xen keeps) are where those MSRs live; the others are
    /// copies of the registers [`WORD_HOMES`] names, word 2 without AMD's copies of
    /// CPUID.01H:EDX (no feature). Every change to a home register updates its copy before
    /// the changing `pub` method returns: the setters word by word, [`CpuPolicy::leaf_mut`]
    /// and [`CpuPolicy::slot_mut`] through their guard's `Drop`, everything else (the
    /// merges, the clearing, the derivations in [`system`]) with [`CpuPolicy::reseal`].
    /// `compat::tests::the_kept_words_follow_every_mutator` applies random sequences of
    /// every mutator and compares; `compat::tests::every_mutator_is_listed` lists them.
    kept: [u32; compat::NR_KEPT_WORDS],
    /// Xen leaves limit (EAX of 0x40000000 in the serialised form); 8 bits, as Xen keeps it.
    hv_limit: u8,
    /// Relocated Xen leaves limit (EAX of 0x40000100); 8 bits.
    hv2_limit: u8,
}

impl Default for CpuPolicy {
    fn default() -> Self {
        CpuPolicy::EMPTY
    }
}

impl CpuPolicy {
    /// Every leaf and MSR zero.
    pub const EMPTY: CpuPolicy = CpuPolicy {
        basic: [CpuidRegs::ZERO; NR_BASIC],
        cache: [CpuidRegs::ZERO; NR_CACHE],
        feat: [CpuidRegs::ZERO; NR_FEAT],
        topo: [CpuidRegs::ZERO; NR_TOPO],
        xstate: [CpuidRegs::ZERO; NR_XSTATE],
        extd: [CpuidRegs::ZERO; NR_EXTD],
        hv_limit: 0,
        hv2_limit: 0,
        kept: [0; compat::NR_KEPT_WORDS],
    };

    /// Read a processor through `source` the way Xen fills its raw policy
    /// (`x86_cpu_policy_fill_native`): every leaf up to the reported maxima (within the table's
    /// bounds), leaf 4 and 0xB subleaves before the first invalid one, leaf 7 up to its max
    /// subleaf, and the leaf 0xD subleaves of every state component the CPU enumerates.
    /// `msrs` supplies MSR_PLATFORM_INFO and MSR_ARCH_CAPABILITIES where they can be read.
    pub fn from_source(source: &impl CpuidSource, msrs: RawMsrs) -> CpuPolicy {
        let mut p = CpuPolicy::EMPTY;
        p.basic[0] = source.cpuid(0, 0);
        let max_basic = (p.basic[0].a as usize).min(NR_BASIC - 1);
        for leaf in 1..=max_basic as u32 {
            match leaf {
                0x4 => {
                    for i in 0..NR_CACHE {
                        let regs = source.cpuid(leaf, i as u32);
                        // CPUID.04H:EAX[4:0] cache type 0: no more caches. The terminator is not
                        // stored: its other registers are not cache data.
                        if regs.a & 0x1f == 0 {
                            break;
                        }
                        p.cache[i] = regs;
                    }
                }
                0x7 => {
                    p.feat[0] = source.cpuid(leaf, 0);
                    let max = (p.feat[0].a as usize).min(NR_FEAT - 1);
                    for i in 1..=max {
                        p.feat[i] = source.cpuid(leaf, i as u32);
                    }
                }
                0xb => {
                    for i in 0..NR_TOPO {
                        let regs = source.cpuid(leaf, i as u32);
                        // CPUID.0BH:ECX[15:8] level type 0: no more levels. The terminator is not
                        // stored: it carries ECX[7:0] = the subleaf and EDX = this CPU's x2APIC
                        // ID, which must not leak into a policy.
                        if (regs.c >> 8) & 0xff == 0 {
                            break;
                        }
                        p.topo[i] = regs;
                    }
                }
                0xd => {
                    p.xstate[0] = source.cpuid(leaf, 0);
                    p.xstate[1] = source.cpuid(leaf, 1);
                    let components = p.xcr0_mask() | p.xss_mask();
                    for i in 2..NR_XSTATE {
                        if components & (1 << i) != 0 {
                            p.xstate[i] = source.cpuid(leaf, i as u32);
                        }
                    }
                }
                _ => p.basic[leaf as usize] = source.cpuid(leaf, 0),
            }
        }
        // Like Xen, the extended range is read up to the low 16 bits of CPUID.80000000H:EAX,
        // whatever its top half says.
        p.extd[0] = source.cpuid(EXTD_BASE, 0);
        let max = ((p.extd[0].a & 0xffff) as usize).min(NR_EXTD - 1);
        for i in 1..=max {
            p.extd[i] = source.cpuid(EXTD_BASE + i as u32, 0);
        }
        p.set_platform_info(
            msrs.platform_info
                .map_or(0, |v| v as u32 & PLATFORM_INFO_CPUID_FAULTING),
        );
        if p.featureset().contains(crate::feature::Feature::ARCH_CAPS) {
            p.set_arch_caps(msrs.arch_caps.unwrap_or(0));
        }
        p.reseal();
        p
    }

    /// Copy every kept featureset word afresh from its home register ([`CpuPolicy::kept`]):
    /// the last step of every method that writes the leaves directly.
    fn reseal(&mut self) {
        let words = self.feature_words();
        self.kept[..NR_WORDS].copy_from_slice(&words);
        self.kept[2] &= compat::WORD_2_KEEP;
    }

    /// The registers stored for `(leaf, subleaf)`, or `None` if the table has no slot for it.
    /// Takes no account of the policy's max leaves: see [`guest::guest_cpuid`] for that.
    pub fn leaf(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        Slot::of(leaf, subleaf).map(|slot| *self.slot(slot))
    }

    /// The registers for `(leaf, subleaf)`, for writing: a guard that derefs to them and,
    /// when dropped, brings the copies of the featureset words the policy keeps for
    /// [`compat::check_compatible`] up to date with them. Keep it no longer than the write (a second `leaf_mut` of the
    /// same policy waits for the first guard's drop); a guard leaked with `mem::forget` leaves
    /// the kept words stale, and [`compat::check_compatible`] reading them wrong.
    pub fn leaf_mut(&mut self, leaf: u32, subleaf: u32) -> Option<LeafMut<'_>> {
        Slot::of(leaf, subleaf).map(|slot| self.slot_mut(slot))
    }

    /// The registers in `slot`. The index is clamped under speculation (the crate's `nospec` clamp):
    /// slots come from guest- and toolstack-chosen leaves and subleaves. Panics if the index is
    /// past its array.
    pub fn slot(&self, slot: Slot) -> &CpuidRegs {
        match slot {
            Slot::Basic(i) => nospec::at(&self.basic, i),
            Slot::Cache(i) => nospec::at(&self.cache, i),
            Slot::Feat(i) => nospec::at(&self.feat, i),
            Slot::Topo(i) => nospec::at(&self.topo, i),
            Slot::Xstate(i) => nospec::at(&self.xstate, i),
            Slot::Extd(i) => nospec::at(&self.extd, i),
        }
    }

    /// The registers in `slot`, for writing, through the guard [`CpuPolicy::leaf_mut`]
    /// returns; the index is clamped under speculation as in [`CpuPolicy::slot`].
    pub fn slot_mut(&mut self, slot: Slot) -> LeafMut<'_> {
        // Checked here, so that a bad slot panics at the call, not at the guard's first use.
        self.slot(slot);
        LeafMut { policy: self, slot }
    }

    /// The registers in `slot`, for writing, with no guard: for the module's own
    /// derivations, which [`CpuPolicy::reseal`] before the policy leaves them.
    fn regs_mut(&mut self, slot: Slot) -> &mut CpuidRegs {
        match slot {
            Slot::Basic(i) => nospec::at_mut(&mut self.basic, i),
            Slot::Cache(i) => nospec::at_mut(&mut self.cache, i),
            Slot::Feat(i) => nospec::at_mut(&mut self.feat, i),
            Slot::Topo(i) => nospec::at_mut(&mut self.topo, i),
            Slot::Xstate(i) => nospec::at_mut(&mut self.xstate, i),
            Slot::Extd(i) => nospec::at_mut(&mut self.extd, i),
        }
    }

    /// The vendor named by leaf 0.
    pub fn vendor(&self) -> Vendor {
        Vendor::from_regs(self.basic[0].b, self.basic[0].c, self.basic[0].d)
    }

    /// Family, model and stepping from CPUID.01H:EAX.
    pub fn signature(&self) -> Signature {
        Signature::from_eax(self.basic[1].a)
    }

    /// The highest basic leaf (CPUID.00H:EAX).
    pub fn max_basic_leaf(&self) -> u32 {
        self.basic[0].a
    }

    /// Set the highest basic leaf.
    pub fn set_max_basic_leaf(&mut self, max: u32) {
        self.slot_mut(Slot::Basic(0)).a = max;
    }

    /// The highest leaf 7 subleaf (CPUID.07H.0:EAX).
    pub fn max_feat_subleaf(&self) -> u32 {
        self.feat[0].a
    }

    /// Set the highest leaf 7 subleaf.
    pub fn set_max_feat_subleaf(&mut self, max: u32) {
        self.slot_mut(Slot::Feat(0)).a = max;
    }

    /// The highest extended leaf (CPUID.80000000H:EAX).
    pub fn max_extd_leaf(&self) -> u32 {
        self.extd[0].a
    }

    /// Set the highest extended leaf.
    pub fn set_max_extd_leaf(&mut self, max: u32) {
        self.slot_mut(Slot::Extd(0)).a = max;
    }

    /// The Xen leaves' limits: (at 0x40000000, at 0x40000100). 0 means the default, 5.
    pub fn hypervisor_limits(&self) -> (u32, u32) {
        (self.hv_limit.into(), self.hv2_limit.into())
    }

    /// Set the Xen leaves' limits. Only the low 8 bits are kept, as Xen's `uint8_t hv_limit`
    /// keeps them: 0x105 reads back as 5.
    pub fn set_hypervisor_limits(&mut self, hv_limit: u32, hv2_limit: u32) {
        self.hv_limit = hv_limit as u8;
        self.hv2_limit = hv2_limit as u8;
    }

    /// MSR_PLATFORM_INFO as the policy holds it.
    pub fn platform_info(&self) -> u32 {
        self.kept[compat::PLATFORM_INFO_WORD]
    }

    /// True if the policy offers CPUID faulting (`MSR_PLATFORM_INFO[31]`).
    pub fn cpuid_faulting(&self) -> bool {
        self.platform_info() & PLATFORM_INFO_CPUID_FAULTING != 0
    }

    /// Offer or withdraw CPUID faulting (`MSR_PLATFORM_INFO[31]`).
    pub fn set_cpuid_faulting(&mut self, on: bool) {
        self.set_platform_info(if on {
            self.platform_info() | PLATFORM_INFO_CPUID_FAULTING
        } else {
            self.platform_info() & !PLATFORM_INFO_CPUID_FAULTING
        });
    }

    /// MSR_ARCH_CAPABILITIES as the policy holds it.
    pub fn arch_caps(&self) -> u64 {
        u64::from(self.kept[16]) | u64::from(self.kept[17]) << 32
    }

    /// Set MSR_PLATFORM_INFO as the policy holds it, all 32 bits (Xen's `platform_info.raw`).
    pub fn set_platform_info(&mut self, value: u32) {
        self.kept[compat::PLATFORM_INFO_WORD] = value;
    }

    /// Set MSR_ARCH_CAPABILITIES as the policy holds it.
    pub fn set_arch_caps(&mut self, value: u64) {
        (self.kept[16], self.kept[17]) = (value as u32, (value >> 32) as u32);
    }

    /// XCR0 components the CPU supports (CPUID.0DH.0:EDX:EAX).
    pub fn xcr0_mask(&self) -> u64 {
        (self.xstate[0].d as u64) << 32 | self.xstate[0].a as u64
    }

    /// IA32_XSS components the CPU supports (CPUID.0DH.1:EDX:ECX).
    pub fn xss_mask(&self) -> u64 {
        (self.xstate[1].d as u64) << 32 | self.xstate[1].c as u64
    }

    /// The policy's feature words (Xen's `x86_cpu_policy_to_featureset`).
    pub fn featureset(&self) -> Featureset {
        Featureset::from_words(self.feature_words())
    }

    /// The featureset words, read straight from their homes ([`WORD_HOMES`], which a test
    /// checks this against, word by word through lookups): [`CpuPolicy::featureset`].
    pub(crate) fn feature_words(&self) -> [u32; NR_WORDS] {
        let (b1, f0, f1, e1) = (&self.basic[1], &self.feat[0], &self.feat[1], &self.extd[1]);
        [
            b1.d,
            b1.c,
            e1.d,
            e1.c,
            self.xstate[1].a,
            f0.b,
            f0.c,
            self.extd[7].d,
            self.extd[8].b,
            f0.d,
            f1.a,
            self.extd[0x21].a,
            f1.b,
            self.feat[2].d,
            f1.c,
            f1.d,
            self.kept[16],
            self.kept[17],
            self.extd[0x21].c,
        ]
    }

    /// True if the policy has `feature`: one register read, cheaper than
    /// [`CpuPolicy::featureset`] on hot paths such as `guest_cpuid`.
    pub fn has(&self, feature: crate::feature::Feature) -> bool {
        self.word(WORD_HOMES[feature.word()]) & feature.mask() != 0
    }

    /// Write the feature words of `fs` into the policy (Xen's `x86_cpu_featureset_to_policy`);
    /// everything else is left alone.
    pub fn set_featureset(&mut self, fs: &Featureset) {
        for (word, home) in WORD_HOMES.iter().enumerate() {
            self.set_word(*home, fs.word(word));
        }
        self.reseal();
    }

    pub(super) fn word(&self, home: WordHome) -> u32 {
        match home {
            WordHome::Cpuid { leaf, subleaf, reg } => {
                self.leaf(leaf, subleaf).map_or(0, |r| reg.get(&r))
            }
            WordHome::ArchCapsLow => self.kept[16],
            WordHome::ArchCapsHigh => self.kept[17],
        }
    }

    fn set_word(&mut self, home: WordHome, value: u32) {
        match home {
            WordHome::Cpuid { leaf, subleaf, reg } => {
                if let Some(slot) = Slot::of(leaf, subleaf) {
                    *reg.get_mut(self.regs_mut(slot)) = value;
                }
            }
            WordHome::ArchCapsLow => self.kept[16] = value,
            WordHome::ArchCapsHigh => self.kept[17] = value,
        }
    }

    /// Zero every leaf beyond the policy's own max leaves and subleaves (Xen's
    /// `x86_cpu_policy_clear_out_of_range_leaves`): basic leaves above CPUID.00H:EAX; leaf 4
    /// and 0xB subleaves from the first invalid one (type 0) on, that one included; leaf 7
    /// subleaves above CPUID.07H.0:EAX; leaf 0xD subleaves above the highest state component
    /// (all of leaf 0xD, subleaves 0 and 1 included, when there is none); extended leaves above
    /// the low 16 bits of CPUID.80000000H:EAX (leaf 0x80000000 itself always stays).
    ///
    /// After this, serialising and deserialising the policy gives it back exactly, provided
    /// the basic slots of leaves 4, 7, 0xB and 0xD (which no CPUID query reaches: those leaves
    /// live in their own arrays) are zero, as in every policy this crate builds.
    ///
    /// The first leaf cleared is the max plus one in 32-bit arithmetic, as in Xen: a max leaf
    /// or leaf 7 max subleaf of 0xffffffff wraps to 0 and clears that whole array, leaf 0
    /// included. Matched on purpose, so that the two libraries agree byte for byte.
    pub fn clear_out_of_range_leaves(&mut self) {
        let first = self.basic[0].a.wrapping_add(1) as usize;
        self.basic
            .iter_mut()
            .skip(first)
            .for_each(|r| *r = CpuidRegs::ZERO);
        // Read after the clearing above, which may have cleared leaf 0 itself.
        let max_basic = self.basic[0].a as usize;
        if max_basic < 0x4 {
            self.cache = [CpuidRegs::ZERO; NR_CACHE];
        } else {
            // CPUID.04H:EAX[4:0]: cache type 0 = no more caches.
            zero_from_terminator(&mut self.cache, |r| r.a & 0x1f == 0);
        }
        if max_basic < 0x7 {
            self.feat = [CpuidRegs::ZERO; NR_FEAT];
        } else {
            let first = self.feat[0].a.wrapping_add(1) as usize;
            self.feat
                .iter_mut()
                .skip(first)
                .for_each(|r| *r = CpuidRegs::ZERO);
        }
        if max_basic < 0xb {
            self.topo = [CpuidRegs::ZERO; NR_TOPO];
        } else {
            // CPUID.0BH:ECX[15:8]: level type 0 = invalid level.
            zero_from_terminator(&mut self.topo, |r| (r.c >> 8) & 0xff == 0);
        }
        let components = self.xcr0_mask() | self.xss_mask();
        if max_basic < 0xd || components == 0 {
            self.xstate = [CpuidRegs::ZERO; NR_XSTATE];
        } else {
            // Subleaves 0 and 1 always; then every subleaf up to the highest component, even
            // those of components in between that are absent.
            let end = (u64::BITS - components.leading_zeros()).max(2) as usize;
            self.xstate
                .iter_mut()
                .skip(end)
                .for_each(|r| *r = CpuidRegs::ZERO);
        }
        let max_extd = (self.extd[0].a & 0xffff) as usize;
        self.extd
            .iter_mut()
            .skip(max_extd + 1)
            .for_each(|r| *r = CpuidRegs::ZERO);
        self.reseal();
    }
}

/// A policy's registers lent for writing ([`CpuPolicy::leaf_mut`], [`CpuPolicy::slot_mut`]):
/// derefs to them; its `Drop` brings the policy's kept featureset words up to date. It holds
/// the policy and the slot, and finds the registers again at each use (one clamped index).
#[derive(Debug)]
pub struct LeafMut<'a> {
    policy: &'a mut CpuPolicy,
    slot: Slot,
}

impl core::ops::Deref for LeafMut<'_> {
    type Target = CpuidRegs;
    fn deref(&self) -> &CpuidRegs {
        self.policy.slot(self.slot)
    }
}

impl core::ops::DerefMut for LeafMut<'_> {
    fn deref_mut(&mut self) -> &mut CpuidRegs {
        self.policy.regs_mut(self.slot)
    }
}

impl Drop for LeafMut<'_> {
    fn drop(&mut self) {
        let regs = *self.policy.slot(self.slot);
        compat::note(&mut self.policy.kept, self.slot, &regs);
    }
}

/// Zero the first entry that `is_terminator` accepts and every entry after it.
fn zero_from_terminator(leaves: &mut [CpuidRegs], is_terminator: impl Fn(&CpuidRegs) -> bool) {
    if let Some(end) = leaves.iter().position(is_terminator) {
        leaves[end..].iter_mut().for_each(|r| *r = CpuidRegs::ZERO);
    }
}

/// The MSRs a raw policy reads besides CPUID: `None` where the MSR is absent or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawMsrs {
    /// MSR_PLATFORM_INFO (0xCE); only bit 31, CPUID faulting, is kept.
    pub platform_info: Option<u64>,
    /// MSR_ARCH_CAPABILITIES (0x10A); used only if `CPUID.07H.0:EDX[29]` enumerates it.
    pub arch_caps: Option<u64>,
}

impl RawMsrs {
    /// True where MSR 0xCE is MSR_PLATFORM_INFO, by the CPU's generation
    /// (`data/generations.tbl`: Intel family 6 from Nehalem on). Older parts have something
    /// else at 0xCE (a Penryn reports a value that does not decode as PLATFORM_INFO), so its
    /// faulting bit must not be read there.
    pub fn platform_info_exists(vendor: crate::cpuid::Vendor, sig: Signature) -> bool {
        crate::levelling::generation::Generation::of(vendor, sig)
            .is_some_and(|generation| generation.has_platform_info())
    }
}

/// The subleaf Xen writes for a leaf in a serialised policy.
pub(crate) const fn serialised_subleaf(leaf: u32, subleaf: u32) -> u32 {
    if Slot::leaf_has_subleaves(leaf) {
        subleaf
    } else {
        NO_SUBLEAF
    }
}
