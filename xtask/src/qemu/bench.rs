//! The QEMU half of `cargo xtask bench`: boots the kernel's `bench` scenario under
//! `-icount shift=0` on a few CPU models ([`BOOTS`]), reads its `bench <name> <count>` lines,
//! and renders them for BENCHMARKS.md with each ratio against its baseline from the same boot
//! and each target met or not. `cargo xtask qemu --bench` runs it alone and prints the
//! section.
//!
//! Under `-icount shift=0` RDTSC counts guest instructions exactly (qemu-facts.md section 8):
//! every figure is an exact instruction count per operation, identical on every run, not a
//! cycle count.

use std::fmt::Write as _;

use super::{BootSpec, Verdict, boot, build_kernel};
use crate::process::Workspace;
use crate::provision;

/// One boot of the benchmark.
#[derive(Clone, Copy, Debug)]
pub struct BenchBoot {
    /// The column and row label.
    pub label: &'static str,
    /// `-cpu`.
    pub cpu: &'static str,
    /// Extra kernel command-line words.
    pub append: &'static [&'static str],
}

/// The boots: plain QEMU (no levelling mechanism: TCG has none), with and without SVM, on
/// every model real Xen boots on beside it ([`crate::xen::MODELS`]), and
/// the kernel above the silicon shim on a masking and a faulting CPU model (the shim needs
/// SVM from QEMU and hides it from the kernel above: no HVM figures there; the QEMU models
/// are the matrix's, `matrix::shim_cpu`).
pub const BOOTS: &[BenchBoot] = &[
    BenchBoot {
        label: "qemu64",
        cpu: "qemu64",
        append: &[],
    },
    BenchBoot {
        label: "Haswell,+svm",
        cpu: "Haswell,+svm",
        append: &[],
    },
    BenchBoot {
        label: "EPYC",
        cpu: "EPYC",
        append: &[],
    },
    BenchBoot {
        label: "SandyBridge",
        cpu: "SandyBridge",
        append: &[],
    },
    BenchBoot {
        label: "Nehalem",
        cpu: "Nehalem",
        append: &[],
    },
    BenchBoot {
        label: "Opteron_G3",
        cpu: "Opteron_G3",
        append: &[],
    },
    BenchBoot {
        label: "EPYC, shim SandyBridgeE (masks)",
        cpu: "EPYC",
        append: &["shim=SandyBridgeE"],
    },
    BenchBoot {
        label: "Skylake-Server,+svm, shim SkylakeXeon (faulting)",
        cpu: "Skylake-Server,+svm",
        append: &["shim=SkylakeXeon_CPUID"],
    },
];

impl BenchBoot {
    /// The boot: the `bench` scenario under icount.
    pub fn spec(&self) -> BootSpec {
        let mut spec = BootSpec::new(self.cpu, "bench");
        spec.icount = true;
        spec.append = self.append.iter().map(|w| (*w).to_owned()).collect();
        spec
    }

    /// The command that reproduces it.
    pub fn command(&self) -> String {
        let mut command = format!(
            "cargo xtask qemu --cpu {} --scenario bench --icount",
            self.cpu
        );
        if !self.append.is_empty() {
            let _ = write!(command, " --append {}", self.append.join(" "));
        }
        command
    }
}

/// What one boot measured.
#[derive(Clone, Debug)]
pub struct BootFigures {
    /// Which boot.
    pub boot: BenchBoot,
    /// `(name, instructions per operation)` in the order printed.
    pub figures: Vec<(String, f64)>,
    /// What the kernel's levelling probe concluded (its `xen: levelling: …` line).
    pub probe: Option<String>,
}

impl BootFigures {
    /// The figure `name`, if this boot has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
}

/// The `bench <name> <count>` lines of a serial log.
pub fn parse(serial: &str) -> Vec<(String, f64)> {
    serial
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "bench" {
                return None;
            }
            let name = words.next()?;
            let value = words.next()?.parse().ok()?;
            words.next().is_none().then(|| (name.to_owned(), value))
        })
        .collect()
}

