//! The `levelctl` binary on sample inputs: output and exit codes (0 done, 1 refused, 2 bad
//! input or usage) for good and bad input.

mod common;

use std::path::Path;

use common::*;

fn ok(state: &Path, args: &[&str]) -> Run {
    let r = levelctl(state, args);
    assert_eq!(
        r.code, 0,
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// A run that must exit with `code` and say `needle` on stderr.
fn fails(state: &Path, args: &[&str], code: i32, needle: &str) -> Run {
    let r = levelctl(state, args);
    assert_eq!(
        r.code, code,
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert!(
        has(&r.stderr, needle),
        "{args:?}: no `{needle}` in:\n{}",
        r.stderr
    );
    r
}

fn dump(file: &str) -> String {
    dump_path(file).display().to_string()
}

#[test]
fn help_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let r = ok(dir.path(), &["--help"]);
    for word in ["decode", "inspect", "pool", "vm", "what-if", "Exit codes"] {
        assert!(has(&r.stdout, word), "{word}: {}", r.stdout);
    }
    let r = ok(dir.path(), &["vm", "migrate", "--help"]);
    assert!(has(&r.stdout, "--to-pool") && has(&r.stdout, "--force"));
    assert_eq!(levelctl(dir.path(), &[]).code, 2);
    assert_eq!(levelctl(dir.path(), &["pool", "frobnicate"]).code, 2);
    fails(
        dir.path(),
        &["vm", "create", "p", "v", "--type", "xen"],
        2,
        "not a guest type",
    );
    // --force without a named destination is refused by clap.
    assert_eq!(
        levelctl(dir.path(), &["vm", "migrate", "p", "v", "--force"]).code,
        2
    );
}

#[test]
fn decode_good_and_bad_featuresets() {
    let dir = tempfile::tempdir().unwrap();
    let r = ok(
        dir.path(),
        &[
            "decode",
            "1fc9cbf5-f6d83203-28100000-00000021-00000001-00002329",
        ],
    );
    assert!(
        has(&r.stdout, "a XAPI featureset string, 6 words given"),
        "{}",
        r.stdout
    );
    assert!(has(&r.stdout, "CPUID.07H.0:EBX") && has(&r.stdout, "avx2"));
    let r = ok(
        dir.path(),
        &["--json", "decode", "fpu fxsr sse sse2 avx2 xsave"],
    );
    let j = r.json();
    assert_eq!(j[0]["form"], "names");
    assert_eq!(j[0]["featureset"]["count"], 6);
    assert_eq!(j[0]["not_closed"].as_array().unwrap().len(), 1);
    // avx2 without avx is not dependency-closed: decode says what Xen would drop.
    assert_eq!(j[0]["not_closed"][0]["feature"], "avx2");
    assert_eq!(j[0]["not_closed"][0]["needs"], "avx");
    fails(
        dir.path(),
        &["decode", "1fc9-zz00"],
        2,
        "<argument>:1: column 6 (word 1)",
    );
    fails(
        dir.path(),
        &["decode", "fpu avx9"],
        2,
        "unknown feature name `avx9`",
    );
    let file = dir.path().join("sets.txt");
    std::fs::write(&file, "# one per line\nfpu sse\n00000001-00000000-zz\n").unwrap();
    fails(
        dir.path(),
        &["decode", file.to_str().unwrap()],
        2,
        "sets.txt:3: column 19",
    );
}

#[test]
fn inspect_a_dump_a_cpuid_r_capture_and_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = ok(dir.path(), &["inspect", &dump(SANDYBRIDGE)]);
    assert!(
        has(&r.stdout, "family 0x6 model 0x2a stepping 0x7"),
        "{}",
        r.stdout
    );
    assert!(has(&r.stdout, "Intel mask MSRs V3"));
    assert!(has(
        &r.stdout,
        "by generation, not yet verified on the model"
    ));
    assert!(has(&r.stdout, "pv default") && has(&r.stdout, "hvm max"));
    assert!(
        has(&r.stdout, "on the silicon model: Intel mask MSRs V3"),
        "{}",
        r.stdout
    );
    assert!(has(
        &r.stdout,
        "cannot hide from a PV guest at the PV default: 1: itsc"
    ));
    let r = ok(dir.path(), &["--json", "inspect", &dump(IVYBRIDGE)]);
    let j = r.json();
    assert_eq!(j["mechanism"]["mechanism"], "faulting");
    assert_eq!(j["model"]["mechanism"], "faulting");
    assert_eq!(j["model"]["effective"][0], "faulting");
    assert_eq!(j["cpuid_faulting"], true);
    assert_eq!(j["signature"]["model"], 0x3a);
    let raw = data_path("cpuid-r-epyc-kvm.txt");
    let r = ok(
        dir.path(),
        &["inspect", raw.to_str().unwrap(), "--cpuid", "no-avx512f"],
    );
    assert!(has(&r.stdout, "AuthenticAMD") && has(&r.stdout, "cpuid-r"));
    assert!(
        has(&r.stdout, "booted with cpuid=no-avx512f"),
        "{}",
        r.stdout
    );
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "CPU 0:\n   0x00000000 0x00: eax=0x1\n").unwrap();
    fails(
        dir.path(),
        &["inspect", bad.to_str().unwrap()],
        2,
        "bad.txt:2: malformed register",
    );
    // A dump turned into a host report joins as the same host.
    let r = ok(dir.path(), &["inspect", &dump(HASWELL), "--host-report"]);
    let report = dir.path().join("haswell.json");
    std::fs::write(&report, &r.stdout).unwrap();
    ok(dir.path(), &["pool", "init", "a", &dump(HASWELL)]);
    ok(dir.path(), &["pool", "init", "b", report.to_str().unwrap()]);
    let a = ok(dir.path(), &["--json", "pool", "show", "a"]).json();
    let b = ok(dir.path(), &["--json", "pool", "show", "b"]).json();
    assert_eq!(a["levels"], b["levels"]);
    assert_eq!(a["pool"]["hosts"][0]["hvm"], b["pool"]["hosts"][0]["hvm"]);
    assert_eq!(b["pool"]["hosts"][0]["source"]["kind"], "host-report");
    fails(
        dir.path(),
        &["inspect", "/nonexistent/file"],
        2,
        "/nonexistent/file: cannot read",
    );
    fails(
        dir.path(),
        &["inspect", &dump(HASWELL), "--cpuid", "no-avx9"],
        2,
        "--cpuid:1:",
    );
}

