//! Featureset text: the XAPI string, Xen's word list, feature names, and `cpuid=`.
//!
//! Oracles: no panic; every error's Display works; on success, printing and re-parsing gives
//! the same set (and the printed word forms parse with either word parser).
#![no_main]

use libfuzzer_sys::fuzz_target;

use xen_levelling::featureset::{Featureset, FeaturesetError};
use xen_levelling::policy::system::parse_cpuid_option;

fn column_in_range(text: &str, e: &FeaturesetError) {
    let column = match *e {
        FeaturesetError::UnknownWord { .. } => return,
        FeaturesetError::BadCharacter { column, .. }
        | FeaturesetError::WordTooLong { column, .. }
        | FeaturesetError::EmptyWord { column, .. }
        | FeaturesetError::UnknownName { column, .. }
        | FeaturesetError::BadBit { column, .. } => column,
    };
    let chars = text.chars().count();
    assert!(
        column >= 1 && column <= chars + 1,
        "column {column} outside a text of {chars} characters: {e}"
    );
}

fn words_round_trip(fs: &Featureset) {
    let xapi = fs.xapi().to_string();
    let words = fs.xen_words().to_string();
    assert_eq!(
        Featureset::parse_xapi(&xapi).as_ref(),
        Ok(fs),
        "xapi: {xapi}"
    );
    assert_eq!(
        Featureset::parse_xen_words(&words).as_ref(),
        Ok(fs),
        "words: {words}"
    );
    assert_eq!(
        Featureset::parse_xen_words(&xapi).as_ref(),
        Ok(fs),
        "xen-cpuid accepts '-'"
    );
    let names = fs.names().to_string();
    assert_eq!(
        Featureset::parse_names(&names).as_ref(),
        Ok(fs),
        "names: {names}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match Featureset::parse_xapi(text) {
        Ok(fs) => words_round_trip(&fs),
        Err(e) => {
            let _ = e.to_string();
            column_in_range(text, &e);
        }
    }
    match Featureset::parse_xen_words(text) {
        Ok(fs) => words_round_trip(&fs),
        Err(e) => {
            let _ = e.to_string();
            column_in_range(text, &e);
        }
    }
    match Featureset::parse_names(text) {
        Ok(fs) => words_round_trip(&fs),
        Err(e) => {
            let _ = e.to_string();
            column_in_range(text, &e);
        }
    }
    match parse_cpuid_option(text) {
        Ok(disabled) => {
            // Printed back as `no-<name>` items, it parses to the same set.
            let printed: Vec<String> = disabled.iter().map(|f| format!("no-{f}")).collect();
            let printed = printed.join(",");
            assert_eq!(
                parse_cpuid_option(&printed),
                Ok(disabled),
                "cpuid= round trip: {printed}"
            );
            words_round_trip(&disabled);
        }
        Err(e) => {
            let _ = e.to_string();
            let chars = text.chars().count();
            assert!(
                e.column >= 1 && e.column <= chars + 1,
                "cpuid= column {}",
                e.column
            );
        }
    }
});
