//! Integration tests of the AIDA64/EVEREST dump parser against the 22 real dumps in
//! `data/cpuid-dumps/`, synthetic malformed inputs, and property tests.
//!
//! The expected values are the external facts of `README.md`'s table and `FORMAT.md`; they are
//! hard-coded here on purpose rather than recomputed from the dumps.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use xen_levelling::cpuid::{CpuidRegs, CpuidSource, Vendor};
use xen_levelling::dump::{
    Aida64Dump, CpuidLineError, DumpEntry, DumpError, DumpErrorKind, DumpFormat, MAX_ENTRIES,
    MissingItem, MsrLineError, MsrReading, leaf_has_subleaves,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cpuid-dumps/");

/// One row of README.md's table (plus the format letter of FORMAT.md section 8).
struct Expected {
    file: &'static str,
    vendor: Vendor,
    /// Leaf 1 EAX, as in the README's family/model/stepping column.
    eax1: u32,
    family: u32,
    model: u32,
    stepping: u32,
    max_basic: u32,
    max_ext: u32,
    format: DumpFormat,
    /// The README's "MSR 0xCE line (value)" column, `None` for "no".
    msr_ce: Option<u64>,
    /// The README's "0xCE bit 31" column for Intel dumps with MSRs.
    ce_bit31: Option<bool>,
}

#[allow(clippy::too_many_arguments)]
const fn row(
    file: &'static str,
    vendor: Vendor,
    eax1: u32,
    (family, model, stepping): (u32, u32, u32),
    max_basic: u32,
    max_ext: u32,
    format: DumpFormat,
    msr_ce: Option<u64>,
    ce_bit31: Option<bool>,
) -> Expected {
    Expected {
        file,
        vendor,
        eax1,
        family,
        model,
        stepping,
        max_basic,
        max_ext,
        format,
        msr_ce,
        ce_bit31,
    }
}

use DumpFormat::{A, B, C, D};
use Vendor::{Amd, Hygon, Intel};

#[rustfmt::skip]
const EXPECTED: [Expected; 22] = [
    row("GenuineIntel0010676_Penryn_CPUID.txt", Intel, 0x0001_0676, (0x06, 0x17, 0x6), 0x0A, 0x8000_0008, A, Some(0x8017_0927_4345_0611), Some(false)),
    row("GenuineIntel00106A2_Nehalem-EP_CPUID.txt", Intel, 0x0001_06A2, (0x06, 0x1A, 0x2), 0x0B, 0x8000_0008, A, Some(0x0000_0C00_0C00_1400), Some(false)),
    row("GenuineIntel00206A7_SandyBridge2_CPUID.txt", Intel, 0x0002_06A7, (0x06, 0x2A, 0x7), 0x0D, 0x8000_0008, A, Some(0x0000_1000_7001_2200), Some(false)),
    row("GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt", Intel, 0x0002_06D7, (0x06, 0x2D, 0x7), 0x0D, 0x8000_0008, B, Some(0x0000_0C00_7001_2000), Some(false)),
    row("GenuineIntel00306A9_IvyBridge_CPUID.txt", Intel, 0x0003_06A9, (0x06, 0x3A, 0x9), 0x0D, 0x8000_0008, A, Some(0x0008_1010_F001_2300), Some(true)),
    row("GenuineIntel00306C3_HaswellXeon_CPUID.txt", Intel, 0x0003_06C3, (0x06, 0x3C, 0x3), 0x0D, 0x8000_0008, A, Some(0x0008_0838_FF01_2200), Some(true)),
    row("GenuineIntel00306C3_Haswell_CPUID.txt", Intel, 0x0003_06C3, (0x06, 0x3C, 0x3), 0x0D, 0x8000_0008, A, Some(0x0008_0838_F301_2200), Some(true)),
    row("GenuineIntel00306F2_HaswellEP_01_CPUID.txt", Intel, 0x0003_06F2, (0x06, 0x3F, 0x2), 0x0F, 0x8000_0008, B, Some(0x2008_0C33_FB81_1B00), Some(true)),
    row("GenuineIntel00306D4_Broadwell2_CPUID.txt", Intel, 0x0003_06D4, (0x06, 0x3D, 0x4), 0x14, 0x8000_0008, A, Some(0x0005_053B_FB01_1000), Some(true)),
    row("GenuineIntel0040671_BroadwellH_CPUID.txt", Intel, 0x0004_0671, (0x06, 0x47, 0x1), 0x14, 0x8000_0008, A, Some(0x0008_083B_F301_2100), Some(true)),
    row("GenuineIntel0050654_SkylakeXeon_20_CPUID.txt", Intel, 0x0005_0654, (0x06, 0x55, 0x4), 0x16, 0x8000_0008, B, Some(0x0007_0A2C_F381_1500), Some(true)),
    row("GenuineIntel0050654_SkylakeXeon_CPUID.txt", Intel, 0x0005_0654, (0x06, 0x55, 0x4), 0x16, 0x8000_0008, C, None, None),
    row("GenuineIntel00606A6_ICX_04_CPUID.txt", Intel, 0x0006_06A6, (0x06, 0x6A, 0x6), 0x1B, 0x8000_0008, D, None, None),
    row("GenuineIntel00806F8_SapphireRapids_05_CPUID.txt", Intel, 0x0008_06F8, (0x06, 0x8F, 0x8), 0x20, 0x8000_0008, B, Some(0x0405_082C_F481_1A00), Some(true)),
    row("GenuineIntel0090672_AlderLake_03_CPUID.txt", Intel, 0x0009_0672, (0x06, 0x97, 0x2), 0x20, 0x8000_0008, B, Some(0x0004_083D_F181_1700), Some(true)),
    row("GenuineIntel00B0671_RaptorLake_04_CPUID.txt", Intel, 0x000B_0671, (0x06, 0xB7, 0x1), 0x20, 0x8000_0008, B, Some(0x0808_0838_F181_2300), Some(true)),
    row("AuthenticAMD0100F21_K10_Barcelona_CPUID.txt", Amd, 0x0010_0F21, (0x10, 0x02, 0x1), 0x05, 0x8000_001A, A, None, None),
    row("AuthenticAMD0100F80_K10_Istanbul_CPUID.txt", Amd, 0x0010_0F80, (0x10, 0x08, 0x0), 0x05, 0x8000_001B, A, None, None),
    row("AuthenticAMD0600F12_K15_Interlagos_CPUID3.txt", Amd, 0x0060_0F12, (0x15, 0x01, 0x2), 0x0D, 0x8000_001E, A, None, None),
    row("AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt", Amd, 0x0083_0F10, (0x17, 0x31, 0x0), 0x10, 0x8000_0020, B, None, None),
    row("AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt", Amd, 0x00A1_0F11, (0x19, 0x11, 0x1), 0x10, 0x8000_0028, B, None, None),
    row("HygonGenuine0900F02_Hygon_CPUID.txt", Hygon, 0x0090_0F02, (0x18, 0x00, 0x2), 0x0D, 0x8000_001F, A, None, None),
];

/// The text of every dump, read once.
fn texts() -> &'static BTreeMap<&'static str, String> {
    static TEXTS: OnceLock<BTreeMap<&'static str, String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        EXPECTED
            .iter()
            .map(|e| {
                let path = format!("{DIR}{}", e.file);
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
                (e.file, text)
            })
            .collect()
    })
}

