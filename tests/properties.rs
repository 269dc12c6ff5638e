//! Property tests over the public API: featureset algebra and dependency closure, the three
//! text forms, policy serialisation, compatibility, and guest CPUID.
//!
//! Oracles are written independently of the code under test (word arithmetic, a naive
//! fixpoint closure, a hand-written validity rule for serialised leaves), so every property
//! can fail.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::cpuid::{CpuidRegs, NO_SUBLEAF, Vendor};
use xen_levelling::feature::{DEPENDENCIES, FEATURES, KNOWN, NR_FEATURES, NR_WORDS};
use xen_levelling::featureset::FeaturesetError;
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

fn named_feature() -> impl Strategy<Value = Feature> {
    prop::sample::select(named_features())
}

fn prerequisite() -> impl Strategy<Value = Feature> {
    prop::sample::select(
        DEPENDENCIES
            .iter()
            .map(|d| d.prerequisite)
            .collect::<Vec<_>>(),
    )
}

fn featureset() -> impl Strategy<Value = Featureset> {
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
        prop_assert_eq!(a.unknown(), a - KNOWN);
        prop_assert!(words_disjoint(&a.unknown(), &KNOWN));
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

/// The serialised (leaf, subleaf) of every slot a policy holds, plus the two Xen leaves.
fn serialised_key() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        3 => prop::sample::select(vec![0u32, 1, 2, 3, 5, 6, 8, 9, 0xa, 0xc])
            .prop_map(|l| (l, NO_SUBLEAF)),
        1 => (0..NR_CACHE as u32).prop_map(|s| (0x4, s)),
        2 => (0..NR_FEAT as u32).prop_map(|s| (0x7, s)),
        1 => (0..NR_TOPO as u32).prop_map(|s| (0xb, s)),
        2 => (0..NR_XSTATE as u32).prop_map(|s| (0xd, s)),
        3 => (0..NR_EXTD as u32).prop_map(|i| (EXTD_BASE + i, NO_SUBLEAF)),
        1 => prop::sample::select(vec![XEN_LEAVES, XEN_LEAVES_RELOCATED])
            .prop_map(|l| (l, NO_SUBLEAF)),
    ]
}

fn reg_value() -> impl Strategy<Value = u32> {
    prop_oneof![3 => any::<u32>(), 2 => 0..64u32, 1 => Just(0u32)]
}

fn regs() -> impl Strategy<Value = CpuidRegs> {
    (reg_value(), reg_value(), reg_value(), reg_value())
        .prop_map(|(a, b, c, d)| CpuidRegs::new(a, b, c, d))
}