/// The kernel's probe conclusion: its `xen: levelling: …` line, without the prefix.
pub fn probe_line(serial: &str) -> Option<String> {
    serial
        .lines()
        .find_map(|l| l.trim().strip_prefix("xen: levelling: "))
        .map(str::to_owned)
}

/// Builds the kernel and boots every [`BOOTS`] entry; any boot that does not pass fails it.
pub fn run(workspace: &Workspace) -> Result<(Vec<BootFigures>, String), String> {
    provision::run(workspace)?;
    let kernel = build_kernel(workspace)?;
    let qemu = provision::qemu_version().unwrap_or_default();
    let mut results = Vec::new();
    for b in BOOTS {
        let booted = boot(&kernel, &b.spec())?;
        if booted.verdict() != Verdict::Pass {
            let failed: Vec<&str> = booted
                .serial
                .lines()
                .filter(|l| l.contains(": FAIL"))
                .collect();
            return Err(format!(
                "bench on {}: {} {}",
                b.label,
                booted.verdict(),
                failed.join("; ")
            ));
        }
        let figures = parse(&booted.serial);
        let probe = probe_line(&booted.serial);
        println!(
            "bench: {}: {} figures in {:.2}s",
            b.label,
            figures.len(),
            booted.elapsed.as_secs_f64()
        );
        results.push(BootFigures {
            boot: *b,
            figures,
            probe,
        });
    }
    Ok((results, qemu))
}

/// A ratio target: `figure` over `baseline` of the same boot.
struct Ratio {
    figure: &'static str,
    baseline: &'static str,
    limit: f64,
}

/// The ratio targets (issue 7): PV CPUID emulation ≤ 1.5× the bare trap, HVM CPUID exit ≤
/// 1.3× the bare exit.
const RATIOS: &[Ratio] = &[
    Ratio {
        figure: "pv/cpuid-forced-leaf0",
        baseline: "pv/trap-nop",
        limit: 1.5,
    },
    Ratio {
        figure: "pv/cpuid-forced-leaf1",
        baseline: "pv/trap-nop",
        limit: 1.5,
    },
    Ratio {
        figure: "pv/cpuid-forced-leaf7",
        baseline: "pv/trap-nop",
        limit: 1.5,
    },
    Ratio {
        figure: "pv/cpuid-forced-leafd",
        baseline: "pv/trap-nop",
        limit: 1.5,
    },
    Ratio {
        figure: "pv/cpuid-faulted-leaf1",
        baseline: "pv/trap-nop",
        limit: 1.5,
    },
    Ratio {
        figure: "hvm/cpuid-leaf0",
        baseline: "hvm/vmmcall-nop",
        limit: 1.3,
    },
    Ratio {
        figure: "hvm/cpuid-leaf1",
        baseline: "hvm/vmmcall-nop",
        limit: 1.3,
    },
    Ratio {
        figure: "hvm/cpuid-leaf7",
        baseline: "hvm/vmmcall-nop",
        limit: 1.3,
    },
    Ratio {
        figure: "hvm/cpuid-leafd",
        baseline: "hvm/vmmcall-nop",
        limit: 1.3,
    },
];

/// Levelling switches that change nothing: at most 30 instructions.
const NO_CHANGE_SWITCHES: &[&str] = &["levelling/xen-to-xen", "levelling/same-policy"];
/// The no-change limit.
const NO_CHANGE_LIMIT: f64 = 30.0;

/// The levelling switch patterns the kernel measures.
const PATTERNS: &[&str] = &[
    "xen-to-xen",
    "same-policy",
    "different-policy",
    "dom0-guest",
    "xen-guest",
    "idle-between-different",
    "to-idle",
];

