//! `cargo xtask qemu`: builds the test hypervisor (`arch/x86_64`) and boots it in QEMU.
//!
//! - `cargo xtask qemu --cpu MODEL --scenario NAME [--icount] [--smp N] [--timeout S]
//!   [--append OPTIONS]` boots one scenario and prints its serial log.
//! - `cargo xtask qemu --shim DUMP --scenario NAME [...]` boots it above the silicon shim,
//!   on the CPU of a dump in `data/cpuid-dumps/` (its stem, or any unique part of one,
//!   e.g. `--shim Penryn`); `--cpu` defaults to a QEMU model with SVM of the dump's vendor.
//! - `cargo xtask qemu --matrix` boots the whole matrix ([`matrix`]), as `cargo xtask test` does.
//! - `cargo xtask qemu --bench` boots the `bench` scenario under icount on a few models
//!   ([`bench`](mod@bench)) and prints the BENCHMARKS.md section `cargo xtask bench` writes.
//!
//! Every boot is `qemu-system-x86_64 -kernel <ELF> -cpu MODEL -serial stdio -display none
//! -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -append "scenario=NAME …"` under
//! a hard timeout (TCG only: KVM here cannot run this kernel, see qemu-facts.md). The exit
//! status says how it ended: 33 pass, 35 a check failed, 37 an unhandled exception,
//! 39 skipped, 41 a kernel panic, 0 a triple fault; a timeout or anything else is a failure
//! too. A pass also needs the kernel's closing line `N passed, 0 failed`.

pub mod bench;
pub mod matrix;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{self, Workspace};
use crate::provision;

/// The kernel package, relative to the workspace root (its own cargo workspace).
pub const KERNEL_DIR: &str = "arch/x86_64";
/// The kernel's target.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// Where the kernel builds, relative to the workspace root.
const KERNEL_TARGET_DIR: &str = "target/kernel";
/// The kernel binary's name.
const KERNEL_BIN: &str = "xl-kernel";
/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";
/// How long one boot may take before it counts as hung: far above any boot's own time, which
/// the matrix prints per boot (`time` column).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// One boot: which CPU model, which scenario, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSpec {
    /// `-cpu` value, e.g. `EPYC` or `Haswell,+svm`.
    pub cpu: String,
    /// The kernel's scenario.
    pub scenario: String,
    /// `-icount shift=0`: RDTSC counts instructions, runs are deterministic.
    pub icount: bool,
    /// `-smp N`: the kernel starts the APs (above the shim, each AP enters its own L0 with its
    /// own copy of the silicon model); only the `smp` scenario gives them work.
    pub smp: u32,
    /// More kernel command-line words (`key=value`).
    pub append: Vec<String>,
    /// The hard timeout.
    pub timeout: Duration,
}

impl BootSpec {
    /// A plain boot of `scenario` on `cpu`.
    pub fn new(cpu: &str, scenario: &str) -> Self {
        BootSpec {
            cpu: cpu.to_owned(),
            scenario: scenario.to_owned(),
            icount: false,
            smp: 1,
            append: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        let mut words = vec![format!("scenario={}", self.scenario)];
        words.extend(self.append.iter().cloned());
        words.join(" ")
    }
}

/// What `cargo xtask qemu …` asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum QemuCommand {
    /// Boot one scenario.
    Boot(BootSpec),
    /// Boot the matrix.
    Matrix,
    /// Boot the icount benchmarks.
    Bench,
}

/// Parses the arguments after `cargo xtask qemu`.
pub fn parse_args(args: &[String]) -> Result<QemuCommand, String> {
    let mut cpu = None;
    let mut scenario = None;
    let mut spec = BootSpec::new("", "");
    let mut matrix = false;
    let mut bench = false;
    let mut shim = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("`{name}` needs a value"))
        };
        match arg.as_str() {
            "--cpu" => cpu = Some(value("--cpu")?),
            "--scenario" => scenario = Some(value("--scenario")?),
            "--icount" => spec.icount = true,
            "--smp" => {
                spec.smp = value("--smp")?
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or("`--smp` needs a number of CPUs, 1 or more")?
            }
            "--timeout" => {
                let seconds: u64 = value("--timeout")?
                    .parse()
                    .map_err(|_| "`--timeout` needs a number of seconds")?;
                spec.timeout = Duration::from_secs(seconds);
            }
            "--append" => spec
                .append
                .extend(value("--append")?.split_whitespace().map(String::from)),
            "--matrix" => matrix = true,
            "--bench" => bench = true,
            "--shim" => shim = Some(value("--shim")?),
            other => return Err(format!("unknown `qemu` option `{other}`")),
        }
    }
    if bench {
        return if matrix || shim.is_some() || cpu.is_some() || scenario.is_some() {
            Err("`--bench` boots its own models and scenario; it takes no other option".into())
        } else {
            Ok(QemuCommand::Bench)
        };
    }
    if let Some(dump) = shim {
        if matrix {
            return Err("`--matrix` already boots every dump above the shim".into());
        }
        // Resolved against the dumps (and the model picked, if `--cpu` is absent) in `run`.
        spec.append.insert(0, format!("shim={dump}"));
        cpu.get_or_insert_with(String::new);
    }
    match (matrix, cpu, scenario) {
        (true, None, None) => Ok(QemuCommand::Matrix),
        (true, ..) => {
            Err("`--matrix` boots every CPU and scenario; drop `--cpu`/`--scenario`".into())
        }
        (false, Some(cpu), Some(scenario)) => Ok(QemuCommand::Boot(BootSpec {
            cpu,
            scenario,
            ..spec
        })),
        (false, ..) => Err("`qemu` needs `--cpu MODEL --scenario NAME`, or `--matrix`".into()),
    }
}