fn dump_text(file_prefix: &str) -> &'static str {
    let mut matches = texts()
        .iter()
        .filter(|(name, _)| name.starts_with(file_prefix));
    let (_, text) = matches
        .next()
        .unwrap_or_else(|| panic!("no dump named {file_prefix}*"));
    assert!(
        matches.next().is_none(),
        "{file_prefix} names several dumps"
    );
    text
}

fn dump(file_prefix: &str) -> Aida64Dump<'static> {
    let text = dump_text(file_prefix);
    Aida64Dump::parse(text).unwrap_or_else(|e| panic!("{file_prefix}: {e}"))
}

/// The subleaves recorded for a leaf, in file order.
fn subleaves(dump: &Aida64Dump<'_>, leaf: u32) -> Vec<u32> {
    dump.entries()
        .filter(|e| e.leaf == leaf)
        .map(|e| e.subleaf)
        .collect()
}

/// The 1-based number of the first line equal to `line` (after `after`).
fn line_number(text: &str, line: &str, after: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, l)| *l == line)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no line {line:?}"))
}

/// The text with line `number` (1-based) replaced by `new`.
fn replace_line(text: &str, number: usize, new: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines[number - 1] = new;
    lines.join("\n")
}

/// The text with `new` inserted as line `number` (1-based).
fn insert_line(text: &str, number: usize, new: &str) -> String {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.insert(number - 1, new);
    lines.join("\n")
}