#[test]
fn a_pool_from_start_to_refused_and_forced_migration() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    let r = ok(s, &["pool", "init", "lab", &dump(HASWELL), &dump(SKYLAKE)]);
    assert!(has(&r.stdout, "created pool lab"), "{}", r.stdout);
    assert_eq!(levelctl(s, &["pool", "init", "lab"]).code, 2, "exists");
    ok(s, &["vm", "create", "lab", "db", "--type", "pv"]);
    let r = ok(
        s,
        &["--json", "vm", "start", "lab", "db", "--on", "Haswell"],
    );
    assert_eq!(r.json()["power"], "running");
    assert_eq!(r.json()["host"], "Haswell");
    // A weaker host joins: the level drops, feature by feature, and db cannot go there.
    let r = ok(
        s,
        &["pool", "join", "lab", &dump(SANDYBRIDGE), "--name", "sandy"],
    );
    assert!(has(&r.stdout, "sandy joined pool lab"));
    assert!(has(&r.stdout, "avx2") && has(&r.stdout, "sandy (not in the host's CPU)"));
    assert!(
        has(&r.stdout, "cannot move to new host sandy"),
        "{}",
        r.stdout
    );
    let r = levelctl(s, &["vm", "migrate", "lab", "db", "--to", "sandy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("REFUSED: migrate db: sandy lacks"),
        "{}",
        r.stdout
    );
    assert!(has(&r.stdout, "avx2") && has(&r.stdout, "not in the host's CPU"));
    assert!(has(
        &r.stdout,
        "hosts that would accept it: lab/SkylakeXeon_20"
    ));
    let r = levelctl(
        s,
        &["--json", "vm", "migrate", "lab", "db", "--to", "sandy"],
    );
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["error"]["kind"], "refused");
    let missing = &j["error"]["refusal"]["checks"][0]["missing"];
    assert!(
        missing
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["feature"] == "avx2"
                && m["locator"] == "CPUID.07H.0:EBX[5]"
                && m["cause"]["kind"] == "not-in-hardware")
    );
    // Forced: recorded on the VM, visible in show and explain.
    let r = ok(
        s,
        &["vm", "migrate", "lab", "db", "--to", "sandy", "--force"],
    );
    assert!(
        has(&r.stdout, "FORCED: the VM may now lack"),
        "{}",
        r.stdout
    );
    let r = ok(s, &["pool", "show", "lab"]);
    assert!(has(&r.stdout, "1 move forced"), "{}", r.stdout);
    let r = ok(s, &["vm", "explain", "lab", "db"]);
    assert!(
        has(&r.stdout, "forced migrate to lab/sandy"),
        "{}",
        r.stdout
    );
    assert!(
        // The force waived its own move only: sandy, where it now runs, is checked in full.
        has(&r.stdout, "destinations: 2 of 3 hosts accept it")
            && has(&r.stdout, "sandy (lab): refused: lacks fma,"),
        "{}",
        r.stdout
    );
    // A reboot takes the current level and clears the record.
    let r = ok(s, &["--json", "vm", "reboot", "lab", "db"]);
    assert!(
        r.json()["lost"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "avx2")
    );
    let r = ok(s, &["--json", "vm", "explain", "lab", "db"]);
    assert!(r.json()["forced"].as_array().unwrap().is_empty());
    let r = ok(s, &["pool", "level", "lab", "--type", "pv"]);
    assert!(has(&r.stdout, "PV level:") && !has(&r.stdout, "HVM level:"));
    assert!(has(&r.stdout, "ALONE HOLDS BACK"));
    let r = ok(s, &["pool", "list"]);
    assert!(r.stdout.starts_with("POOL"), "{}", r.stdout);
    assert!(has(&r.stdout, "\nlab  "), "{}", r.stdout);
}

