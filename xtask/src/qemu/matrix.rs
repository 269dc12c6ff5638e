//! The QEMU matrix: every scenario on every CPU model it applies to, booted in parallel,
//! summed per scenario, written to `target/qemu-matrix.json`.
//!
//! | boots | CPU models | scenarios |
//! |---|---|---|
//! | plain QEMU | qemu64, Nehalem, SandyBridge, Haswell, Skylake-Server, Icelake-Server, EPYC, EPYC-Rome, EPYC-Milan, Opteron_G3 | `xen-dom0`, `pv-forced`, `switch`, `pv-levelled` (levelled guests refused: fail closed), `pv-levelled best_effort` |
//! | QEMU with SVM | EPYC, EPYC-Milan, `Haswell,+svm`, `Skylake-Server,+svm` | `hvm` |
//! | plain QEMU | qemu64, Haswell, EPYC, Opteron_G3 | `abi` (the hypercall ABI end to end) |
//! | the silicon shim | Haswell (faulting), SandyBridgeE and K10 Barcelona (masks) | `abi` |
//! | plain QEMU, `-smp 2` and `-smp 4` | Haswell, EPYC | `smp` (every CPU runs its own domains, each with its own levelling state; a policy/start race between two CPUs) |
//! | the silicon shim, `-smp 2` | SandyBridgeE (Intel masks), Haswell (faulting) | `smp` (each CPU its own L0 and its own model's MSRs) |
//! | the silicon shim | SandyBridgeE (Intel masks), K10 Barcelona (AMD masks), Haswell (faulting) | `msr-fault` (a levelling MSR starts raising #GP mid-run) |
//! | the silicon shim | every dump in `data/cpuid-dumps/` (`shim=<stem>`), on `-cpu EPYC` for AMD and Hygon dumps and `Skylake-Server,+svm` for Intel ones (the dump decides what the kernel sees; the QEMU model only has to offer SVM, SMEP and SMAP) | `pv-levelled best_effort` |
//!
//! Any failed row fails the step (and so `cargo xtask test`), after every row has run and the
//! failing rows' check lines and serial logs have been shown.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{Boot, BootSpec, Counts, Verdict, boot_all, build_kernel};
use crate::process::Workspace;
use crate::provision;

/// CPU models booted without SVM.
pub const PLAIN_CPUS: &[&str] = &[
    "qemu64",
    "Nehalem",
    "SandyBridge",
    "Haswell",
    "Skylake-Server",
    "Icelake-Server",
    "EPYC",
    "EPYC-Rome",
    "EPYC-Milan",
    "Opteron_G3",
];
/// Scenarios run on every plain model, with their extra command-line words.
pub const PLAIN_SCENARIOS: &[(&str, &[&str])] = &[
    ("xen-dom0", &[]),
    ("pv-forced", &[]),
    ("switch", &[]),
    ("pv-levelled", &[]),
    ("pv-levelled", &["best_effort"]),
];
/// CPU models with SVM (AMD natively, Intel with `,+svm`).
pub const SVM_CPUS: &[&str] = &["EPYC", "EPYC-Milan", "Haswell,+svm", "Skylake-Server,+svm"];
/// Scenarios run on the SVM models.
pub const SVM_SCENARIOS: &[&str] = &["hvm"];
/// CPU models the toolstack ABI boots on: the ABI does not depend on the model, so a few of
/// each vendor and age (Opteron_G3 has no leaf 7 and no XSAVE).
pub const ABI_CPUS: &[&str] = &["qemu64", "Haswell", "EPYC", "Opteron_G3"];
/// The ABI scenario.
pub const ABI_SCENARIOS: &[&str] = &["abi"];
/// Dumps the ABI also boots above the shim on: a faulting CPU (dom0's guest without best
/// effort starts) and two masking ones, Intel and AMD (it is refused).
pub const ABI_SHIM_DUMPS: &[&str] = &[
    "GenuineIntel00306C3_Haswell_CPUID",
    "GenuineIntel00206D7_SandyBridgeE_00_CPUID",
    "AuthenticAMD0100F21_K10_Barcelona_CPUID",
];
/// CPU models the `smp` scenario boots on (plain QEMU), each with every count of
/// [`SMP_COUNTS`].
pub const SMP_CPUS: &[&str] = &["Haswell", "EPYC"];
/// The `-smp` values of the `smp` rows.
pub const SMP_COUNTS: &[u32] = &[2, 4];
/// Dumps the `smp` scenario boots above the shim on, with `-smp` [`SMP_SHIM_COUNT`]: every
/// CPU has its own L0 and its own model (Intel masks, and faulting).
pub const SMP_SHIM_DUMPS: &[&str] = &[
    "GenuineIntel00206D7_SandyBridgeE_00_CPUID",
    "GenuineIntel00306C3_Haswell_CPUID",
];
/// The `-smp` value of the `smp` rows above the shim.
pub const SMP_SHIM_COUNT: u32 = 2;
/// Dumps the `msr-fault` scenario boots above the shim on: masks (Intel, AMD) and faulting.
pub const MSR_FAULT_DUMPS: &[&str] = &[
    "GenuineIntel00206D7_SandyBridgeE_00_CPUID",
    "AuthenticAMD0100F21_K10_Barcelona_CPUID",
    "GenuineIntel00306C3_Haswell_CPUID",
];
/// The scenario (and its words) booted above the silicon shim, once per dump.
pub const SHIM_SCENARIO: (&str, &[&str]) = ("pv-levelled", &["best_effort"]);
/// The CPUID dumps, relative to the workspace root (the kernel embeds the same folder).
pub const DUMPS_DIR: &str = "data/cpuid-dumps";