/// What each figure is.
fn describe(name: &str) -> &'static str {
    match name {
        "pv/loop" => "PV: the empty loop, per iteration (bookkeeping, subtracted from the rest)",
        "pv/trap-nop" => "PV: bare trap round trip, `int 0x82` nop hypercall (baseline)",
        "pv/cpuid-forced-leaf0" => "PV: CPUID leaf 0 through the forced-emulation prefix (#UD)",
        "pv/cpuid-forced-leaf1" => "PV: CPUID leaf 1, forced emulation",
        "pv/cpuid-forced-leaf7" => "PV: CPUID leaf 7, forced emulation",
        "pv/cpuid-forced-leafd" => "PV: CPUID leaf 0xD.0 (XSAVE size from XCR0), forced emulation",
        "pv/cpuid-forced-leafd1" => "PV: CPUID leaf 0xD.1, forced emulation",
        "pv/cpuid-forced-leaf80000001" => "PV: CPUID leaf 0x80000001, forced emulation",
        "pv/cpuid-forced-out-of-range" => {
            "PV: CPUID leaf 0x3fffffff (out of range: the least lookup), forced emulation"
        }
        "pv/cpuid-faulted-leaf1" => {
            "PV: native CPUID leaf 1 with CPUID faulting: #GP, emulated (under the shim: plus its CPUID exit)"
        }
        "pv/cpuid-native-leaf1" => {
            "PV: native CPUID leaf 1 where the host does not fault: no trap (under the shim: its CPUID exit, the modelled masks applied)"
        }
        "pv-breakdown/cpuid-at-cpl0" => {
            "CPUID at CPL0 through `hardware::cpuid` (plain QEMU: the call itself; above the shim: its exit, the model computing the answer)"
        }
        "pv-breakdown/fetch-7-bytes" => {
            "PV breakdown: reading the 7 instruction bytes (one 8-byte load from the guest)"
        }
        "pv-breakdown/trap-context" => "PV breakdown: the kernel building the crate's TrapContext",
        "pv-breakdown/guest-cpuid-leaf0" => "PV breakdown: the domain's CPUID table alone, leaf 0",
        "pv-breakdown/guest-cpuid-leaf1" => "PV breakdown: the CPUID table alone, leaf 1",
        "pv-breakdown/guest-cpuid-leaf7" => "PV breakdown: the CPUID table alone, leaf 7",
        "pv-breakdown/guest-cpuid-leafd" => "PV breakdown: the CPUID table alone, leaf 0xD.0",
        "pv-breakdown/guest-cpuid-leafd1" => "PV breakdown: the CPUID table alone, leaf 0xD.1",
        "pv-breakdown/guest-cpuid-leaf80000001" => {
            "PV breakdown: the CPUID table alone, leaf 0x80000001"
        }
        "pv-breakdown/guest-cpuid-leaf-out-of-range" => {
            "PV breakdown: the CPUID table alone, out of range"
        }
        "pv-breakdown/handle-ud-leaf0" => "PV breakdown: the crate's `handle_ud`, leaf 0",
        "pv-breakdown/handle-ud-leaf1" => "PV breakdown: `handle_ud`, leaf 1",
        "pv-breakdown/handle-ud-leaf7" => "PV breakdown: `handle_ud`, leaf 7",
        "pv-breakdown/handle-ud-leafd" => "PV breakdown: `handle_ud`, leaf 0xD.0",
        "pv-breakdown/handle-ud-leafd1" => "PV breakdown: `handle_ud`, leaf 0xD.1",
        "pv-breakdown/handle-ud-leaf80000001" => "PV breakdown: `handle_ud`, leaf 0x80000001",
        "pv-breakdown/handle-ud-leaf-out-of-range" => "PV breakdown: `handle_ud`, out of range",
        "hvm-breakdown/lookup-leaf0" => "HVM breakdown: the CPUID table in the exit, leaf 0",
        "hvm-breakdown/lookup-leaf1" => "HVM breakdown: the CPUID table in the exit, leaf 1",
        "hvm-breakdown/lookup-leaf7" => "HVM breakdown: the CPUID table in the exit, leaf 7",
        "hvm-breakdown/lookup-leafd" => "HVM breakdown: the CPUID table in the exit, leaf 0xD.0",
        "hvm-breakdown/lookup-leafd1" => "HVM breakdown: the CPUID table in the exit, leaf 0xD.1",
        "hvm-breakdown/lookup-leaf80000001" => {
            "HVM breakdown: the CPUID table in the exit, leaf 0x80000001"
        }
        "hvm-breakdown/lookup-leaf-out-of-range" => {
            "HVM breakdown: the CPUID table in the exit, out of range"
        }
        "switch/same-policy" => {
            "switch between two PV guests with the same policy (whole path: trap, scheduler, levelling, CR3, iretq)"
        }
        "switch/different-policy" => "switch between two PV guests with different policies",
        "switch/dom0-guest" => "switch between dom0 and a PV guest",
        "levelling/xen-to-xen" => "`LevellingState::switch_to` alone: Xen to Xen (no change)",
        "levelling/same-policy" => {
            "`switch_to` alone: between two guests with the same policy (no change)"
        }
        "levelling/different-policy" => "`switch_to` alone: between two different policies",
        "levelling/dom0-guest" => "`switch_to` alone: dom0 (unlevelled) and a guest",
        "levelling/xen-guest" => "`switch_to` alone: Xen and a guest",
        "levelling/idle-between-different" => {
            "`switch_to` alone: guest, idle, other guest, idle (per call)"
        }
        "levelling/to-idle" => "`switch_to` alone: to idle",
        "hvm/loop" => "HVM: the empty loop, per iteration",
        "hvm/vmmcall-nop" => "HVM: bare exit round trip, VMMCALL nop (baseline)",
        "hvm/cpuid-leaf0" => "HVM: CPUID leaf 0 exit round trip",
        "hvm/cpuid-leaf1" => "HVM: CPUID leaf 1 exit",
        "hvm/cpuid-leaf7" => "HVM: CPUID leaf 7 exit",
        "hvm/cpuid-leafd" => "HVM: CPUID leaf 0xD.0 exit",
        name if name.ends_with("/msr-writes") => "MSR writes per switch (`SwitchStats`)",
        name if name.ends_with("/msr-writes-differing") => {
            "levelling MSRs whose value differed, per switch (the lower bound)"
        }
        _ => "",
    }
}

