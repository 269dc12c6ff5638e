//! `cargo xtask`: the one entry point that owns building, checking and running xen-levelling.
//!
//! Plain Rust (its only dependencies are the workspace's own `levelctl` and `xen-levelling`, for
//! `cargo xtask run`, and serde), in the manner of rust-analyzer's `xtask/`: the alias in
//! `.cargo/config.toml` turns `cargo xtask <command>` into `cargo run --package xtask -- <command>`.
//!
//! | command     | module         | what it does                                              |
//! |-------------|----------------|-----------------------------------------------------------|
//! | `test`      | [`gate`]       | the strict gate, identical locally and in CI (`.ci/run`)  |
//! | `run`       | [`run`]        | the main job: boots a pool of QEMU hosts, levels it, reports |
//! | `provision` | [`provision`]  | installs QEMU and checks the bare-metal Rust targets      |
//! | `bench`     | [`bench`](mod@bench) | runs the benchmarks and rewrites `BENCHMARKS.md`          |
//! | `qemu`      | [`qemu`]       | builds the test hypervisor and boots it (one run or the matrix) |
//! | `xen-conformance` | [`conformance`] | Xen's own libx86 tests against the crate's C ABI |
//! | `xen-boot`  | [`xen`]        | boots real Xen 4.17 (Debian's) under QEMU: CPUID timings, caps, policies |
//! | `xen-policies` | [`xen::differential`] | the crate's derivation against real Xen's policies |
//!
//! Exit codes: 0 success, 1 a command failed, 2 the command line was not understood.

mod bench;
mod bench_libx86;
mod conformance;
mod gate;
mod moved;
mod process;
mod provision;
mod qemu;
mod run;
mod xen;

use std::process::ExitCode;

use process::Workspace;

/// The text printed for `--help`, for no arguments, and after a command-line error.
const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test          run the gate: fmt, clippy, doc, host tests, bare-metal builds (as CI does)
  run           the main job: boot an Intel and an AMD pool of QEMU hosts, level them with
                levelctl, start guests at the pool level, report (target/levelling-report.*)
  provision     install QEMU (qemu-system-x86) if missing, check the bare-metal Rust targets
  bench         run the benchmarks and record them in BENCHMARKS.md
  bench-libx86  the crate beside Xen's libx86 (built at bench time from ../shared/xen-libx86), one process
  bench-libx86 --record
                the same, and its section of BENCHMARKS.md rewritten (the rest left as it is)
  qemu --cpu MODEL --scenario NAME [--icount] [--smp N] [--timeout S] [--append OPTS]
                boot the test hypervisor once (scenarios: xen-dom0, pv-forced, hvm, switch,
                pv-levelled, abi, agent, at-level, smp, msr-fault, bench)
  qemu --matrix boot every CPU model and scenario, as `test` does
  qemu --bench  boot the icount benchmarks and print their BENCHMARKS.md section
  xen-conformance [--xen PATH]
                Xen's test-cpu-policy linked against the crate's C ABI, and Xen's AFL harness
                replayed through both libraries (Xen tree: --xen, $XEN_TREE, or
                ../shared/xen-libx86)
  xen-boot [--cpu MODEL]
                boot real Xen 4.17 (Debian's packages, cached in target/xen/) under QEMU
                with a Linux dom0: forced-emulation CPUID timings, `Levelling caps:`,
                `xen-cpuid -p` (models: Haswell,+svm EPYC SandyBridge Nehalem Opteron_G3)
  xen-policies [--cpu MODEL] [--cached]
                derive the crate's policies from each Xen boot's Raw policy and compare
                them with Xen's; differences must be in data/xen-derivation-known-differences.tsv
  help          print this message (also -h, --help)";

/// One command, as parsed from the command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// `cargo xtask test`.
    Test,
    /// `cargo xtask run [ARGS]` (it takes none; `run` says so).
    Run(Vec<String>),
    /// `cargo xtask provision`.
    Provision,
    /// `cargo xtask bench`.
    Bench,
    /// `cargo xtask bench-libx86 [--record]`: with `--record`, its BENCHMARKS.md section
    /// rewritten.
    BenchLibx86 { record: bool },
    /// `cargo xtask qemu ARGS`, with its arguments.
    Qemu(Vec<String>),
    /// `cargo xtask xen-conformance [--xen PATH]`, with its arguments.
    XenConformance(Vec<String>),
    /// `cargo xtask xen-boot ARGS`.
    XenBoot(Vec<String>),
    /// `cargo xtask xen-policies ARGS`.
    XenPolicies(Vec<String>),
    /// `cargo xtask help`, `--help`, `-h`, or no command at all.
    Help,
}

