//! The generated feature tables against Xen's published facts, the flattened closure against a
//! naive fixpoint, and the table checker against every kind of bad table.

#[path = "../build/feature_table.rs"]
#[allow(dead_code)]
mod feature_table;

use xen_levelling::feature::{self, DEEP_DEPS, DEPENDENCIES, FEATURES, NR_FEATURES, NR_WORDS};
use xen_levelling::{Feature, Featureset};

fn names(fs: &Featureset) -> Vec<String> {
    fs.iter().map(|f| f.to_string()).collect()
}

fn set(list: &str) -> Featureset {
    Featureset::parse_names(list).unwrap()
}

/// Xen's direct dependency edges (`data/xen-reference/xen-feature-deps.tsv`), by Xen's
/// upper-case names: (prerequisite, dependents). The ARCH_CAPS row stands for every named
/// feature of words 16 and 17.
fn xen_edges() -> Vec<(Feature, Vec<Feature>)> {
    let by_name = |name: &str| {
        FEATURES
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the feature table"))
            .feature
    };
    include_str!("../data/xen-reference/xen-feature-deps.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("PREREQUISITE"))
        .map(|line| {
            let (key, dependents) = line.split_once('\t').expect("two columns");
            let dependents = if dependents.starts_with('<') {
                FEATURES
                    .iter()
                    .filter(|i| matches!(i.feature.word(), 16 | 17))
                    .map(|i| i.feature)
                    .collect()
            } else {
                dependents.split_whitespace().map(by_name).collect()
            };
            (by_name(key), dependents)
        })
        .collect()
}

#[test]
fn shape_matches_xen_head() {
    // reference/xen-levelling.md 4.1 and 5: 19 words; every feature of Xen's list and no
    // other (`features_match_the_reference_list`); a deep-dependency entry for exactly the
    // features that are a prerequisite in Xen's edge list.
    assert_eq!(NR_WORDS, 19);
    let mut keys: Vec<Feature> = xen_edges().into_iter().map(|(key, _)| key).collect();
    keys.sort();
    let mut ours: Vec<Feature> = DEEP_DEPS.iter().map(|(key, _)| *key).collect();
    ours.sort();
    assert_eq!(ours, keys);
    let word_names: Vec<&str> = feature::WORDS.iter().map(|w| w.name).collect();
    assert_eq!(
        word_names,
        [
            "1d", "1c", "e1d", "e1c", "Da1", "7b0", "7c0", "e7d", "e8b", "7d0", "7a1", "e21a",
            "7b1", "7d2", "7c1", "7d1", "m10Al", "m10Ah", "e21c"
        ]
    );
}

#[test]
fn features_match_the_reference_list() {
    // Every line of reference/xen-features.tsv: same name, word and bit, same annotations.
    let tsv = include_str!("../data/xen-reference/xen-features.tsv");
    let mut count = 0;
    for line in tsv
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("NAME"))
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, word, bit) = (cols[0], cols[1].parse().unwrap(), cols[2].parse().unwrap());
        let info = FEATURES
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            (info.feature.word(), info.feature.bit()),
            (word, bit),
            "{name}"
        );
        let mut expected: Vec<char> = cols.get(3).copied().unwrap_or("").chars().collect();
        let mut found: Vec<char> = info
            .annotations
            .to_string()
            .chars()
            .filter(|&c| c != '-')
            .collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected, "{name} annotations");
        count += 1;
    }
    assert_eq!(count, NR_FEATURES);
}

#[test]
fn annotation_sets_match_xen_head() {
    // reference/xen-levelling.md 4.2, computed by running gen-cpuid.py on Xen's header.
    let with = |letter: char| -> Featureset {
        FEATURES
            .iter()
            .filter(|i| i.annotations.to_string().contains(letter))
            .map(|i| i.feature)
            .collect()
    };
    assert_eq!(
        with('a'),
        set("avx512-bmm avx512-vp2intersect cmpccxadd hle itsc movdir64b movdiri movrs tsxldtrk")
    );
    assert_eq!(with('s'), set("lass mpx"));
    assert_eq!(with('h'), set("svm vmx"));
    assert_eq!(
        with('!'),
        set(
            "apic arch-caps clwb cmp-legacy fb-clear fdp-excp-only hle htt hypervisor its-no \
             md-clear no-fpu-sel ospke osxsave rdrand rfds-clear rrsba rsba rtm rtm-always-abort \
             srso-us-no verw-clear virt-ssbd x2apic"
        )
    );
    assert_eq!(
        with('|'),
        set("fb-clear fs-gs-ns md-clear no-lmsl rfds-clear verw-clear")
    );
    assert_eq!(feature::SPECIAL, with('!'));
    assert_eq!(feature::SIMPLE_OR, with('|'));
}