fn parse_err(text: &str) -> DumpError {
    match Aida64Dump::parse(text) {
        Ok(d) => panic!("parsed: {d:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Every real dump

#[test]
fn the_folder_holds_exactly_the_22_dumps_of_the_table() {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .expect("dump folder")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|name| name.ends_with(".txt"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 22);
    let mut expected: Vec<&str> = EXPECTED.iter().map(|e| e.file).collect();
    expected.sort_unstable();
    assert_eq!(files, expected);
}

#[test]
fn every_dump_matches_the_readme_table() {
    for e in &EXPECTED {
        let d = dump(e.file);
        let file = e.file;
        assert_eq!(d.format(), e.format, "{file}: format");
        assert_eq!(d.vendor(), e.vendor, "{file}: vendor");
        assert_eq!(d.cpuid(1, 0).a, e.eax1, "{file}: leaf 1 EAX");
        let sig = d.signature();
        assert_eq!(
            (sig.family, sig.model, sig.stepping),
            (e.family, e.model, e.stepping),
            "{file}"
        );
        assert_eq!(d.cpuid(0, 0).a, e.max_basic, "{file}: max basic leaf");
        assert_eq!(
            d.cpuid(0x8000_0000, 0).a,
            e.max_ext,
            "{file}: max extended leaf"
        );
        assert!(
            d.seen(0, 0) && d.seen(1, 0) && d.seen(0x8000_0000, 0),
            "{file}"
        );
        assert!(d.entries().count() <= MAX_ENTRIES);

        // MSR 0xCE: the full value of the README column, and its bit 31.
        let ce = d.msr(0xCE);
        match e.msr_ce {
            Some(value) => assert_eq!(ce, MsrReading::Value(value), "{file}: MSR 0xCE"),
            None => assert_eq!(ce, MsrReading::Absent, "{file}: MSR 0xCE"),
        }
        if let Some(bit31) = e.ce_bit31 {
            let value = ce.value().expect("0xCE read");
            assert_eq!(value >> 31 & 1 == 1, bit31, "{file}: MSR 0xCE bit 31");
        }
        // Formats C and D have no MSR section; A and B have one.
        let has_msr_section = matches!(e.format, A | B);
        assert_eq!(d.msr_section_line().is_some(), has_msr_section, "{file}");
        // Leaf 0x8FFFFFFF is never recorded.
        assert!(!d.seen(0x8FFF_FFFF, 0), "{file}");
    }
}

#[test]
fn every_dump_records_ascending_leaves_from_its_first_block() {
    for e in &EXPECTED {
        let d = dump(e.file);
        let entries: Vec<DumpEntry> = d.entries().collect();
        for pair in entries.windows(2) {
            let key = |x: &DumpEntry| (x.leaf, x.subleaf);
            assert!(
                key(&pair[0]) < key(&pair[1]),
                "{}: {:?} then {:?}",
                e.file,
                pair[0],
                pair[1]
            );
        }
        // Each entry answers its own query, and the line number points at its CPUID line.
        let lines: Vec<&str> = dump_text(e.file).lines().collect();
        for entry in &entries {
            assert!(d.seen(entry.leaf, entry.subleaf));
            let line = lines[entry.line - 1];
            assert!(
                line.starts_with(&format!("CPUID {:08X}", entry.leaf)),
                "{}: {line}",
                e.file
            );
            if leaf_has_subleaves(entry.leaf) {
                assert_eq!(d.cpuid(entry.leaf, entry.subleaf), entry.regs);
            }
        }
        // The first block comes first: every entry precedes the second block's leaf 0 line.
        let second_leaf0 = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("CPUID 00000000"))
            .nth(1);
        if let Some((i, _)) = second_leaf0 {
            assert!(entries.iter().all(|entry| entry.line <= i), "{}", e.file);
        }
    }
}

#[test]
fn crlf_input_parses_identically_to_lf() {
    for e in &EXPECTED {
        let lf = dump_text(e.file);
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(
            summary(&Aida64Dump::parse(&crlf)),
            summary(&Aida64Dump::parse(lf)),
            "{}",
            e.file
        );
        // Trailing spaces change nothing either.
        let spaced = lf.replace('\n', "  \n");
        assert_eq!(
            summary(&Aida64Dump::parse(&spaced)),
            summary(&Aida64Dump::parse(lf)),
            "{}",
            e.file
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Specific facts of FORMAT.md and README.md

#[test]
fn sapphire_rapids_leaf_0xd_subleaves_are_the_xcr0_and_xss_components() {
    let d = dump("GenuineIntel00806F8_SapphireRapids");
    let expected = [
        0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0E, 0x0F, 0x11, 0x12,
    ];
    assert_eq!(subleaves(&d, 0xD), expected);
    for subleaf in 0..64 {
        assert_eq!(
            d.seen(0xD, subleaf),
            expected.contains(&subleaf),
            "subleaf {subleaf:#x}"
        );
    }
    // `CPUID 0000000D: 00002000-00000B00-00000006-00000000 [SL 12]`
    assert_eq!(d.cpuid(0xD, 0x12), CpuidRegs::new(0x2000, 0xB00, 6, 0));
    // Leaf 7 subleaves 0 to 2 are tagged in format B.
    assert_eq!(subleaves(&d, 7), [0, 1, 2]);
    assert_eq!(d.cpuid(7, 0).a, 2);
}

#[test]
fn old_sandy_bridge_leaf_0xd_is_subleaf_0_and_2_without_1() {
    let d = dump("GenuineIntel00206A7_SandyBridge2");
    assert!(d.seen(0xD, 0));
    assert!(!d.seen(0xD, 1));
    assert!(d.seen(0xD, 2));
    assert_eq!(d.cpuid(0xD, 1), CpuidRegs::ZERO);
    assert_eq!(d.cpuid(0xD, 0), CpuidRegs::new(0x7, 0x240, 0x340, 0));
    assert_eq!(d.cpuid(0xD, 2), CpuidRegs::new(0x100, 0x240, 0, 0));
    // Untagged leaf 4 and 0xB lines are numbered sequentially.
    assert_eq!(subleaves(&d, 4), [0, 1, 2, 3]);
    assert_eq!(subleaves(&d, 0xB), [0, 1]);
    assert_eq!(d.cpuid(4, 3).a, 0x1C03_C163);
    assert_eq!(d.cpuid(0xB, 1), CpuidRegs::new(4, 8, 0x201, 0));
    // The single untagged leaf 7 line is subleaf 0.
    assert_eq!(subleaves(&d, 7), [0]);
}

#[test]
fn old_format_a_dumps_have_leaf_0xd_subleaves_0_and_2() {
    for file in [
        "GenuineIntel00306A9_IvyBridge",
        "GenuineIntel00306C3_HaswellXeon",
    ] {
        let d = dump(file);
        assert_eq!(d.format(), A);
        assert_eq!(subleaves(&d, 0xD), [0, 2], "{file}");
    }
}

#[test]
fn interlagos_has_no_leaf_4_and_the_lwp_component() {
    let d = dump("AuthenticAMD0600F12_K15_Interlagos");
    assert!(!d.seen(4, 0));
    assert_eq!(d.cpuid(4, 0), CpuidRegs::ZERO);
    assert!(!d.seen(0xB, 0));
    assert!(d.seen(0xD, 0x3E));
    assert_eq!(d.cpuid(0xD, 0x3E), CpuidRegs::new(0x80, 0x340, 0, 0));
    assert_eq!(subleaves(&d, 0xD), [0, 1, 2, 0x3E]);
    assert_eq!(subleaves(&d, 0x8000_001D), [0, 1, 2, 3]);
    // A repeated MSR keeps its last line: two `[S200]` samples, then the final read.
    assert_eq!(d.msr(0xE7), MsrReading::Value(0x01A6_82DD));
    let e7: Vec<MsrReading> = d
        .msrs()
        .filter(|&(i, _)| i == 0xE7)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        e7,
        [
            MsrReading::Value(0x009D_6E16),
            MsrReading::Value(0x0121_27CA),
            MsrReading::Value(0x01A6_82DD)
        ]
    );
    // The MSR section starts with free text (`CPU Clock (Normal): 2602 MHz`); the first MSR is 0x1B.
    assert_eq!(
        d.msrs().next(),
        Some((0x1B, MsrReading::Value(0xFEE0_0900)))
    );
}

#[test]
fn icx_format_d_numbers_untagged_lines_sequentially() {
    let d = dump("GenuineIntel00606A6_ICX");
    assert_eq!(d.format(), D);
    assert_eq!(subleaves(&d, 0xD), [0, 1, 2]);
    assert!(!d.seen(0xD, 5));
    assert_eq!(d.cpuid(0xD, 0).a, 0x2E7);
    assert_eq!(d.cpuid(0xD, 1), CpuidRegs::new(0xF, 0xA00, 0x100, 0));
    assert_eq!(subleaves(&d, 4), [0, 1, 2, 3]);
    assert_eq!(subleaves(&d, 0x18), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(d.cpuid(0x18, 0).a, 7);
    assert_eq!(
        d.cpuid(0x18, 7),
        CpuidRegs::new(0, 0x0008_0009, 0x80, 0x4043)
    );
    assert_eq!(d.msrs().count(), 0);
    assert_eq!(d.first_block_line(), 3);
}

#[test]
fn skylake_format_c_prints_only_the_xcr0_components() {
    let d = dump("GenuineIntel0050654_SkylakeXeon_CPUID");
    assert_eq!(d.format(), C);
    assert_eq!(d.first_block_line(), 1);
    assert_ne!(d.cpuid(0xD, 1).c & (1 << 8), 0);
    assert!(!d.seen(0xD, 8));
    assert_eq!(d.msr(0xCE), MsrReading::Absent);
}

#[test]
fn genoa_enumerates_cpuid_faulting_in_0x80000021() {
    let d = dump("AuthenticAMD0A10F11_K19_Genoa");
    assert!(d.seen(0x8000_0021, 0));
    assert_ne!(d.cpuid(0x8000_0021, 0).a & (1 << 17), 0);
    assert_eq!(subleaves(&d, 7), [0, 1]);
    // The older AMD and Hygon dumps stop below 0x80000021.
    for file in [
        "AuthenticAMD0100F21",
        "AuthenticAMD0100F80",
        "AuthenticAMD0600F12",
        "AuthenticAMD0830F10",
        "HygonGenuine",
    ] {
        assert!(!dump(file).seen(0x8000_0021, 0), "{file}");
    }
}

#[test]
fn arch_capabilities_of_the_newest_intel_dumps() {
    let cases = [
        ("GenuineIntel00806F8_SapphireRapids", 0x0000_0000_0028_FDEB),
        ("GenuineIntel0090672_AlderLake", 0x0000_0000_0000_FD6B),
        ("GenuineIntel00B0671_RaptorLake", 0x0000_0000_0088_FD6B),
    ];
    for (file, value) in cases {
        assert_eq!(dump(file).msr(0x10A), MsrReading::Value(value), "{file}");
    }
    // Older dumps have no IA32_ARCH_CAPABILITIES line.
    assert_eq!(
        dump("GenuineIntel00306C3_Haswell_CPUID").msr(0x10A),
        MsrReading::Absent
    );
}

#[test]
fn failed_msr_reads_are_failed_not_zero() {
    let d = dump("GenuineIntel00806F8_SapphireRapids");
    assert_eq!(d.msr(0x10B), MsrReading::Failed);
    assert_eq!(d.msr(0x49), MsrReading::Failed);
    assert_eq!(d.msr(0x10B).value(), None);
    // Microcode revision in the high half on Intel.
    assert!(matches!(d.msr(0x8B), MsrReading::Value(_)));
}

#[test]
fn format_b_uses_cpu_0s_msr_section() {
    let d = dump("GenuineIntel00806F8_SapphireRapids");
    let header = line_number(
        dump_text("GenuineIntel00806F8_SapphireRapids"),
        "------[ MSR Registers / Logical CPU #0 ]------",
        0,
    );
    assert_eq!(d.msr_section_line(), Some(header));
    // `[S200]` samples only occur in CPU #0's section: 0x611 appears three times.
    assert_eq!(d.msrs().filter(|&(i, _)| i == 0x611).count(), 3);
}

#[test]
fn hygon_has_an_empty_msr_section() {
    let d = dump("HygonGenuine");
    assert!(d.msr_section_line().is_some());
    assert_eq!(d.msrs().count(), 0);
    assert_eq!(d.msr(0xCE), MsrReading::Absent);
    assert_eq!(d.msr(0x1B), MsrReading::Absent);
}

#[test]
fn hybrid_cpu_0_is_a_p_core() {
    for file in [
        "GenuineIntel0090672_AlderLake",
        "GenuineIntel00B0671_RaptorLake",
    ] {
        let d = dump(file);
        assert_eq!(d.cpuid(0x1A, 0).a, 0x4000_0001, "{file}");
        assert_eq!(subleaves(&d, 7), [0, 1, 2], "{file}");
    }
}

#[test]
fn leaves_without_subleaves_ignore_the_subleaf() {
    let d = dump("GenuineIntel00206A7_SandyBridge2");
    assert_eq!(d.cpuid(1, 0), d.cpuid(1, 7));
    assert!(d.seen(1, 0xFFFF_FFFF));
    assert_eq!(d.cpuid(0x8000_0001, 3), d.cpuid(0x8000_0001, 0));
    // Leaves with subleaves do not.
    assert!(!d.seen(4, 4));
    assert_eq!(d.cpuid(4, 4), CpuidRegs::ZERO);
    // Haswell (format A, tagged 4/0xB/0xD) still prints leaf 7 once, untagged: subleaf 0 only.
    let h = dump("GenuineIntel00306C3_Haswell_CPUID");
    assert!(h.seen(7, 0) && !h.seen(7, 1));
    assert_ne!(h.cpuid(7, 0).b & (1 << 5), 0); // AVX2
}

// ---------------------------------------------------------------------------------------------
// Errors

const SNB: &str = "GenuineIntel00206A7_SandyBridge2";
const SNB_LEAF1: &str = "CPUID 00000001: 000206A7-00100800-1FBAE3FF-BFEBFBFF";

#[test]
fn a_lowercase_hex_digit_is_a_malformed_register_group() {
    let text = dump_text(SNB);
    let n = line_number(text, SNB_LEAF1, 0);
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3Ff-BFEBFBFF",
    ));
    assert_eq!(err.line(), n);
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::Register)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "line {n}: CPUID line has a malformed register group: expected 8 upper-case hex digits"
        )
    );
    // In the leaf too.
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 0000000a: 000206A7-00100800-1FBAE3FF-BFEBFBFF",
    ));
    assert_eq!(
        (err.line(), err.kind()),
        (n, DumpErrorKind::MalformedCpuidLine(CpuidLineError::Leaf))
    );
}