/// The pool as the database holds it, for before/after comparisons.
fn snapshot(state: &Path, pool: &str) -> String {
    ok(state, &["--json", "pool", "show", pool]).stdout
}

#[test]
fn what_if_and_dry_runs_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "lab", &dump(HASWELL), &dump(SKYLAKE)]);
    ok(s, &["vm", "create", "lab", "web", "--type", "hvm"]);
    ok(s, &["vm", "start", "lab", "web", "--on", "SkylakeXeon_20"]);
    let state = snapshot(s, "lab");
    let r = ok(
        s,
        &["what-if", "lab", "reboot", "Haswell", "--cpuid", "no-xsave"],
    );
    assert!(
        r.stdout
            .starts_with("what-if: Haswell would reboot in pool lab"),
        "{}",
        r.stdout
    );
    assert!(has(&r.stdout, "STRANDED"));
    // In a few lines by root cause; the chains with --verbose.
    assert!(
        has(
            &r.stdout,
            "5 need xsave, which is absent: disabled at boot by cpuid=no-xsave\n      1 disabled \
             at boot by cpuid=no-xsave"
        ),
        "{}",
        r.stdout
    );
    let r = ok(
        s,
        &[
            "what-if",
            "lab",
            "reboot",
            "Haswell",
            "--cpuid",
            "no-xsave",
            "--verbose",
        ],
    );
    assert!(
        has(
            &r.stdout,
            "missing because xsave is absent (disabled at boot by cpuid=no-xsave); avx2 needs avx, \
         avx needs xsave"
        ),
        "{}",
        r.stdout
    );
    let r = levelctl(s, &["what-if", "lab", "leave", "SkylakeXeon_20"]);
    assert_eq!(r.code, 1);
    assert!(has(
        &r.stdout,
        "BLOCKED:\n  VM web is running on SkylakeXeon_20"
    ));
    let r = ok(s, &["--json", "what-if", "lab", "join", &dump(NEHALEM)]);
    let j = r.json();
    assert_eq!(j["applied"], false);
    assert!(j["levels"][0]["lost"].as_array().unwrap().len() > 5);
    ok(s, &["pool", "join", "lab", &dump(NEHALEM), "--dry-run"]);
    ok(
        s,
        &["pool", "evacuate", "lab", "SkylakeXeon_20", "--dry-run"],
    );
    assert_eq!(snapshot(s, "lab"), state, "nothing written");
    // The real reboot, after evacuating: no VM is left on Haswell to block it.
    ok(
        s,
        &["pool", "reboot", "lab", "Haswell", "--cpuid", "no-xsave"],
    );
    let r = ok(s, &["--json", "pool", "show", "lab"]);
    let hosts = r.json()["pool"]["hosts"].clone();
    assert_eq!(hosts[0]["name"], "Haswell");
    assert!(
        hosts[0]["disabled"]
            .as_str()
            .unwrap()
            .starts_with("00000000-04000000")
    );
}