fn vendor_regs() -> impl Strategy<Value = Option<(u32, u32, u32)>> {
    prop_oneof![
        Just(None),
        Just(Some(Vendor::INTEL_REGS)),
        Just(Some(Vendor::AMD_REGS)),
        Just(Some(Vendor::HYGON_REGS)),
        Just(Some(Vendor::CENTAUR_REGS)),
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

fn max_leaves() -> impl Strategy<Value = MaxLeaves> {
    (
        prop::option::weighted(0.8, prop_oneof![4 => 0..=0xeu32, 1 => any::<u32>()]),
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
        let leaf0 = p.leaf_mut(0, 0).unwrap();
        (leaf0.b, leaf0.c, leaf0.d) = (b, c, d);
    }
}

/// Valid MSR entries: PLATFORM_INFO within 32 bits, ARCH_CAPABILITIES any.
fn valid_msrs() -> impl Strategy<Value = Vec<XenMsrEntry>> {
    let platform_info =
        prop_oneof![Just(0u32), Just(1u32 << 31), any::<u32>(),].prop_map(|v| XenMsrEntry {
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
fn array_policy_raw() -> impl Strategy<Value = CpuPolicy> {
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
}

/// Random registers written through `leaf_mut` (any subleaf for the plain leaves), then max
/// leaves imposed. Not canonical.
fn leaf_mut_policy_raw() -> impl Strategy<Value = CpuPolicy> {
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
                if let Some(slot) = p.leaf_mut(leaf, subleaf) {
                    *slot = r;
                }
            }
            apply_max_leaves(&mut p, &max);
            p.set_cpuid_faulting(faulting);
            p
        })
}

fn raw_policy() -> impl Strategy<Value = CpuPolicy> {
    prop_oneof![array_policy_raw(), leaf_mut_policy_raw()]
}

fn canonicalised(mut p: CpuPolicy) -> CpuPolicy {
    p.clear_out_of_range_leaves();
    p
}

/// The system policies derived from a random raw policy (all canonical except `raw`).
fn system_policies() -> impl Strategy<Value = SystemPolicies> {
    (raw_policy(), featureset(), any::<bool>(), any::<bool>()).prop_map(
        |(raw, disabled, cpuid_faulting, hap)| {
            let options = HostOptions {
                disabled: if disabled.len() < 40 {
                    disabled
                } else {
                    Featureset::EMPTY
                },
                cpuid_faulting,
                hap,
            };
            SystemPolicies::derive(&raw, options)
        },
    )
}

fn derived_policy() -> impl Strategy<Value = CpuPolicy> {
    (system_policies(), 0..5usize).prop_map(|(s, i)| match i {
        0 => s.host,
        1 => s.pv_max,
        2 => s.pv_default,
        3 => s.hvm_max,
        _ => s.hvm_default,
    })
}

fn canonical_policy() -> impl Strategy<Value = CpuPolicy> {
    prop_oneof![
        2 => array_policy_raw().prop_map(canonicalised),
        2 => leaf_mut_policy_raw().prop_map(canonicalised),
        1 => derived_policy(),
    ]
}

fn any_policy() -> impl Strategy<Value = CpuPolicy> {
    prop_oneof![canonical_policy(), raw_policy()]
}

// ---------------------------------------------------------------------------------------------
// 5. Serialisation.

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

fn arbitrary_leaf() -> impl Strategy<Value = XenCpuidLeaf> {
    (
        prop_oneof![
            4 => serialised_key(),
            3 => (interesting_leaf(), interesting_subleaf()),
        ],
        regs(),
    )
        .prop_map(|(k, r)| leaf_entry(k, r))
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
                        XEN_LEAVES => prop_assert_eq!(p.hypervisor_limits().0, l.a),
                        XEN_LEAVES_RELOCATED => prop_assert_eq!(p.hypervisor_limits().1, l.a),
                        leaf => {
                            let sub = if l.subleaf == NO_SUBLEAF { 0 } else { l.subleaf };
                            prop_assert_eq!(
                                p.leaf(leaf, sub),
                                Some(CpuidRegs::new(l.a, l.b, l.c, l.d))
                            );
                        }
                    }
                }
                let untouched = |leaf: u32, sub: u32| {
                    let key = if Slot::leaf_has_subleaves(leaf) { sub } else { NO_SUBLEAF };
                    !leaves.iter().any(|l| l.leaf == leaf && l.subleaf == key)
                };
                for leaf in (0..0xe).chain(EXTD_BASE..EXTD_BASE + NR_EXTD as u32) {
                    for sub in 0..NR_XSTATE as u32 {
                        if untouched(leaf, sub) {
                            prop_assert_eq!(p.leaf(leaf, sub), base.leaf(leaf, sub));
                        }
                    }
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
    fn extra_feature_is_reported(max in canonical_policy(), f in any_feature()) {
        prop_assume!(!has_bit(&max.featureset(), f));
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

fn guest_context() -> impl Strategy<Value = GuestContext> {
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
    let entry = prop_oneof![
        Just(CpuidEntry::VmExit),
        Just(CpuidEntry::Fault),
        Just(CpuidEntry::ForcedEmulation),
    ];
    let xcomponents = prop_oneof![any::<u64>(), (0..0x1000u64), Just(0b111u64)];
    let state = (entry, any::<[bool; 6]>(), xcomponents.clone(), xcomponents).prop_map(
        |(entry, flags, xcr0, xss)| VcpuState {
            entry,
            cr4_osxsave: flags[0],
            cr4_pke: flags[1],
            kernel_mode: flags[2],
            host_cr4_osxsave: flags[3],
            xcr0,
            xss,
            apic_enabled: flags[4],
            long_mode: flags[5],
        },
    );
    (domain, any::<u32>(), prop::option::of(state)).prop_map(|(domain, vcpu_id, state)| {
        GuestContext {
            domain,
            vcpu_id,
            state,
        }
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn guest_cpuid_never_panics(
        p in any_policy(),
        ctx in guest_context(),
        queries in prop::collection::vec((interesting_leaf(), interesting_subleaf()), 1..16),
    ) {
        for (leaf, subleaf) in queries {
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