/// `cargo xtask qemu …`.
pub fn run(workspace: &Workspace, args: &[String]) -> Result<(), String> {
    match parse_args(args)? {
        QemuCommand::Matrix => matrix::run(workspace),
        QemuCommand::Bench => {
            let (results, qemu) = bench::run(workspace)?;
            print!("{}", bench::markdown(&results, &qemu));
            Ok(())
        }
        QemuCommand::Boot(mut spec) => {
            if let Some(name) = matrix::shim_of(&spec).map(str::to_owned) {
                let stems = matrix::dump_stems(&workspace.root().join(matrix::DUMPS_DIR))?;
                let stem = matrix::resolve_dump(&stems, &name)?.to_owned();
                if spec.cpu.is_empty() {
                    spec.cpu = matrix::shim_cpu(&stem).to_owned();
                }
                for word in &mut spec.append {
                    if word.starts_with("shim=") {
                        *word = format!("shim={stem}");
                    }
                }
            }
            provision::run(workspace)?;
            let kernel = build_kernel(workspace)?;
            let boot = boot(&kernel, &spec)?;
            print!("{}", boot.serial);
            let verdict = boot.verdict();
            println!(
                "qemu: {} on {}: {} in {:.2}s",
                spec.scenario,
                spec.cpu,
                verdict,
                boot.elapsed.as_secs_f64()
            );
            match verdict {
                Verdict::Pass | Verdict::Skipped => Ok(()),
                Verdict::Fail(why) => {
                    if !boot.stderr.trim().is_empty() {
                        eprintln!("qemu stderr:\n{}", boot.stderr.trim_end());
                    }
                    Err(format!("{} on {}: {why}", spec.scenario, spec.cpu))
                }
            }
        }
    }
}

/// A `cargo` command for the kernel package: run from its directory, so that its
/// `.cargo/config.toml` (target, `-C relocation-model=static`) applies.
pub fn kernel_cargo(workspace: &Workspace, args: &[&str]) -> Command {
    let mut command = workspace.cargo(args);
    command.current_dir(workspace.root().join(KERNEL_DIR));
    command
}

/// The kernel package's `Cargo.toml`, for `--manifest-path`.
fn manifest(workspace: &Workspace) -> String {
    workspace
        .root()
        .join(KERNEL_DIR)
        .join("Cargo.toml")
        .to_string_lossy()
        .into_owned()
}

/// The kernel's target directory (under the workspace's `target/`).
fn target_dir(workspace: &Workspace) -> PathBuf {
    workspace.root().join(KERNEL_TARGET_DIR)
}

/// `cargo fmt --check` of the kernel's workspace: the kernel and its ring-3 programs
/// (`arch/x86_64/user`).
pub fn fmt_check(workspace: &Workspace) -> Result<(), String> {
    process::run(&mut kernel_cargo(
        workspace,
        &[
            "fmt",
            "--manifest-path",
            &manifest(workspace),
            "--all",
            "--check",
        ],
    ))
}

/// `cargo clippy -- -D warnings` of the kernel's workspace (the kernel and its ring-3
/// programs) for its target.
pub fn clippy(workspace: &Workspace) -> Result<(), String> {
    let target_dir = target_dir(workspace);
    process::run(&mut kernel_cargo(
        workspace,
        &[
            "clippy",
            "--manifest-path",
            &manifest(workspace),
            "--workspace",
            "--target",
            KERNEL_TARGET,
            "--target-dir",
            &target_dir.to_string_lossy(),
            "--",
            "-D",
            "warnings",
        ],
    ))
}