/// Where the results go, relative to the workspace root.
const JSON_PATH: &str = "target/qemu-matrix.json";
/// Lines of serial log shown for a failed row.
const LOG_TAIL: usize = 40;

/// Every boot of the matrix, scenario by scenario; `dumps` are the file stems of the CPUID
/// dumps, one shim boot each.
pub fn rows(dumps: &[String]) -> Vec<BootSpec> {
    let with = |cpu: &str, scenario: &str, words: &[&str]| {
        let mut spec = BootSpec::new(cpu, scenario);
        spec.append = words.iter().map(|w| (*w).to_owned()).collect();
        spec
    };
    let plain = PLAIN_SCENARIOS
        .iter()
        .flat_map(|(scenario, words)| PLAIN_CPUS.iter().map(move |cpu| with(cpu, scenario, words)));
    let svm = SVM_SCENARIOS
        .iter()
        .flat_map(|scenario| SVM_CPUS.iter().map(move |cpu| BootSpec::new(cpu, scenario)));
    let abi = ABI_SCENARIOS
        .iter()
        .flat_map(|scenario| ABI_CPUS.iter().map(move |cpu| BootSpec::new(cpu, scenario)));
    let shim = dumps.iter().map(|stem| {
        let (scenario, words) = SHIM_SCENARIO;
        let mut spec = with(shim_cpu(stem), scenario, words);
        spec.append.insert(0, format!("shim={stem}"));
        spec
    });
    let abi_shim = dumps
        .iter()
        .filter(|stem| ABI_SHIM_DUMPS.contains(&stem.as_str()))
        .flat_map(|stem| {
            ABI_SCENARIOS.iter().map(move |scenario| {
                let mut spec = BootSpec::new(shim_cpu(stem), scenario);
                spec.append.push(format!("shim={stem}"));
                spec
            })
        });
    let smp = SMP_CPUS.iter().flat_map(|cpu| {
        SMP_COUNTS.iter().map(move |&count| {
            let mut spec = BootSpec::new(cpu, "smp");
            spec.smp = count;
            spec
        })
    });
    let smp_shim = dumps
        .iter()
        .filter(|stem| SMP_SHIM_DUMPS.contains(&stem.as_str()))
        .map(|stem| {
            let mut spec = BootSpec::new(shim_cpu(stem), "smp");
            spec.append.push(format!("shim={stem}"));
            spec.smp = SMP_SHIM_COUNT;
            spec
        });
    let msr_fault = dumps
        .iter()
        .filter(|stem| MSR_FAULT_DUMPS.contains(&stem.as_str()))
        .map(|stem| {
            let mut spec = BootSpec::new(shim_cpu(stem), "msr-fault");
            spec.append.push(format!("shim={stem}"));
            spec
        });
    plain
        .chain(svm)
        .chain(abi)
        .chain(shim)
        .chain(abi_shim)
        .chain(smp)
        .chain(smp_shim)
        .chain(msr_fault)
        .collect()
}

/// The QEMU model a shim boot of dump `stem` runs on: any with SVM (the shim needs it) and
/// with SMEP and SMAP (the kernel above turns them on when the dump reports them).
pub fn shim_cpu(stem: &str) -> &'static str {
    if stem.starts_with("GenuineIntel") {
        "Skylake-Server,+svm"
    } else {
        "EPYC"
    }
}

