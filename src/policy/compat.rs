//! Is a domain policy within a max policy? Xen's `x86_cpu_policies_are_compatible`, plus the
//! feature audit Xen leaves as a TODO: a feature the max policy lacks is reported, not clamped.

use core::fmt;

use super::{
    CpuPolicy, EXTD_BASE, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, Slot, WORD_HOMES, WordHome,
};
use crate::cpuid::{CpuidRegs, NO_SUBLEAF};
use crate::feature::NR_WORDS;
use crate::featureset::Featureset;

/// Where a domain policy first exceeds its max policy, in Xen's error-field terms, and every
/// feature it has that the max policy lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incompatibility {
    /// The first offending leaf (`!0` if the offence is an MSR).
    pub leaf: u32,
    /// Its subleaf (`!0` for none).
    pub subleaf: u32,
    /// The first offending MSR (`!0` if the offence is a leaf).
    pub msr: u32,
    /// What is wrong at that place.
    pub reason: IncompatibilityReason,
    /// Every feature of the domain policy that the max policy lacks (may be empty when the
    /// offence is a vendor or a max leaf).
    pub extra_features: Featureset,
}

/// What [`Incompatibility`] found first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncompatibilityReason {
    /// The vendor strings differ.
    Vendor,
    /// CPUID.00H:EAX is above the max policy's.
    MaxBasicLeaf,
    /// CPUID.07H.0:EAX is above the max policy's.
    MaxFeatSubleaf,
    /// CPUID.80000000H:EAX is above the max policy's.
    MaxExtdLeaf,
    /// MSR_PLATFORM_INFO has a bit the max policy lacks.
    PlatformInfo,
    /// Features the max policy does not offer ([`Incompatibility::extra_features`]).
    Features,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            IncompatibilityReason::Vendor => f.write_str("vendor differs (leaf 0)")?,
            IncompatibilityReason::MaxBasicLeaf => {
                f.write_str("max basic leaf too high (leaf 0)")?
            }
            IncompatibilityReason::MaxFeatSubleaf => {
                f.write_str("max leaf 7 subleaf too high (leaf 7 subleaf 0)")?
            }
            IncompatibilityReason::MaxExtdLeaf => {
                f.write_str("max extended leaf too high (leaf 0x80000000)")?
            }
            IncompatibilityReason::PlatformInfo => {
                write!(f, "MSR {:#x} has bits the max policy lacks", self.msr)?
            }
            IncompatibilityReason::Features => {
                write!(f, "leaf {:#x} subleaf {:#x}", self.leaf, self.subleaf)?;
                if self.msr != !0 {
                    write!(f, " / MSR {:#x}", self.msr)?;
                }
                f.write_str(": features not offered")?
            }
        }
        if !self.extra_features.is_empty() {
            write!(f, " [{}]", self.extra_features.names())?;
        }
        Ok(())
    }
}

impl core::error::Error for Incompatibility {}

/// MSR_PLATFORM_INFO's place among the subset-tested words, after the 19 featureset words.
pub(super) const PLATFORM_INFO_WORD: usize = NR_WORDS;
/// The subset-tested words: the featureset, then MSR_PLATFORM_INFO (what a [`CpuPolicy`]
/// keeps, next to its leaves).
pub(super) const NR_KEPT_WORDS: usize = NR_WORDS + 1;

/// AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX (featureset word 2) are no feature
/// (Xen's per-domain `recalculate_misc` makes them in domain policies, system policies have
/// none): the kept word 2 is without them.
pub(super) const WORD_2_KEEP: u32 = !crate::feature::COMMON_1D;

/// What the compatibility check reads of a policy, in one value: the vendor string, the max
/// leaves, MSR_PLATFORM_INFO and the featureset words, for a toolstack that keeps a policy's
/// words apart from the policy ([`CompatWords::of`], [`CompatWords::accepts`]).
/// [`check_compatible`] needs none: every [`CpuPolicy`] keeps its featureset words and
/// MSR_PLATFORM_INFO side by side, current after every change.
///
/// Laid out for the check: 20 words that must be a subset of the max policy's (the 19
/// featureset words, CPUID.80000001H:EDX without AMD's copies of CPUID.01H:EDX, and
/// MSR_PLATFORM_INFO), four words that must be equal (the vendor string and a zero), four
/// that must not exceed the max policy's (the three max leaves and a zero): seven 16-byte
/// blocks, aligned, which the check reads as whole vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C, align(16))]
pub struct CompatWords {
    /// Featureset words 0-18, then MSR_PLATFORM_INFO.
    subset: [u32; NR_KEPT_WORDS],
    /// CPUID.00H:EBX, ECX, EDX (the vendor string), then 0.
    vendor: [u32; 4],
    /// CPUID.00H:EAX, CPUID.07H.0:EAX, CPUID.80000000H:EAX, then 0.
    maxima: [u32; 4],
}

