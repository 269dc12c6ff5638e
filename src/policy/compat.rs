//! Is a domain policy within a max policy? Xen's `x86_cpu_policies_are_compatible`, plus the
//! feature audit Xen leaves as a TODO: a feature the max policy lacks is reported, not clamped.

use core::fmt;

use super::{CpuPolicy, EXTD_BASE, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, WORD_HOMES, WordHome};
use crate::cpuid::NO_SUBLEAF;
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

/// Check `guest` against `max`: `Ok` if the guest asks for nothing `max` does not offer.
pub fn check_compatible(max: &CpuPolicy, guest: &CpuPolicy) -> Result<(), Incompatibility> {
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
