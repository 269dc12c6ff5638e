//! The CPU generations table (`data/generations.tbl`): the build's checker refuses bad tables
//! naming the line; the table agrees with the vendors' documented facts for every generation
//! the repository has a real CPU of (written out here by hand, not derived from the table);
//! and every CPU the tests run over (the repository's dumps and any extra ones) falls in a row
//! or is deliberately outside the table.

#[allow(dead_code)]
#[path = "../build/generations.rs"]
mod generations;

mod common;

use common::dumps;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::levelling::Mechanism;
use xen_levelling::levelling::generation::{
    GENERATIONS, Generation, PlatformInfoPresence, expected_mechanism,
};
use xen_levelling::levelling::masks::{MaskKind, MaskMsrs};
use xen_levelling::levelling::probe::{FaultingCheck, FaultingControl};
use xen_levelling::policy::RawMsrs;
use xen_levelling::{CpuPolicy, Vendor};

const TABLE: &str = include_str!("../data/generations.tbl");

/// A valid row to vary.
const ROW: &str = "intel 6 2a SandyBridge present no 1cd=INTEL_MASK_V3_LEAF1 | why | where";

fn rejected(table: &str) -> (usize, String) {
    let error = generations::parse(table).expect_err(table);
    (error.line, error.message)
}

#[test]
fn the_checker_refuses_bad_rows_naming_the_line() {
    let cases: &[(&str, &str)] = &[
        ("amd 6 2a X - no - | why", "`| reason | source`"),
        ("intel 6 2a X - no - | | where", "reason and the source"),
        ("intel 6 2a X - no | why | where", "6 columns"),
        ("via 6 2a X - no - | why | where", "unknown vendor `via`"),
        ("intel 6 2g X - no - | why | where", "model `2g`"),
        ("intel 6 2d-2a X - no - | why | where", "runs backwards"),
        (
            "intel 6 2a X maybe no - | why | where",
            "platform-info `maybe`",
        ),
        (
            "intel 6 2a X - perhaps - | why | where",
            "passcode `perhaps`",
        ),
        (
            "intel 6 2a X - no 8cd=FOO | why | where",
            "unknown mask kind `8cd`",
        ),
        (
            "intel 6 2a X - no 1cd=foo | why | where",
            "`foo` is not an MSR constant",
        ),
        (
            "intel 6 2a X - no 1cd=FOO?leaf9 | why | where",
            "condition `leaf9`",
        ),
        ("intel 6 2a X - no 1cd=A,1cd=B | why | where", "given twice"),
        (
            "amd 10 * X present no - | why | where",
            "no MSR_PLATFORM_INFO",
        ),
    ];
    for (row, message) in cases {
        let table = format!("# header\n\n{row}\n");
        let (line, got) = rejected(&table);
        assert_eq!(line, 3, "{row}");
        assert!(got.contains(message), "{row}: {got}");
    }
    // Overlapping rows: the second names the first.
    let overlap = format!("{ROW}\n{}", ROW.replace("SandyBridge", "Other"));
    assert_eq!(
        rejected(&overlap),
        (
            2,
            "overlaps line 1 (SandyBridge): a CPU may be in one row only".to_string()
        )
    );
    let twice = format!("{ROW}\n{}", ROW.replace(" 2a ", " 2b "));
    assert_eq!(rejected(&twice).0, 2);
    assert_eq!(rejected("# nothing\n").1, "no generations");
}

#[test]
fn the_generated_table_is_the_file() {
    let rows = generations::parse(TABLE).unwrap();
    assert_eq!(rows.len(), GENERATIONS.len());
    for (row, generation) in rows.iter().zip(GENERATIONS) {
        assert_eq!(row.name, generation.name);
        assert_eq!(row.line, generation.line as usize);
        assert_eq!(row.masks.len(), generation.masks.len(), "{}", row.name);
        assert!(!generation.reason.is_empty() && !generation.source.is_empty());
    }
}