/// The file stems of the CPUID dumps in `dir` (`*_CPUID*.txt`), sorted: what the kernel's
/// `build.rs` embeds.
pub fn dump_stems(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let mut stems: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".txt") && name.contains("_CPUID"))
        .map(|name| name.trim_end_matches(".txt").to_owned())
        .collect();
    stems.sort();
    if stems.is_empty() {
        return Err(format!("{}: no CPUID dumps", dir.display()));
    }
    Ok(stems)
}

/// The dump `name` picks, as the kernel's `shim=` does: its stem, its stem before `_CPUID`, or
/// the one stem that contains it (ASCII case ignored).
pub fn resolve_dump<'a>(stems: &'a [String], name: &str) -> Result<&'a str, String> {
    let short = |stem: &'a str| stem.find("_CPUID").map_or(stem, |end| &stem[..end]);
    if let Some(stem) = stems.iter().find(|s| *s == name || short(s) == name) {
        return Ok(stem);
    }
    let lower = name.to_ascii_lowercase();
    let found: Vec<&String> = stems
        .iter()
        .filter(|s| !lower.is_empty() && s.to_ascii_lowercase().contains(&lower))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no CPUID dump matches `{name}`; one of {stems:?}")),
        many => Err(format!("`{name}` matches several dumps: {many:?}")),
    }
}

/// The dump a boot runs above the shim, if any.
pub fn shim_of(spec: &BootSpec) -> Option<&str> {
    spec.append.iter().find_map(|w| w.strip_prefix("shim="))
}

/// The table a row goes in: its scenario and command-line words (the shim's dump aside).
fn group(spec: &BootSpec) -> String {
    let mut words = vec![spec.scenario.clone()];
    words.extend(
        spec.append
            .iter()
            .filter(|w| !w.starts_with("shim="))
            .cloned(),
    );
    if shim_of(spec).is_some() {
        words.push("(silicon shim)".to_owned());
    }
    words.join(" ")
}

/// A row's name in its table: the CPU model, or the dump (and the model) above the shim.
fn row_name(spec: &BootSpec) -> String {
    match shim_of(spec) {
        Some(stem) => {
            let short = stem.find("_CPUID").map_or(stem, |end| &stem[..end]);
            format!("{short} on {}", spec.cpu)
        }
        None => spec.cpu.clone(),
    }
}

/// One row's outcome.
struct Row {
    spec: BootSpec,
    boot: Result<Boot, String>,
}

impl Row {
    fn verdict(&self) -> Verdict {
        match &self.boot {
            Ok(boot) => boot.verdict(),
            Err(error) => Verdict::Fail(error.clone()),
        }
    }

    fn counts(&self) -> Counts {
        self.boot
            .as_ref()
            .ok()
            .and_then(Boot::counts)
            .unwrap_or_default()
    }

    fn seconds(&self) -> f64 {
        self.boot
            .as_ref()
            .map_or(0.0, |boot| boot.elapsed.as_secs_f64())
    }
}

/// Provisions QEMU, builds the kernel, boots every row, reports, and fails on any failure.
pub fn run(workspace: &Workspace) -> Result<(), String> {
    provision::run(workspace)?;
    let kernel = build_kernel(workspace)?;
    let qemu = provision::qemu_version().unwrap_or_default();
    let dumps = dump_stems(&workspace.root().join(DUMPS_DIR))?;
    let specs = rows(&dumps);
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(specs.len());
    let shim_boots = specs.iter().filter(|s| shim_of(s).is_some()).count();
    println!(
        "qemu matrix: {} boots ({shim_boots} above the silicon shim: one per CPUID dump, and the ABI on {} of them) on {workers} workers ({qemu})",
        specs.len(),
        shim_boots - dumps.len()
    );
    let started = Instant::now();
    let rows = boot_all(&kernel, &specs, workers, |spec, boot| Row {
        spec: spec.clone(),
        boot,
    });
    let wall = started.elapsed();
    print_tables(&rows);
    print_failures(&rows);
    let json_path = workspace.root().join(JSON_PATH);
    std::fs::write(&json_path, to_json(&rows, &qemu, &kernel, wall))
        .map_err(|error| format!("writing {}: {error}", json_path.display()))?;
    let failed = rows
        .iter()
        .filter(|row| matches!(row.verdict(), Verdict::Fail(_)))
        .count();
    let passed = rows.len() - failed;
    println!(
        "qemu matrix: {passed} passed, {failed} failed in {:.1}s; results in {JSON_PATH}",
        wall.as_secs_f64()
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of {} QEMU boots failed", rows.len()))
    }
}