/// Parses the arguments that follow `cargo xtask`, or explains why they make no sense.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let command = match name.as_str() {
        "test" => Command::Test,
        "run" => return Ok(Command::Run(strip_separator(rest).to_vec())),
        "qemu" => return Ok(Command::Qemu(rest.to_vec())),
        "xen-conformance" => return Ok(Command::XenConformance(rest.to_vec())),
        "xen-boot" => return Ok(Command::XenBoot(rest.to_vec())),
        "xen-policies" => return Ok(Command::XenPolicies(rest.to_vec())),
        "provision" => Command::Provision,
        "bench" => Command::Bench,
        "bench-libx86" if rest == ["--record"] => return Ok(Command::BenchLibx86 { record: true }),
        "bench-libx86" => Command::BenchLibx86 { record: false },
        "help" | "-h" | "--help" => Command::Help,
        other => return Err(format!("unknown command `{other}`")),
    };
    match rest.first() {
        None => Ok(command),
        Some(extra) => Err(format!("`{name}` takes no arguments (got `{extra}`)")),
    }
}

/// Drops one leading `--`, so `cargo xtask run -- --flag` passes `--flag` through.
fn strip_separator(args: &[String]) -> &[String] {
    match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    }
}

/// Turns a command's result into an exit code, printing the error if there is one.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command from the workspace root.
fn execute(command: Command) -> ExitCode {
    let workspace = Workspace::locate();
    match command {
        // Provision first: the host tests need what it installs (the report test, Chromium).
        Command::Test => match provision::run(&workspace) {
            Ok(()) => gate::run(&workspace),
            Err(message) => report(Err(message)),
        },
        Command::Run(args) => report(run::run(&workspace, &args)),
        Command::Provision => report(provision::run(&workspace)),
        Command::Bench => report(bench::bench(&workspace)),
        Command::BenchLibx86 { record: false } => report(bench_libx86::run(&workspace).map(drop)),
        Command::BenchLibx86 { record: true } => report(bench_libx86::record(&workspace)),
        Command::Qemu(args) => report(qemu::run(&workspace, &args)),
        Command::XenConformance(args) => report(conformance::run(&workspace, &args)),
        Command::XenBoot(args) => report(xen::xen_boot(&workspace, &args)),
        Command::XenPolicies(args) => report(xen::xen_policies(&workspace, &args)),
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
    }
}

/// Parses the command line and runs the command; a bad command line exits with 2.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(command) => execute(command),
        Err(message) => {
            eprintln!("xtask: error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Command, parse_args};

    /// Parses a command line written as one string.
    fn parse(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    #[test]
    fn no_arguments_and_help_flags_mean_help() {
        for line in ["", "help", "-h", "--help"] {
            assert_eq!(parse(line), Ok(Command::Help), "{line:?}");
        }
    }

    #[test]
    fn known_commands_parse() {
        assert_eq!(parse("test"), Ok(Command::Test));
        assert_eq!(parse("provision"), Ok(Command::Provision));
        assert_eq!(parse("run"), Ok(Command::Run(vec![])));
        assert_eq!(
            parse("qemu --matrix"),
            Ok(Command::Qemu(vec!["--matrix".into()]))
        );
        assert_eq!(
            parse("xen-conformance --xen /src/xen"),
            Ok(Command::XenConformance(vec![
                "--xen".into(),
                "/src/xen".into()
            ]))
        );
    }

    #[test]
    fn run_forwards_its_arguments_without_the_separator() {
        let expected = Ok(Command::Run(vec!["--json".into(), "x".into()]));
        assert_eq!(parse("run --json x"), expected);
        assert_eq!(parse("run -- --json x"), expected);
    }

    #[test]
    fn unknown_commands_and_stray_arguments_are_errors() {
        assert_eq!(parse("bogus"), Err("unknown command `bogus`".into()));
        assert!(
            parse("test --fast")
                .unwrap_err()
                .contains("`test` takes no arguments")
        );
        assert!(parse("provision now").is_err());
    }
}