#[test]
fn derived_masks_follow_the_annotations() {
    use feature::*;
    assert!(PV_DEFAULT.is_subset(&PV_MAX));
    assert!(PV_MAX.is_subset(&HVM_SHADOW_MAX));
    assert!(HVM_SHADOW_DEFAULT.is_subset(&HVM_HAP_DEFAULT));
    assert!(HVM_SHADOW_MAX.is_subset(&HVM_HAP_MAX));
    assert!(HVM_HAP_MAX.is_subset(&KNOWN));
    // Examples from reference 4.3.
    assert!(PV_DEFAULT.contains(Feature::AVX2) && PV_DEFAULT.contains(Feature::APIC));
    assert!(!PV_DEFAULT.contains(Feature::MTRR) && HVM_SHADOW_DEFAULT.contains(Feature::MTRR));
    assert!(!HVM_SHADOW_DEFAULT.contains(Feature::PCID) && HVM_HAP_DEFAULT.contains(Feature::PCID));
    assert!(!PV_DEFAULT.contains(Feature::HLE) && PV_MAX.contains(Feature::HLE));
    assert!(!HVM_HAP_DEFAULT.contains(Feature::VMX) && HVM_HAP_MAX.contains(Feature::VMX));
    assert!(!HVM_SHADOW_MAX.contains(Feature::VMX));
    assert!(!HVM_HAP_MAX.contains(Feature::DS) && KNOWN.contains(Feature::DS));
    assert!(HVM_SHADOW_MAX.contains(Feature::MPX) && !PV_MAX.contains(Feature::MPX));
    // gen-cpuid.py's CPUID_COMMON_1D_FEATURES is the known 1d bits mirrored in e1d on AMD.
    assert_eq!(
        KNOWN.word(0) & KNOWN.word(2) & 0x0183_f3ff,
        0x0183_f3ff & KNOWN.word(2)
    );
}

#[test]
fn flattened_examples_match_xen() {
    // Every prerequisite's flattened dependents are Xen's edges followed transitively (XSAVE
    // reaches 47 at c447b7308b); PAE's are LM's plus NX and SMAP.
    let edges = xen_edges();
    for (key, _) in &edges {
        let mut reached = Featureset::EMPTY;
        let mut todo = vec![*key];
        while let Some(next) = todo.pop() {
            for (prerequisite, dependents) in &edges {
                if *prerequisite == next {
                    for d in dependents {
                        if !reached.contains(*d) {
                            reached.insert(*d);
                            todo.push(*d);
                        }
                    }
                }
            }
        }
        assert_eq!(Featureset::dependents_of(*key), reached, "{key}");
    }
    let xsave = Featureset::dependents_of(Feature::XSAVE);
    for f in [
        Feature::AVX512_FP16,
        Feature::AMX_INT8,
        Feature::LWP,
        Feature::SM4,
        Feature::XSAVES,
    ] {
        assert!(xsave.contains(f), "{f}");
    }
    let mut lm = Featureset::dependents_of(Feature::LM);
    lm.insert(Feature::LM);
    assert_eq!(Featureset::dependents_of(Feature::PAE), lm | set("nx smap"));
    let fxsr = Featureset::dependents_of(Feature::FXSR);
    for f in [
        "sse",
        "sse4-2",
        "aesni",
        "gfni",
        "sha",
        "vpclmulqdq",
        "vaes",
        "misalignsse",
        "ffxsr",
        "lm",
        "pcid",
    ] {
        assert!(fxsr.contains(Feature::from_name(f).unwrap()), "{f}");
    }
    assert!(!Featureset::dependents_of(Feature::SSE4_2).contains(Feature::POPCNT));
    // ARCH_CAPS (CPUID.07H.0:EDX[29]) takes the named features of MSR 0x10A's two words, as
    // Xen's gen-cpuid.py flattens them at c447b7308b: MSR.10AH bits 22, 31, 33-61 and 63 are
    // unnamed there, and stay.
    let arch = Featureset::dependents_of(Feature::ARCH_CAPS);
    assert_eq!((arch.word(16), arch.word(17)), (0x7fbf_ffff, 0x4000_0001));
}

/// The closure the naive way (Linux's cpuid-deps.c style): clear dependents of absent
/// prerequisites until nothing changes, using only the direct edges.
fn naive_closure(mut fs: Featureset) -> Featureset {
    loop {
        let before = fs;
        for dep in &DEPENDENCIES {
            if !fs.contains(dep.prerequisite) {
                fs -= dep.dependents;
            }
        }
        if fs == before {
            return fs;
        }
    }
}

