//! `switch`: dom0 and two PV guests with different policies take turns on one CPU, yielding
//! after every CPUID, for `rounds=N` walks (default 8) of a short list of leaves.
//!
//! Each domain's every result is judged (dom0 against CPL0, the guests against their own
//! policies through the forced-emulation path), each reports that its stack survived, and
//! the levelling hook must have run on every switch.

use xen_levelling::CpuPolicy;
use xen_levelling::Feature;
use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::{DomainKind, DomainPolicyError};

use crate::checks;
use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{WALK_FORCED, WALK_YIELD, WalkList};
use crate::sched;
use crate::xen::Host;

/// The scenario's name on the command line.
pub const NAME: &str = "switch";

/// Leaves every domain walks: the feature leaves a levelling switch changes, the Xen leaf.
/// (`smp` walks the same ones.)
pub const LEAVES: &[(u32, u32)] = &[
    (0x0, 0),
    (0x1, 0),
    (0x7, 0),
    (0xd, 0),
    (0xd, 1),
    (0x8000_0000, 0),
    (0x8000_0001, 0),
    (0x4000_0000, 0),
];

/// The two guests' policies: the PV default, and the PV default without SSE3 (and, by
/// dependency, everything built on it). `smp` runs the same pair on every CPU.
pub fn guest_pair(host: &Host) -> [Result<CpuPolicy, DomainPolicyError>; 2] {
    let mut reduced = host.policies.pv_default.featureset();
    reduced.remove(Feature::SSE3);
    [
        host.default_domain_policy(DomainKind::Pv),
        host.policies
            .domain_policy(DomainKind::Pv, host.vendor, &reduced.closed()),
    ]
}

/// Runs the scenario.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let rounds = cmdline.number("rounds", 8).max(1);
    let list = WalkList::of(LEAVES);
    let pair = guest_pair(host);
    let [Ok(guest1), Ok(guest2)] = pair else {
        checks::fail(
            format_args!("{NAME}/policies"),
            format_args!("{:?}", pair.map(|p| p.err())),
        );
        return;
    };
    checks::check(
        format_args!("{NAME}/guest-policies-differ"),
        guest1.featureset() != guest2.featureset(),
        format_args!("removing sse3 changed nothing"),
    );
    let walk = |flags| Program::Walk {
        list: &list,
        rounds,
        flags: flags | WALK_YIELD,
    };
    let forced = Oracle::Policy(CpuidEntry::ForcedEmulation);
    let specs = [
        (
            "dom0",
            0,
            true,
            host.policies.host,
            Oracle::HostCpl0,
            walk(0),
        ),
        ("domU1", 1, false, guest1, forced, walk(WALK_FORCED)),
        ("domU2", 2, false, guest2, forced, walk(WALK_FORCED)),
    ];
    for (name, domid, hardware_domain, policy, oracle, program) in specs {
        let spec = DomainSpec {
            name,
            domid,
            hardware_domain,
            policy,
            oracle,
            program,
            per_result_checks: false,
        };
        // The guests run only forced-emulation CPUID, exact on any CPU: best effort (dom0 is
        // not levelled, so it changes nothing there).
        sched::add(Domain::new(NAME, spec, host).with_best_effort());
    }
    let (transitions_before, calls_before) = sched::switch_counts();
    sched::run();
    let (transitions, calls) = sched::switch_counts();
    let (transitions, calls) = (transitions - transitions_before, calls - calls_before);
    checks::check(
        format_args!("{NAME}/levelling-hook-on-every-switch"),
        calls == transitions,
        format_args!("{calls} hook calls for {transitions} switches"),
    );
    // Every yield hands the CPU to another domain: 3 domains × rounds × leaves at least.
    let minimum = 3 * u64::from(rounds) * list.as_slice().len() as u64;
    checks::check(
        format_args!("{NAME}/switches"),
        transitions >= minimum,
        format_args!("{transitions} switches, expected at least {minimum}"),
    );
    crate::println!("{NAME}: {transitions} switches, {calls} levelling hook calls");
}