#[test]
fn a_truncated_register_group_is_malformed() {
    let text = dump_text(SNB);
    let n = line_number(text, SNB_LEAF1, 0);
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3FF-BFEBF",
    ));
    assert_eq!(
        (err.line(), err.kind()),
        (
            n,
            DumpErrorKind::MalformedCpuidLine(CpuidLineError::Register)
        )
    );
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3FF",
    ));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::RegisterSeparator)
    );
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3FF-BFEBFBFF0",
    ));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::TrailingText)
    );
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001 000206A7-00100800-1FBAE3FF-BFEBFBFF",
    ));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::LeafSeparator)
    );
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3FF-BFEBFBFF [SL 0a]",
    ));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::SubleafTag)
    );
    let err = parse_err(&replace_line(
        text,
        n,
        "CPUID 00000001: 000206A7-00100800-1FBAE3FF-BFEBFBFF [SL 001]",
    ));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedCpuidLine(CpuidLineError::SubleafTag)
    );
}

#[test]
fn malformed_lines_in_later_blocks_are_errors_too() {
    let text = dump_text(SNB);
    // Logical CPU #1 differs from #0 only in its APIC ID.
    let second = line_number(
        text,
        "CPUID 00000001: 000206A7-01100800-1FBAE3FF-BFEBFBFF",
        0,
    );
    assert!(second > line_number(text, "------[ Logical CPU #1 ]------", 0));
    let err = parse_err(&replace_line(
        text,
        second,
        "CPUID 00000001: 000206A7-01100800-1FBAE3FF-BFEBFBF",
    ));
    assert_eq!(
        (err.line(), err.kind()),
        (
            second,
            DumpErrorKind::MalformedCpuidLine(CpuidLineError::Register)
        )
    );
}

