//! Featureset text forms: exact output, strict input, and errors that say where.

use xen_levelling::feature::NR_WORDS;
use xen_levelling::featureset::FeaturesetError;
use xen_levelling::{Feature, Featureset};

/// A real XAPI `features_pv` string shape: AMD Zen words 0-3 from toolstack.md's example.
const AMD_PREFIX: &str = "178bfbff-f6f83203-2fd3fbff";

#[test]
fn xapi_and_xen_forms_print_eight_lowercase_digits_per_word() {
    let fs = Featureset::of(&[Feature::FPU, Feature::AVX512F, Feature::ITS_NO]);
    let xapi = fs.xapi().to_string();
    assert_eq!(xapi.len(), NR_WORDS * 9 - 1);
    assert!(xapi.starts_with("00000001-00000000-"));
    assert_eq!(&xapi[5 * 9..5 * 9 + 8], "00010000");
    assert_eq!(&xapi[17 * 9..17 * 9 + 8], "40000000");
    assert_eq!(fs.xen_words().to_string(), xapi.replace('-', ":"));
    assert_eq!(fs.names().to_string(), "fpu,avx512f,its-no");
}

#[test]
fn shorter_inputs_are_zero_extended() {
    let fs = Featureset::parse_xapi(AMD_PREFIX).unwrap();
    assert_eq!(&fs.words()[..3], &[0x178b_fbff, 0xf6f8_3203, 0x2fd3_fbff]);
    assert!(fs.words()[3..].iter().all(|&w| w == 0));
    assert!(
        fs.contains(Feature::SSE2) && fs.contains(Feature::LM) && fs.contains(Feature::HYPERVISOR)
    );
    assert_eq!(
        Featureset::parse_xapi("").unwrap(),
        Featureset::EMPTY,
        "XAPI: empty is empty"
    );
    assert_eq!(
        Featureset::from_word_slice(&[1]).unwrap(),
        Featureset::of(&[Feature::FPU])
    );
}

#[test]
fn longer_inputs_are_an_error_naming_the_word_unless_zero() {
    let mut words = vec!["0"; NR_WORDS];
    words.push("0");
    words.push("00000000");
    assert!(
        Featureset::parse_xapi(&words.join("-")).is_ok(),
        "extra zero words are harmless"
    );
    words.push("80");
    assert_eq!(
        Featureset::parse_xapi(&words.join("-")),
        Err(FeaturesetError::UnknownWord {
            word: NR_WORDS + 2,
            value: 0x80
        })
    );
    let mut slice = vec![0u32; NR_WORDS + 1];
    slice[NR_WORDS] = 4;
    let e = Featureset::from_word_slice(&slice).unwrap_err();
    assert_eq!(
        e,
        FeaturesetError::UnknownWord {
            word: NR_WORDS,
            value: 4
        }
    );
    assert!(e.to_string().contains("word 19"), "{e}");
}

#[test]
fn malformed_hex_says_where() {
    // XAPI's own rejected examples (toolstack.md A.2), plus a few more.
    let err = |s| Featureset::parse_xapi(s).unwrap_err();
    assert_eq!(
        err("-1234"),
        FeaturesetError::EmptyWord { column: 1, word: 0 }
    );
    assert_eq!(
        err("1234-"),
        FeaturesetError::EmptyWord { column: 6, word: 1 }
    );
    assert_eq!(
        err("fgfg-1234"),
        FeaturesetError::BadCharacter {
            column: 2,
            word: 0,
            found: 'g'
        }
    );
    assert_eq!(
        err("0-123456789"),
        FeaturesetError::WordTooLong {
            column: 11,
            word: 1
        }
    );
    assert_eq!(
        err("0--1"),
        FeaturesetError::EmptyWord { column: 3, word: 1 }
    );
    assert_eq!(
        err("0:1"),
        FeaturesetError::BadCharacter {
            column: 2,
            word: 0,
            found: ':'
        }
    );
    assert_eq!(
        err("é-x"),
        FeaturesetError::BadCharacter {
            column: 1,
            word: 0,
            found: 'é'
        }
    );
    assert_eq!(
        Featureset::parse_xen_words("1:2-3").unwrap().words()[..3],
        [1, 2, 3]
    );
    assert!(err("fgfg-1234").to_string().contains("column 2"));
}

#[test]
fn names_parse_in_any_case_and_with_unnamed_bits() {
    let fs = Featureset::parse_names("FPU, sse4_2  avx512-vp2intersect,5:22").unwrap();
    let mut expected =
        Featureset::of(&[Feature::FPU, Feature::SSE4_2, Feature::AVX512_VP2INTERSECT]);
    expected.insert(Feature::from_index(5, 22).unwrap());
    assert_eq!(fs, expected);
    assert_eq!(
        Featureset::parse_names(&fs.names().to_string()).unwrap(),
        fs
    );
    assert_eq!(
        fs.names().to_string(),
        "fpu,sse4-2,5:22,avx512-vp2intersect"
    );
    assert_eq!(Featureset::parse_names(" ,, ").unwrap(), Featureset::EMPTY);
    match Featureset::parse_names("fpu, avx9000") {
        Err(FeaturesetError::UnknownName { column, name }) => {
            assert_eq!((column, name.as_str()), (6, "avx9000"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Featureset::parse_names("19:0"),
        Err(FeaturesetError::BadBit { column: 1, .. })
    ));
    assert!(matches!(
        Featureset::parse_names("3:32"),
        Err(FeaturesetError::BadBit { .. })
    ));
    let long = "x".repeat(100);
    let e = Featureset::parse_names(&long).unwrap_err().to_string();
    assert!(e.contains('…') && e.len() < 120, "{e}");
}

#[test]
fn closure_clears_dependents_and_explains_why() {
    let mut fs = Featureset::parse_names(
        "fxsr sse sse2 sse3 ssse3 sse4-1 sse4-2 xsave avx avx2 avx512f pae lm nx",
    )
    .unwrap();
    fs.remove(Feature::SSE3);
    let closed = fs.closed();
    assert!(!closed.contains(Feature::SSSE3) && !closed.contains(Feature::SSE4_2));
    assert!(closed.contains(Feature::SSE2) && closed.contains(Feature::AVX512F));
    assert_eq!(closed.removed_by(Feature::SSSE3), Some(Feature::SSE3));
    assert_eq!(closed.removed_by(Feature::SSE4_2), Some(Feature::SSE4_1));
    assert_eq!(closed.removed_by(Feature::AVX), None, "AVX is present");
    let mut no_pae = closed;
    no_pae.remove(Feature::PAE);
    let no_pae = no_pae.closed();
    assert!(!no_pae.contains(Feature::LM) && !no_pae.contains(Feature::NX));
}