/// The generation, by hand from the vendors' documentation (reference `xen-levelling.md`
/// 2.1), of each vendor/family/model the repository's dumps cover: its mask MSRs (before
/// the leaf 7 and leaf 6 conditions) and whether MSR_PLATFORM_INFO exists.
fn documented(vendor: Vendor, family: u32, model: u32) -> (Vec<(MaskKind, u32)>, bool) {
    // Every AMD generation with overrides has the leaf 7 one (where leaf 7 exists).
    let amd = vec![
        (MaskKind::Leaf1, 0xc001_1004),
        (MaskKind::Extd1, 0xc001_1005),
        (MaskKind::Leaf7, 0xc001_1002),
    ];
    match (vendor, family, model) {
        (Vendor::Intel, 6, 0x17) => (vec![(MaskKind::Leaf1, 0x478)], false),
        (Vendor::Intel, 6, 0x1a) => (
            vec![(MaskKind::Leaf1, 0x130), (MaskKind::Extd1, 0x131)],
            true,
        ),
        (Vendor::Intel, 6, 0x2a | 0x2d) => (
            vec![
                (MaskKind::Leaf1, 0x132),
                (MaskKind::Extd1, 0x133),
                (MaskKind::Xsave1, 0x134),
            ],
            true,
        ),
        (Vendor::Intel, 6, _) => (vec![], true),
        (Vendor::Amd, 0x10, _) => (amd, false),
        (Vendor::Amd, 0x15, _) => {
            let mut masks = amd;
            masks.push((MaskKind::Thermal, 0xc001_1003));
            (masks, false)
        }
        (Vendor::Amd | Vendor::Hygon, 0x17.., _) => (amd, false),
        other => panic!("no documented generation for {other:?}"),
    }
}

/// Each bundled dump with its raw policy and the MSRs it recorded.
fn bundled_cpus() -> impl Iterator<Item = (dumps::DumpFile, RawMsrs, CpuPolicy)> {
    dumps::bundled().into_iter().map(|file| {
        let text = file.text();
        let dump = Aida64Dump::parse(&text).unwrap();
        let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
        (file, dump.raw_msrs(), raw)
    })
}

#[test]
fn the_table_agrees_with_the_documentation_on_every_bundled_cpu() {
    for (file, _, raw) in bundled_cpus() {
        let sig = raw.signature();
        let generation = Generation::of(raw.vendor(), sig)
            .unwrap_or_else(|| panic!("{}: in no generation", file.name));
        let (masks, platform_info) = documented(raw.vendor(), sig.family, sig.model);
        let mut table: Vec<(MaskKind, u32)> =
            generation.masks.iter().map(|m| (m.kind, m.msr)).collect();
        table.sort();
        let mut masks = masks;
        masks.sort();
        assert_eq!(table, masks, "{}: {}", file.name, generation.name);
        assert_eq!(
            generation.has_platform_info(),
            platform_info,
            "{}",
            file.name
        );
    }
}

/// What probing must find on each of the repository's CPUs, by hand: the mechanism each
/// generation has, less masks with nothing to hide on that CPU.
fn documented_mechanism(stem: &str) -> Mechanism {
    let masks = |list: &[(MaskKind, u32)]| {
        let m = list
            .iter()
            .fold(MaskMsrs::default(), |m, &(kind, index)| m.with(kind, index));
        Mechanism::Masking(m)
    };
    let faulting = |control| Mechanism::Faulting {
        control,
        check: FaultingCheck::Verified,
    };
    match stem {
        "GenuineIntel0010676_Penryn" => masks(&[(MaskKind::Leaf1, 0x478)]),
        "GenuineIntel00106A2_Nehalem-EP" => {
            masks(&[(MaskKind::Leaf1, 0x130), (MaskKind::Extd1, 0x131)])
        }
        // This old dump lacks leaf 0xD subleaf 1, so 0x134 has nothing to hide.
        "GenuineIntel00206A7_SandyBridge2" => {
            masks(&[(MaskKind::Leaf1, 0x132), (MaskKind::Extd1, 0x133)])
        }
        "GenuineIntel00206D7_SandyBridgeE_00" => masks(&[
            (MaskKind::Leaf1, 0x132),
            (MaskKind::Extd1, 0x133),
            (MaskKind::Xsave1, 0x134),
        ]),
        "AuthenticAMD0100F21_K10_Barcelona" | "AuthenticAMD0100F80_K10_Istanbul" => masks(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
        ]),
        // Bulldozer: the leaf 6 override too; its leaf 7 reports nothing to override.
        "AuthenticAMD0600F12_K15_Interlagos" => masks(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
            (MaskKind::Thermal, 0xc001_1003),
        ]),
        "AuthenticAMD0830F10_K17_CastlePeak" | "HygonGenuine0900F02_Hygon" => masks(&[
            (MaskKind::Leaf1, 0xc001_1004),
            (MaskKind::Extd1, 0xc001_1005),
            (MaskKind::Leaf7, 0xc001_1002),
        ]),
        // Zen 4 enumerates CpuidUserDis.
        "AuthenticAMD0A10F11_K19_Genoa_02" => faulting(FaultingControl::Amd),
        // Ivy Bridge and every later Intel core: CPUID faulting.
        _ if stem.starts_with("GenuineIntel") => faulting(FaultingControl::Intel),
        _ => panic!("no documented mechanism for {stem}"),
    }
}

