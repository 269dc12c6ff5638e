//! What each modelled CPU's generation has for levelling, from the vendors' documentation
//! (reference `xen-levelling.md` 2.1): the expectation the probe checks are judged against
//! above the shim. The same table as the crate's `tests/levelling.rs`, written out by hand
//! rather than derived from the code under test.

use xen_levelling::levelling::Mechanism;
use xen_levelling::levelling::masks::MaskKind;
use xen_levelling::levelling::probe::{FaultingCheck, FaultingControl};

use crate::levelling::masking;

/// The mechanism the CPU of dump `stem` has, and that probing must find (faulting verified
/// by effect at CPL 3); `None` for a dump this table does not know.
pub fn mechanism(stem: &str) -> Option<Mechanism> {
    let faulting = |control| Mechanism::Faulting {
        control,
        check: FaultingCheck::Verified,
    };
    let short = super::short(stem);
    Some(match short {
        // V1: one mask, leaf 1.
        "GenuineIntel0010676_Penryn" => masking(&[(MaskKind::Leaf1, 0x478)]),
        // V2: leaf 1 and 0x80000001.
        "GenuineIntel00106A2_Nehalem-EP" => {
            masking(&[(MaskKind::Leaf1, 0x130), (MaskKind::Extd1, 0x131)])
        }
        // V3; this old dump lacks leaf 0xD subleaf 1, so 0x134 has nothing to hide there.
        "GenuineIntel00206A7_SandyBridge2" => {
            masking(&[(MaskKind::Leaf1, 0x132), (MaskKind::Extd1, 0x133)])
        }
        "GenuineIntel00206D7_SandyBridgeE_00" => masking(&[
            (MaskKind::Leaf1, 0x132),
            (MaskKind::Extd1, 0x133),
            (MaskKind::Xsave1, 0x134),
        ]),
        // K10: the leaf 1 and 0x80000001 overrides.
        "AuthenticAMD0100F21_K10_Barcelona" | "AuthenticAMD0100F80_K10_Istanbul" => masking(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
        ]),
        // Bulldozer: the leaf 6 override too; its leaf 7 reports nothing to override.
        "AuthenticAMD0600F12_K15_Interlagos" => masking(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
            (MaskKind::Thermal, 0xc001_1003),
        ]),
        // Zen 1 (and Hygon's): the leaf 7 override too.
        "AuthenticAMD0830F10_K17_CastlePeak" | "HygonGenuine0900F02_Hygon" => masking(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
            (MaskKind::Leaf7, 0xc001_1002),
        ]),
        // Zen 4 enumerates CpuidUserDis: faulting through HWCR[35].
        "AuthenticAMD0A10F11_K19_Genoa_02" => faulting(FaultingControl::Amd),
        // Ivy Bridge and every later Intel core: CPUID faulting through MSR 0x140.
        _ if short.starts_with("GenuineIntel") => faulting(FaultingControl::Intel),
        _ => return None,
    })
}
