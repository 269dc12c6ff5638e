//! Is a domain policy within a max policy? Xen's `x86_cpu_policies_are_compatible`, plus the
//! feature audit Xen leaves as a TODO: a feature the max policy lacks is reported, not clamped.

use core::fmt;

use super::{CpuPolicy, EXTD_BASE, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, WORD_HOMES, WordHome};
use crate::cpuid::NO_SUBLEAF;
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

/// What the compatibility check reads of a policy, gathered once: the vendor string, the
/// max leaves, MSR_PLATFORM_INFO and the featureset words. A toolstack or hypervisor that
/// checks a policy more than once (a max policy against every domain, a domain against every
/// host of a pool) builds it once with [`CompatWords::of`] and checks with
/// [`CompatWords::check`]: a few comparisons and 19 AND-NOTs, no leaf lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompatWords {
    vendor: [u32; 3],
    max_basic: u32,
    max_feat: u32,
    max_extd: u32,
    platform_info: u32,
    words: [u32; NR_WORDS],
}

impl CompatWords {
    /// The words of `p` (its featureset: Xen's `x86_cpu_policy_to_featureset`).
    pub fn of(p: &CpuPolicy) -> CompatWords {
        CompatWords {
            vendor: [p.basic[0].b, p.basic[0].c, p.basic[0].d],
            max_basic: p.basic[0].a,
            max_feat: p.feat[0].a,
            max_extd: p.extd[0].a,
            platform_info: p.platform_info,
            words: p.feature_words(),
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
        // AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX are no feature (below): word
        // 2 is masked. One AND-NOT per word, no branch: the compiler may vectorise it.
        const KEEP: [u32; NR_WORDS] = {
            let mut keep = [!0; NR_WORDS];
            keep[2] = !crate::feature::COMMON_1D;
            keep
        };
        let extra = (guest.words.iter().zip(&KEEP).zip(&self.words))
            .fold(0, |extra, ((g, keep), max)| extra | g & keep & !max);
        extra == 0
            && guest.vendor == self.vendor
            && guest.max_basic <= self.max_basic
            && guest.max_feat <= self.max_feat
            && guest.max_extd <= self.max_extd
            && guest.platform_info & !self.platform_info == 0
    }
}

/// Check `guest` against `max`: `Ok` if the guest asks for nothing `max` does not offer.
/// The passing case reads each policy's words once, without building featuresets; a failure
/// is then explained in full (the first offending leaf or MSR, and every extra feature).
pub fn check_compatible(max: &CpuPolicy, guest: &CpuPolicy) -> Result<(), Incompatibility> {
    CompatWords::of(max).check(&CompatWords::of(guest), max, guest)
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
    use super::{CompatWords, check_compatible, check_compatible_slow};
    use crate::cpuid::CpuidRegs;
    use crate::policy::CpuPolicy;

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
                if let Some(r) = p.leaf_mut(leaf, sub) {
                    *r = CpuidRegs::new(next(), next(), next(), next());
                }
            }
        }
        p.set_platform_info(next());
        p.set_arch_caps(u64::from(next()) << 32 | u64::from(next()));
        p
    }

    #[test]
    fn feature_words_are_the_featureset() {
        let mut seed = 0x1234_5678_9abc_def1;
        for _ in 0..64 {
            let p = noisy(&mut seed, false);
            assert_eq!(&p.feature_words(), p.featureset().words());
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
                    let g = guest.leaf_mut(leaf, sub).unwrap();
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
}