#[test]
fn a_duplicated_tagged_subleaf_is_an_error() {
    let file = "GenuineIntel00806F8_SapphireRapids";
    let text = dump_text(file);
    let sl1 = text
        .lines()
        .find(|l| l.starts_with("CPUID 00000004:") && l.contains("[SL 01]"))
        .expect("leaf 4 SL 01");
    let first = line_number(text, sl1, 0);
    let err = parse_err(&insert_line(text, first + 2, sl1));
    assert_eq!(err.line(), first + 2);
    assert_eq!(
        err.kind(),
        DumpErrorKind::DuplicateSubleaf {
            leaf: 4,
            subleaf: 1,
            first_line: first
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "line {}: CPUID leaf 0x4 subleaf 0x1 appears twice in the first CPU block (first on line {first})",
            first + 2
        )
    );
    // An untagged leaf without subleaves printed twice is a duplicate of subleaf 0.
    let text = dump_text(SNB);
    let n = line_number(text, SNB_LEAF1, 0);
    let err = parse_err(&insert_line(text, n + 1, SNB_LEAF1));
    assert_eq!(
        err.kind(),
        DumpErrorKind::DuplicateSubleaf {
            leaf: 1,
            subleaf: 0,
            first_line: n
        }
    );
}

#[test]
fn a_malformed_msr_line_is_an_error() {
    let file = "GenuineIntel00806F8_SapphireRapids";
    let text = dump_text(file);
    let n = line_number(text, "MSR 0000010A: 0000-0000-0028-FDEB", 0);
    let err = parse_err(&replace_line(text, n, "MSR 0000010A: 0000-0000-0028-FDE"));
    assert_eq!(
        (err.line(), err.kind()),
        (n, DumpErrorKind::MalformedMsrLine(MsrLineError::ValueGroup))
    );
    let err = parse_err(&replace_line(text, n, "MSR 0000010a: 0000-0000-0028-FDEB"));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedMsrLine(MsrLineError::Index)
    );
    let err = parse_err(&replace_line(text, n, "MSR 0000010A: 0000-0000-0028FDEB"));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedMsrLine(MsrLineError::GroupSeparator)
    );
    let err = parse_err(&replace_line(text, n, "MSR 0000010A: < FAILED"));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedMsrLine(MsrLineError::ValueGroup)
    );
    let err = parse_err(&replace_line(text, n, "MSR 0000010A:0000-0000-0028-FDEB"));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedMsrLine(MsrLineError::IndexSeparator)
    );
    let err = parse_err(&replace_line(text, n, "MSR 0000010A: 0000-0000-0028-FDEB]"));
    assert_eq!(
        err.kind(),
        DumpErrorKind::MalformedMsrLine(MsrLineError::TrailingText)
    );
    assert!(err.to_string().starts_with(&format!("line {n}: MSR line ")));
    // In another CPU's MSR section as well.
    let cpu1 = line_number(text, "------[ MSR Registers / Logical CPU #1 ]------", 0);
    let later = line_number(text, "MSR 0000010B: < FAILED >", cpu1);
    let err = parse_err(&replace_line(text, later, "MSR 0000010B: < FAILED >x"));
    assert_eq!(
        (err.line(), err.kind()),
        (
            later,
            DumpErrorKind::MalformedMsrLine(MsrLineError::TrailingText)
        )
    );
}

#[test]
fn msr_lines_outside_msr_sections_and_cpuid_lines_outside_blocks_are_free_text() {
    let text = dump_text(SNB);
    // `CPUID Manufacturer : GenuineIntel` in `CPU Info` is not a CPUID line; neither is this.
    let n = line_number(text, "CPUID Manufacturer : GenuineIntel", 0);
    let t = insert_line(text, n, "CPUID 0000000x: whatever");
    let t = insert_line(&t, n, "MSR 000000CE: bogus");
    let values = |d: Aida64Dump<'_>| -> Vec<(u32, u32, CpuidRegs)> {
        d.entries().map(|e| (e.leaf, e.subleaf, e.regs)).collect()
    };
    let with = Aida64Dump::parse(&t).expect("parses");
    assert_eq!(
        values(with.clone()),
        values(Aida64Dump::parse(text).expect("parses"))
    );
    assert_eq!(
        with.msrs().count(),
        Aida64Dump::parse(text).unwrap().msrs().count()
    );
}

#[test]
fn empty_input_has_no_cpu_block() {
    let err = parse_err("");
    assert_eq!((err.line(), err.kind()), (1, DumpErrorKind::NoCpuBlock));
    assert_eq!(
        err.to_string(),
        "line 1: no CPU block: the text holds no CPUID dump of a logical CPU"
    );
    let err = parse_err("\n\n\n");
    assert_eq!((err.line(), err.kind()), (3, DumpErrorKind::NoCpuBlock));
}

#[test]
fn a_text_without_cpuid_lines_has_no_cpu_block() {
    let err = parse_err("hello\nworld\nMSR 000000CE: 0000-0000-0000-0000\n");
    assert_eq!((err.line(), err.kind()), (3, DumpErrorKind::NoCpuBlock));
    // Only the header sections of a real dump: `CPUID Manufacturer ...` lines are free text.
    let text = dump_text(SNB);
    let cut = line_number(text, "------[ Logical CPU #0 ]------", 0) - 1;
    let head = text.lines().take(cut).collect::<Vec<_>>().join("\n");
    assert!(head.contains("\nCPUID Manufacturer : GenuineIntel\n"));
    let err = parse_err(&head);
    assert_eq!(
        (err.line(), err.kind()),
        (head.lines().count(), DumpErrorKind::NoCpuBlock)
    );
}