#[test]
fn other_pools_other_inputs_and_legacy_vms() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    let cpu_info = data_path("xapi-cpu-info-haswell-10w.txt");
    let report = data_path("host-report-example.json");
    ok(
        s,
        &[
            "pool",
            "init",
            "old",
            cpu_info.to_str().unwrap(),
            report.to_str().unwrap(),
        ],
    );
    ok(s, &["pool", "init", "new", &dump(SKYLAKE)]);
    ok(s, &["vm", "create", "new", "web", "--type", "hvm"]);
    ok(s, &["vm", "start", "new", "web"]);
    let r = levelctl(s, &["vm", "migrate", "new", "web", "--to-pool", "old"]);
    assert_eq!(r.code, 1);
    assert!(has(
        &r.stdout,
        "REFUSED: migrate web: no host of pool old accepts it"
    ));
    // Halted: moves without a check, starts at the destination's level.
    ok(s, &["vm", "shutdown", "new", "web"]);
    let r = ok(s, &["vm", "migrate", "new", "web", "--to-pool", "old"]);
    assert!(has(&r.stdout, "moved without a CPU check"));
    ok(s, &["vm", "start", "old", "web"]);
    ok(
        s,
        &["vm", "create", "new", "tmpl", "--type", "pv", "--template"],
    );
    assert_eq!(levelctl(s, &["vm", "start", "new", "tmpl"]).code, 1);
    ok(
        s,
        &[
            "vm",
            "copy",
            "new",
            "tmpl",
            "--to-pool",
            "old",
            "--as",
            "svc",
            "--instantiate",
        ],
    );
    ok(s, &["vm", "start", "old", "svc"]);
    // A legacy VM without a featureset takes the landing host's; with a shorter one it is
    // zero-extended and checked.
    let r = ok(
        s,
        &[
            "--json",
            "vm",
            "import",
            "old",
            "legacy",
            "--type",
            "pv",
            "--on",
            "qemu-nehalem",
        ],
    );
    assert_eq!(r.json()["check"]["accepted"], true);
    let fsfile = dir.path().join("fs.txt");
    std::fs::write(&fsfile, "# recorded by XenServer 7.0\n1fc9cbf5-f6f83203\n").unwrap();
    let arg = format!("@{}", fsfile.display());
    let r = levelctl(
        s,
        &[
            "vm",
            "import",
            "old",
            "v1",
            "--type",
            "pv",
            "--featureset",
            &arg,
            "--on",
            "qemu-nehalem",
        ],
    );
    assert_eq!(
        r.code, 1,
        "the Nehalem report lacks features of a Haswell set"
    );
    assert!(has(&r.stdout, "qemu-nehalem lacks"), "{}", r.stdout);
    assert!(has(
        &r.stdout,
        "hosts that would accept it: old/xapi-cpu-info-haswell-10w"
    ));
    let r = ok(
        s,
        &[
            "vm",
            "import",
            "old",
            "v1",
            "--type",
            "pv",
            "--featureset",
            &arg,
        ],
    );
    assert!(
        has(&r.stdout, "running on xapi-cpu-info-haswell-10w"),
        "{}",
        r.stdout
    );
    fails(
        s,
        &[
            "vm",
            "import",
            "old",
            "v2",
            "--type",
            "pv",
            "--featureset",
            "1fc9-zz",
        ],
        2,
        "--featureset:1: column 6",
    );
    // A malformed line in an @FILE is named by the file and its line.
    std::fs::write(&fsfile, "# recorded by XenServer 7.0\n\n1fc9-zz\n").unwrap();
    fails(
        s,
        &[
            "vm",
            "import",
            "old",
            "v2",
            "--type",
            "pv",
            "--featureset",
            &arg,
        ],
        2,
        "fs.txt:3: column 6",
    );
    let r = ok(s, &["vm", "explain", "old", "v1", "--with-pool", "new"]);
    assert!(
        has(&r.stdout, "SkylakeXeon_20 (new): accepted"),
        "{}",
        r.stdout
    );
    // Mixed vendors never meet.
    let r = levelctl(s, &["pool", "join", "new", &dump(GENOA)]);
    assert_eq!(r.code, 1);
    assert!(has(&r.stdout, "CPUs differ"), "{}", r.stdout);
}

