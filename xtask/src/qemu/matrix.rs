//! The QEMU matrix: every scenario on every CPU model it applies to, booted in parallel,
//! summed per scenario, written to `target/qemu-matrix.json`.
//!
//! | boots | CPU models | scenarios |
//! |---|---|---|
//! | plain QEMU | qemu64, Nehalem, SandyBridge, Haswell, Skylake-Server, Icelake-Server, EPYC, EPYC-Rome, EPYC-Milan, Opteron_G3 | `xen-dom0`, `pv-forced`, `switch` |
//! | QEMU with SVM | EPYC, EPYC-Milan, `Haswell,+svm`, `Skylake-Server,+svm` | `hvm` |
//!
//! Any failed row fails the step (and so `cargo xtask test`), after every row has run and the
//! failing rows' check lines and serial logs have been shown.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Boot, BootSpec, Counts, Verdict, boot, build_kernel};
use crate::process::{self, Workspace};
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
/// Scenarios run on every plain model.
pub const PLAIN_SCENARIOS: &[&str] = &["xen-dom0", "pv-forced", "switch"];
/// CPU models with SVM (AMD natively, Intel with `,+svm`).
pub const SVM_CPUS: &[&str] = &["EPYC", "EPYC-Milan", "Haswell,+svm", "Skylake-Server,+svm"];
/// Scenarios run on the SVM models.
pub const SVM_SCENARIOS: &[&str] = &["hvm"];

/// Where the results go, relative to the workspace root.
const JSON_PATH: &str = "target/qemu-matrix.json";
/// Lines of serial log shown for a failed row.
const LOG_TAIL: usize = 40;

/// Every boot of the matrix, scenario by scenario.
pub fn rows() -> Vec<BootSpec> {
    let plain = PLAIN_SCENARIOS.iter().flat_map(|scenario| {
        PLAIN_CPUS
            .iter()
            .map(move |cpu| BootSpec::new(cpu, scenario))
    });
    let svm = SVM_SCENARIOS
        .iter()
        .flat_map(|scenario| SVM_CPUS.iter().map(move |cpu| BootSpec::new(cpu, scenario)));
    plain.chain(svm).collect()
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
    let qemu =
        process::stdout_of(std::process::Command::new("qemu-system-x86_64").arg("--version"))
            .and_then(|out| out.lines().next().map(str::to_owned))
            .unwrap_or_default();
    let specs = rows();
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(specs.len());
    println!(
        "qemu matrix: {} boots on {workers} workers ({qemu})",
        specs.len()
    );
    let started = Instant::now();
    let rows = run_rows(&kernel, specs, workers);
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

/// Boots `specs` on `workers` threads; the rows come back in the order of `specs`.
fn run_rows(kernel: &Path, specs: Vec<BootSpec>, workers: usize) -> Vec<Row> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Row>>> = Mutex::new(specs.iter().map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(index) else { break };
                    let row = Row {
                        boot: boot(kernel, spec),
                        spec: spec.clone(),
                    };
                    results.lock().expect("no worker panics holding the lock")[index] = Some(row);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .map(|row| row.expect("every row ran"))
        .collect()
}

/// One table per scenario: CPU, verdict, check counts, time.
fn print_tables(rows: &[Row]) {
    let mut scenarios: Vec<&str> = Vec::new();
    for row in rows {
        if !scenarios.contains(&row.spec.scenario.as_str()) {
            scenarios.push(&row.spec.scenario);
        }
    }
    for scenario in scenarios {
        println!();
        println!("scenario {scenario}");
        println!(
            "  {:<22} {:<8} {:>7} {:>7} {:>7}",
            "cpu", "result", "passed", "failed", "time"
        );
        for row in rows.iter().filter(|row| row.spec.scenario == scenario) {
            let counts = row.counts();
            let result = match row.verdict() {
                Verdict::Pass => "pass",
                Verdict::Skipped => "skipped",
                Verdict::Fail(_) => "FAIL",
            };
            println!(
                "  {:<22} {:<8} {:>7} {:>7} {:>6.2}s",
                row.spec.cpu,
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
            row.spec.scenario, row.spec.cpu
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

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The results as JSON: one object per row with its verdict, counts, time and failed checks.
fn to_json(rows: &[Row], qemu: &str, kernel: &Path, wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"qemu\": {},", json_string(qemu));
    let _ = writeln!(
        out,
        "  \"kernel\": {},",
        json_string(&kernel.to_string_lossy())
    );
    let _ = writeln!(out, "  \"wall_seconds\": {:.3},", wall.as_secs_f64());
    let _ = writeln!(out, "  \"rows\": [");
    for (index, row) in rows.iter().enumerate() {
        let counts = row.counts();
        let (result, reason) = match row.verdict() {
            Verdict::Pass => ("pass", String::new()),
            Verdict::Skipped => ("skipped", String::new()),
            Verdict::Fail(why) => ("fail", why),
        };
        let status = row
            .boot
            .as_ref()
            .ok()
            .and_then(|boot| boot.status)
            .map_or("null".to_owned(), |status| status.to_string());
        let failures: Vec<String> = row
            .boot
            .as_ref()
            .map(|boot| {
                boot.serial
                    .lines()
                    .filter(|line| line.contains(": FAIL"))
                    .map(|line| json_string(line.trim()))
                    .collect()
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "    {{\"cpu\": {}, \"scenario\": {}, \"result\": \"{result}\", \"reason\": {}, \
             \"status\": {status}, \"passed\": {}, \"failed\": {}, \"skipped\": {}, \
             \"seconds\": {:.3}, \"failed_checks\": [{}]}}",
            json_string(&row.spec.cpu),
            json_string(&row.spec.scenario),
            json_string(&reason),
            counts.passed,
            counts.failed,
            counts.skipped,
            row.seconds(),
            failures.join(", ")
        );
        let _ = writeln!(out, "{}", if index + 1 < rows.len() { "," } else { "" });
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::{PLAIN_CPUS, PLAIN_SCENARIOS, SVM_CPUS, json_string, rows};

    #[test]
    fn the_matrix_has_every_plain_and_svm_row_once() {
        let rows = rows();
        assert_eq!(
            rows.len(),
            PLAIN_CPUS.len() * PLAIN_SCENARIOS.len() + SVM_CPUS.len()
        );
        let mut keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.cpu.clone(), r.scenario.clone()))
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
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(json_string("\u{1}"), "\"\\u0001\"");
    }
}