/// Bring the kept words homed in `slot` up to date with its registers `r` (the slot
/// [`CpuPolicy::leaf_mut`]'s guard lent out). Where each word lives: [`super::WORD_HOMES`],
/// which `CpuPolicy::feature_words` follows too; the property test below checks the two
/// agree.
pub(super) fn note(w: &mut [u32; NR_KEPT_WORDS], slot: Slot, r: &CpuidRegs) {
    match slot {
        // CPUID.01H:EDX word 0, CPUID.01H:ECX word 1.
        Slot::Basic(1) => (w[0], w[1]) = (r.d, r.c),
        // CPUID.07H.0: EBX word 5, ECX word 6, EDX word 9.
        Slot::Feat(0) => (w[5], w[6], w[9]) = (r.b, r.c, r.d),
        // CPUID.07H.1: EAX word 10, EBX word 12, ECX word 14, EDX word 15.
        Slot::Feat(1) => (w[10], w[12], w[14], w[15]) = (r.a, r.b, r.c, r.d),
        // CPUID.07H.2:EDX word 13.
        Slot::Feat(2) => w[13] = r.d,
        // CPUID.0DH.1:EAX word 4.
        Slot::Xstate(1) => w[4] = r.a,
        // CPUID.80000001H:EDX word 2 (without the copies of CPUID.01H:EDX), ECX word 3.
        Slot::Extd(1) => (w[2], w[3]) = (r.d & WORD_2_KEEP, r.c),
        // CPUID.80000007H:EDX word 7.
        Slot::Extd(7) => w[7] = r.d,
        // CPUID.80000008H:EBX word 8.
        Slot::Extd(8) => w[8] = r.b,
        // CPUID.80000021H: EAX word 11, ECX word 18.
        Slot::Extd(0x21) => (w[11], w[18]) = (r.a, r.c),
        _ => {}
    }
}

/// True if `guest` is within `max`: [`check_compatible`]'s passing case, on the words the
/// policies keep and their leaf 0, leaf 7.0 and leaf 0x80000000, no gathering and no
/// branch (the 20 AND-NOTs folded as 16-byte vectors).
#[inline(always)]
fn policy_accepts(max: &CpuPolicy, guest: &CpuPolicy) -> bool {
    let mut bad = 0;
    for (g, m) in guest.kept.iter().zip(&max.kept) {
        bad |= g & !m;
    }
    // Leaf 0 read as two 64-bit halves a policy (EAX:EBX, ECX:EDX), not four words: the check
    // is bound by loads, and each one saved shows.
    let (g0, m0) = (&guest.basic[0], &max.basic[0]);
    let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    let (gab, mab) = (pair(g0.a, g0.b), pair(m0.a, m0.b));
    // CPUID.00H:EBX:EDX:ECX: the vendor string, equal.
    let vendor = ((gab ^ mab) >> 32) | (pair(g0.c, g0.d) ^ pair(m0.c, m0.d));
    // CPUID.00H:EAX, CPUID.07H.0:EAX and CPUID.80000000H:EAX: the max leaves, not above.
    (bad == 0)
        & (vendor == 0)
        & (gab as u32 <= mab as u32)
        & (guest.feat[0].a <= max.feat[0].a)
        & (guest.extd[0].a <= max.extd[0].a)
}

impl CompatWords {
    /// The words of `p`: the featureset words and MSR_PLATFORM_INFO it keeps (a copy), its
    /// vendor string and max leaves.
    pub fn of(p: &CpuPolicy) -> CompatWords {
        let leaf0 = &p.basic[0];
        CompatWords {
            subset: p.kept,
            vendor: [leaf0.b, leaf0.c, leaf0.d, 0],
            maxima: [leaf0.a, p.feat[0].a, p.extd[0].a, 0],
        }
    }

