//! Property tests over the public API: featureset algebra and dependency closure, the three
//! text forms, policy serialisation, compatibility, and guest CPUID.
//!
//! Oracles are written independently of the code under test (word arithmetic, a naive
//! fixpoint closure, a hand-written validity rule for serialised leaves), so every property
//! can fail.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::cpuid::{CpuidRegs, NO_SUBLEAF, Vendor};
use xen_levelling::feature::{COMMON_1D, DEPENDENCIES, FEATURES, KNOWN, NR_FEATURES, NR_WORDS};
use xen_levelling::featureset::FeaturesetError;
use xen_levelling::featureset::text::ShortText;
use xen_levelling::policy::compat::{IncompatibilityReason, check_compatible};
use xen_levelling::policy::guest::{CpuidEntry, GuestContext, GuestDomain, VcpuState, guest_cpuid};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, PolicyArrayError};
use xen_levelling::policy::system::{DomainKind, HostOptions, SystemPolicies, parse_cpuid_option};
use xen_levelling::policy::{
    EXTD_BASE, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, NR_CACHE, NR_EXTD, NR_FEAT, NR_TOPO,
    NR_XSTATE, Slot, WORD_HOMES, WordHome, XEN_LEAVES, XEN_LEAVES_RELOCATED,
};
use xen_levelling::{CpuPolicy, Feature, Featureset};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Only this file is ours: keep failures out of `proptest-regressions/`.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles, written against the words rather than the library's own set operations.

fn words_subset(a: &Featureset, b: &Featureset) -> bool {
    a.words().iter().zip(b.words()).all(|(x, y)| x & !y == 0)
}

fn words_disjoint(a: &Featureset, b: &Featureset) -> bool {
    a.words().iter().zip(b.words()).all(|(x, y)| x & y == 0)
}

fn has_bit(fs: &Featureset, f: Feature) -> bool {
    fs.words()[f.number() / 32] >> (f.number() % 32) & 1 != 0
}

/// Closed in the direct-edge sense: no edge has an absent prerequisite and a present dependent.
fn is_closed(fs: &Featureset) -> bool {
    DEPENDENCIES
        .iter()
        .all(|d| has_bit(fs, d.prerequisite) || words_disjoint(fs, &d.dependents))
}

