//! `cargo xtask bench`: run the benchmarks and record them in `BENCHMARKS.md`, each figure
//! with its target, the command, the machine and the date.
//!
//! Host side: the criterion benches in `benches/core.rs` (read back from
//! `target/criterion/<id>/new/estimates.json`) and the sizes printed by
//! `examples/domain_memory.rs`. QEMU side: the kernel's `bench` scenario under `-icount
//! shift=0` ([`crate::qemu::bench`]), exact instruction counts; real Xen 4.17 booted on the
//! same QEMU models ([`crate::xen`]), its forced-emulation CPUID beside the kernel's, and the
//! derivation differential against Xen's policies.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::process::{Workspace, describe};

/// Criterion arguments: enough samples for stable means, short enough for this machine.
const CRITERION_ARGS: [&str; 5] = ["--warm-up-time", "1", "--measurement-time", "3", "--noplot"];

/// One criterion benchmark and its target, if it has one.
struct HostBench {
    /// The criterion id.
    id: &'static str,
    /// What it measures.
    what: &'static str,
    /// Upper bound in nanoseconds, and how the target is phrased.
    target: Option<(f64, &'static str)>,
}

/// The host benchmarks `benches/core.rs` defines.
const HOST_BENCHES: [HostBench; 16] = [
    HostBench {
        id: "guest_cpuid/baseline_table_read",
        what: "baseline: `CpuPolicy::leaf(1, 0)`, the bare table read",
        target: None,
    },
    HostBench {
        id: "cpuid_table/leaf0",
        what: "the domain's CPUID table (what the trap handlers answer from), leaf 0",
        target: None,
    },
    HostBench {
        id: "cpuid_table/leaf1",
        what: "the CPUID table, leaf 1 (OSXSAVE and APIC ID patched from the vCPU)",
        target: None,
    },
    HostBench {
        id: "cpuid_table/leaf7.0",
        what: "the CPUID table, leaf 7 subleaf 0",
        target: None,
    },
    HostBench {
        id: "cpuid_table/leafD.0_dynamic",
        what: "the CPUID table, leaf 0xD subleaf 0 (XSAVE size from XCR0)",
        target: None,
    },
    HostBench {
        id: "cpuid_table/out_of_range",
        what: "the CPUID table, a leaf out of range",
        target: None,
    },
    HostBench {
        id: "guest_cpuid/leaf1",
        what: "`guest_cpuid` (the reference path the table is tested against), leaf 1",
        target: None,
    },
    HostBench {
        id: "guest_cpuid/leaf7.0",
        what: "`guest_cpuid`, leaf 7 subleaf 0",
        target: None,
    },
    HostBench {
        id: "guest_cpuid/leafD.0_dynamic",
        what: "`guest_cpuid`, leaf 0xD subleaf 0 (XSAVE size from XCR0)",
        target: None,
    },
    HostBench {
        id: "policy/serialise",
        what: "serialise an HVM max policy to `xen_cpuid_leaf_t[]`",
        target: None,
    },
    HostBench {
        id: "policy/deserialise",
        what: "deserialise it back",
        target: None,
    },
    HostBench {
        id: "policy/compatible",
        what: "compatibility check of a guest policy against its host's",
        target: None,
    },
    HostBench {
        id: "switch/masking_sandybridge/same_policy",
        what: "context switch, same policy, masking CPU (silicon model)",
        target: None,
    },
    HostBench {
        id: "switch/faulting_skylake/same_policy",
        what: "context switch, same policy, faulting CPU (silicon model)",
        target: None,
    },
    HostBench {
        id: "featureset/pool_level_10000_hosts",
        what: "pool level of 10,000 hosts (intersection + closure)",
        target: Some((1e6, "< 1 ms")),
    },
    HostBench {
        id: "featureset/subset_1000_vms_x_1000_hosts",
        what: "1,000 VMs x 1,000 hosts migration subset checks",
        target: Some((1e8, "< 100 ms")),
    },
];

/// Runs every benchmark and rewrites `BENCHMARKS.md`.
pub fn bench(ws: &Workspace) -> Result<(), String> {
    let mut criterion = vec!["bench", "-p", "xen-levelling", "--bench", "core", "--"];
    criterion.extend(CRITERION_ARGS);
    ws.run_cargo(&criterion)?;
    let memory = capture(&mut ws.cargo(&["run", "-q", "--release", "--example", "domain_memory"]))?;

    let mut md = String::new();
    writeln!(md, "# Benchmarks\n").unwrap();
    writeln!(md, "Written by `cargo xtask bench` on {}.\n", date()?).unwrap();
    writeln!(md, "Machine: {}.\n", machine()).unwrap();
    writeln!(md, "## Host side (criterion, release build)\n").unwrap();
    writeln!(
        md,
        "Command: `cargo bench -p xen-levelling --bench core -- {}`\n",
        CRITERION_ARGS.join(" ")
    )
    .unwrap();
    writeln!(
        md,
        "| benchmark | what | mean | vs baseline | target | met |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    let baseline = criterion_mean(ws.root(), HOST_BENCHES[0].id)?;
    for b in &HOST_BENCHES {
        let mean = criterion_mean(ws.root(), b.id)?;
        let ratio = if b.id.starts_with("guest_cpuid/") || b.id.starts_with("cpuid_table/") {
            format!("{:.1}x", mean / baseline)
        } else {
            "-".into()
        };
        let (target, met) = match b.target {
            Some((limit, text)) => (text, if mean < limit { "yes" } else { "**no**" }),
            None => ("-", "-"),
        };
        writeln!(
            md,
            "| `{}` | {} | {} | {ratio} | {target} | {met} |",
            b.id,
            b.what,
            human_time(mean)
        )
        .unwrap();
    }
    writeln!(md, "\n## Per-domain memory\n").unwrap();
    writeln!(
        md,
        "Command: `cargo run --release --example domain_memory`\n"
    )
    .unwrap();
    writeln!(md, "| state | bytes |\n|---|---|").unwrap();
    for line in memory.lines() {
        if let Some((name, bytes)) = line.split_once('\t') {
            writeln!(md, "| {name} | {bytes} |").unwrap();
        }
    }
    let libx86 = crate::bench_libx86::run(ws);
    writeln!(md).unwrap();
    md.push_str(&crate::bench_libx86::markdown(&libx86));
    let (qemu_figures, qemu) = crate::qemu::bench::run(ws)?;
    writeln!(md).unwrap();
    md.push_str(&crate::qemu::bench::markdown(&qemu_figures, &qemu));
    let (xen, differential) = real_xen(ws);
    if let Ok((boots, _)) = &xen {
        for boot in boots {
            let probe = qemu_figures
                .iter()
                .find(|b| b.boot.cpu == boot.model.cpu && b.boot.append.is_empty())
                .and_then(|b| b.probe.as_deref())
                .unwrap_or("-");
            println!(
                "bench: {}: Xen 4.17 {} | crate probe: {probe}",
                boot.model.cpu,
                boot.log.caps_text()
            );
        }
    }
    writeln!(md).unwrap();
    md.push_str(&crate::xen::bench::markdown(
        &xen,
        &qemu_figures,
        &differential,
    ));
    fuzzing_section(ws.root(), &mut md);
    std::fs::write(ws.root().join("BENCHMARKS.md"), md)
        .map_err(|e| format!("writing BENCHMARKS.md: {e}"))?;
    println!("bench: wrote BENCHMARKS.md");
    Ok(())
}

/// Boots real Xen on every model of [`crate::xen::MODELS`] and runs the derivation
/// differential on those boots. Xen that cannot be had (no packages, no network) is said in
/// one line and the bench carries on; the differential's outcome is reported, not fatal here
/// (the gate fails on it).
fn real_xen(ws: &Workspace) -> (Result<crate::xen::Boots, String>, String) {
    let boots = crate::xen::boot_models(ws, crate::xen::MODELS);
    let (boots, failed) = match boots {
        Ok(boots) => boots,
        Err(why) => {
            println!("bench: real Xen not run: {why}");
            return (Err(why), "not run (no Xen boots)".into());
        }
    };
    for boot in &boots {
        crate::xen::print_boot(boot);
    }
    if boots.is_empty() {
        return (Ok((boots, failed)), "not run (no Xen boot finished)".into());
    }
    let differential = match crate::xen::differential::run(ws, crate::xen::MODELS, true) {
        Ok(o) => format!(
            "{} model(s), {} differences, every one explained by the file ({} of them by entries \
             marked OPEN, questions still to settle).",
            o.models.len(),
            o.explained,
            o.open.len()
        ),
        Err(why) => {
            println!("bench: xen-policies: {why}");
            format!(
                "**{} difference(s) not explained** (run `cargo xtask xen-policies`).",
                why.split_whitespace().next().unwrap_or("?")
            )
        }
    };
    println!("bench: xen-policies ran in the bench: {differential}");
    (Ok((boots, failed)), differential)
}

/// The fuzzers run outside the gate, by hand (`fuzz/README.md`); their recorded results
/// (`fuzz/RESULTS.md`, summary table) are carried into BENCHMARKS.md as they stand.
fn fuzzing_section(root: &Path, md: &mut String) {
    let Ok(results) = std::fs::read_to_string(root.join("fuzz/RESULTS.md")) else {
        return;
    };
    let summary = results
        .split_once("## Summary")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest).trim());
    if let Some(summary) = summary {
        writeln!(
            md,
            "\n## Fuzzing (cargo-fuzz, run by hand; details in `fuzz/RESULTS.md`)\n"
        )
        .unwrap();
        writeln!(md, "{summary}").unwrap();
    }
}

