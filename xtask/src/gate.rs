//! `cargo xtask test`: the one strict gate, the same locally and in CI.
//!
//! The gate is the ordered list [`STEPS`]; each step prints a `==> name` heading and its time,
//! the gate stops at the first failure, and the last line is always the summary
//! `gate: N passed, M failed`. The last steps check, build and boot the test hypervisor
//! (`arch/x86_64`, its own cargo workspace) through [`crate::qemu`].

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::process::{self, Workspace};
use crate::qemu;

/// One step of the gate: the heading it prints and the function that runs it.
pub struct Step {
    /// What the step does, usually the exact command line it runs.
    pub name: &'static str,
    /// Runs the step from the workspace root; `Err` says why it failed.
    pub run: fn(&Workspace) -> Result<(), String>,
}

/// The gate, in order: cheapest and most often failing first.
pub const STEPS: &[Step] = &[
    Step {
        name: "cargo fmt --all --check",
        run: |ws| ws.run_cargo(&["fmt", "--all", "--check"]),
    },
    Step {
        name: "cargo clippy --workspace --all-targets -- -D warnings",
        run: |ws| {
            ws.run_cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        },
    },
    Step {
        name: "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps",
        run: |ws| {
            process::run(
                ws.cargo(&["doc", "--workspace", "--no-deps"])
                    .env("RUSTDOCFLAGS", "-D warnings"),
            )
        },
    },
    Step {
        name: "cargo test --workspace",
        run: |ws| ws.run_cargo(&["test", "--workspace"]),
    },
    Step {
        // Not run here (libFuzzer wants nightly for its instrumentation), but kept building:
        // they use the crate's API, and nothing else would notice when it moves.
        name: "cargo check --manifest-path fuzz/Cargo.toml --bins (the fuzz targets)",
        run: |ws| ws.run_cargo(&["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"]),
    },
    Step {
        name: "cargo build -p xen-levelling --target x86_64-unknown-none",
        run: |ws| core_on_target(ws, "build", "x86_64-unknown-none"),
    },
    Step {
        name: "cargo clippy -p xen-levelling --target x86_64-unknown-none -- -D warnings",
        run: |ws| core_on_target(ws, "clippy", "x86_64-unknown-none"),
    },
    Step {
        name: "cargo build -p xen-levelling --target aarch64-unknown-none",
        run: |ws| core_on_target(ws, "build", "aarch64-unknown-none"),
    },
    Step {
        name: "cargo xtask xen-conformance (Xen's libx86 tests against the C ABI)",
        run: crate::conformance::gate_step,
    },
    Step {
        name: "cargo fmt --manifest-path arch/x86_64/Cargo.toml --all --check",
        run: qemu::fmt_check,
    },
    Step {
        name: "cargo clippy --manifest-path arch/x86_64/Cargo.toml --workspace --target x86_64-unknown-none -- -D warnings",
        run: qemu::clippy,
    },
    Step {
        name: "cargo build --release --manifest-path arch/x86_64/Cargo.toml --target x86_64-unknown-none",
        run: |ws| qemu::build_kernel(ws).map(drop),
    },
    Step {
        name: "the repository copied to an empty directory: cargo test --workspace, kernel build",
        run: crate::moved::run,
    },
    Step {
        name: "cargo xtask qemu --matrix",
        run: qemu::matrix::run,
    },
    Step {
        // The README's first command: both pools levelled end to end, every check held.
        name: "cargo xtask run (the main job)",
        run: |ws| crate::run::run(ws, &[]),
    },
    Step {
        name: "cargo xtask xen-policies --cached (where target/xen/ holds real Xen's captures)",
        run: crate::xen::gate_step,
    },
];

/// `cargo VERB -p xen-levelling --target TARGET`: the core alone, as a bare-metal embedder
/// builds it (`clippy` with `-D warnings`).
fn core_on_target(ws: &Workspace, verb: &str, target: &str) -> Result<(), String> {
    let mut args = vec![verb, "-p", "xen-levelling", "--target", target];
    if verb == "clippy" {
        args.extend(["--", "-D", "warnings"]);
    }
    ws.run_cargo(&args)
}

/// Runs every step of [`STEPS`] in order, printing headings, timings and the summary itself.
pub fn run(workspace: &Workspace) -> ExitCode {
    let started = Instant::now();
    let mut passed = 0;
    for (index, step) in STEPS.iter().enumerate() {
        if let Err(reason) = run_step(workspace, step) {
            println!(
                "gate: failed at step {}/{}: {}",
                index + 1,
                STEPS.len(),
                step.name
            );
            println!("gate: {reason}");
            println!("{}", summary(passed, 1));
            return ExitCode::FAILURE;
        }
        passed += 1;
    }
    println!("gate: all steps passed in {}", seconds(started.elapsed()));
    println!("{}", summary(passed, 0));
    ExitCode::SUCCESS
}

/// Runs one step under its heading and prints how long it took and whether it passed.
fn run_step(workspace: &Workspace, step: &Step) -> Result<(), String> {
    println!("==> {}", step.name);
    let started = Instant::now();
    let result = (step.run)(workspace);
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!(
        "<== {verdict} in {}: {}",
        seconds(started.elapsed()),
        step.name
    );
    result
}

/// The last line of every gate run, in the fixed shape CI log readers look for.
fn summary(passed: usize, failed: usize) -> String {
    format!("gate: {passed} passed, {failed} failed")
}

/// Formats a duration as seconds with one decimal, e.g. `12.3s`.
fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::{STEPS, seconds, summary};
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn summary_has_the_fixed_shape() {
        assert_eq!(summary(7, 0), "gate: 7 passed, 0 failed");
        assert_eq!(summary(3, 1), "gate: 3 passed, 1 failed");
    }

    #[test]
    fn step_names_are_unique_so_a_failure_names_one_step() {
        let names: HashSet<_> = STEPS.iter().map(|step| step.name).collect();
        assert_eq!(names.len(), STEPS.len());
    }

    #[test]
    fn the_gate_starts_with_fmt_and_covers_both_bare_metal_targets() {
        assert_eq!(STEPS[0].name, "cargo fmt --all --check");
        for target in ["x86_64-unknown-none", "aarch64-unknown-none"] {
            assert!(
                STEPS.iter().any(|step| step.name.contains(target)),
                "{target}"
            );
        }
    }

    #[test]
    fn durations_print_in_tenths_of_seconds() {
        assert_eq!(seconds(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(seconds(Duration::ZERO), "0.0s");
    }
}