/// A count as printed: whole numbers plain, fractions with two decimals.
fn count(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The BENCHMARKS.md section.
pub fn markdown(results: &[BootFigures], qemu: &str) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "## QEMU, -icount shift=0\n");
    let _ = writeln!(
        w,
        "The kernel's `bench` scenario (`arch/x86_64/src/scenarios/bench.rs`), booted by \
         `cargo xtask bench` (alone: `cargo xtask qemu --bench`) with {qemu}, TCG, \
         `-icount shift=0`: RDTSC counts guest instructions exactly, so every figure is an \
         exact instruction count per operation (loops of 1000, the empty loop subtracted), \
         the same on every run, and not a cycle count. Under the silicon shim the shim's own \
         instructions (every CPUID, every levelling RDMSR/WRMSR of the kernel is an exit to it) \
         are counted too.\n"
    );
    let _ = writeln!(w, "| boot | command |\n|---|---|");
    for r in results {
        let _ = writeln!(w, "| {} | `{}` |", r.boot.label, r.boot.command());
    }
    let _ = writeln!(w, "\n### Targets\n");
    let _ = writeln!(
        w,
        "| boot | path | instructions | baseline, same boot | ratio | target | met |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for r in results {
        for t in RATIOS {
            let (Some(v), Some(base)) = (r.get(t.figure), r.get(t.baseline)) else {
                continue;
            };
            let ratio = v / base;
            let met = if ratio <= t.limit { "yes" } else { "**no**" };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {}: {} | {ratio:.2}x | <= {}x | {met} |",
                r.boot.label,
                describe(t.figure),
                count(v),
                t.baseline,
                count(base),
                t.limit
            );
        }
        for name in NO_CHANGE_SWITCHES {
            let Some(v) = r.get(name) else { continue };
            let met = if v <= NO_CHANGE_LIMIT {
                "yes"
            } else {
                "**no**"
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | - | - | <= {NO_CHANGE_LIMIT} | {met} |",
                r.boot.label,
                describe(name),
                count(v)
            );
        }
        // MSR writes per switch against the MSRs that differed, every pattern in one row.
        let mut patterns = Vec::new();
        let mut measured = Vec::new();
        let mut differed = Vec::new();
        let mut all_equal = true;
        for p in PATTERNS {
            let writes = r.get(&format!("levelling/{p}/msr-writes"));
            let differing = r.get(&format!("levelling/{p}/msr-writes-differing"));
            let (Some(writes), Some(differing)) = (writes, differing) else {
                continue;
            };
            all_equal &= writes == differing;
            patterns.push(*p);
            measured.push(count(writes));
            differed.push(count(differing));
        }
        if !measured.is_empty() {
            let met = if all_equal { "yes" } else { "**no**" };
            let _ = writeln!(
                w,
                "| {} | MSR writes per switch ({}) | {} | MSRs that differed: {} | - | equal | {met} |",
                r.boot.label,
                patterns.join(", "),
                measured.join(", "),
                differed.join(", ")
            );
        }
    }
    let _ = writeln!(w, "\n### Every figure (instructions per operation)\n");
    let _ = write!(w, "| figure | what |");
    for r in results {
        let _ = write!(w, " {} |", r.boot.label);
    }
    let _ = writeln!(w);
    let _ = write!(w, "|---|---|");
    for _ in results {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        for (name, _) in &r.figures {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    for name in names {
        let _ = write!(w, "| `{name}` | {} |", describe(name));
        for r in results {
            let cell = r.get(name).map_or("-".to_owned(), count);
            let _ = write!(w, " {cell} |");
        }
        let _ = writeln!(w);
    }
    explain(w, results);
    md
}

/// Where the instructions go, from the first boot with the breakdown figures, and why the
/// missed targets are missed (instruction counts are exact: the pieces add up).
fn explain(w: &mut String, results: &[BootFigures]) {
    // The plain EPYC boot if there is one: no shim in its figures, and HVM ones.
    let with_breakdown = |r: &&BootFigures| r.get("pv-breakdown/guest-cpuid-leaf0").is_some();
    let Some(r) = results
        .iter()
        .filter(with_breakdown)
        .find(|r| r.boot.label == "EPYC")
        .or_else(|| results.iter().find(with_breakdown))
    else {
        return;
    };
    let f = |name: &str| r.get(name).unwrap_or(0.0);
    let (trap, forced) = (f("pv/trap-nop"), f("pv/cpuid-forced-leaf0"));
    let (fetch, context, cpuid, handle) = (
        f("pv-breakdown/fetch-7-bytes"),
        f("pv-breakdown/trap-context"),
        f("pv-breakdown/guest-cpuid-leaf0"),
        f("pv-breakdown/handle-ud-leaf0"),
    );
    let rest_of_handle = handle - fetch - cpuid;
    let glue = forced - trap - handle - context;
    let _ = writeln!(w, "\n### Where the instructions go\n");
    let _ = writeln!(
        w,
        "Counts are exact, so a path can be taken apart piece by piece (`pv-breakdown/*`, {} \
         boot, CPUID leaf 0). The forced-emulation round trip is {} instructions: the bare \
         trap's {} (entry stub, dispatch, `iretq`), {} reading the 7 instruction bytes (the \
         crate's `handle_ud` fetches them at once; the kernel copies straight from the user \
         page under `stac`, with an exception-table fixup, and walks the page tables only on a \
         fault), {} in the CPUID table's lookup itself (the call, the clamped row, the read from \
         the table or the vCPU's overlay), {} in the rest of `handle_ud` (decode, the \
         virtual-faulting check, the frame), {} for `Domain::trap_context` (it lends the \
         vCPU's kept `GuestContext` and CPUID overlay) and {} of kernel glue \
         (`sched::with_current`, the frame in and out).\n",
        r.boot.label,
        count(forced),
        count(trap),
        count(fetch),
        count(cpuid),
        count(rest_of_handle),
        count(context),
        count(glue),
    );
    let _ = writeln!(
        w,
        "**PV, <= 1.5x the bare trap: not met, and not meetable in instructions.** The target \
         leaves {:.1} instructions over the bare trap; the table lookup alone takes {} (leaf 0; \
         every leaf within 1 of it since the per-vCPU overlay). The target \
         is one of time: under icount the exception delivery and the `iretq` count one \
         instruction each, whereas on hardware they are most of a trap's cost (hundreds of \
         cycles), and `guest_cpuid` takes nanoseconds on the host (`guest_cpuid/*` in the \
         criterion table above). Cut so far: one 7-byte fetch instead of two, no \
         `GuestContext` copy per trap, the trap context lent rather than built per trap, and the \
         per-vCPU overlay of the dynamic rows (leaves 1, 7.0 and 0xD no dearer than leaf 0; \
         the overlay is recomputed only when the vCPU's state changes).\n",
        trap * 0.5,
        count(cpuid),
    );
    if let (Some(nop), Some(exit)) = (r.get("hvm/vmmcall-nop"), r.get("hvm/cpuid-leaf0")) {
        // The dearest CPUID exit of any boot decides the verdict.
        let worst = results
            .iter()
            .flat_map(|b| {
                [
                    "hvm/cpuid-leaf0",
                    "hvm/cpuid-leaf1",
                    "hvm/cpuid-leaf7",
                    "hvm/cpuid-leafd",
                ]
                .into_iter()
                .filter_map(|f| Some(b.get(f)? / b.get("hvm/vmmcall-nop")?))
            })
            .fold(0.0, f64::max);
        let verdict = if worst <= 1.3 {
            format!("met on every boot with SVM (at most {worst:.2}x)")
        } else {
            format!("not met ({worst:.2}x), for the same reason")
        };
        let _ = writeln!(
            w,
            "**HVM, <= 1.3x the bare exit: {verdict}.** The bare VMMCALL exit \
             is {} instructions (VMRUN and #VMEXIT count one each; the world switch's register \
             save and restore and the exit loop are the rest); a CPUID exit is {}: {} more, of \
             which the table lookup is {}, against a budget of {:.1} (the exit handler no longer \
             builds a `GuestContext` per exit: it compares the VMCB's CR4 and EFER bits with \
             those the vCPU's overlay was computed from, and refreshes it when they moved).\n",
            count(nop),
            count(exit),
            count(exit - nop),
            count(cpuid),
            nop * 0.3,
        );
    }
    let missed: Vec<String> = results
        .iter()
        .filter_map(|r| {
            let worst = NO_CHANGE_SWITCHES
                .iter()
                .filter_map(|n| r.get(n))
                .fold(0.0, f64::max);
            (worst > NO_CHANGE_LIMIT).then(|| format!("{} ({})", r.boot.label, count(worst)))
        })
        .collect();
    let verdict = if missed.is_empty() {
        "met on every boot".to_owned()
    } else {
        format!("not met on {}", missed.join(", "))
    };
    let _ = writeln!(
        w,
        "**Levelling switch with nothing to change, <= 30: {verdict}.** `LevellingState::switch_to` \
         branches on a mode cached at CPU bring-up; with faulting it compares one value with \
         the shadow; with masks it picks the domain's precomputed values (with or without \
         OSXSAVE) and compares all five with the shadows at once, without branches, before \
         anything else (writes are out of line). The five-value comparison is what a masking \
         switch costs over a faulting one. MSR writes per switch equal the MSRs whose value \
         differs in every pattern, on every boot.\n"
    );
    let _ = writeln!(
        w,
        "**Whole switches** (`switch/*`, trap to the other domain's next instruction) under \
         the shim include the kernel's per-switch verification (`levelling.rs` reads every \
         levelling MSR back before and after each switch and asks the shim how many WRMSRs it \
         served: exits to the shim) and the shim's own instructions for every RDMSR and WRMSR, \
         so they are not comparable with the plain boots. Likewise every CPUID above the shim \
         is an exit to it (`pv-breakdown/cpuid-at-cpl0`: one where the model computes the \
         answer); the faulted CPUID figure includes one (where the model only decides on #GP) \
         that real faulting hardware does not have.\n"
    );
    let _ = writeln!(
        w,
        "**Figures that rose, and why.** `pv-breakdown/trap-context` is 2 instructions more \
         than before the per-vCPU overlay: the trap context lends one pointer more (the \
         overlay), and the whole forced-emulation round trip is still shorter on every leaf. \
         The whole switches (`switch/*`) are 9.5 instructions more on every plain \
         boot (434.50 to 444): since the scheduler became the hypercall dispatcher's domain \
         registry (issue 12) it has 8 slots, not 4 (the `abi` scenario runs 5 domains), and its \
         round robin looks at the empty ones on the way back to the first; that change had also \
         left the scan out of line, a call that cost 21 more a switch, inlined again since \
         (found by counting the instructions QEMU executed per function, `-d exec`, in the \
         `switch` scenario before and after the change). The crate's part did not move \
         (`levelling/*`, `pv/trap-nop`). \
         On the host, `guest_cpuid/*` and `CpuPolicy::leaf` in the \
         criterion table include the speculation clamp of every policy leaf read (before the \
         overlay the compiler had folded it away: `nospec::at` asserted the bound first). \
         **Figures that fell**: the CPUIDs the silicon shim answers \
         (`pv-breakdown/cpuid-at-cpl0`, `pv/cpuid-native-leaf1` under the shim), about 900 \
         instructions fewer: the model asked `CpuPolicy::featureset` for one bit (XSAVE) on \
         every CPUID, 19 clamped lookups, and asks `CpuPolicy::has` now, one register read; \
         `featureset` itself reads the words from their homes directly. The same change \
         made `pv/cpuid-faulted-leaf1` under the shim 2 instructions more (311 to 313): that \
         figure includes the shim's exit, where the model decides on #GP, and the model was \
         rebuilt; the crate's #GP path is untouched (`pv-breakdown/handle-ud-*` and `pv-breakdown/trap-context` did not move)."
    );
}

#[cfg(test)]
mod tests {
    use super::{BOOTS, BootFigures, markdown, parse};

    #[test]
    fn the_probe_line_is_found() {
        let log = "xen: AMD …\nxen: levelling: no mechanism; expected MASK_1CD present MASK_1CD\n";
        assert_eq!(
            super::probe_line(log).as_deref(),
            Some("no mechanism; expected MASK_1CD present MASK_1CD")
        );
        assert_eq!(super::probe_line("bench x 1\n"), None);
    }

    #[test]
    fn bench_lines_parse_and_nothing_else_does() {
        let log = "bench: iterations 1000\nbench pv/trap-nop 73\nbench switch/x 369.500\n\
                   check bench/pv-figures: ok\nbench a b c\nbench pv/loop 4.004\n";
        let figures = parse(log);
        assert_eq!(
            figures,
            vec![
                ("pv/trap-nop".to_owned(), 73.0),
                ("switch/x".to_owned(), 369.5),
                ("pv/loop".to_owned(), 4.004),
            ]
        );
    }

    #[test]
    fn the_section_judges_each_target() {
        let figures = parse(
            "bench pv/trap-nop 100\nbench pv/cpuid-forced-leaf0 140\nbench pv/cpuid-forced-leaf1 200\n\
             bench pv/cpuid-native-leaf1 1\nbench levelling/same-policy 28\n\
             bench pv-breakdown/guest-cpuid-leaf0 74\nbench pv-breakdown/fetch-7-bytes 96\n\
             bench pv-breakdown/trap-context 38\nbench pv-breakdown/handle-ud-leaf0 231\n\
             bench levelling/same-policy/msr-writes 0\nbench levelling/same-policy/msr-writes-differing 0\n",
        );
        let md = markdown(
            &[BootFigures {
                boot: BOOTS[0],
                figures,
                probe: None,
            }],
            "QEMU emulator version 7.2",
        );
        assert!(md.contains("| 140 | pv/trap-nop: 100 | 1.40x | <= 1.5x | yes |"));
        assert!(md.contains("| 200 | pv/trap-nop: 100 | 2.00x | <= 1.5x | **no** |"));
        let targets = md.split("### Every figure").next().unwrap_or_default();
        assert!(
            !targets.contains("native CPUID leaf 1"),
            "a native CPUID that did not trap has no target"
        );
        assert!(md.contains("| 28 | - | - | <= 30 | yes |"));
        assert!(md.contains(
            "| MSR writes per switch (same-policy) | 0 | MSRs that differed: 0 | - | equal | yes |"
        ));
        assert!(md.contains("### Where the instructions go"));
    }
}