/// Runs `command` and returns its standard output.
fn capture(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("{}: {e}", describe(command)))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            describe(command),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The mean, in nanoseconds, criterion recorded for `id`.
fn criterion_mean(root: &Path, id: &str) -> Result<f64, String> {
    // Criterion names the folder after the id with `/` turned into `_`.
    let path = root
        .join("target/criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // `{"mean":{"confidence_interval":{...},"point_estimate":N,...` : the first point estimate
    // after "mean".
    let after_mean = text.split_once("\"mean\"").map(|(_, rest)| rest);
    let estimate = after_mean
        .and_then(|rest| rest.split_once("\"point_estimate\":"))
        .map(|(_, rest)| rest.split([',', '}']).next().unwrap_or(""));
    estimate
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("{}: no mean point estimate", path.display()))
}

/// `1.23 µs` style.
fn human_time(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.1} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n if n < 1e9 => format!("{:.2} ms", n / 1e6),
        n => format!("{:.2} s", n / 1e9),
    }
}

/// Today's date (UTC), from `date`.
fn date() -> Result<String, String> {
    capture(Command::new("date").args(["-u", "+%Y-%m-%d"])).map(|s| s.trim().to_string())
}

/// CPU model and count, from /proc/cpuinfo.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{cpus} x {model}")
}
