//! The scenarios, one per boot, chosen by `scenario=NAME` on the command line.
//!
//! | scenario | domains | proves |
//! |---|---|---|
//! | `xen-dom0` | dom0 (ring 3, native CPUID) and an isolation probe | Xen at CPL0 and dom0 in ring 3 see the full host CPUID on every leaf; ring 3 cannot read kernel pages |
//! | `pv-forced` | one PV guest at the PV default policy | the forced-emulation CPUID returns exactly the guest's policy on every leaf |
//! | `hvm` | one HVM guest under SVM at the HVM default policy, then dom0 | the intercepted CPUID returns exactly the HVM policy on every leaf, while Xen and dom0 still see the host (skipped without SVM) |
//! | `switch` | dom0 and two PV guests with different policies, yielding after every CPUID | each keeps its own view across many switches; the levelling hook runs on every switch |
//! | `pv-levelled` | dom0 and levelled PV guests running native CPUID, switching after every CPUID | the fail-closed rule; each guest sees its policy where the hardware can hide, and exactly its fail-closed list beyond it; Xen and dom0 see the host (the silicon shim's scenario) |
//! | `abi` | dom0's ring-3 toolstack, an unprivileged PV guest, the guests dom0 starts | the sysctl/domctl ABI end to end: dom0 sets a policy it built and the guest sees it; a guest gets `-EPERM`; every error path returns its code and changes nothing |
//! | `agent` | dom0's ring-3 agent | the host report `cargo xtask run` levels pools with: featuresets and levelling caps through sysctls 25 and 26, vendor and signature from dom0's own CPUID (`pool.rs`) |
//! | `at-level` | dom0, PV guests (native and forced CPUID) and an HVM guest at the levels on the command line | guests started at a pool level see exactly that level (or, natively on hardware that cannot hide it all, exactly their fail-closed list beyond it); Xen and dom0 see the host |
//! | `smp` | per CPU: dom0, two forced-emulation guests, a levelled guest; a policy/start race | domains switch concurrently on every CPU, each with its own levelling state, and every check holds on each (`smp/cpuN/...`); a `set_cpu_policy` loop on CPU 0 against a start on CPU 1 ends in one of the two orders, never a torn policy/levelling (skipped on one CPU) |
//! | `msr-fault` | dom0 and a levelled guest, then new guests | above the shim: a levelling MSR starts raising #GP mid-run; the switch notices, the mechanism is marked failed, dom0 runs on, new levelled guests are refused (best effort still runs), the running levelled guest is reported unguaranteed (skipped on plain QEMU) |
//! | `bench` | benchmark guests (PV, switch pairs, HVM) | exact instruction counts under `-icount shift=0`: trap, CPUID emulation, switch and exit paths (`bench <name> <count>` lines) |
//!
//! Every scenario starts with the [`selftest`] checks of the `Hardware` implementation (the
//! boot probe's checks come before, from `xen::Host::probe`), and ends with the levelling
//! switch checks (`levelling::report_switches`).

mod abi;
mod bench;
mod hvm;
mod msr_fault;
mod pool;
mod pv_forced;
mod pv_levelled;
mod selftest;
mod smp;
mod switch;
mod xen_dom0;

use crate::checks::{self, Leaf, Regs};
use crate::cmdline::Cmdline;
use crate::guest::WalkList;
use crate::hardware;
use crate::println;
use crate::xen::Host;

/// The scenario names, for the message about an unknown one.
const NAMES: &[&str] = &[
    xen_dom0::NAME,
    pv_forced::NAME,
    hvm::NAME,
    switch::NAME,
    pv_levelled::NAME,
    abi::NAME,
    bench::NAME,
    pool::AGENT,
    pool::AT_LEVEL,
    smp::NAME,
    msr_fault::NAME,
];

/// Runs the scenario the command line names.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let Some(name) = cmdline.scenario() else {
        checks::fail(
            format_args!("scenario"),
            format_args!("no scenario=NAME on the command line; one of {NAMES:?}"),
        );
        return;
    };
    println!("scenario: {name}");
    selftest::run();
    // Called through a function pointer: each scenario keeps its own stack frame, so the
    // dispatcher's frame is not the sum of every scenario the compiler would inline into it
    // (the boot stack, and the stack above the shim, are 128 KiB).
    let scenario: fn(&Host, &Cmdline) = match name {
        xen_dom0::NAME => |host, _| xen_dom0::run(host),
        pv_forced::NAME => |host, _| pv_forced::run(host),
        hvm::NAME => |host, _| hvm::run(host),
        switch::NAME => switch::run,
        pv_levelled::NAME => pv_levelled::run,
        abi::NAME => |host, _| abi::run(host),
        bench::NAME => bench::run,
        pool::AGENT => pool::agent,
        pool::AT_LEVEL => pool::at_level,
        smp::NAME => smp::run,
        msr_fault::NAME => msr_fault::run,
        other => {
            checks::fail(
                format_args!("scenario"),
                format_args!("unknown scenario `{other}`; one of {NAMES:?}"),
            );
            |_, _| {}
        }
    };
    scenario(host, cmdline);
    crate::levelling::report_switches(name);
}

/// Xen itself sees the full host CPUID: after the domains ran (and the levelling hook
/// switched back to Xen), CPUID at CPL0 still returns what the CPU reported at boot, on every
/// leaf of `list` the boot read covered.
fn check_xen_sees_host(scenario: &str, host: &Host, list: &WalkList) {
    let mut compared = 0;
    let mut first_mismatch = None;
    for query in list.as_slice() {
        let (leaf, subleaf) = (query.leaf, query.subleaf);
        if !crate::xen::read_at_boot(&host.hardware, leaf, subleaf) {
            continue;
        }
        let boot = host.hardware.leaf(leaf, subleaf).unwrap_or_default();
        let now = hardware::cpuid(leaf, subleaf);
        compared += 1;
        if boot != now && first_mismatch.is_none() {
            first_mismatch = Some((leaf, subleaf, boot, now));
        }
    }
    match first_mismatch {
        None => checks::pass_with(
            format_args!("{scenario}/xen/cpl0-cpuid-is-host"),
            format_args!("{compared} leaves as read at boot"),
        ),
        Some((leaf, subleaf, boot, now)) => checks::fail(
            format_args!("{scenario}/xen/cpl0-cpuid-is-host"),
            format_args!(
                "{}: expected {} (boot) got {}",
                Leaf(leaf, subleaf),
                Regs(boot),
                Regs(now)
            ),
        ),
    }
}