/// Builds the kernel (release) and returns the ELF's path.
pub fn build_kernel(workspace: &Workspace) -> Result<PathBuf, String> {
    let target_dir = target_dir(workspace);
    process::run(&mut kernel_cargo(
        workspace,
        &[
            "build",
            "--release",
            "--manifest-path",
            &manifest(workspace),
            "--target",
            KERNEL_TARGET,
            "--target-dir",
            &target_dir.to_string_lossy(),
        ],
    ))?;
    let elf = target_dir
        .join(KERNEL_TARGET)
        .join("release")
        .join(KERNEL_BIN);
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!(
            "the kernel build succeeded but {} is missing",
            elf.display()
        ))
    }
}

/// The QEMU command line for one boot.
pub fn qemu_command(kernel: &Path, spec: &BootSpec) -> Command {
    let mut command = Command::new(QEMU);
    command
        .arg("-kernel")
        .arg(kernel)
        .args(["-cpu", &spec.cpu])
        .args(["-smp", &spec.smp.to_string()])
        .args(["-m", "128M"])
        .args(["-serial", "stdio", "-display", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-append", &spec.cmdline()]);
    if spec.icount {
        command.args(["-icount", "shift=0"]);
    }
    command
}

/// How one boot ended.
#[derive(Debug)]
pub struct Boot {
    /// QEMU's exit status; `None` when it was killed at the timeout (or by a signal).
    pub status: Option<i32>,
    /// The timeout hit.
    pub timed_out: bool,
    /// COM1, as QEMU wrote it to stdout.
    pub serial: String,
    /// QEMU's own messages.
    pub stderr: String,
    /// Wall time of the boot.
    pub elapsed: Duration,
    /// The timeout it ran under.
    pub timeout: Duration,
}

/// The kernel's closing line: `N passed, M failed[, K skipped]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Checks passed.
    pub passed: u32,
    /// Checks failed.
    pub failed: u32,
    /// Checks skipped.
    pub skipped: u32,
}

/// The last closing line in `serial`, if any.
pub fn counts(serial: &str) -> Option<Counts> {
    serial.lines().rev().find_map(|line| {
        let mut parts = line.trim().split(", ");
        let mut number =
            |suffix: &str| -> Option<u32> { parts.next()?.strip_suffix(suffix)?.parse().ok() };
        let passed = number(" passed")?;
        let failed = number(" failed")?;
        let skipped = match parts.next() {
            None => 0,
            Some(part) => part.strip_suffix(" skipped")?.parse().ok()?,
        };
        Some(Counts {
            passed,
            failed,
            skipped,
        })
    })
}

/// What a boot means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Status 33 and a closing line with checks passed and none failed.
    Pass,
    /// Status 39: the CPU lacks what the scenario needs.
    Skipped,
    /// Anything else, with the reason.
    Fail(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Skipped => f.write_str("skipped"),
            Verdict::Fail(why) => write!(f, "FAIL ({why})"),
        }
    }
}

impl Boot {
    /// The kernel's closing line.
    pub fn counts(&self) -> Option<Counts> {
        counts(&self.serial)
    }

    /// Maps the exit status and the closing line to a verdict (qemu-facts.md section 2).
    pub fn verdict(&self) -> Verdict {
        if self.timed_out {
            return Verdict::Fail(format!(
                "timed out after {}s (hung)",
                self.timeout.as_secs()
            ));
        }
        let counts = self.counts();
        match (self.status, counts) {
            (Some(33), Some(c)) if c.failed == 0 && c.passed > 0 => Verdict::Pass,
            (Some(33), _) => {
                Verdict::Fail("status 33 without a closing line of passed checks".into())
            }
            (Some(39), _) => Verdict::Skipped,
            (Some(35), Some(c)) => Verdict::Fail(format!("{} check(s) failed", c.failed)),
            (Some(35), None) => Verdict::Fail("checks failed".into()),
            (Some(37), _) => Verdict::Fail("unhandled exception in the kernel".into()),
            (Some(41), _) => Verdict::Fail("kernel panic".into()),
            (Some(0), _) => Verdict::Fail("triple fault (QEMU status 0 under -no-reboot)".into()),
            (Some(1), _) => Verdict::Fail("QEMU failed to start (status 1); see its stderr".into()),
            (Some(status), _) => Verdict::Fail(format!("unexpected QEMU status {status}")),
            (None, _) => Verdict::Fail("QEMU was killed by a signal".into()),
        }
    }
}