    /// [`check_compatible`] on the policies these words were taken from: `Ok` exactly when
    /// it is `Ok`; on a failure, the same [`Incompatibility`] (found by `check_compatible`
    /// itself, which `max` and `guest` must be the policies of `self` and `guest_words`).
    #[inline]
    pub fn check(
        &self,
        guest_words: &CompatWords,
        max: &CpuPolicy,
        guest: &CpuPolicy,
    ) -> Result<(), Incompatibility> {
        if self.accepts(guest_words) {
            Ok(())
        } else {
            check_compatible_slow(max, guest)
        }
    }

    /// True if a domain with `guest`'s words is within these (max policy) words: what
    /// [`check_compatible`] accepts.
    #[inline]
    pub fn accepts(&self, guest: &CompatWords) -> bool {
        // Whole blocks, no branch: one AND-NOT per subset word, one XOR per vendor word, one
        // comparison per max leaf, all folded before the single test (the padding words are
        // zero on both sides).
        let mut bad = 0;
        for (g, m) in guest.subset.iter().zip(&self.subset) {
            bad |= g & !m;
        }
        for (g, m) in guest.vendor.iter().zip(&self.vendor) {
            bad |= g ^ m;
        }
        let mut above = false;
        for (g, m) in guest.maxima.iter().zip(&self.maxima) {
            above |= g > m;
        }
        (bad == 0) & !above
    }
}

/// Check `guest` against `max`: `Ok` if the guest asks for nothing `max` does not offer.
/// The passing case reads the featureset words each policy keeps, a few vectors and no
/// lookups; a failure is then explained in full (the first offending leaf or MSR, and every
/// extra feature). Inlined where it is called: the passing case is a few dozen
/// instructions, the failing one a call.
#[inline]
pub fn check_compatible(max: &CpuPolicy, guest: &CpuPolicy) -> Result<(), Incompatibility> {
    if policy_accepts(max, guest) {
        Ok(())
    } else {
        check_compatible_slow(max, guest)
    }
}