#[test]
fn a_cpu_block_without_cpuid_lines_is_empty() {
    let err = parse_err(
        "------[ Logical CPU #0 ]------\n\nallcpu: Valid\n\n------[ Logical CPU #1 ]------\n",
    );
    assert_eq!((err.line(), err.kind()), (1, DumpErrorKind::EmptyCpuBlock));
    let err = parse_err(
        "CPU#000 AffMask: 0x0000000000000001 \n\nCPUID 00000000: 00000001-756E6547-6C65746E-49656E69\n",
    );
    assert_eq!((err.line(), err.kind()), (1, DumpErrorKind::EmptyCpuBlock));
}

#[test]
fn a_first_block_without_leaf_0_is_rejected() {
    let text = dump_text(SNB);
    let n = line_number(
        text,
        "CPUID 00000000: 0000000D-756E6547-6C65746E-49656E69",
        0,
    );
    let header = line_number(text, "------[ Logical CPU #0 ]------", 0);
    let err = parse_err(&replace_line(text, n, ""));
    assert_eq!(
        (err.line(), err.kind()),
        (header, DumpErrorKind::MissingLeaf0)
    );
}

#[test]
fn more_than_max_entries_is_an_error() {
    // A complete block: leaves 0 to 4 and 0x80000000, then leaf 4 subleaves until it overflows.
    let mut text = String::from(
        "CPUID 00000000: 00000004-756E6547-6C65746E-49656E69\n\
         CPUID 00000001: 000306C3-00100800-7FDAFBBF-BFEBFBFF\n\
         CPUID 00000002: 76036301-00F0B6FF-00000000-00C10000\n\
         CPUID 00000003: 00000000-00000000-00000000-00000000\n\
         CPUID 80000000: 80000000-00000000-00000000-00000000\n",
    );
    for _ in 5..=MAX_ENTRIES {
        text.push_str("CPUID 00000004: 00000000-00000000-00000000-00000000\n");
    }
    let err = parse_err(&text);
    assert_eq!(
        (err.line(), err.kind()),
        (MAX_ENTRIES + 1, DumpErrorKind::TooManyEntries)
    );
    // Exactly MAX_ENTRIES fit: five leaves and leaf 4 subleaves 0 to MAX_ENTRIES - 6.
    let fits: String = text
        .lines()
        .take(MAX_ENTRIES)
        .map(|l| format!("{l}\n"))
        .collect();
    let d = Aida64Dump::parse(&fits).expect("fits");
    assert_eq!(d.entries().count(), MAX_ENTRIES);
    let last = u32::try_from(MAX_ENTRIES).unwrap() - 6;
    assert!(d.seen(4, last));
    assert!(!d.seen(4, last + 1));
    assert_eq!(d.cpuid(4, last), CpuidRegs::ZERO);
}

#[test]
fn untagged_leaf_0xd_beyond_the_components_cannot_be_numbered() {
    let text = dump_text(SNB);
    let n = line_number(
        text,
        "CPUID 0000000D: 00000100-00000240-00000000-00000000",
        0,
    );
    let err = parse_err(&insert_line(
        text,
        n + 1,
        "CPUID 0000000D: 00000000-00000000-00000000-00000000",
    ));
    assert_eq!(
        (err.line(), err.kind()),
        (n + 1, DumpErrorKind::UnnumberedSubleaf { leaf: 0xD })
    );
}