/// Boots every entry of `specs`, up to `workers` at a time, and turns each boot into a `T`
/// with `each`; the results come back in the order of `specs`.
pub fn boot_all<T: Send>(
    kernel: &Path,
    specs: &[BootSpec],
    workers: usize,
    each: impl Fn(&BootSpec, Result<Boot, String>) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new(specs.iter().map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..workers.clamp(1, specs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(index) else { break };
                    let result = each(spec, boot(kernel, spec));
                    results.lock().expect("no worker panics holding the lock")[index] =
                        Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .map(|result| result.expect("every boot ran"))
        .collect()
}

/// Boots `kernel` as `spec` says, capturing the serial log, under the hard timeout.
pub fn boot(kernel: &Path, spec: &BootSpec) -> Result<Boot, String> {
    let mut command = qemu_command(kernel, spec);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| format!("could not start `{}`: {error}", process::describe(&command)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(stdout));
    let stderr = read_all(Box::new(stderr));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= spec.timeout => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(error) => {
                // Never leave a QEMU running behind the error.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for QEMU: {error}"));
            }
        }
    };
    let elapsed = started.elapsed();
    Ok(Boot {
        status: status.and_then(|status| status.code()),
        timed_out,
        serial: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
        timeout: spec.timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::{Boot, BootSpec, Counts, QemuCommand, Verdict, counts, parse_args};
    use std::time::Duration;

    fn parse(line: &str) -> Result<QemuCommand, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    #[test]
    fn one_boot_parses_with_its_options() {
        let Ok(QemuCommand::Boot(spec)) =
            parse("--cpu Haswell,+svm --scenario hvm --icount --smp 2")
        else {
            panic!("not a boot");
        };
        assert_eq!(spec.cpu, "Haswell,+svm");
        assert_eq!(spec.scenario, "hvm");
        assert!(spec.icount);
        assert_eq!(spec.smp, 2);
        assert_eq!(spec.timeout, super::DEFAULT_TIMEOUT);
        assert_eq!(parse("--matrix"), Ok(QemuCommand::Matrix));
        assert_eq!(parse("--bench"), Ok(QemuCommand::Bench));
        assert!(parse("--bench --cpu EPYC").is_err());
        let Ok(QemuCommand::Boot(spec)) =
            parse("--shim Penryn --scenario pv-levelled --append best_effort")
        else {
            panic!("not a boot");
        };
        assert_eq!(spec.cpu, "", "picked from the dump in `run`");
        assert_eq!(
            spec.cmdline(),
            "scenario=pv-levelled shim=Penryn best_effort"
        );
        assert!(parse("--matrix --shim Penryn").is_err());
    }

    #[test]
    fn bad_qemu_command_lines_are_errors() {
        assert!(parse("--cpu EPYC").is_err());
        assert!(parse("--scenario hvm").is_err());
        assert!(parse("--matrix --cpu EPYC").is_err());
        assert!(parse("--cpu EPYC --scenario hvm --smp 0").is_err());
        assert!(parse("--cpu EPYC --scenario hvm --bogus").is_err());
        assert!(parse("--cpu").is_err());
    }

    #[test]
    fn the_command_line_carries_the_scenario_first() {
        let mut spec = BootSpec::new("EPYC", "switch");
        spec.append = vec!["rounds=3".into()];
        assert_eq!(spec.cmdline(), "scenario=switch rounds=3");
    }

    #[test]
    fn closing_lines_parse_with_and_without_skips() {
        let log = "check a: ok\n12 passed, 0 failed\n";
        assert_eq!(
            counts(log),
            Some(Counts {
                passed: 12,
                failed: 0,
                skipped: 0
            })
        );
        let log = "0 passed, 0 failed, 1 skipped\r\n";
        assert_eq!(
            counts(log),
            Some(Counts {
                passed: 0,
                failed: 0,
                skipped: 1
            })
        );
        assert_eq!(counts("check x: ok\n"), None);
        assert_eq!(counts("3 passed, x failed\n"), None);
    }

    fn boot(status: Option<i32>, serial: &str, timed_out: bool) -> Boot {
        Boot {
            status,
            timed_out,
            serial: serial.into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
            timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn only_33_with_passed_checks_is_a_pass() {
        assert_eq!(
            boot(Some(33), "5 passed, 0 failed\n", false).verdict(),
            Verdict::Pass
        );
        assert!(matches!(
            boot(Some(33), "", false).verdict(),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            boot(Some(33), "0 passed, 0 failed\n", false).verdict(),
            Verdict::Fail(_)
        ));
        assert_eq!(
            boot(Some(39), "0 passed, 0 failed, 1 skipped\n", false).verdict(),
            Verdict::Skipped
        );
        for status in [
            Some(0),
            Some(1),
            Some(35),
            Some(37),
            Some(41),
            Some(3),
            None,
        ] {
            assert!(
                matches!(boot(status, "", false).verdict(), Verdict::Fail(_)),
                "{status:?}"
            );
        }
        let hung = boot(None, "1 passed, 0 failed\n", true).verdict();
        assert_eq!(hung, Verdict::Fail("timed out after 20s (hung)".into()));
        let triple = boot(Some(0), "", false).verdict();
        assert!(triple.to_string().contains("triple fault"));
    }
}