/// One table per scenario: CPU, verdict, check counts, time.
fn print_tables(rows: &[Row]) {
    let mut groups: Vec<String> = Vec::new();
    for row in rows {
        let g = group(&row.spec);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let width = rows
        .iter()
        .map(|row| row_name(&row.spec).len())
        .max()
        .unwrap_or(0)
        .max(22);
    for g in groups {
        println!();
        println!("scenario {g}");
        println!(
            "  {:<width$} {:<8} {:>7} {:>7} {:>7}",
            "cpu", "result", "passed", "failed", "time"
        );
        for row in rows.iter().filter(|row| group(&row.spec) == g) {
            let counts = row.counts();
            let result = match row.verdict() {
                Verdict::Pass => "pass",
                Verdict::Skipped => "skipped",
                Verdict::Fail(_) => "FAIL",
            };
            println!(
                "  {:<width$} {:<8} {:>7} {:>7} {:>6.2}s",
                row_name(&row.spec),
                result,
                counts.passed,
                counts.failed,
                row.seconds()
            );
        }
    }
    println!();
}

/// For each failed row: why, its failed check lines, the tail of its serial log, QEMU's stderr.
fn print_failures(rows: &[Row]) {
    for row in rows {
        let Verdict::Fail(why) = row.verdict() else {
            continue;
        };
        println!(
            "==== FAILED: {} on {}: {why}",
            group(&row.spec),
            row_name(&row.spec)
        );
        let Ok(boot) = &row.boot else { continue };
        let lines: Vec<&str> = boot.serial.lines().collect();
        for line in lines.iter().filter(|line| line.contains(": FAIL")) {
            println!("  {line}");
        }
        println!("  -- last {LOG_TAIL} lines of the serial log:");
        for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
            println!("  | {line}");
        }
        if !boot.stderr.trim().is_empty() {
            println!("  -- qemu stderr:");
            for line in boot.stderr.lines() {
                println!("  ! {line}");
            }
        }
    }
}

