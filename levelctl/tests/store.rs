//! The pool database through the `levelctl` binary: concurrent writers lose nothing, a failure
//! at any write of a cross-pool move leaves the state as it was, the audit trail, the
//! lifecycle commands, importing JSON state files, and where the database lives.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::*;
use levelctl::store::FAIL_WRITE_ENV;
use serde_json::Value;

fn command(state: &Path, args: &[&str]) -> Command {
    let mut c = levelctl_command(state, args);
    c.env("USER", "tester");
    c
}

fn run(state: &Path, args: &[&str]) -> Output {
    command(state, args).output().unwrap()
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = run(state, args);
    assert!(
        out.status.success(),
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(state: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(state, &all)).unwrap()
}

fn dump(file: &str) -> String {
    dump_path(file).display().to_string()
}

/// Every pool as the database holds it: the state a failed command must leave alone.
fn everything(state: &Path) -> Vec<Value> {
    let names: Vec<String> = json(state, &["pool", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pool"].as_str().unwrap().to_string())
        .collect();
    names
        .iter()
        .map(|n| json(state, &["pool", "show", n])["pool"].clone())
        .collect()
}

fn spawn(state: &Path, args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(state, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// 20 `vm create` and 20 `pool join` at once, three rounds, then 20 `vm start` racing 20 more
/// joins: every command succeeds and every change is there, once.
#[test]
fn forty_concurrent_commands_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "lab", &dump(HASWELL)]);
    let rounds = 3;
    for round in 0..rounds {
        let mut children = Vec::new();
        for i in 0..20 {
            let vm = format!("vm{round}-{i}");
            let host = format!("h{round}-{i}");
            children.push(spawn(
                s,
                &["vm", "create", "lab", &vm, "--type", "hvm"].map(String::from),
            ));
            children.push(spawn(
                s,
                &["pool", "join", "lab", &dump(SKYLAKE_C), "--name", &host].map(String::from),
            ));
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Starts race joins: every VM is running, on a host of the pool.
    let mut children = Vec::new();
    for i in 0..20 {
        children.push(spawn(
            s,
            &["vm", "start", "lab", &format!("vm0-{i}")].map(String::from),
        ));
        children.push(spawn(
            s,
            &[
                "pool",
                "join",
                "lab",
                &dump(HASWELL),
                "--name",
                &format!("late-{i}"),
            ]
            .map(String::from),
        ));
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = &json(s, &["pool", "show", "lab"])["pool"];
    let hosts: Vec<&str> = pool["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    let vms: Vec<&Value> = pool["vms"].as_array().unwrap().iter().collect();
    assert_eq!(hosts.len(), 1 + 20 * rounds + 20, "{hosts:?}");
    assert_eq!(vms.len(), 20 * rounds);
    let mut names: Vec<&str> = vms.iter().map(|v| v["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 20 * rounds, "no duplicates");
    for i in 0..20 {
        let v = vms
            .iter()
            .find(|v| v["name"] == format!("vm0-{i}"))
            .unwrap();
        assert_eq!(v["power"], "running", "{v}");
        assert!(hosts.contains(&v["host"].as_str().unwrap()));
    }
    // And the audit trail has every one of them, once.
    let history = json(s, &["history", "--pool", "lab"]);
    let done = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "done")
        .count();
    assert_eq!(done, 1 + 40 * rounds + 40);
}

/// A cross-pool move writes the destination pool, the source pool, the audit entry and the
/// commit; each failing in turn leaves both pools exactly as they were, and the failure is
/// recorded. With no failure the move is done once.
#[test]
fn a_cross_pool_move_failing_at_any_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "a", &dump(SKYLAKE_C)]);
    ok(
        s,
        &["pool", "init", "b", &dump(HASWELL), &dump(SANDYBRIDGE)],
    );
    ok(s, &["vm", "create", "a", "web", "--type", "hvm"]);
    ok(s, &["vm", "start", "a", "web"]);
    let before = everything(s);
    let move_args = [
        "vm",
        "migrate",
        "a",
        "web",
        "--to-pool",
        "b",
        "--to",
        "Haswell",
        "--force",
    ];
    let mut failed = 0;
    for n in 1..=4 {
        let out = command(s, &move_args)
            .env(FAIL_WRITE_ENV, n.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "write {n}: {stderr}");
        assert!(
            has(&stderr, &format!("write {n} failed (injected")),
            "{stderr}"
        );
        assert_eq!(everything(s), before, "write {n} failed: nothing changed");
        failed += 1;
    }
    let history = json(s, &["history", "--vm", "web"]);
    let failures: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .collect();
    assert_eq!(failures.len(), failed);
    // No injected failure: the move happens, once, in both pools at once.
    ok(s, &move_args);
    let after = everything(s);
    let vms = |pool: &Value| -> Vec<String> {
        pool["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(vms(&after[0]), Vec::<String>::new());
    assert_eq!(vms(&after[1]), ["web"]);
}

/// The audit trail shows a forced move with the features it waived; a later move is checked
/// again and refused without --force.
#[test]
fn history_shows_a_forced_move_and_its_waived_features() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["pool", "init", "lab", &dump(SKYLAKE_C)]);
    ok(s, &["vm", "create", "lab", "db", "--type", "hvm"]);
    ok(s, &["vm", "start", "lab", "db"]);
    ok(
        s,
        &["pool", "join", "lab", &dump(SANDYBRIDGE), "--name", "sandy"],
    );
    ok(
        s,
        &["pool", "join", "lab", &dump(HASWELL), "--name", "haswell"],
    );
    ok(s, &["pool", "init", "other", &dump(IVYBRIDGE)]);
    ok(
        s,
        &["vm", "migrate", "lab", "db", "--to", "sandy", "--force"],
    );
    // Checked again: Haswell lacks AVX-512 as Sandy Bridge did; refused unforced, also
    // across pools.
    assert_eq!(
        run(s, &["vm", "migrate", "lab", "db", "--to", "haswell"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(s, &["vm", "migrate", "lab", "db", "--to-pool", "other"])
            .status
            .code(),
        Some(1)
    );
    let text = ok(s, &["history", "--vm", "db"]);
    assert!(text.contains("DONE: vm migrate lab/db"), "{text}");
    assert!(
        text.contains("$ levelctl --state ") && text.contains("--to sandy --force"),
        "{text}"
    );
    assert!(
        text.contains("forced, waived 32 features:\n      fma,movbe,"),
        "{text}"
    );
    assert!(text.contains("avx512f"), "{text}");
    assert!(text.contains("REFUSED: vm migrate lab/db\n"), "{text}");
    assert!(
        text.contains("REFUSED: vm migrate lab/db -> other"),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }
    let events = json(s, &["history", "--pool", "lab", "--vm", "db"]);
    let forced = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["waived"].as_array().is_some_and(|w| !w.is_empty()))
        .expect("a forced entry");
    assert_eq!(forced["user"], "tester");
    assert_eq!(forced["host"], "sandy");
    assert!(
        forced["waived"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "avx2")
    );
    assert!(forced["time"].as_str().unwrap().ends_with('Z'));
    // The VM's record: what the force waived and what it uses beyond its pool's level.
    let list = json(s, &["vm", "list", "lab"]);
    let db = &list[0];
    assert_eq!(db["forced"][0]["host"], "lab/sandy");
    assert!(
        db["forced"][0]["above_level"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "avx512f")
    );
    // Other pools' history is not mixed in.
    let other = json(s, &["history", "--pool", "other"]);
    assert!(
        other
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["pool"] == "other" || e["other_pool"] == "other")
    );
}

#[test]
fn lifecycle_lists_and_destroys_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    assert_eq!(
        ok(s, &["pool", "list"]),
        "no pools (create one with `levelctl pool init NAME [FILE...]`)\n"
    );
    ok(s, &["pool", "init", "lab", &dump(HASWELL)]);
    ok(s, &["pool", "init", "amd", &dump(GENOA)]);
    ok(s, &["vm", "create", "lab", "web", "--type", "hvm"]);
    ok(
        s,
        &["vm", "create", "lab", "tpl", "--type", "pv", "--template"],
    );
    ok(s, &["vm", "create", "amd", "db", "--type", "pv"]);
    ok(s, &["vm", "start", "lab", "web"]);
    let text = ok(s, &["vm", "list"]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains("web  hvm   running  Haswell  at the level"),
        "{text}"
    );
    let list = json(s, &["vm", "list", "lab"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let pools = json(s, &["pool", "list"]);
    assert_eq!(pools[1]["pool"], "lab");
    assert_eq!(pools[1]["running"], 1);
    // A running VM is not destroyed without --force; a halted one is.
    let out = run(s, &["vm", "destroy", "lab", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("running on Haswell"));
    ok(s, &["vm", "destroy", "lab", "tpl"]);
    // A pool with a running VM is not destroyed without --force.
    let out = run(s, &["--json", "pool", "destroy", "lab"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "refused");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 VM is running or suspended: web")
    );
    let v = json(s, &["pool", "destroy", "lab", "--force"]);
    assert_eq!(v["forced"], true);
    let v = json(s, &["vm", "destroy", "amd", "db"]);
    assert_eq!(v["destroyed"], "db");
    ok(s, &["pool", "destroy", "amd"]);
    assert_eq!(json(s, &["pool", "list"]), Value::Array(Vec::new()));
    let history = ok(s, &["history"]);
    assert!(history.contains("DONE: pool destroy lab"), "{history}");
    assert!(history.contains("REFUSED: pool destroy lab"), "{history}");
}

#[test]
fn json_state_files_are_imported_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    // Pool files as levelctl 0.1 wrote them.
    let old = tempfile::tempdir().unwrap();
    let mut lab = pool(
        "lab",
        vec![host(HASWELL, "haswell"), host(SKYLAKE, "skylake")],
    );
    lab.create_vm("web", levelctl::GuestType::Hvm, false)
        .unwrap();
    lab.start_vm("web", Some("skylake")).unwrap();
    let store = levelctl::state::Store::new(old.path());
    store.create(&lab).unwrap();
    store
        .create(&pool("amd", vec![host(GENOA, "genoa")]))
        .unwrap();
    let text = ok(s, &["state", "import", &old.path().display().to_string()]);
    assert_eq!(
        text,
        "imported pool amd: 1 host, 0 VMs\nimported pool lab: 2 hosts, 1 VM\n"
    );
    let shown = json(s, &["pool", "show", "lab"]);
    assert_eq!(
        serde_json::from_value::<levelctl::Pool>(shown["pool"].clone()).unwrap(),
        lab
    );
    // Again: refused as a whole (lab exists), nothing half-imported.
    ok(s, &["pool", "destroy", "amd"]);
    let out = run(s, &["state", "import", &old.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(has(&String::from_utf8_lossy(&out.stderr), "exists"));
    assert_eq!(json(s, &["pool", "list"]).as_array().unwrap().len(), 1);
    // A corrupt file is refused naming it.
    std::fs::write(old.path().join("bad.json"), "{").unwrap();
    let out = run(
        s,
        &[
            "state",
            "import",
            &old.path().join("bad.json").display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(has(
        &String::from_utf8_lossy(&out.stderr),
        "bad.json:1: corrupt pool state"
    ));
}

#[test]
fn the_database_lives_per_user_unless_told_otherwise() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if root {
        // Root keeps the database where system state goes (not created by a test).
        assert_eq!(
            levelctl::store::default_state_dir(),
            Path::new("/var/lib/levelctl")
        );
    } else {
        let xdg = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_levelctl"))
            .args(["--json", "state", "info"])
            .env_remove("LEVELCTL_STATE")
            .env("XDG_STATE_HOME", xdg.path())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["database"],
            xdg.path()
                .join("levelctl/levelctl.db")
                .display()
                .to_string()
        );
    }
    // LEVELCTL_STATE overrides it.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_levelctl"))
        .args(["--json", "state", "info"])
        .env("LEVELCTL_STATE", other.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["database"],
        other.path().join("levelctl.db").display().to_string()
    );
    assert_eq!(v["schema_version"], 1);
}

/// True if `text` holds `needle`, whatever the line folding at 80 columns did to either.
fn has(text: &str, needle: &str) -> bool {
    let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    squash(text).contains(&squash(needle))
}
