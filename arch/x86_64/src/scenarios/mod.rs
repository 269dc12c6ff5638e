//! The scenarios, one per boot, chosen by `scenario=NAME` on the command line.
//!
//! | scenario | domains | proves |
//! |---|---|---|
//! | `xen-dom0` | dom0 (ring 3, native CPUID) and an isolation probe | Xen at CPL0 and dom0 in ring 3 see the full host CPUID on every leaf; ring 3 cannot read kernel pages |
//! | `pv-forced` | one PV guest at the PV default policy | the forced-emulation CPUID returns exactly the guest's policy on every leaf |
//! | `hvm` | one HVM guest under SVM at the HVM default policy, then dom0 | the intercepted CPUID returns exactly the HVM policy on every leaf, while Xen and dom0 still see the host (skipped without SVM) |
//! | `switch` | dom0 and two PV guests with different policies, yielding after every CPUID | each keeps its own view across many switches; the levelling hook runs on every switch |
//!
//! Every scenario starts with the [`selftest`] checks of the `Hardware` implementation.

mod hvm;
mod pv_forced;
mod selftest;
mod switch;
mod xen_dom0;

use xen_levelling::CpuPolicy;

use crate::checks::{self, Leaf, Regs};
use crate::cmdline::Cmdline;
use crate::guest::WalkList;
use crate::hardware;
use crate::println;
use crate::xen::Host;

/// The scenario names, for the message about an unknown one.
const NAMES: &[&str] = &[xen_dom0::NAME, pv_forced::NAME, hvm::NAME, switch::NAME];

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
    match name {
        xen_dom0::NAME => xen_dom0::run(host),
        pv_forced::NAME => pv_forced::run(host),
        hvm::NAME => hvm::run(host),
        switch::NAME => switch::run(host, cmdline),
        other => checks::fail(
            format_args!("scenario"),
            format_args!("unknown scenario `{other}`; one of {NAMES:?}"),
        ),
    }
}

/// Whether the hardware policy holds a value read from the CPU for `leaf`/`subleaf`: within
/// the reported maxima, and for leaf 0xD only the subleaves of enumerated state components.
fn read_at_boot(p: &CpuPolicy, leaf: u32, subleaf: u32) -> bool {
    let in_range = if leaf >= xen_levelling::policy::EXTD_BASE {
        leaf <= p.max_extd_leaf()
    } else {
        leaf <= p.max_basic_leaf()
    };
    let component =
        leaf != 0xd || subleaf < 2 || (p.xcr0_mask() | p.xss_mask()) & 1 << subleaf != 0;
    in_range && component && p.leaf(leaf, subleaf).is_some()
}

/// Xen itself sees the full host CPUID: after the domains ran (and the levelling hook
/// switched back to Xen), CPUID at CPL0 still returns what the CPU reported at boot, on every
/// leaf of `list` the boot read covered.
fn check_xen_sees_host(scenario: &str, host: &Host, list: &WalkList) {
    let mut compared = 0;
    let mut first_mismatch = None;
    for query in list.as_slice() {
        let (leaf, subleaf) = (query.leaf, query.subleaf);
        if !read_at_boot(&host.hardware, leaf, subleaf) {
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