/// [`check_compatible`]'s explanation of a failure (out of line: the passing case is the
/// common one).
#[inline(never)]
#[cold]
fn check_compatible_slow(max: &CpuPolicy, guest: &CpuPolicy) -> Result<(), Incompatibility> {
    let mut guest_features = guest.featureset();
    // AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX are no feature: domain policies
    // carry them (Xen's per-domain `recalculate_misc` makes them), system policies do not.
    guest_features.set_word(2, guest_features.word(2) & !crate::feature::COMMON_1D);
    let extra_features = guest_features - max.featureset();
    let fail = |leaf, subleaf, msr, reason| {
        Err(Incompatibility {
            leaf,
            subleaf,
            msr,
            reason,
            extra_features,
        })
    };
    let vendor_string = |p: &CpuPolicy| p.leaf(0, 0).map(|r| (r.b, r.c, r.d));
    if vendor_string(guest) != vendor_string(max) {
        return fail(0, NO_SUBLEAF, !0, IncompatibilityReason::Vendor);
    }
    if guest.max_basic_leaf() > max.max_basic_leaf() {
        return fail(0, NO_SUBLEAF, !0, IncompatibilityReason::MaxBasicLeaf);
    }
    if guest.max_feat_subleaf() > max.max_feat_subleaf() {
        return fail(7, 0, !0, IncompatibilityReason::MaxFeatSubleaf);
    }
    if guest.max_extd_leaf() > max.max_extd_leaf() {
        return fail(
            EXTD_BASE,
            NO_SUBLEAF,
            !0,
            IncompatibilityReason::MaxExtdLeaf,
        );
    }
    if guest.platform_info() & !max.platform_info() != 0 {
        return fail(
            !0,
            !0,
            MSR_PLATFORM_INFO,
            IncompatibilityReason::PlatformInfo,
        );
    }
    if let Some(first) = extra_features.first() {
        return match WORD_HOMES[first.word()] {
            WordHome::Cpuid { leaf, subleaf, .. } => {
                let subleaf = super::serialised_subleaf(leaf, subleaf);
                fail(leaf, subleaf, !0, IncompatibilityReason::Features)
            }
            WordHome::ArchCapsLow | WordHome::ArchCapsHigh => fail(
                !0,
                !0,
                MSR_ARCH_CAPABILITIES,
                IncompatibilityReason::Features,
            ),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    use super::{CompatWords, check_compatible, check_compatible_slow};
    use crate::abi::{XenCpuidLeaf, XenMsrEntry};
    use crate::cpuid::{CpuidRegs, CpuidSource, NO_SUBLEAF};
    use crate::feature::NR_WORDS;
    use crate::featureset::Featureset;
    use crate::policy::system::{DomainKind, HostOptions, SystemPolicies, SystemPolicy};
    use crate::policy::{CpuPolicy, RawMsrs, Slot, WORD_HOMES, XEN_LEAVES, XEN_LEAVES_RELOCATED};

    /// A policy whose every register holds a different pseudo-random value.
    fn noisy(seed: &mut u64, sparse: bool) -> CpuPolicy {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let v = *seed as u32;
            if sparse { v & (v >> 7) & (v >> 13) } else { v }
        };
        let mut p = CpuPolicy::EMPTY;
        for leaf in (0..0xe).chain(0x8000_0000..0x8000_0022) {
            for sub in 0..63 {
                if let Some(mut r) = p.leaf_mut(leaf, sub) {
                    *r = CpuidRegs::new(next(), next(), next(), next());
                }
            }
        }
        p.set_platform_info(next());
        p.set_arch_caps(u64::from(next()) << 32 | u64::from(next()));
        p
    }

    /// `feature_words` (which `featureset` returns) reads each word where `WORD_HOMES` says
    /// it lives, found here the other way: by leaf and subleaf lookups.
    #[test]
    fn feature_words_are_where_word_homes_says() {
        let mut seed = 0x1234_5678_9abc_def1;
        for _ in 0..64 {
            let p = noisy(&mut seed, false);
            let by_lookup: [u32; NR_WORDS] = core::array::from_fn(|w| p.word(WORD_HOMES[w]));
            assert_eq!(p.feature_words(), by_lookup);
            assert_eq!(p.featureset().words(), &by_lookup);
        }
    }

    #[test]
    fn the_fast_check_passes_exactly_what_the_full_one_passes() {
        let mut seed = 0x0bad_cafe_dead_beef;
        let mut passed = 0;
        for i in 0..4000 {
            let max = noisy(&mut seed, false);
            let mut guest = noisy(&mut seed, true);
            // Mostly within max, sometimes not.
            if i % 3 != 0 {
                let mut fs = guest.featureset() & max.featureset();
                if i % 7 == 0 {
                    fs.set_word(i % 19, fs.word(i % 19) | 1 << (i % 32));
                }
                guest.set_featureset(&fs);
                for (leaf, sub) in [(0, 0), (7, 0), (0x8000_0000, 0)] {
                    let m = max.leaf(leaf, sub).unwrap();
                    let mut g = guest.leaf_mut(leaf, sub).unwrap();
                    g.a = if i % 5 == 0 {
                        m.a.wrapping_add(1)
                    } else {
                        m.a.min(g.a)
                    };
                    if leaf == 0 && i % 11 != 0 {
                        (g.b, g.c, g.d) = (m.b, m.c, m.d);
                    }
                }
                guest.set_platform_info(guest.platform_info() & max.platform_info());
            }
            let full = check_compatible_slow(&max, &guest);
            assert_eq!(check_compatible(&max, &guest), full);
            let (mw, gw) = (CompatWords::of(&max), CompatWords::of(&guest));
            assert_eq!(mw.accepts(&gw), full.is_ok());
            passed += full.is_ok() as u32;
        }
        assert!(passed > 100 && passed < 3900, "{passed} passed");
    }

    /// The words [`CompatWords`] must hold for `p`, made by another road than the kept
    /// ones: the featureset through its [`crate::policy::WORD_HOMES`] lookups, the leaves
    /// through [`CpuPolicy::leaf`].
    fn words_from_leaves(p: &CpuPolicy) -> CompatWords {
        let fs = p.featureset();
        let mut subset = [0; super::NR_KEPT_WORDS];
        for (w, word) in subset.iter_mut().zip(fs.words()) {
            *w = *word;
        }
        // CPUID.80000001H:EDX without AMD's copies of CPUID.01H:EDX.
        subset[2] &= !crate::feature::COMMON_1D;
        subset[19] = p.platform_info();
        let l0 = p.leaf(0, 0).unwrap();
        CompatWords {
            subset,
            vendor: [l0.b, l0.c, l0.d, 0],
            maxima: [
                p.max_basic_leaf(),
                p.leaf(7, 0).unwrap().a,
                p.leaf(0x8000_0000, 0).unwrap().a,
                0,
            ],
        }
    }

    /// Every `pub` method of the policy modules that changes a policy in place, makes one or
    /// hands one out: each is applied by [`mutator`] below, which
    /// [`the_kept_words_follow_every_mutator`] checks. A new one fails
    /// [`every_mutator_is_listed`] until it is added here and there.
    const MUTATORS: &[&str] = &[
        // mod.rs
        "from_source",
        "leaf_mut",
        "slot_mut",
        "set_max_basic_leaf",
        "set_max_feat_subleaf",
        "set_max_extd_leaf",
        "set_hypervisor_limits",
        "set_cpuid_faulting",
        "set_platform_info",
        "set_arch_caps",
        "set_featureset",
        "clear_out_of_range_leaves",
        // serialise.rs
        "merged",
        "merge_arrays",
        "from_arrays",
        "set_from_arrays",
        // system.rs
        "derive",
        "derive_into",
        "get",
        "max_for",
        "default_for",
        "domain_policy",
        "recalculate",
    ];

    /// The names of the `pub fn`s in `source` whose signature takes `&mut self` or returns a
    /// policy (or a guard on one).
    fn mutators_in(source: &str) -> Vec<&str> {
        let mut names = Vec::new();
        for (at, _) in source.match_indices("pub fn ") {
            let rest = &source[at + "pub fn ".len()..];
            let signature = &rest[..rest.find('{').unwrap()];
            let name = &rest[..rest.find(['(', '<']).unwrap()];
            let returns = signature.split_once("->").map_or("", |(_, r)| r);
            if signature.contains("&mut self")
                || returns.contains("CpuPolicy")
                || returns.contains("LeafMut")
                || returns.contains("SystemPolicies")
            {
                names.push(name);
            }
        }
        names
    }

    #[test]
    fn every_mutator_is_listed() {
        let mut found: Vec<&str> = [
            include_str!("mod.rs"),
            include_str!("serialise.rs"),
            include_str!("system.rs"),
            include_str!("guest.rs"),
            include_str!("compat.rs"),
        ]
        .into_iter()
        .flat_map(mutators_in)
        .collect();
        found.sort_unstable();
        let mut listed = MUTATORS.to_vec();
        listed.sort_unstable();
        assert_eq!(found, listed);
    }

    /// One step of a random sequence: which mutator, with what.
    #[derive(Clone, Debug)]
    enum Op {
        LeafMut(u32, u32, [u32; 4]),
        SlotMut(usize, [u32; 4]),
        MaxBasic(u32),
        MaxFeat(u32),
        MaxExtd(u32),
        HypervisorLimits(u32, u32),
        CpuidFaulting(bool),
        PlatformInfo(u32),
        ArchCaps(u64),
        Featureset([u32; crate::feature::NR_WORDS]),
        Clear,
        Merged(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>),
        MergeArrays(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>),
        FromArrays(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>),
        SetFromArrays(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>),
        FromSource(Option<u64>, Option<u64>),
        System(usize, bool),
    }

    /// A leaf a policy has, or one it has not: the feature words' homes, the max leaves, the
    /// vendor, their neighbours.
    fn any_leaf() -> impl Strategy<Value = (u32, u32)> {
        let leaf = prop_oneof![
            0u32..0xf,
            0x8000_0000u32..0x8000_0023,
            Just(XEN_LEAVES),
            Just(XEN_LEAVES_RELOCATED),
        ];
        (leaf, prop_oneof![0u32..4, Just(NO_SUBLEAF), Just(62u32)])
    }

    fn regs() -> impl Strategy<Value = [u32; 4]> {
        // Sparse values as often as dense ones: max leaves in range, a few features.
        let word = prop_oneof![any::<u32>(), 0u32..0x30, Just(0x8000_0021u32)];
        [word.clone(), word.clone(), word.clone(), word]
    }

    fn arrays() -> impl Strategy<Value = (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>)> {
        let leaf = (any_leaf(), regs()).prop_map(|((leaf, subleaf), [a, b, c, d])| XenCpuidLeaf {
            leaf,
            subleaf,
            a,
            b,
            c,
            d,
        });
        let msr_index = prop_oneof![
            Just(crate::policy::MSR_PLATFORM_INFO),
            Just(crate::policy::MSR_ARCH_CAPABILITIES),
            Just(0x10bu32),
        ];
        let msr = (
            msr_index,
            prop_oneof![8 => Just(0u32), 1 => Just(1u32)],
            any::<u64>(),
        )
            .prop_map(|(idx, flags, val)| XenMsrEntry {
                idx,
                flags,
                val: if val & 1 == 0 { val & 0xffff_ffff } else { val },
            });
        (
            proptest::collection::vec(leaf, 0..12),
            proptest::collection::vec(msr, 0..3),
        )
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any_leaf(), regs()).prop_map(|((l, s), r)| Op::LeafMut(l, s, r)),
            2 => (0usize..6 * 63, regs()).prop_map(|(i, r)| Op::SlotMut(i, r)),
            1 => any::<u32>().prop_map(Op::MaxBasic),
            1 => (0u32..4).prop_map(Op::MaxFeat),
            1 => any::<u32>().prop_map(Op::MaxExtd),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Op::HypervisorLimits(a, b)),
            1 => any::<bool>().prop_map(Op::CpuidFaulting),
            1 => any::<u32>().prop_map(Op::PlatformInfo),
            1 => any::<u64>().prop_map(Op::ArchCaps),
            1 => any::<[u32; crate::feature::NR_WORDS]>().prop_map(Op::Featureset),
            1 => Just(Op::Clear),
            1 => arrays().prop_map(|(l, m)| Op::Merged(l, m)),
            1 => arrays().prop_map(|(l, m)| Op::MergeArrays(l, m)),
            1 => arrays().prop_map(|(l, m)| Op::FromArrays(l, m)),
            1 => arrays().prop_map(|(l, m)| Op::SetFromArrays(l, m)),
            1 => (any::<Option<u64>>(), any::<Option<u64>>())
                .prop_map(|(p, a)| Op::FromSource(p, a)),
            1 => (0usize..3, any::<bool>()).prop_map(|(k, hap)| Op::System(k, hap)),
        ]
    }

    /// A policy read as a processor: what `from_source` fills from.
    struct AsCpu(CpuPolicy);

    impl CpuidSource for AsCpu {
        fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
            self.0.leaf(leaf, subleaf).unwrap_or(CpuidRegs::ZERO)
        }
    }

    /// The slot of a flat index over every array of the table (past its end for some).
    fn slot_of(i: usize) -> Option<Slot> {
        let (array, n) = (i / 63, i % 63);
        let slot = match array {
            0 => Slot::Basic(n),
            1 => Slot::Cache(n),
            2 => Slot::Feat(n),
            3 => Slot::Topo(n),
            4 => Slot::Xstate(n),
            _ => Slot::Extd(n),
        };
        Slot::of(
            match slot {
                Slot::Basic(n) => n as u32,
                Slot::Cache(_) => 4,
                Slot::Feat(_) => 7,
                Slot::Topo(_) => 0xb,
                Slot::Xstate(_) => 0xd,
                Slot::Extd(n) => 0x8000_0000 + n as u32,
            },
            n as u32,
        )
        .filter(|s| *s == slot)
    }

    /// Apply `op` to `p`; every policy it makes or hands out is in `out` (`p` itself last).
    fn mutator(p: &mut CpuPolicy, op: Op, out: &mut Vec<CpuPolicy>) {
        match op {
            Op::LeafMut(leaf, subleaf, [a, b, c, d]) => {
                if let Some(mut r) = p.leaf_mut(leaf, subleaf) {
                    // Sometimes a whole write, sometimes one register.
                    if a & 1 == 0 {
                        *r = CpuidRegs::new(a, b, c, d);
                    } else {
                        r.d ^= d;
                    }
                }
            }
            Op::SlotMut(i, [a, b, c, d]) => {
                if let Some(slot) = slot_of(i) {
                    p.slot_mut(slot).c = c;
                    *p.slot_mut(slot) = CpuidRegs::new(a, b, c, d);
                }
            }
            Op::MaxBasic(v) => p.set_max_basic_leaf(v),
            Op::MaxFeat(v) => p.set_max_feat_subleaf(v),
            Op::MaxExtd(v) => p.set_max_extd_leaf(v),
            Op::HypervisorLimits(a, b) => p.set_hypervisor_limits(a, b),
            Op::CpuidFaulting(on) => p.set_cpuid_faulting(on),
            Op::PlatformInfo(v) => p.set_platform_info(v),
            Op::ArchCaps(v) => p.set_arch_caps(v),
            Op::Featureset(words) => {
                let mut fs = Featureset::EMPTY;
                for (i, w) in words.into_iter().enumerate() {
                    fs.set_word(i, w);
                }
                p.set_featureset(&fs);
            }
            Op::Clear => p.clear_out_of_range_leaves(),
            Op::Merged(leaves, msrs) => {
                if let Ok(m) = p.merged(&leaves, &msrs) {
                    out.push(m);
                }
            }
            // In place, with the entries before a bad one kept: the kept words must follow
            // those too.
            Op::MergeArrays(leaves, msrs) => _ = p.merge_arrays(&leaves, &msrs),
            Op::FromArrays(leaves, msrs) => {
                if let Ok(q) = CpuPolicy::from_arrays(&leaves, &msrs) {
                    out.push(q);
                }
            }
            // In a copy, so the sequence goes on from the policy it had: the copy is checked,
            // what `from_arrays` returns or, after an error, empty.
            Op::SetFromArrays(leaves, msrs) => {
                let mut q = *p;
                match (
                    q.set_from_arrays(&leaves, &msrs),
                    CpuPolicy::from_arrays(&leaves, &msrs),
                ) {
                    (Ok(()), Ok(fresh)) => assert_eq!(q, fresh),
                    (Err(a), Err(b)) => assert_eq!((a, q), (b, CpuPolicy::EMPTY)),
                    (a, b) => panic!("set_from_arrays: {a:?}, from_arrays: {:?}", b.map(|_| ())),
                }
                out.push(q);
            }
            Op::FromSource(platform_info, arch_caps) => {
                let msrs = RawMsrs {
                    platform_info,
                    arch_caps,
                };
                *p = CpuPolicy::from_source(&AsCpu(*p), msrs);
            }
            Op::System(k, hap) => {
                let kind = [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow][k];
                let options = HostOptions {
                    hap,
                    ..HostOptions::default()
                };
                let s = SystemPolicies::derive(p, options);
                let mut t = SystemPolicies::EMPTY;
                t.derive_into(p, options);
                for which in SystemPolicy::ALL {
                    out.push(*s.get(which));
                    out.push(*t.get(which));
                }
                out.extend(s.max_for(kind));
                out.push(s.default_for(kind));
                let fs = s.default_for(kind).featureset();
                out.extend(
                    s.domain_policy(kind, s.get(SystemPolicy::Host).vendor(), &fs)
                        .ok(),
                );
                out.extend(s.recalculate(kind, p));
                // The next steps go on from a derived policy (a realistic one).
                if let Some(q) = s.recalculate(kind, p) {
                    *p = q;
                }
            }
        }
        out.push(*p);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// After any sequence of any mutators, every policy's kept words are its words
        /// gathered afresh from its leaves, and the check on them answers as the check
        /// from the leaves does.
        #[test]
        fn the_kept_words_follow_every_mutator(
            ops in proptest::collection::vec(op(), 1..24),
        ) {
            let mut p = CpuPolicy::EMPTY;
            let mut previous = CpuPolicy::EMPTY;
            for op in ops {
                let mut out = Vec::new();
                mutator(&mut p, op.clone(), &mut out);
                for q in &out {
                    prop_assert_eq!(CompatWords::of(q), words_from_leaves(q), "after {:?}", op);
                    prop_assert_eq!(
                        check_compatible(&previous, q),
                        check_compatible_slow(&previous, q),
                        "after {:?}", op
                    );
                    prop_assert_eq!(
                        check_compatible(q, q).is_ok(),
                        check_compatible_slow(q, q).is_ok()
                    );
                }
                previous = p;
            }
        }
    }
}