/// Dependency closure by naive fixpoint over the direct edges.
fn naive_closure(fs: &Featureset) -> Featureset {
    let mut w = *fs.words();
    loop {
        let mut changed = false;
        for d in DEPENDENCIES {
            let p = d.prerequisite.number();
            if w[p / 32] >> (p % 32) & 1 == 0 {
                for (x, y) in w.iter_mut().zip(d.dependents.words()) {
                    if *x & y != 0 {
                        *x &= !y;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return Featureset::from_words(w);
        }
    }
}

fn words_string(fs: &Featureset, sep: &str, k: usize, fmt: fn(u32) -> String) -> String {
    fs.words()[..k]
        .iter()
        .map(|w| fmt(*w))
        .collect::<Vec<_>>()
        .join(sep)
}

// ---------------------------------------------------------------------------------------------
// Featureset strategies.

fn any_feature() -> impl Strategy<Value = Feature> {
    (0..NR_WORDS, 0..32u32).prop_map(|(w, b)| Feature::from_index(w, b).unwrap())
}

fn named_features() -> Vec<Feature> {
    FEATURES.iter().map(|i| i.feature).collect()
}

fn prerequisite() -> impl Strategy<Value = Feature> {
    prop::sample::select(
        DEPENDENCIES
            .iter()
            .map(|d| d.prerequisite)
            .collect::<Vec<_>>(),
    )
}

fn featureset() -> BoxedStrategy<Featureset> {
    prop_oneof![
        // Random words: named and unnamed bits alike.
        prop::collection::vec(any::<u32>(), NR_WORDS)
            .prop_map(|w| Featureset::from_word_slice(&w).unwrap()),
        // A random subset of the named features.
        prop::sample::subsequence(named_features(), 0..=NR_FEATURES)
            .prop_map(|fs| Featureset::of(&fs)),
        // Dense: each named feature with probability 0.9.
        prop::collection::vec(prop::bool::weighted(0.9), NR_FEATURES).prop_map(|keep| {
            FEATURES
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(i, _)| i.feature)
                .collect()
        }),
        // Everything (named or not) less a few prerequisites and a few random bits.
        (
            prop_oneof![Just(Featureset::FULL), Just(KNOWN)],
            prop::collection::vec(prerequisite(), 0..4),
            prop::collection::vec(any_feature(), 0..4),
        )
            .prop_map(|(mut fs, pre, bits)| {
                for f in pre.into_iter().chain(bits) {
                    fs.remove(f);
                }
                fs
            }),
        // Sparse.
        prop::collection::vec(any_feature(), 0..6).prop_map(|fs| Featureset::of(&fs)),
        Just(Featureset::EMPTY),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// 1. Set algebra.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn intersection_laws(a in featureset(), b in featureset(), c in featureset(), f in any_feature()) {
        let ab = a.intersection(&b);
        prop_assert_eq!(ab, b.intersection(&a));
        prop_assert_eq!(ab.intersection(&c), a.intersection(&b.intersection(&c)));
        prop_assert_eq!(a.intersection(&a), a);
        prop_assert_eq!(a.intersection(&Featureset::FULL), a);
        prop_assert_eq!(Featureset::FULL.intersection(&a), a);
        prop_assert_eq!(a & b, ab);
        prop_assert!(words_subset(&ab, &a) && words_subset(&ab, &b));
        prop_assert!(ab.is_subset(&a) && ab.is_subset(&b));
        prop_assert_eq!(ab.contains(f), a.contains(f) && b.contains(f));
        prop_assert_eq!(ab.contains(f), has_bit(&a, f) && has_bit(&b, f));
    }

    #[test]
    fn union_and_difference_laws(a in featureset(), b in featureset(), f in any_feature()) {
        let u = a.union(&b);
        prop_assert_eq!(u, b.union(&a));
        prop_assert_eq!(a.union(&a), a);
        prop_assert_eq!(a.union(&Featureset::EMPTY), a);
        prop_assert!(words_subset(&a, &u) && words_subset(&b, &u));
        prop_assert_eq!(u.contains(f), has_bit(&a, f) || has_bit(&b, f));
        prop_assert_eq!(a | b, u);

        let d = a.difference(&b);
        prop_assert!(words_disjoint(&d, &b));
        prop_assert!(words_subset(&d, &a));
        prop_assert_eq!(d.union(&a.intersection(&b)), a);
        prop_assert_eq!(d.contains(f), has_bit(&a, f) && !has_bit(&b, f));
        prop_assert_eq!(a - b, d);
        prop_assert_eq!(a - a, Featureset::EMPTY);
        prop_assert_eq!(!(!a), a);
        prop_assert_eq!(a & !b, d);

        prop_assert_eq!(a.is_subset(&b), words_subset(&a, &b));
        prop_assert_eq!(a.is_empty(), a.words().iter().all(|w| *w == 0));
        prop_assert_eq!(a.len(), a.iter().count());
        prop_assert_eq!(a.iter().collect::<Featureset>(), a);
        prop_assert!(a.iter().all(|f| has_bit(&a, f)));
        // Unnamed bits, less AMD's unnamed copies of the common leaf 1 EDX bits in word 2.
        let mut unknown = *(a - KNOWN).words();
        unknown[2] &= !COMMON_1D;
        prop_assert_eq!(a.unknown(), Featureset::from_words(unknown));
    }

    #[test]
    fn insert_remove_and_membership(a in featureset(), f in any_feature()) {
        let mut with = a;
        with.insert(f);
        prop_assert!(has_bit(&with, f) && with.contains(f));
        prop_assert_eq!(with.len(), a.len() + usize::from(!has_bit(&a, f)));
        let mut without = a;
        without.remove(f);
        prop_assert!(!has_bit(&without, f) && !without.contains(f));
        prop_assert_eq!(with - Featureset::of(&[f]), without);
        prop_assert!(with.first().is_some());
        if let Some(first) = a.first() {
            prop_assert!(has_bit(&a, first));
            prop_assert!(a.iter().all(|g| g >= first));
        } else {
            prop_assert!(a.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Dependency closure.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn closure_idempotent_shrinking_closed(a in featureset()) {
        let c = a.closed();
        prop_assert_eq!(c.closed(), c);
        prop_assert!(words_subset(&c, &a), "closure added {:?}", c - a);
        prop_assert!(is_closed(&c), "{:?} is not closed", c);
        let mut in_place = a;
        in_place.close_dependencies();
        prop_assert_eq!(in_place, c);
    }

    #[test]
    fn closure_matches_naive_fixpoint(a in featureset()) {
        let c = a.closed();
        prop_assert_eq!(c, naive_closure(&a));
        // Every removed feature has a direct prerequisite absent from the result.
        for f in (a - c).iter() {
            let why = c.removed_by(f);
            prop_assert!(why.is_some(), "{:?} removed without a reason", f);
            let why = why.unwrap();
            prop_assert!(!has_bit(&c, why));
            prop_assert!(DEPENDENCIES
                .iter()
                .any(|d| d.prerequisite == why && has_bit(&d.dependents, f)));
        }
    }

    #[test]
    fn closure_monotone(b in featureset(), mask in featureset(), extra in featureset()) {
        let a = b & mask;
        prop_assert!(words_subset(&a.closed(), &b.closed()));
        let sup = b | extra;
        prop_assert!(words_subset(&b.closed(), &sup.closed()));
    }

    #[test]
    fn closed_sets_closed_under_intersection(a in featureset(), b in featureset()) {
        let i = a.closed() & b.closed();
        prop_assert!(is_closed(&i));
        prop_assert_eq!(i.closed(), i);
    }

    #[test]
    fn sanitised_is_known_and_closed(a in featureset()) {
        let s = a.sanitised();
        prop_assert!(words_subset(&s, &KNOWN));
        prop_assert!(words_subset(&s, &a));
        prop_assert!(is_closed(&s));
    }

    #[test]
    fn dependents_of_prerequisite_cover_direct_edges(f in prerequisite()) {
        let deep = Featureset::dependents_of(f);
        for d in DEPENDENCIES.iter().filter(|d| d.prerequisite == f) {
            prop_assert!(words_subset(&d.dependents, &deep));
        }
        prop_assert!(!has_bit(&deep, f), "{:?} depends on itself", f);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Text forms.

fn hex_padded(w: u32) -> String {
    format!("{w:08x}")
}

fn hex_short(w: u32) -> String {
    format!("{w:x}")
}

fn hex_upper(w: u32) -> String {
    format!("{w:X}")
}

fn truncated(fs: &Featureset, k: usize) -> Featureset {
    let mut w = *fs.words();
    w[k..].iter_mut().for_each(|x| *x = 0);
    Featureset::from_words(w)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn text_forms_round_trip(fs in featureset()) {
        let xen = fs.xen_words().to_string();
        prop_assert_eq!(Featureset::parse_xen_words(&xen), Ok(fs));
        prop_assert_eq!(xen.split(':').count(), NR_WORDS);
        let xapi = fs.xapi().to_string();
        prop_assert_eq!(Featureset::parse_xapi(&xapi), Ok(fs));
        prop_assert_eq!(Featureset::parse_xen_words(&xapi), Ok(fs)); // xen-cpuid takes `-` too
        let names = fs.names().to_string();
        prop_assert_eq!(Featureset::parse_names(&names), Ok(fs), "{}", names);
        prop_assert_eq!(
            names.split(',').filter(|s| !s.is_empty()).count(),
            fs.words().iter().map(|w| w.count_ones() as usize).sum::<usize>()
        );
        // Blanks separate as well as commas do.
        let spaced = names.replace(',', " \t, ");
        prop_assert_eq!(Featureset::parse_names(&spaced), Ok(fs));
    }

    #[test]
    fn hex_words_accept_short_and_upper_case_digits(fs in featureset(), upper in any::<bool>()) {
        let fmt: fn(u32) -> String = if upper { hex_upper } else { hex_short };
        prop_assert_eq!(Featureset::parse_xen_words(&words_string(&fs, ":", NR_WORDS, fmt)), Ok(fs));
        prop_assert_eq!(Featureset::parse_xapi(&words_string(&fs, "-", NR_WORDS, fmt)), Ok(fs));
    }

    #[test]
    fn shorter_input_is_zero_extended(fs in featureset(), k in 0..=NR_WORDS) {
        let expected = truncated(&fs, k);
        prop_assert_eq!(
            Featureset::parse_xen_words(&words_string(&fs, ":", k, hex_padded)),
            Ok(expected)
        );
        prop_assert_eq!(
            Featureset::parse_xapi(&words_string(&fs, "-", k, hex_padded)),
            Ok(expected)
        );
        prop_assert_eq!(Featureset::from_word_slice(&fs.words()[..k]), Ok(expected));
    }

    #[test]
    fn longer_input_rejects_non_zero_extra_word(
        fs in featureset(),
        zeros in prop::collection::vec(1..=8usize, 0..4),
        value in 1..=u32::MAX,
        tail in prop::collection::vec(any::<u32>(), 0..3),
    ) {
        let mut xen = fs.xen_words().to_string();
        let mut xapi = fs.xapi().to_string();
        let mut slice = fs.words().to_vec();
        // Extra zero words, of any digit count, are accepted.
        for n in &zeros {
            let zero = "0".repeat(*n);
            xen.push(':');
            xen.push_str(&zero);
            xapi.push('-');
            xapi.push_str(&zero);
            slice.push(0);
        }
        prop_assert_eq!(Featureset::parse_xen_words(&xen), Ok(fs));
        prop_assert_eq!(Featureset::parse_xapi(&xapi), Ok(fs));
        prop_assert_eq!(Featureset::from_word_slice(&slice), Ok(fs));
        // The first non-zero one is an error naming it.
        let word = NR_WORDS + zeros.len();
        xen.push_str(&format!(":{value:x}"));
        xapi.push_str(&format!("-{value:08x}"));
        slice.push(value);
        for t in &tail {
            xen.push_str(&format!(":{t:08x}"));
            xapi.push_str(&format!("-{t:x}"));
            slice.push(*t);
        }
        let expected = Err(FeaturesetError::UnknownWord { word, value });
        prop_assert_eq!(Featureset::parse_xen_words(&xen), expected);
        prop_assert_eq!(Featureset::parse_xapi(&xapi), expected);
        prop_assert_eq!(Featureset::from_word_slice(&slice), expected);
    }

    #[test]
    fn cpuid_option_round_trip(features in prop::sample::subsequence(named_features(), 0..12)) {
        let text = features
            .iter()
            .map(|f| format!(" no-{} ", f.xen_name().unwrap()))
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(parse_cpuid_option(&text), Ok(Featureset::of(&features)));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn malformed_hex_words_are_located(
        fs in featureset(),
        word in 0..NR_WORDS,
        digit in 0..8usize,
        extra in 1..4usize,
        kind in 0..3u8,
    ) {
        // Word `word` starts at character 9 * word (8 digits and a separator each).
        let mut words: Vec<String> = fs.words().iter().map(|w| format!("{w:08x}")).collect();
        let expected = match kind {
            0 => {
                words[word].insert_str(0, &"0".repeat(extra));
                FeaturesetError::WordTooLong { column: 9 * word + 9, word }
            }
            1 => {
                words[word].replace_range(digit..digit + 1, "x");
                FeaturesetError::BadCharacter { column: 9 * word + digit + 1, word, found: 'x' }
            }
            _ => {
                words[word].clear();
                FeaturesetError::EmptyWord { column: 9 * word + 1, word }
            }
        };
        prop_assert_eq!(Featureset::parse_xen_words(&words.join(":")), Err(expected));
        prop_assert_eq!(Featureset::parse_xapi(&words.join("-")), Err(expected));
        if word > 0 {
            // `:` is not a separator in XAPI's form: word 0 is intact, its end is the error.
            let column = 9;
            let found = ':';
            prop_assert_eq!(
                Featureset::parse_xapi(&words.join(":")),
                Err(FeaturesetError::BadCharacter { column, word: 0, found })
            );
        }
    }

    #[test]
    fn bad_names_are_located(
        fs in featureset(),
        at in any::<prop::sample::Index>(),
        n in 0..1000u32,
        kind in 0..3u8,
    ) {
        let mut items: Vec<String> = fs.names().to_string().split(',').map(String::from).collect();
        items.retain(|i| !i.is_empty());
        let token = match kind {
            0 => format!("zz-{n}"),
            1 => format!("{}:{}", NR_WORDS as u32 + n % 900, n % 32),
            _ => format!("{}:{}", n as usize % NR_WORDS, 32 + n % 900),
        };
        let k = at.index(items.len() + 1);
        let column = items[..k].iter().map(|i| i.len() + 1).sum::<usize>() + 1;
        items.insert(k, token.clone());
        let name = ShortText::new(&token);
        let expected = if kind == 0 {
            FeaturesetError::UnknownName { column, name }
        } else {
            FeaturesetError::BadBit { column, item: name }
        };
        prop_assert_eq!(Featureset::parse_names(&items.join(",")), Err(expected));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Parsing arbitrary text never panics; errors are explained.

fn check_featureset_error(text: &str, e: &FeaturesetError) -> Result<(), TestCaseError> {
    prop_assert!(!e.to_string().is_empty());
    let max_column = text.chars().count() + 1;
    match *e {
        FeaturesetError::BadCharacter { column, found, .. } => {
            prop_assert!((1..=max_column).contains(&column), "{:?} in {:?}", e, text);
            prop_assert_eq!(text.chars().nth(column - 1), Some(found));
        }
        FeaturesetError::WordTooLong { column, .. }
        | FeaturesetError::EmptyWord { column, .. }
        | FeaturesetError::UnknownName { column, .. }
        | FeaturesetError::BadBit { column, .. } => {
            prop_assert!((1..=max_column).contains(&column), "{:?} in {:?}", e, text);
        }
        FeaturesetError::UnknownWord { word, value } => {
            prop_assert!(word >= NR_WORDS && value != 0);
        }
    }
    Ok(())
}

fn check_all_parsers(text: &str) -> Result<(), TestCaseError> {
    for parsed in [
        Featureset::parse_xen_words(text),
        Featureset::parse_xapi(text),
        Featureset::parse_names(text),
    ] {
        match parsed {
            // Whatever parses, prints back to something that parses the same.
            Ok(fs) => prop_assert_eq!(Featureset::parse_names(&fs.names().to_string()), Ok(fs)),
            Err(e) => check_featureset_error(text, &e)?,
        }
    }
    match parse_cpuid_option(text) {
        Ok(fs) => prop_assert!(words_subset(&fs, &KNOWN)),
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            prop_assert!((1..=text.chars().count() + 1).contains(&e.column));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsers_never_panic_on_any_string(text in any::<String>()) {
        check_all_parsers(&text)?;
    }

    #[test]
    fn parsers_never_panic_on_hex_like(text in "[0-9a-fA-F:,\\- ]{0,200}") {
        check_all_parsers(&text)?;
    }

    #[test]
    fn parsers_never_panic_on_name_like(text in "[a-z0-9_\\-:, ]{0,100}") {
        check_all_parsers(&text)?;
    }

    #[test]
    fn parsers_never_panic_on_mangled_names(
        fs in featureset(),
        cut in any::<prop::sample::Index>(),
        junk in "[a-z0-9_\\-:,. \u{e9}\u{3000}]{0,4}",
    ) {
        // Valid output with junk spliced in at a character boundary.
        let names = fs.names().to_string();
        let chars: Vec<char> = names.chars().collect();
        let at = cut.index(chars.len() + 1);
        let text: String = chars[..at].iter().chain(junk.chars().collect::<Vec<_>>().iter())
            .chain(chars[at..].iter()).collect();
        check_all_parsers(&text)?;
        let no = format!("no-{}", text.replace(',', ",no-"));
        check_all_parsers(&no)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Policy strategies.

// The element strategies below map plain integers rather than using `prop_oneof!`: a union
// per element makes a 120-entry array cost milliseconds in a debug build.

/// The serialised (leaf, subleaf) of every slot a policy holds, plus the two Xen leaves.
fn key_of(kind: u8, n: u32) -> (u32, u32) {
    const PLAIN: [u32; 10] = [0, 1, 2, 3, 5, 6, 8, 9, 0xa, 0xc];
    match kind % 13 {
        0..=2 => (PLAIN[n as usize % PLAIN.len()], NO_SUBLEAF),
        3 => (0x4, n % NR_CACHE as u32),
        4 | 5 => (0x7, n % NR_FEAT as u32),
        6 => (0xb, n % NR_TOPO as u32),
        7 | 8 => (0xd, n % NR_XSTATE as u32),
        9..=11 => (EXTD_BASE + n % NR_EXTD as u32, NO_SUBLEAF),
        _ => (
            [XEN_LEAVES, XEN_LEAVES_RELOCATED][n as usize % 2],
            NO_SUBLEAF,
        ),
    }
}

fn serialised_key() -> impl Strategy<Value = (u32, u32)> {
    any::<(u8, u32)>().prop_map(|(kind, n)| key_of(kind, n))
}

/// Half the time any value, otherwise small or zero (counts, max leaves, terminators).
fn reg_of(kind: u8, v: u32) -> u32 {
    match kind % 6 {
        0..=2 => v,
        3 | 4 => v % 64,
        _ => 0,
    }
}

fn regs() -> impl Strategy<Value = CpuidRegs> {
    any::<([u8; 4], [u32; 4])>().prop_map(|(k, v)| {
        CpuidRegs::new(
            reg_of(k[0], v[0]),
            reg_of(k[1], v[1]),
            reg_of(k[2], v[2]),
            reg_of(k[3], v[3]),
        )
    })
}

fn vendor_regs() -> impl Strategy<Value = Option<(u32, u32, u32)>> {
    prop_oneof![
        Just(None),
        Just(Some(Vendor::INTEL_REGS)),
        Just(Some(Vendor::AMD_REGS)),
        Just(Some(Vendor::HYGON_REGS)),
        Just(Some(Vendor::CENTAUR_REGS)),
        Just(Some(Vendor::SHANGHAI_REGS)),
    ]
}

/// Max leaves to impose after the random writes: (basic, leaf 7, extended, Xen limits).
#[derive(Clone, Debug)]
struct MaxLeaves {
    basic: Option<u32>,
    feat: Option<u32>,
    extd: Option<u32>,
    hv: Option<(u32, u32)>,
    vendor: Option<(u32, u32, u32)>,
}

fn max_leaves() -> BoxedStrategy<MaxLeaves> {
    (
        prop::option::weighted(
            0.8,
            prop_oneof![4 => 0..=0xeu32, 2 => Just(0xdu32), 1 => any::<u32>()],
        ),
        prop::option::weighted(0.8, prop_oneof![4 => 0..=3u32, 1 => any::<u32>()]),
        prop::option::weighted(
            0.8,
            prop_oneof![
                4 => (0..0x30u32).prop_map(|i| EXTD_BASE + i),
                1 => Just(0u32),
                1 => any::<u32>(),
            ],
        ),
        prop::option::weighted(0.5, (0..8u32, 0..8u32)),
        vendor_regs(),
    )
        .prop_map(|(basic, feat, extd, hv, vendor)| MaxLeaves {
            basic,
            feat,
            extd,
            hv,
            vendor,
        })
        .boxed()
}

fn apply_max_leaves(p: &mut CpuPolicy, m: &MaxLeaves) {
    if let Some(v) = m.basic {
        p.set_max_basic_leaf(v);
    }
    if let Some(v) = m.feat {
        p.set_max_feat_subleaf(v);
    }
    if let Some(v) = m.extd {
        p.set_max_extd_leaf(v);
    }
    if let Some((hv, hv2)) = m.hv {
        p.set_hypervisor_limits(hv, hv2);
    }
    if let Some((b, c, d)) = m.vendor {
        let mut leaf0 = p.leaf_mut(0, 0).unwrap();
        (leaf0.b, leaf0.c, leaf0.d) = (b, c, d);
    }
}

/// Valid MSR entries: PLATFORM_INFO within 32 bits, ARCH_CAPABILITIES any.
fn valid_msrs() -> BoxedStrategy<Vec<XenMsrEntry>> {
    let platform_info =
        prop_oneof![Just(0u32), Just(1u32 << 31), any::<u32>()].prop_map(|v| XenMsrEntry {
            idx: MSR_PLATFORM_INFO,
            flags: 0,
            val: v as u64,
        });
    let arch_caps = any::<u64>().prop_map(|v| XenMsrEntry {
        idx: MSR_ARCH_CAPABILITIES,
        flags: 0,
        val: v,
    });
    (
        prop::option::of(platform_info),
        prop::option::of(arch_caps),
        any::<bool>(),
    )
        .prop_map(|(p, a, swap)| {
            let mut v: Vec<_> = p.into_iter().chain(a).collect();
            if swap {
                v.reverse();
            }
            v
        })
        .boxed()
}

fn leaf_entry((leaf, subleaf): (u32, u32), r: CpuidRegs) -> XenCpuidLeaf {
    XenCpuidLeaf {
        leaf,
        subleaf,
        a: r.a,
        b: r.b,
        c: r.c,
        d: r.d,
    }
}

/// Random valid arrays merged with `from_arrays`, then max leaves imposed. Not canonical.
fn array_policy_raw() -> BoxedStrategy<CpuPolicy> {
    (
        prop::collection::vec((serialised_key(), regs()), 0..=MAX_SERIALISED_LEAVES),
        valid_msrs(),
        max_leaves(),
    )
        .prop_map(|(entries, msrs, max)| {
            let leaves: Vec<_> = entries.into_iter().map(|(k, r)| leaf_entry(k, r)).collect();
            let mut p =
                CpuPolicy::from_arrays(&leaves, &msrs).expect("from_arrays rejected valid entries");
            apply_max_leaves(&mut p, &max);
            p
        })
        .boxed()
}

/// Random registers written through `leaf_mut` (any subleaf for the plain leaves), then max
/// leaves imposed. Not canonical.
fn leaf_mut_policy_raw() -> BoxedStrategy<CpuPolicy> {
    (
        prop::collection::vec((serialised_key(), any::<u32>(), regs()), 0..80),
        valid_msrs(),
        max_leaves(),
        any::<bool>(),
    )
        .prop_map(|(writes, msrs, max, faulting)| {
            let mut p = CpuPolicy::from_arrays(&[], &msrs).expect("valid MSRs");
            for ((leaf, subleaf), any_subleaf, r) in writes {
                let subleaf = if subleaf == NO_SUBLEAF {
                    any_subleaf
                } else {
                    subleaf
                };
                if let Some(mut slot) = p.leaf_mut(leaf, subleaf) {
                    *slot = r;
                }
            }
            apply_max_leaves(&mut p, &max);
            p.set_cpuid_faulting(faulting);
            p
        })
        .boxed()
}

fn raw_policy() -> BoxedStrategy<CpuPolicy> {
    prop_oneof![array_policy_raw(), leaf_mut_policy_raw()].boxed()
}

fn canonicalised(mut p: CpuPolicy) -> CpuPolicy {
    p.clear_out_of_range_leaves();
    p
}

fn host_options() -> BoxedStrategy<HostOptions> {
    (
        prop::collection::vec(any_feature(), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(disabled, cpuid_faulting, hap)| HostOptions {
            disabled: Featureset::of(&disabled),
            cpuid_faulting,
            hap,
            ..HostOptions::default()
        })
        .boxed()
}

/// Raw policies as hardware could report them: XSAVE component sizes and offsets within
/// 16 bits (see `derive_never_panics` for arbitrary ones).
fn hardware_policy() -> BoxedStrategy<CpuPolicy> {
    raw_policy()
        .prop_map(|mut p| {
            for i in 2..NR_XSTATE as u32 {
                let mut r = p.leaf_mut(0xd, i).unwrap();
                r.a &= 0xffff;
                r.b &= 0xffff;
            }
            p
        })
        .boxed()
}

/// The system policies derived from a random raw policy (all canonical except `raw`).
fn system_policies() -> BoxedStrategy<SystemPolicies> {
    (hardware_policy(), host_options())
        .prop_map(|(raw, options)| SystemPolicies::derive(&raw, options))
        .boxed()
}

fn derived_policy() -> BoxedStrategy<CpuPolicy> {
    (system_policies(), 0..5usize)
        .prop_map(|(s, i)| match i {
            0 => s.host,
            1 => s.pv_max,
            2 => s.pv_default,
            3 => s.hvm_max,
            _ => s.hvm_default,
        })
        .boxed()
}

fn canonical_policy() -> BoxedStrategy<CpuPolicy> {
    prop_oneof![
        2 => array_policy_raw().prop_map(canonicalised),
        2 => leaf_mut_policy_raw().prop_map(canonicalised),
        1 => derived_policy(),
    ]
    .boxed()
}

fn any_policy() -> BoxedStrategy<CpuPolicy> {
    prop_oneof![canonical_policy(), raw_policy()].boxed()
}

// ---------------------------------------------------------------------------------------------
// 5. Serialisation.

/// Every (leaf, subleaf) a policy has a slot for (subleaf 0 for the plain leaves).
fn all_slots() -> impl Iterator<Item = (u32, u32)> {
    let plain = [0u32, 1, 2, 3, 5, 6, 8, 9, 0xa, 0xc]
        .into_iter()
        .map(|l| (l, 0));
    let sub = |leaf: u32, n: usize| (0..n as u32).map(move |s| (leaf, s));
    plain
        .chain(sub(0x4, NR_CACHE))
        .chain(sub(0x7, NR_FEAT))
        .chain(sub(0xb, NR_TOPO))
        .chain(sub(0xd, NR_XSTATE))
        .chain((0..NR_EXTD as u32).map(|i| (EXTD_BASE + i, 0)))
}

/// Independent statement of which leaves a policy's own max leaves and terminators put in
/// range (Xen's `x86_cpu_policy_clear_out_of_range_leaves`): a leaf 4 or 0xB subleaf only
/// before the first one of type 0; leaf 0xD subleaves up to the highest state component, and
/// none at all without one; leaf 0x80000000 always, the rest up to the low half of its EAX.
///
/// Xen computes the first leaf to clear as max + 1 in 32 bits: a max of 0xffffffff wraps and
/// puts the whole array out of range, leaf 0 (or leaf 7 subleaf 0) included.
fn in_range(p: &CpuPolicy, leaf: u32, sub: u32) -> bool {
    let max_basic = p.leaf(0, 0).unwrap().a;
    let regs = |l: u32, s: u32| p.leaf(l, s).unwrap();
    if max_basic == u32::MAX && leaf <= 0xd {
        return false;
    }
    match leaf {
        0 => true,
        0x4 => max_basic >= 0x4 && (0..=sub).all(|s| regs(0x4, s).a & 0x1f != 0),
        0x7 => max_basic >= 0x7 && regs(0x7, 0).a != u32::MAX && sub <= regs(0x7, 0).a,
        0xb => max_basic >= 0xb && (0..=sub).all(|s| (regs(0xb, s).c >> 8) & 0xff != 0),
        0xd => {
            let (l0, l1) = (regs(0xd, 0), regs(0xd, 1));
            let components = (l0.d as u64) << 32 | l0.a as u64 | (l1.d as u64) << 32 | l1.c as u64;
            let highest = (0..64).rev().find(|&i| components >> i & 1 != 0);
            max_basic >= 0xd && highest.is_some_and(|h| sub < 2 || sub <= h)
        }
        1..=0xd => leaf <= max_basic,
        _ => leaf - EXTD_BASE <= regs(EXTD_BASE, 0).a & 0xffff,
    }
}

fn serialise(p: &CpuPolicy) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
    let mut leaves = vec![XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES + 8];
    let n = p
        .write_leaves(&mut leaves)
        .expect("a full-size buffer fits");
    leaves.truncate(n);
    let mut msrs = vec![XenMsrEntry::default(); 4];
    let m = p.write_msrs(&mut msrs).expect("a 4-entry buffer fits");
    msrs.truncate(m);
    (leaves, msrs)
}

/// Independent statement of which serialised entries a policy can hold.
fn entry_is_valid(l: &XenCpuidLeaf) -> bool {
    let sub = l.subleaf;
    match l.leaf {
        XEN_LEAVES | XEN_LEAVES_RELOCATED => sub == NO_SUBLEAF,
        0x4 => (sub as usize) < NR_CACHE,
        0x7 => (sub as usize) < NR_FEAT,
        0xb => (sub as usize) < NR_TOPO,
        0xd => (sub as usize) < NR_XSTATE,
        0x0..=0xd => sub == NO_SUBLEAF,
        l if (EXTD_BASE..EXTD_BASE + NR_EXTD as u32).contains(&l) => sub == NO_SUBLEAF,
        _ => false,
    }
}

fn msr_is_valid(m: &XenMsrEntry) -> bool {
    m.flags == 0
        && match m.idx {
            MSR_PLATFORM_INFO => m.val <= u32::MAX as u64,
            MSR_ARCH_CAPABILITIES => true,
            _ => false,
        }
}

fn interesting_leaf() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0..0x20u32,
        2 => XEN_LEAVES..0x4000_0102u32,
        3 => EXTD_BASE..0x8000_0030u32,
        1 => any::<u32>(),
    ]
}

fn interesting_subleaf() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0..70u32,
        3 => Just(NO_SUBLEAF),
        1 => any::<u32>(),
    ]
}

/// Leaves biased toward the edges of the three ranges, then anything.
fn leaf_of(kind: u8, n: u32) -> u32 {
    match kind % 9 {
        0..=2 => n % 0x20,
        3 | 4 => XEN_LEAVES + n % 0x102,
        5..=7 => EXTD_BASE + n % 0x30,
        _ => n,
    }
}

fn subleaf_of(kind: u8, n: u32) -> u32 {
    match kind % 7 {
        0..=2 => n % 70,
        3..=5 => NO_SUBLEAF,
        _ => n,
    }
}

fn arbitrary_leaf() -> impl Strategy<Value = XenCpuidLeaf> {
    (any::<(u8, u8, u32, u32)>(), regs()).prop_map(|((k1, k2, n1, n2), r)| {
        let key = if k1 % 7 < 4 {
            key_of(k2, n1)
        } else {
            (leaf_of(k1 / 7, n1), subleaf_of(k2, n2))
        };
        leaf_entry(key, r)
    })
}

fn arbitrary_msr() -> impl Strategy<Value = XenMsrEntry> {
    (
        prop_oneof![
            3 => Just(MSR_PLATFORM_INFO),
            3 => Just(MSR_ARCH_CAPABILITIES),
            1 => any::<u32>(),
        ],
        prop_oneof![6 => Just(0u32), 1 => any::<u32>()],
        prop_oneof![
            2 => any::<u32>().prop_map(u64::from),
            1 => any::<u64>(),
        ],
    )
        .prop_map(|(idx, flags, val)| XenMsrEntry { idx, flags, val })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_policies_round_trip(p in canonical_policy()) {
        prop_assert_eq!(canonicalised(p), p, "clear_out_of_range_leaves is not idempotent");
        let n = p.nr_serialised_leaves();
        prop_assert!(n <= MAX_SERIALISED_LEAVES, "{} leaves", n);
        let (leaves, msrs) = serialise(&p);
        prop_assert_eq!(leaves.len(), n);
        prop_assert_eq!(msrs.len(), 2);
        prop_assert_eq!(CpuPolicy::from_arrays(&leaves, &msrs), Ok(p));
        // Every entry is one a policy holds, and none is written twice.
        for (i, l) in leaves.iter().enumerate() {
            prop_assert!(entry_is_valid(l), "bad entry {:x?}", l);
            prop_assert!(
                leaves[..i].iter().all(|o| (o.leaf, o.subleaf) != (l.leaf, l.subleaf)),
                "duplicate entry {:x?}", l
            );
        }
        // A buffer one short is refused with the size needed.
        let mut short = vec![XenCpuidLeaf::default(); n - 1];
        prop_assert_eq!(
            p.write_leaves(&mut short),
            Err(PolicyArrayError::BufferTooSmall { needed: n })
        );
        let mut exact = vec![XenCpuidLeaf::default(); n];
        prop_assert_eq!(p.write_leaves(&mut exact), Ok(n));
        prop_assert_eq!(&exact, &leaves);
        let mut one_msr = [XenMsrEntry::default(); 1];
        prop_assert_eq!(
            p.write_msrs(&mut one_msr),
            Err(PolicyArrayError::BufferTooSmall { needed: 2 })
        );
    }

    #[test]
    fn clearing_zeroes_exactly_the_out_of_range_leaves(p in raw_policy()) {
        let c = canonicalised(p);
        for (leaf, sub) in all_slots() {
            let expected = if in_range(&p, leaf, sub) {
                p.leaf(leaf, sub)
            } else {
                Some(CpuidRegs::ZERO)
            };
            prop_assert_eq!(c.leaf(leaf, sub), expected, "leaf {:#x} subleaf {}", leaf, sub);
        }
        prop_assert_eq!(c.hypervisor_limits(), p.hypervisor_limits());
        prop_assert_eq!((c.platform_info(), c.arch_caps()), (p.platform_info(), p.arch_caps()));
        // Serialisation writes every in-range leaf, and otherwise only empty ones (the leaf 4
        // and 0xB terminators, leaf 0xD subleaves 0 and 1 without state components).
        let (leaves, _) = serialise(&c);
        let written: HashSet<(u32, u32)> = leaves.iter().map(|l| (l.leaf, l.subleaf)).collect();
        for (leaf, sub) in all_slots() {
            let key = if Slot::leaf_has_subleaves(leaf) { sub } else { NO_SUBLEAF };
            prop_assert!(
                written.contains(&(leaf, key)) || !in_range(&c, leaf, sub),
                "leaf {:#x} subleaf {} in range but not written", leaf, sub
            );
        }
        for l in &leaves {
            if [XEN_LEAVES, XEN_LEAVES_RELOCATED].contains(&l.leaf) {
                continue;
            }
            let sub = if l.subleaf == NO_SUBLEAF { 0 } else { l.subleaf };
            prop_assert!(
                in_range(&c, l.leaf, sub) || (l.a, l.b, l.c, l.d) == (0, 0, 0, 0),
                "out-of-range entry written: {:x?}", l
            );
        }
    }

    #[test]
    fn serialising_loses_only_out_of_range_leaves(p in raw_policy()) {
        let (leaves, msrs) = serialise(&p);
        prop_assert!(leaves.len() <= MAX_SERIALISED_LEAVES);
        let back = CpuPolicy::from_arrays(&leaves, &msrs);
        prop_assert!(back.is_ok(), "{:?}", back);
        prop_assert_eq!(canonicalised(back.unwrap()), canonicalised(p));
    }

    #[test]
    fn merging_arbitrary_arrays(
        base in any_policy(),
        leaves in prop::collection::vec(arbitrary_leaf(), 0..=MAX_SERIALISED_LEAVES + 4),
        msrs in prop::collection::vec(arbitrary_msr(), 0..=3),
    ) {
        let copy = base;
        let merged = base.merged(&leaves, &msrs);
        prop_assert_eq!(base, copy);
        let _ = CpuPolicy::from_arrays(&leaves, &msrs);

        let first_bad_leaf = leaves.iter().find(|l| !entry_is_valid(l));
        let first_bad_msr = msrs.iter().find(|m| !msr_is_valid(m));
        let expected_err = if leaves.len() > MAX_SERIALISED_LEAVES {
            Some(PolicyArrayError::TooManyLeaves { count: leaves.len() })
        } else if let Some(l) = first_bad_leaf {
            Some(PolicyArrayError::LeafOutOfRange { leaf: l.leaf, subleaf: l.subleaf })
        } else if msrs.len() > 2 {
            Some(PolicyArrayError::TooManyMsrs { count: msrs.len() })
        } else {
            first_bad_msr.map(|m| match m {
                m if m.flags != 0 => PolicyArrayError::MsrFlags { msr: m.idx, flags: m.flags },
                m if m.idx == MSR_PLATFORM_INFO => {
                    PolicyArrayError::MsrOverflow { msr: m.idx, value: m.val }
                }
                m => PolicyArrayError::UnknownMsr { msr: m.idx },
            })
        };
        match (merged, expected_err) {
            (Err(e), Some(expected)) => {
                prop_assert_eq!(e, expected);
                prop_assert!(!e.to_string().is_empty());
            }
            (Err(e), None) => prop_assert!(false, "valid arrays refused: {:?}", e),
            (Ok(_), Some(expected)) => prop_assert!(false, "expected {:?}", expected),
            (Ok(p), None) => {
                // The last entry for each place wins; everything else is the base's.
                for (i, l) in leaves.iter().enumerate() {
                    if leaves[i + 1..].iter().any(|o| (o.leaf, o.subleaf) == (l.leaf, l.subleaf)) {
                        continue;
                    }
                    match l.leaf {
                        // Xen keeps the limits in 8 bits.
                        XEN_LEAVES => prop_assert_eq!(p.hypervisor_limits().0, l.a & 0xff),
                        XEN_LEAVES_RELOCATED => {
                            prop_assert_eq!(p.hypervisor_limits().1, l.a & 0xff)
                        }
                        leaf => {
                            let sub = if l.subleaf == NO_SUBLEAF { 0 } else { l.subleaf };
                            prop_assert_eq!(
                                p.leaf(leaf, sub),
                                Some(CpuidRegs::new(l.a, l.b, l.c, l.d))
                            );
                        }
                    }
                }
                let written: HashSet<(u32, u32)> =
                    leaves.iter().map(|l| (l.leaf, l.subleaf)).collect();
                let subleaves = |leaf: u32| match leaf {
                    0x4 => NR_CACHE as u32,
                    0x7 => NR_FEAT as u32,
                    0xb => NR_TOPO as u32,
                    0xd => NR_XSTATE as u32,
                    _ => 1,
                };
                for leaf in (0..0xe).chain(EXTD_BASE..EXTD_BASE + NR_EXTD as u32) {
                    for sub in 0..subleaves(leaf) {
                        let key = if Slot::leaf_has_subleaves(leaf) { sub } else { NO_SUBLEAF };
                        if !written.contains(&(leaf, key)) {
                            prop_assert_eq!(p.leaf(leaf, sub), base.leaf(leaf, sub));
                        }
                    }
                }
                let (hv, hv2) = base.hypervisor_limits();
                if !written.contains(&(XEN_LEAVES, NO_SUBLEAF)) {
                    prop_assert_eq!(p.hypervisor_limits().0, hv);
                }
                if !written.contains(&(XEN_LEAVES_RELOCATED, NO_SUBLEAF)) {
                    prop_assert_eq!(p.hypervisor_limits().1, hv2);
                }
                let last = |idx: u32| msrs.iter().rev().find(|m| m.idx == idx).map(|m| m.val);
                prop_assert_eq!(
                    u64::from(p.platform_info()),
                    last(MSR_PLATFORM_INFO).unwrap_or(u64::from(base.platform_info()))
                );
                prop_assert_eq!(
                    p.arch_caps(),
                    last(MSR_ARCH_CAPABILITIES).unwrap_or(base.arch_caps())
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Compatibility.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn policy_is_compatible_with_itself(p in canonical_policy()) {
        prop_assert_eq!(check_compatible(&p, &p), Ok(()));
    }

    #[test]
    fn featureset_subset_is_compatible(max in canonical_policy(), mask in featureset()) {
        let mut guest = max;
        guest.set_featureset(&(max.featureset() & mask));
        let r = check_compatible(&max, &guest);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[test]
    fn raised_limits_are_reported(max in canonical_policy(), which in 0..4u8, bump in 1..16u32, bit in 0..32u32) {
        let mut guest = max;
        let (reason, leaf, subleaf, msr) = match which {
            0 => {
                prop_assume!(max.max_basic_leaf().checked_add(bump).is_some());
                guest.set_max_basic_leaf(max.max_basic_leaf() + bump);
                (IncompatibilityReason::MaxBasicLeaf, 0, NO_SUBLEAF, !0)
            }
            1 => {
                prop_assume!(max.max_feat_subleaf().checked_add(bump).is_some());
                guest.set_max_feat_subleaf(max.max_feat_subleaf() + bump);
                (IncompatibilityReason::MaxFeatSubleaf, 7, 0, !0)
            }
            2 => {
                prop_assume!(max.max_extd_leaf().checked_add(bump).is_some());
                guest.set_max_extd_leaf(max.max_extd_leaf() + bump);
                (IncompatibilityReason::MaxExtdLeaf, EXTD_BASE, NO_SUBLEAF, !0)
            }
            _ => {
                prop_assume!(max.platform_info() & 1 << bit == 0);
                let entry = XenMsrEntry {
                    idx: MSR_PLATFORM_INFO,
                    flags: 0,
                    val: u64::from(max.platform_info() | 1 << bit),
                };
                guest = max.merged(&[], &[entry]).unwrap();
                (IncompatibilityReason::PlatformInfo, !0, !0, MSR_PLATFORM_INFO)
            }
        };
        let e = check_compatible(&max, &guest);
        prop_assert!(e.is_err(), "raised limit accepted");
        let e = e.unwrap_err();
        prop_assert_eq!((e.reason, e.leaf, e.subleaf, e.msr), (reason, leaf, subleaf, msr));
        prop_assert_eq!(e.extra_features, Featureset::EMPTY);
        prop_assert!(!e.to_string().is_empty());
        // The other way round is fine: lower limits are within the max.
        prop_assert_eq!(check_compatible(&guest, &max), Ok(()));
    }

    #[test]
    fn extra_feature_is_reported(max in canonical_policy(), f in any_feature()) {
        prop_assume!(!has_bit(&max.featureset(), f));
        // AMD's copies of CPUID.01H:EDX in word 2 are no feature (domain policies carry them).
        prop_assume!(f.word() != 2 || f.mask() & COMMON_1D == 0);
        let mut guest = max;
        let mut fs = max.featureset();
        fs.insert(f);
        guest.set_featureset(&fs);
        let e = check_compatible(&max, &guest);
        prop_assert!(e.is_err(), "guest with {:?} accepted", f);
        let e = e.unwrap_err();
        prop_assert_eq!(e.reason, IncompatibilityReason::Features);
        prop_assert_eq!(e.extra_features, Featureset::of(&[f]));
        match WORD_HOMES[f.word()] {
            WordHome::Cpuid { leaf, .. } => {
                prop_assert_eq!(e.leaf, leaf);
                prop_assert_eq!(e.msr, !0);
            }
            WordHome::ArchCapsLow | WordHome::ArchCapsHigh => {
                prop_assert_eq!(e.msr, MSR_ARCH_CAPABILITIES);
            }
        }
        prop_assert!(e.to_string().contains(&f.to_string()), "{}", e);
    }

    #[test]
    fn derive_never_panics(
        raw in raw_policy(),
        options in host_options(),
        xsave_heavy in any::<bool>(),
        components in prop::collection::vec(
            (prop::sample::select(vec![2u32, 3, 4, 5, 6, 7, 9, 17, 18, 62]), regs()),
            0..6,
        ),
    ) {
        // Raw policies here include XSAVE components whose offset + size overflow 32 bits,
        // half of them with every feature and XSAVE component on so that leaf 0xD is rebuilt.
        let mut raw = raw;
        if xsave_heavy {
            raw.set_max_basic_leaf(0xd);
            raw.set_featureset(&(raw.featureset() | KNOWN));
            let mut l0 = raw.leaf_mut(0xd, 0).unwrap();
            l0.a |= 0x6_02ff;
            l0.d |= 1 << 30;
            drop(l0);
            for (i, r) in components {
                *raw.leaf_mut(0xd, i).unwrap() = r;
            }
        }
        let s = SystemPolicies::derive(&raw, options);
        for p in [s.host, s.pv_max, s.pv_default, s.hvm_max, s.hvm_default] {
            prop_assert_eq!(canonicalised(p), p);
            prop_assert!(p.nr_serialised_leaves() <= MAX_SERIALISED_LEAVES);
        }
    }

    #[test]
    fn system_defaults_fit_their_max(s in system_policies(), k in 0..3usize) {
        let kind = [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow][k];
        if let Some(max) = s.max_for(kind) {
            let default = s.default_for(kind);
            let r = check_compatible(&max, &default);
            prop_assert!(r.is_ok(), "{:?} default exceeds its max: {}", kind, r.unwrap_err());
        }
    }

    #[test]
    fn domain_policies_fit_their_max(s in system_policies(), fs in featureset(), k in 0..3usize) {
        let kind = [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow][k];
        let Some(max) = s.max_for(kind) else {
            prop_assert!(kind == DomainKind::HvmHap && !s.options.hap);
            return Ok(());
        };
        // Ask for a sanitised subset of what the kind may have.
        let request = (fs & max.featureset()).sanitised();
        match s.domain_policy(kind, s.host.vendor(), &request) {
            Ok(p) => {
                let r = check_compatible(&max, &p);
                prop_assert!(r.is_ok(), "{:?} domain policy exceeds its max: {}", kind, r.unwrap_err());
                prop_assert_eq!(canonicalised(p), p);
            }
            Err(e) => prop_assert!(false, "{:?} refused a subset of its max: {}", kind, e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Guest CPUID.

fn vcpu_state() -> BoxedStrategy<VcpuState> {
    let entry = prop_oneof![
        Just(CpuidEntry::VmExit),
        Just(CpuidEntry::Fault),
        Just(CpuidEntry::ForcedEmulation),
    ];
    let xcomponents = prop_oneof![any::<u64>(), (0..0x1000u64), Just(0b111u64)];
    (entry, any::<[bool; 6]>(), xcomponents.clone(), xcomponents)
        .prop_map(|(entry, flags, xcr0, xss)| VcpuState {
            entry,
            cr4_osxsave: flags[0],
            cr4_pke: flags[1],
            kernel_mode: flags[2],
            host_cr4_osxsave: flags[3],
            xcr0,
            xss,
            apic_enabled: flags[4],
            long_mode: flags[5],
        })
        .boxed()
}

fn guest_context() -> BoxedStrategy<GuestContext> {
    let kind = prop_oneof![
        Just(DomainKind::Pv),
        Just(DomainKind::HvmHap),
        Just(DomainKind::HvmShadow),
    ];
    let domain = (
        kind,
        any::<u16>(),
        any::<bool>(),
        featureset(),
        any::<u8>(),
        (any::<u16>(), any::<u16>()),
    )
        .prop_map(
            |(kind, domid, hardware_domain, host_features, host_paddr_bits, xen_version)| {
                GuestDomain {
                    kind,
                    domid,
                    hardware_domain,
                    host_features,
                    host_paddr_bits,
                    xen_version,
                }
            },
        );
    let state = vcpu_state();
    (domain, any::<u32>(), prop::option::of(state))
        .prop_map(|(domain, vcpu_id, state)| GuestContext {
            domain,
            vcpu_id,
            state,
        })
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn guest_cpuid_never_panics(
        p in any_policy(),
        ctx in guest_context(),
        queries in prop::collection::vec((interesting_leaf(), interesting_subleaf()), 1..16),
    ) {
        // The leaves with a dynamic part, always; then random ones.
        let fixed = [0x1, 0x7, 0xb, 0xd].into_iter().flat_map(|l| [(l, 0), (l, 1)]);
        for (leaf, subleaf) in fixed.chain(queries) {
            let r = guest_cpuid(&p, leaf, subleaf, &ctx);
            let static_only = guest_cpuid(&p, leaf, subleaf, &GuestContext { state: None, ..ctx });
            // Outside the three ranges, and outside what the policy holds, all zeros.
            let outside = !(0..=0xd).contains(&leaf)
                && !(XEN_LEAVES..0x4000_0200).contains(&leaf)
                && !(EXTD_BASE..=0x8000_ffff).contains(&leaf);
            if outside {
                prop_assert_eq!(r, CpuidRegs::ZERO, "leaf {:#x}", leaf);
                prop_assert_eq!(static_only, CpuidRegs::ZERO, "leaf {:#x}", leaf);
            }
            if (EXTD_BASE..=0x8000_ffff).contains(&leaf)
                && (p.max_extd_leaf() >> 16 != EXTD_BASE >> 16 || leaf > p.max_extd_leaf())
            {
                prop_assert_eq!(r, CpuidRegs::ZERO, "leaf {:#x} max {:#x}", leaf, p.max_extd_leaf());
            }
        }
    }

    #[test]
    fn xsave_leaves_never_panic(
        p in any_policy(),
        components in prop::collection::vec((2..NR_XSTATE as u32, regs()), 0..6),
        ctx in guest_context(),
        state in vcpu_state(),
    ) {
        // Any policy with XSAVE (and XSAVEC) offered, leaf 0xD in range, and some state
        // components written as a toolstack may write them through `merged`.
        let mut p = p;
        p.set_max_basic_leaf(0xd);
        let mut fs = p.featureset();
        fs.insert(Feature::XSAVE);
        fs.insert(Feature::XSAVEC);
        p.set_featureset(&fs);
        for (i, r) in components {
            *p.leaf_mut(0xd, i).unwrap() = r;
        }
        let ctx = GuestContext { state: Some(state), ..ctx };
        for subleaf in 0..4 {
            let r = guest_cpuid(&p, 0xd, subleaf, &ctx);
            if subleaf >= 2 {
                prop_assert_eq!(Some(r), p.leaf(0xd, subleaf));
            }
        }
    }

    #[test]
    fn leaves_above_max_basic_are_zero(
        p in any_policy(),
        ctx in guest_context(),
        offsets in prop::collection::vec(prop_oneof![0..0x20u32, any::<u32>()], 1..8),
        subleaf in interesting_subleaf(),
    ) {
        let max = p.max_basic_leaf();
        prop_assume!(max < XEN_LEAVES - 1);
        for off in offsets {
            let leaf = max + 1 + off % (XEN_LEAVES - max - 1);
            prop_assert_eq!(
                guest_cpuid(&p, leaf, subleaf, &ctx),
                CpuidRegs::ZERO,
                "leaf {:#x} with max basic leaf {:#x}", leaf, max
            );
        }
    }
}

// 8. Speculation hardening: `nospec`'s own unit tests (the module is internal).