#[test]
fn flattened_closure_equals_naive_fixpoint() {
    // Every single feature removed from the full set, then a spread of pseudo-random sets.
    for info in &FEATURES {
        let mut fs = Featureset::FULL;
        fs.remove(info.feature);
        assert_eq!(fs.closed(), naive_closure(fs), "without {}", info.feature);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut words = [0u32; NR_WORDS];
        for w in &mut words {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *w = (seed as u32) | (seed >> 32) as u32; // dense sets keep the closure interesting
        }
        let fs = Featureset::from_words(words);
        assert_eq!(fs.closed(), naive_closure(fs));
    }
}

#[test]
fn deep_deps_are_the_transitive_direct_edges() {
    for (key, deep) in &DEEP_DEPS {
        let mut only_key_missing = Featureset::FULL;
        only_key_missing.remove(*key);
        assert_eq!(
            Featureset::FULL - naive_closure(only_key_missing),
            *deep | Featureset::of(&[*key])
        );
    }
}

#[test]
fn every_feature_and_edge_is_described() {
    for info in &FEATURES {
        assert!(
            info.description.len() >= 8,
            "{} has no real description",
            info.name
        );
        assert!(!info.description.contains("TODO"), "{}", info.name);
        assert_eq!(Feature::from_name(info.xen_name), Some(info.feature));
        assert_eq!(Feature::from_name(info.name), Some(info.feature));
    }
    for dep in &DEPENDENCIES {
        assert!(
            dep.reason.len() >= 8 && !dep.reason.contains("TODO"),
            "{:?}",
            dep.prerequisite
        );
    }
    assert_eq!(Feature::AVX2.locator().to_string(), "CPUID.07H.0:EBX[5]");
    assert_eq!(Feature::ITS_NO.locator().to_string(), "MSR.10AH[62]");
    assert_eq!(Feature::from_name("lahf_LM"), Some(Feature::LAHF_LM));
    assert_eq!(Feature::from_name("no-such-feature"), None);
    assert_eq!(names(&Featureset::of(&[Feature::_3DNOW])), ["3dnow"]);
}

// The checker that build.rs runs: every bad table is refused, naming its line.

const GOOD: &str =
    "word 0 1d CPUID.01H:EDX\nFPU 0 A x87 unit\nMMX 23 A mmx unit\ndep FPU MMX aliases x87\n";

fn table_error(text: &str) -> (usize, String) {
    let e = feature_table::parse(text).expect_err("the table should be refused");
    (e.line, e.message)
}

#[test]
fn checker_accepts_a_good_table() {
    let t = feature_table::parse(GOOD).unwrap();
    assert_eq!((t.words.len(), t.features.len(), t.deps.len()), (1, 2, 1));
    assert!(
        t.generate()
            .contains("pub const MMX: Feature = Feature(23);")
    );
}

#[test]
fn checker_refuses_bad_tables_naming_the_line() {
    let cases: [(&str, usize, &str); 11] = [
        (
            "word 0 1d X\nFPU 0 A a\nFPU 1 A b\n",
            3,
            "duplicate feature name FPU",
        ),
        ("word 0 1d X\nFPU 0 A a\nFOO 0 A b\n", 3, "FOO aliases FPU"),
        ("word 0 1d X\nFPU 0 Q a\n", 2, "unknown annotation `Q`"),
        (
            "word 0 1d X\nFPU 32 A a\n",
            2,
            "bit 32 is past the end of word 0",
        ),
        ("word 0 1d X\nword 2 1c Y\n", 2, "word 2 out of order"),
        (
            "word 0 1d X\nA_B 0 A a\nB_C 1 A b\ndep A_B B_C x\ndep B_C A_B y\n",
            5,
            "cycle",
        ),
        (
            "word 0 1d X\nFPU 0 A a\ndep FPU NOPE x\n",
            3,
            "unknown dependent NOPE",
        ),
        (
            "word 0 1d X\nFPU 0 A a\ndep FPU word:3 x\n",
            3,
            "word:3 is past the last word",
        ),
        ("FPU 0 A a\n", 1, "before the first `word` line"),
        ("word 0 1d X\nFPU 0 AS a\n", 2, "more than one guest scope"),
        ("word 0 1d X\nFPU 0 A\n", 2, "has no description"),
    ];
    for (text, line, message) in cases {
        let (got_line, got) = table_error(text);
        assert_eq!(got_line, line, "{text:?}: {got}");
        assert!(got.contains(message), "{text:?}: {got}");
    }
}
