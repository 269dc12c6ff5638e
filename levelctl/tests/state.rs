//! The state file: round trips, atomic writes, and refusing (never overwriting) corrupt or
//! newer files.

mod common;

use common::*;
use levelctl::GuestType;
use levelctl::state::{StateErrorKind, Store, VERSION, parse_state};

fn store_with_pool() -> (tempfile::TempDir, Store, levelctl::Pool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut p = pool(
        "lab",
        vec![host(HASWELL, "haswell"), host(SANDYBRIDGE, "sandy")],
    );
    p.create_vm("web", GuestType::Hvm, false).unwrap();
    p.start_vm("web", None).unwrap();
    p.create_vm("tmpl", GuestType::Pv, true).unwrap();
    store.create(&p).unwrap();
    (dir, store, p)
}

#[test]
fn a_pool_round_trips_through_its_file() {
    let (_dir, store, p) = store_with_pool();
    assert_eq!(store.load("lab").unwrap(), p);
    assert_eq!(store.list().unwrap(), ["lab"]);
    let text = std::fs::read_to_string(store.path("lab")).unwrap();
    assert!(text.contains("\"format\": \"levelctl-pool-state\""));
    assert!(text.contains(&format!("\"version\": {VERSION}")));
}

#[test]
fn create_refuses_an_existing_pool_and_save_leaves_no_temporary_files() {
    let (dir, store, mut p) = store_with_pool();
    assert_eq!(store.create(&p).unwrap_err().kind, StateErrorKind::Exists);
    p.shutdown_vm("web").unwrap();
    store.save(&p).unwrap();
    assert_eq!(store.load("lab").unwrap(), p);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["lab.json"]);
}

#[test]
fn a_corrupt_file_is_refused_with_its_line_and_never_overwritten() {
    let (_dir, store, p) = store_with_pool();
    let path = store.path("lab");
    let good = std::fs::read_to_string(&path).unwrap();
    // Break the JSON on line 3.
    let mut lines: Vec<&str> = good.lines().collect();
    lines[2] = "  \"version\" 1,";
    let bad = lines.join("\n");
    std::fs::write(&path, &bad).unwrap();
    let e = store.load("lab").unwrap_err();
    match &e.kind {
        StateErrorKind::Corrupt { line, .. } => assert_eq!(*line, 3),
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("lab.json:3: corrupt pool state"),
        "{e}"
    );
    assert!(store.save(&p).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
    // A featureset string that does not parse is corruption too.
    let broken = good.replacen("1fc", "xyz", 1);
    std::fs::write(&path, &broken).unwrap();
    assert!(matches!(
        store.load("lab").unwrap_err().kind,
        StateErrorKind::Corrupt { .. }
    ));
}

#[test]
fn a_newer_file_is_refused_and_never_overwritten() {
    let (_dir, store, p) = store_with_pool();
    let path = store.path("lab");
    let newer = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("\"version\": {VERSION}"), "\"version\": 99")
        .replace("\"hosts\"", "\"future_field\": 1, \"hosts\"");
    std::fs::write(&path, &newer).unwrap();
    let e = store.load("lab").unwrap_err();
    assert_eq!(e.kind, StateErrorKind::Newer { version: 99 });
    assert!(e.to_string().contains("newer than this levelctl"));
    assert!(store.save(&p).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}

#[test]
fn an_inconsistent_pool_is_refused() {
    let (_dir, store, _) = store_with_pool();
    let path = store.path("lab");
    let text = std::fs::read_to_string(&path).unwrap();
    // The running VM now claims a host that is not a member.
    let resident = format!(
        "\"host\": \"{}\"",
        store.load("lab").unwrap().vms[0].host.clone().unwrap()
    );
    let bad = text.replacen(&resident, "\"host\": \"ghost\"", 1);
    assert_ne!(bad, text);
    let e = parse_state(&bad, "lab.json").unwrap_err();
    assert!(matches!(e.kind, StateErrorKind::Inconsistent(_)), "{e}");
    assert!(e.to_string().contains("unknown host `ghost`"), "{e}");
}

#[test]
fn a_halted_vm_with_cpu_facts_and_a_non_utf8_file_are_refused() {
    let (_dir, store, _) = store_with_pool();
    let path = store.path("lab");
    let text = std::fs::read_to_string(&path).unwrap();
    // The template is halted: a vendor on it means the file was edited.
    let bad = text.replacen(
        "\"name\": \"tmpl\",",
        "\"name\": \"tmpl\", \"vendor\": \"GenuineIntel\",",
        1,
    );
    assert_ne!(bad, text);
    let e = parse_state(&bad, "lab.json").unwrap_err();
    assert!(e.to_string().contains("halted VM `tmpl` has"), "{e}");
    // Not UTF-8: no line to name, and no `:0` either.
    std::fs::write(&path, b"\xff{}").unwrap();
    let e = store.load("lab").unwrap_err();
    assert!(
        e.to_string()
            .contains("lab.json: corrupt pool state (not UTF-8)"),
        "{e}"
    );
}

#[test]
fn missing_pools_and_bad_names_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assert_eq!(
        store.load("nope").unwrap_err().kind,
        StateErrorKind::Missing
    );
    assert_eq!(
        store.load("../etc").unwrap_err().kind,
        StateErrorKind::BadName
    );
    assert!(store.list().unwrap().is_empty());
}