#[test]
fn the_tables_promise_is_the_documented_mechanism_on_every_bundled_cpu() {
    for (file, recorded, raw) in bundled_cpus() {
        let stem = &file.name[..file.name.find("_CPUID").unwrap()];
        assert_eq!(
            expected_mechanism(&raw, recorded),
            documented_mechanism(stem),
            "{}",
            file.name
        );
    }
}

/// The stable names `levelctl`'s JSON carries come from the family the MSRs belong to, so a
/// SandyBridge whose 0x134 has nothing to hide is still V3, and a Bulldozer with its leaf 6
/// override is still AMD's.
#[test]
fn mechanisms_are_named_by_the_family_of_their_msrs() {
    for (stem, name) in [
        ("GenuineIntel0010676_Penryn", "intel-mask-v1"),
        ("GenuineIntel00106A2_Nehalem-EP", "intel-mask-v2"),
        ("GenuineIntel00206A7_SandyBridge2", "intel-mask-v3"),
        ("GenuineIntel00206D7_SandyBridgeE_00", "intel-mask-v3"),
        ("AuthenticAMD0100F21_K10_Barcelona", "amd-override"),
        ("AuthenticAMD0600F12_K15_Interlagos", "amd-override"),
        ("HygonGenuine0900F02_Hygon", "amd-override"),
        ("AuthenticAMD0A10F11_K19_Genoa_02", "faulting"),
        ("GenuineIntel00306A9_IvyBridge", "faulting"),
    ] {
        assert_eq!(documented_mechanism(stem).name(), name, "{stem}");
    }
    assert_eq!(Mechanism::None.name(), "none");
    assert_eq!(Mechanism::Masking(MaskMsrs::default()).name(), "none");
}

#[test]
fn every_cpu_tested_is_in_a_row_or_knowingly_outside() {
    for file in dumps::all() {
        let text = file.text();
        let dump =
            Aida64Dump::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", file.name));
        let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
        let generation = Generation::of(raw.vendor(), raw.signature());
        match raw.vendor() {
            // Every Intel family 6 and 0xF, and every AMD-like family from 0xF on, has a row.
            Vendor::Intel if matches!(raw.signature().family, 6 | 0xf) => {
                assert!(generation.is_some(), "{}", file.name)
            }
            Vendor::Amd | Vendor::Hygon if raw.signature().family >= 0xf => {
                assert!(generation.is_some(), "{}", file.name)
            }
            _ => assert!(generation.is_none(), "{}", file.name),
        }
    }
}

#[test]
fn rows_are_coherent() {
    for generation in GENERATIONS {
        // Intel's masks end where faulting begins; nothing has both by generation.
        if generation.platform_info == PlatformInfoPresence::Faulting {
            assert!(generation.masks.is_empty(), "{}", generation.name);
        }
        // One MSR per mask kind, and each MSR a levelling MSR.
        for mask in generation.masks {
            assert!(
                xen_levelling::levelling::msr::LEVELLING_MSRS.contains(&mask.msr),
                "{}: {:#x}",
                generation.name,
                mask.msr
            );
        }
    }
}