/// The results as JSON: one object per row with its verdict, counts, time and failed checks.
fn to_json(rows: &[Row], qemu: &str, kernel: &Path, wall: Duration) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let counts = row.counts();
            let (result, reason) = match row.verdict() {
                Verdict::Pass => ("pass", String::new()),
                Verdict::Skipped => ("skipped", String::new()),
                Verdict::Fail(why) => ("fail", why),
            };
            let boot = row.boot.as_ref().ok();
            let failed_checks: Vec<&str> = boot
                .map(|boot| {
                    boot.serial
                        .lines()
                        .filter(|line| line.contains(": FAIL"))
                        .map(str::trim)
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "cpu": row.spec.cpu,
                "scenario": row.spec.scenario,
                "cmdline": row.spec.cmdline(),
                "shim": shim_of(&row.spec),
                "result": result,
                "reason": reason,
                "status": boot.and_then(|boot| boot.status),
                "passed": counts.passed,
                "failed": counts.failed,
                "skipped": counts.skipped,
                "seconds": row.seconds(),
                "failed_checks": failed_checks,
            })
        })
        .collect();
    let document = serde_json::json!({
        "qemu": qemu,
        "kernel": kernel.to_string_lossy(),
        "wall_seconds": wall.as_secs_f64(),
        "rows": rows,
    });
    let mut text = serde_json::to_string_pretty(&document).expect("plain values serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::{
        ABI_CPUS, ABI_SCENARIOS, ABI_SHIM_DUMPS, MSR_FAULT_DUMPS, PLAIN_CPUS, PLAIN_SCENARIOS,
        SMP_COUNTS, SMP_CPUS, SMP_SHIM_COUNT, SMP_SHIM_DUMPS, SVM_CPUS, resolve_dump, rows,
        shim_cpu, shim_of,
    };

    #[test]
    fn the_json_report_is_json_with_every_row() {
        use super::{Row, to_json};
        use crate::qemu::{Boot, BootSpec};
        use std::time::Duration;
        let failed = Boot {
            status: Some(35),
            timed_out: false,
            serial: "check a/\"quoted\"\\path: FAIL expected 1 got 2\n0 passed, 1 failed\n".into(),
            stderr: String::new(),
            elapsed: Duration::from_millis(1500),
            timeout: Duration::from_secs(60),
        };
        let rows = [
            Row {
                spec: BootSpec::new("Haswell", "xen-dom0"),
                boot: Ok(failed),
            },
            Row {
                spec: BootSpec::new("EPYC", "hvm"),
                boot: Err("could not start".into()),
            },
        ];
        let text = to_json(
            &rows,
            "qemu 7.2",
            std::path::Path::new("/k"),
            Duration::ZERO,
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let parsed = value["rows"].as_array().unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["result"], "fail");
        assert_eq!(parsed[0]["status"], 35);
        assert_eq!(
            parsed[0]["failed_checks"][0],
            "check a/\"quoted\"\\path: FAIL expected 1 got 2"
        );
        assert_eq!(parsed[1]["reason"], "could not start");
        assert!(parsed[1]["status"].is_null());
    }

    fn stems() -> Vec<String> {
        [
            "AuthenticAMD0100F21_K10_Barcelona_CPUID",
            "GenuineIntel0010676_Penryn_CPUID",
            "GenuineIntel00206D7_SandyBridgeE_00_CPUID",
            "GenuineIntel00306C3_HaswellXeon_CPUID",
            "GenuineIntel00306C3_Haswell_CPUID",
            "HygonGenuine0900F02_Hygon_CPUID",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn the_matrix_has_every_plain_svm_abi_and_shim_row_once() {
        let dumps = stems();
        let rows = rows(&dumps);
        assert_eq!(
            rows.len(),
            PLAIN_CPUS.len() * PLAIN_SCENARIOS.len()
                + SVM_CPUS.len()
                + ABI_CPUS.len() * ABI_SCENARIOS.len()
                + dumps.len()
                + dumps
                    .iter()
                    .filter(|d| ABI_SHIM_DUMPS.contains(&d.as_str()))
                    .count()
                    * ABI_SCENARIOS.len()
                + SMP_CPUS.len() * SMP_COUNTS.len()
                + dumps
                    .iter()
                    .filter(|d| SMP_SHIM_DUMPS.contains(&d.as_str()))
                    .count()
                + dumps
                    .iter()
                    .filter(|d| MSR_FAULT_DUMPS.contains(&d.as_str()))
                    .count()
        );
        assert!(rows.iter().any(|r| r.scenario == "smp" && r.smp == 4));
        let mut keys: Vec<(String, String, u32)> = rows
            .iter()
            .map(|r| (r.cpu.clone(), r.cmdline(), r.smp))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), rows.len());
        assert!(
            rows.iter()
                .any(|r| r.cpu == "Haswell,+svm" && r.scenario == "hvm")
        );
        assert!(
            !rows
                .iter()
                .any(|r| r.cpu == "qemu64" && r.scenario == "hvm")
        );
        // One shim boot per dump, on a model with SVM for its vendor.
        for stem in &dumps {
            let row = rows
                .iter()
                .find(|r| shim_of(r) == Some(stem.as_str()) && r.scenario == "pv-levelled")
                .expect("a shim row per dump");
            assert_eq!(row.cpu, shim_cpu(stem));
            assert!(row.cmdline().contains("best_effort"), "{}", row.cmdline());
        }
        // The ABI above the shim where the dump is there (Haswell faults, Barcelona masks).
        for stem in [
            "GenuineIntel00306C3_Haswell_CPUID",
            "AuthenticAMD0100F21_K10_Barcelona_CPUID",
        ] {
            assert!(
                rows.iter()
                    .any(|r| r.scenario == "abi" && shim_of(r) == Some(stem)),
                "{stem}"
            );
        }
        // `smp` above the shim on two CPUs: a masking dump and a faulting one.
        for stem in SMP_SHIM_DUMPS {
            assert!(
                rows.iter().any(|r| r.scenario == "smp"
                    && r.smp == SMP_SHIM_COUNT
                    && shim_of(r) == Some(stem)),
                "{stem}"
            );
        }
        assert_eq!(shim_cpu("HygonGenuine0900F02_Hygon_CPUID"), "EPYC");
        assert_eq!(
            shim_cpu("GenuineIntel0010676_Penryn_CPUID"),
            "Skylake-Server,+svm"
        );
    }

    #[test]
    fn dumps_resolve_by_stem_short_stem_or_unique_part() {
        let dumps = stems();
        let penryn = "GenuineIntel0010676_Penryn_CPUID";
        assert_eq!(resolve_dump(&dumps, penryn), Ok(penryn));
        assert_eq!(
            resolve_dump(&dumps, "GenuineIntel0010676_Penryn"),
            Ok(penryn)
        );
        assert_eq!(resolve_dump(&dumps, "penryn"), Ok(penryn));
        // A part of two stems is ambiguous; the full short stem is not.
        assert!(resolve_dump(&dumps, "Haswell").is_err());
        assert_eq!(
            resolve_dump(&dumps, "GenuineIntel00306C3_Haswell"),
            Ok("GenuineIntel00306C3_Haswell_CPUID")
        );
        assert!(resolve_dump(&dumps, "Pentium").is_err());
    }
}