#[test]
fn bad_state_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "lab", &dump(HASWELL)]);
    ok(s, &["vm", "create", "lab", "web", "--type", "hvm"]);
    let db = rusqlite::Connection::open(s.join("levelctl.db")).unwrap();
    let row = || -> String {
        db.query_row("SELECT state FROM pools WHERE name = 'lab'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let set = |text: &str| {
        db.execute("UPDATE pools SET state = ?1 WHERE name = 'lab'", [text])
            .unwrap();
    };
    let good = row();
    let corrupt = good.replacen("\"hosts\"", "\"hosts\" oops", 1);
    set(&corrupt);
    for args in [
        &["vm", "start", "lab", "web"][..],
        &["pool", "show", "lab"][..],
    ] {
        let r = levelctl(s, args);
        assert_eq!(r.code, 2);
        assert!(
            has(&r.stderr, "levelctl.db (pool lab)") && has(&r.stderr, "corrupt pool state"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(row(), corrupt);
    set(&good);
    // A newer schema is refused, never changed.
    db.execute_batch("PRAGMA user_version = 7").unwrap();
    let r = levelctl(s, &["--json", "vm", "start", "lab", "web"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["kind"], "state");
    assert!(
        has(
            &r.stderr,
            "schema version 7 is newer than this levelctl's (1)"
        ),
        "{}",
        r.stderr
    );
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7);
    assert_eq!(row(), good);
    db.execute_batch("PRAGMA user_version = 1").unwrap();
    // A mistyped field is refused too, never dropped and lost on the next save.
    let mistyped = good.replacen("\"power\"", "\"powr\"", 1);
    assert_ne!(mistyped, good, "the state has a VM power field to mistype");
    set(&mistyped);
    let r = levelctl(s, &["vm", "start", "lab", "web"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(has(&r.stderr, "powr"), "{}", r.stderr);
    assert_eq!(row(), mistyped);
    set(&good);
    // Something that is not a database.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("levelctl.db"),
        "hello, not SQLite\n".repeat(100),
    )
    .unwrap();
    let r = levelctl(other.path(), &["pool", "list"]);
    assert_eq!(r.code, 2);
    assert!(has(&r.stderr, "not a levelctl database"), "{}", r.stderr);
    // Unknown pools, hosts and VMs are usage errors.
    let r = levelctl(s, &["pool", "show", "nope"]);
    assert_eq!(r.code, 2);
    assert!(
        has(&r.stderr, "no pool `nope`") && has(&r.stderr, "pools: lab"),
        "{}",
        r.stderr
    );
    assert_eq!(levelctl(s, &["vm", "start", "lab", "ghost"]).code, 2);
    let r = levelctl(s, &["vm", "start", "lab", "web", "--on", "ghost"]);
    assert_eq!(r.code, 2);
    assert!(
        has(&r.stderr, "pool lab has no host `ghost` (hosts: Haswell)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        levelctl(s, &["vm", "resume", "lab", "web"]).code,
        2,
        "not suspended"
    );
}

/// Text with every run of blanks and line breaks made one blank (lines are folded at 80
/// columns).
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True if `text` holds `needle`, whatever the line folding at 80 columns did to either.
fn has(text: &str, needle: &str) -> bool {
    squash(text).contains(&squash(needle))
}