#[test]
fn format_e_is_detected_and_parsed() {
    let mut text = String::from(
        "CPUID 00000000  \t0000000D-756E6547-6C65746E-49656E69\n\
         CPUID 00000001  \t000306E4-00200800-7FBEE3FF-BFEBFBFF\n",
    );
    for leaf in 2..0xD {
        text.push_str(&format!(
            "CPUID {leaf:08X}  \t00000000-00000000-00000000-00000000\n"
        ));
    }
    text.push_str(
        "CPUID 0000000D  \t00000007-00000340-00000340-00000000\n\
         CPUID 0000000D  \t00000001-00000000-00000000-00000000\n\
         CPUID 0000000D  \t00000100-00000240-00000000-00000000\n\
         CPUID 80000000  \t80000000-00000000-00000000-00000000\n \n\
         CPUID 00000000  \t0000000D-756E6547-6C65746E-49656E69\n",
    );
    let text = text.as_str();
    let d = Aida64Dump::parse(text).expect("format E");
    assert_eq!(d.format(), DumpFormat::E);
    assert_eq!(d.vendor(), Intel);
    assert_eq!(d.signature().model, 0x3E);
    assert_eq!(subleaves(&d, 0xD), [0, 1, 2]);
    assert_eq!(d.entries().count(), 17);
    let err = parse_err(&text.replace("CPUID 00000001  \t", "CPUID 00000001: "));
    assert_eq!(
        (err.line(), err.kind()),
        (
            2,
            DumpErrorKind::MalformedCpuidLine(CpuidLineError::LeafSeparator)
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Dumps cut short

/// The first `n` lines of `text`, each with its `\n`.
fn head(text: &str, n: usize) -> &str {
    let end = text
        .match_indices('\n')
        .nth(n.wrapping_sub(1))
        .map_or(if n == 0 { 0 } else { text.len() }, |(i, _)| i + 1);
    &text[..end]
}

#[test]
fn head_45_of_haswell_is_refused_naming_the_missing_leaves_and_the_end_of_the_block() {
    let text = dump_text("GenuineIntel00306C3_Haswell_");
    let err = parse_err(head(text, 45));
    let DumpErrorKind::IncompleteBlock(missing) = err.kind() else {
        panic!("{err}");
    };
    // The block is cut after leaf 8: 9 to 0xD and the whole extended range are gone.
    assert_eq!(err.line(), 45);
    assert_eq!(missing.max_basic, 0xD);
    assert_eq!(missing.max_extended, None);
    assert_eq!(
        missing.listed(),
        [
            MissingItem::Leaves {
                first: 0x9,
                last: 0xD
            },
            MissingItem::Leaves {
                first: 0x8000_0000,
                last: 0x8000_0000
            }
        ]
    );
    assert_eq!(
        err.to_string(),
        "line 45: the first CPU block ends here, missing CPUID leaves 0x9-0xd, 0x80000000 (leaf \
         0 announces up to 0xd, and every x86 CPU has leaf 0x80000000): the dump is cut short"
    );
    // Cut inside the extended range: the leaves up to 0x80000008 are named.
    let at = line_starting(text, "CPUID 80000004:");
    let err = parse_err(head(text, at));
    assert_eq!(err.line(), at);
    assert_eq!(
        err.kind(),
        DumpErrorKind::IncompleteBlock(match err.kind() {
            DumpErrorKind::IncompleteBlock(m) => {
                assert_eq!(m.max_extended, Some(0x8000_0008));
                assert_eq!(
                    m.listed(),
                    [MissingItem::Leaves {
                        first: 0x8000_0005,
                        last: 0x8000_0008
                    }]
                );
                m
            }
            other => panic!("{other}"),
        })
    );
}

#[test]
fn a_cut_inside_announced_subleaves_is_refused() {
    // Alder Lake's leaf 0x18 announces subleaves up to 8; drop the last two.
    let text = dump_text("GenuineIntel0090672_AlderLake");
    let n = line_number(
        text,
        "CPUID 00000018: 00000000-00080009-00000080-00004043 [SL 08]",
        0,
    );
    let cut = replace_line(&replace_line(text, n, ""), n - 1, "");
    let err = parse_err(&cut);
    let DumpErrorKind::IncompleteBlock(missing) = err.kind() else {
        panic!("{err}");
    };
    assert_eq!(
        missing.listed(),
        [MissingItem::Subleaves {
            leaf: 0x18,
            first: 7,
            last: 8
        }]
    );
    assert!(err.to_string().contains("0x18 subleaves 7-8"), "{err}");
}

#[test]
fn amd_dumps_may_lack_the_reserved_leaves_4_and_0xb_but_nothing_else() {
    // Interlagos has neither leaf 4 nor 0xB and parses (see the table test); without leaf 6 it
    // is cut short.
    let text = dump_text("AuthenticAMD0600F12_K15_Interlagos");
    let n = line_starting(text, "CPUID 00000006:");
    let err = parse_err(&replace_line(text, n, ""));
    let DumpErrorKind::IncompleteBlock(missing) = err.kind() else {
        panic!("{err}");
    };
    assert_eq!(
        missing.listed(),
        [MissingItem::Leaves { first: 6, last: 6 }]
    );
    // An Intel dump without leaf 4 is refused.
    let text = dump_text(SNB);
    let first = line_starting(text, "CPUID 00000004:");
    let cut: String = text
        .lines()
        .enumerate()
        .filter(|(i, l)| !(*i + 1 >= first && *i < first + 8 && l.starts_with("CPUID 00000004:")))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let err = parse_err(&cut);
    assert!(
        matches!(err.kind(), DumpErrorKind::IncompleteBlock(m) if m.listed() == [MissingItem::Leaves { first: 4, last: 4 }]),
        "{err}"
    );
}

/// The 1-based number of the first line starting with `prefix`.
fn line_starting(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
        + 1
}

/// Line-boundary truncations of every dump are refused, or parse to exactly the full dump's
/// CPU #0 (format, first block line and every CPUID entry): every truncation from the empty
/// text to two block lengths past the end of the first CPU block (where a cut can change what
/// CPU #0 is), then every `stride`-th line to the end, so that each dump costs about as much as
/// 200 parses of its full text (the gate runs this unoptimised, twice); `LEVELLING_FULL_SWEEP=1`
/// checks every line.
#[test]
fn truncations_of_every_dump_are_refused_or_parse_to_cpu_0() {
    let full_sweep = std::env::var_os("LEVELLING_FULL_SWEEP").is_some();
    let started = std::time::Instant::now();
    let mut totals = (0usize, 0usize, 0usize);
    for (file, text) in texts() {
        let full = Aida64Dump::parse(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let entries: Vec<DumpEntry> = full.entries().collect();
        let block_end = entries.iter().map(|e| e.line).max().unwrap_or(0);
        let dense = block_end + 2 * (block_end + 1 - full.first_block_line()) + 4;
        // Byte offset after each line.
        let ends: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .chain((!text.ends_with('\n')).then_some(text.len()))
            .collect();
        let lines = ends.len() - 1;
        let stride = if full_sweep { 1 } else { (lines / 100).max(1) };
        for (n, &end) in ends.iter().enumerate() {
            if n > dense && n % stride != 0 && n + 3 < lines {
                continue;
            }
            totals.0 += 1;
            match Aida64Dump::parse(&text[..end]) {
                Err(_) => {
                    totals.1 += 1;
                    assert!(n < lines, "{file}: the whole dump is refused");
                }
                Ok(d) => {
                    assert_eq!(d.format(), full.format(), "{file} cut to {n} lines");
                    assert_eq!(
                        d.first_block_line(),
                        full.first_block_line(),
                        "{file} cut to {n} lines"
                    );
                    assert!(
                        d.entries().eq(entries.iter().copied()),
                        "{file} cut to {n} lines parses to another CPU #0"
                    );
                    assert!(n >= block_end, "{file} cut to {n} lines, inside the block");
                    totals.2 += 1;
                }
            }
        }
    }
    eprintln!(
        "truncation sweep: {} truncations of {} dumps, {} refused, {} parse to CPU #0, in {:?}",
        totals.0,
        texts().len(),
        totals.1,
        totals.2,
        started.elapsed()
    );
    assert_eq!(texts().len(), 22);
    assert_eq!(totals.0, totals.1 + totals.2);
    assert!(totals.1 > 0 && totals.2 > 0);
}

// ---------------------------------------------------------------------------------------------
// Properties

type Summary = (
    DumpFormat,
    Vec<DumpEntry>,
    Vec<(u32, MsrReading)>,
    Option<usize>,
);

fn summary(result: &Result<Aida64Dump<'_>, DumpError>) -> Result<Summary, DumpError> {
    match result {
        Ok(d) => Ok((
            d.format(),
            d.entries().collect(),
            d.msrs().collect(),
            d.msr_section_line(),
        )),
        Err(e) => Err(*e),
    }
}

/// Parses and exercises the whole API; checks invariants that hold for any input.
fn exercise(text: &str) -> Result<Summary, DumpError> {
    let result = Aida64Dump::parse(text);
    match &result {
        Ok(d) => {
            assert!(d.entries().count() <= MAX_ENTRIES);
            assert!(d.seen(0, 0));
            for e in d.entries() {
                assert!(d.seen(e.leaf, e.subleaf));
                assert!(e.line >= d.first_block_line());
                let _ = d.cpuid(e.leaf, e.subleaf);
            }
            let _ = (d.vendor(), d.signature(), d.format(), format!("{d:?}"));
            let mut last = BTreeMap::new();
            for (index, reading) in d.msrs() {
                assert_ne!(reading, MsrReading::Absent);
                last.insert(index, reading);
            }
            for (index, reading) in last {
                assert_eq!(d.msr(index), reading);
            }
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!((1..=lines).contains(&e.line()), "{e} (of {lines} lines)");
            assert!(e.to_string().starts_with(&format!("line {}: ", e.line())));
        }
    }
    summary(&result)
}

/// One edit of a dump's text.
#[derive(Clone, Debug)]
enum Mutation {
    Insert(String),
    Delete(usize),
    Replace(char),
    DuplicateLine,
    DeleteLine,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        "(\\PC|\n|\r| |-|:|\\[|\\]|[0-9A-Fa-f]){1,6}".prop_map(Mutation::Insert),
        (1usize..40).prop_map(Mutation::Delete),
        prop_oneof![
            Just('0'),
            Just('F'),
            Just('f'),
            Just('-'),
            Just(' '),
            Just('\n'),
            Just('['),
            Just('é'),
            any::<char>()
        ]
        .prop_map(Mutation::Replace),
        Just(Mutation::DuplicateLine),
        Just(Mutation::DeleteLine),
    ]
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, at: usize, m: &Mutation) {
    let at = floor_boundary(text, at);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
    match m {
        Mutation::Insert(s) => text.insert_str(at, s),
        Mutation::Delete(n) => {
            let end = floor_boundary(text, at + n);
            text.replace_range(at..end, "");
        }
        Mutation::Replace(c) => {
            if let Some(old) = text[at..].chars().next() {
                text.replace_range(at..at + old.len_utf8(), c.encode_utf8(&mut [0; 4]));
            }
        }
        Mutation::DuplicateLine => {
            let line = text[line_start..line_end].to_owned();
            text.insert_str(line_end, &line);
        }
        Mutation::DeleteLine => text.replace_range(line_start..line_end, ""),
    }
}

/// Dump-like text: a block opener of some format, a leaf 0 line, then mostly well-formed lines
/// of the leaves and sections that matter, with some malformed ones.
fn line_soup() -> impl Strategy<Value = Vec<String>> {
    let opener = prop_oneof![
        Just(String::new()),
        Just("------[ Logical CPU #0 ]------".to_owned()),
        Just("------[ CPUID Registers / Logical CPU #0 ]------".to_owned()),
        Just("CPU#000 AffMask: 0x0000000000000001 ".to_owned()),
    ];
    let leaf0 = prop_oneof![
        4 => Just("CPUID 00000000: 0000000D-756E6547-6C65746E-49656E69".to_owned()),
        1 => Just("CPUID 00000000  \t0000000D-756E6547-6C65746E-49656E69".to_owned()),
    ];
    let line = prop_oneof![
        6 => "CPUID (0000000[1-7BD]|8000001D): [0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}( \\[SL 0[0-3]\\])?( \\[[ -~]{0,8}\\])?",
        2 => "CPUID [0-9A-F]{8}: [0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}( \\[SL [0-9A-F]{2}\\])?",
        1 => "CPUID [0-9A-Fa-f]{7,9}[: \t]{1,3}[0-9A-Fa-f-]{30,40}[ -~]{0,10}",
        1 => "CPUID 0000000[0-4D] +\t[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}",
        3 => "MSR 000000(CE|E7|8B): ([0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}|< FAILED >)( \\[S200\\])?",
        1 => "MSR [0-9A-Fa-f]{7,9}: [0-9A-F< >FAILED-]{0,22}",
        1 => "------\\[ (Logical CPU #[0-2]|CPUID Registers / Logical CPU #[0-2]|MSR Registers|MSR Registers / Logical CPU #[0-2]|CPU Info) \\]------",
        1 => "CPU#00[0-2] AffMask: 0x[0-9A-F]{16} ",
        2 => "[ \r]{0,2}",
        1 => "\\PC{0,20}",
    ];
    (opener, leaf0, prop::collection::vec(line, 0..60)).prop_map(|(opener, leaf0, mut lines)| {
        lines.insert(0, leaf0);
        lines.insert(0, opener);
        lines
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = exercise(&text);
    }

    #[test]
    fn parse_never_panics_on_dump_like_lines(lines in line_soup()) {
        let lf = exercise(&lines.join("\n"));
        let crlf = exercise(&lines.join("\r\n"));
        prop_assert_eq!(lf, crlf);
    }

    #[test]
    fn parse_never_panics_on_mutated_dumps(
        file in 0..EXPECTED.len(),
        edits in prop::collection::vec((any::<bool>(), any::<Index>(), mutation()), 1..6),
    ) {
        let mut text = texts()[EXPECTED[file].file].clone();
        for (near_start, at, m) in &edits {
            // Half of the edits land in the first 6 KB, where the first CPU block is.
            let len = if *near_start { text.len().min(6000) } else { text.len() };
            let at = if len == 0 { 0 } else { at.index(len) };
            apply(&mut text, at, m);
        }
        let lf = exercise(&text);
        let crlf = exercise(&text.replace('\n', "\r\n"));
        prop_assert_eq!(lf, crlf);
    }
}
