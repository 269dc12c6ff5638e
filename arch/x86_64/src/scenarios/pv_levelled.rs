//! `pv-levelled`: levelled PV guests run native CPUID in ring 3, switching with dom0 after
//! every CPUID; the fail-closed rule decides which may start.
//!
//! | domain | level | CPUID | judged by |
//! |---|---|---|---|
//! | dom0 | host (not levelled) | native | the CPU's boot-time values, every leaf |
//! | domU1 | PV default less AVX, MOVBE, ABM, ERMS, XSAVEOPT (closed) | native | `Oracle::Levelled` |
//! | domU2 | domU1's less SSE4_2, POPCNT, 3DNOWPREFETCH, BMI1 (closed) | native | `Oracle::Levelled` |
//! | domU3 | domU2's | forced emulation | `guest_cpuid`, every leaf |
//!
//! Each guest is first started without best effort: it must be refused exactly when its
//! fail-closed list is not empty (on plain QEMU, where nothing can hide anything, always).
//! With `best_effort` on the command line a refused guest is started again with best effort
//! and runs; without, it stays refused. A levelled guest's native CPUIDs then show exactly
//! its policy where the hardware can hide (faulting: every leaf exactly `guest_cpuid`; masks:
//! every masked word), and what they show beyond it is exactly its fail-closed list. Xen
//! and dom0 keep the full host CPUID throughout, and every switch writes exactly the MSRs
//! whose value differs (`levelling::report_switches`). `rounds=N` walks N times (default 2).

use xen_levelling::levelling::Mechanism;
use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::DomainKind;

use xen_levelling::{Feature, Featureset};

use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{WALK_FORCED, WALK_YIELD, WalkList};
use crate::xen::Host;
use crate::{checks, println, sched, shim};

/// The scenario's name on the command line.
pub const NAME: &str = "pv-levelled";

/// Taken from the PV default for domU1: a few features of each maskable leaf (1c, e1c, 7b0,
/// Da1), so that masks have work to do on every generation that has them.
const LESS_1: [Feature; 5] = [
    Feature::AVX,
    Feature::MOVBE,
    Feature::ABM,
    Feature::ERMS,
    Feature::XSAVEOPT,
];
/// Taken from domU1's level for domU2.
const LESS_2: [Feature; 4] = [
    Feature::SSE4_2,
    Feature::POPCNT,
    Feature::_3DNOWPREFETCH,
    Feature::BMI1,
];

/// Runs the scenario.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let best_effort = cmdline
        .as_str()
        .split_ascii_whitespace()
        .any(|w| w == "best_effort");
    let rounds = cmdline.number("rounds", 2).max(1);
    let level1 = (host.policies.pv_default.featureset() - Featureset::of(&LESS_1)).closed();
    let level2 = (level1 - Featureset::of(&LESS_2)).closed();
    let policies = [level1, level2].map(|fs| {
        host.policies
            .domain_policy(DomainKind::Pv, host.vendor, &fs)
    });
    let [Ok(policy1), Ok(policy2)] = policies else {
        checks::fail(
            format_args!("{NAME}/policies"),
            format_args!("{:?}", policies.map(|p| p.err())),
        );
        return;
    };
    let dom0_list = WalkList::with_word_homes(&host.policies.raw);
    let list1 = WalkList::with_word_homes(&policy1);
    let list2 = WalkList::with_word_homes(&policy2);
    let walk = |list, flags| Program::Walk {
        list,
        rounds,
        flags: flags | WALK_YIELD,
    };
    sched::add(Domain::new(
        NAME,
        DomainSpec::dom0(host, walk(&dom0_list, 0)),
        host,
    ));
    let guests = [
        ("domU1", 1, policy1, Oracle::Levelled, walk(&list1, 0)),
        ("domU2", 2, policy2, Oracle::Levelled, walk(&list2, 0)),
        (
            "domU3",
            3,
            policy2,
            Oracle::Policy(CpuidEntry::ForcedEmulation),
            walk(&list2, WALK_FORCED),
        ),
    ];
    for (name, domid, policy, oracle, program) in guests {
        let spec = DomainSpec {
            name,
            domid,
            hardware_domain: false,
            policy,
            oracle,
            program,
            per_result_checks: false,
        };
        if let Some(domain) = start(Domain::new(NAME, spec, host), best_effort) {
            sched::add(domain);
        }
    }
    sched::run();
    super::check_xen_sees_host(NAME, host, &dom0_list);
    if let Some([cpuid, msr, gp, writes]) = shim::l0_stats() {
        println!(
            "shim: {cpuid} CPUID exits, {msr} MSR exits, {gp} #GPs injected, {writes} WRMSRs served"
        );
    }
}

/// The fail-closed rule, checked: started without best effort, `domain` must be refused
/// exactly when its fail-closed list is not empty, and on plain QEMU (no mechanism) always.
/// A refused domain is started with best effort if that was asked for.
fn start(mut domain: Domain, best_effort: bool) -> Option<Domain> {
    let name = domain.name();
    let list = domain.levelling().unenforceable();
    let mechanism = domain.levelling().mechanism();
    let refused = domain.start().err();
    let must_refuse = mechanism == Mechanism::None;
    checks::noted(
        format_args!("{NAME}/{name}/fail-closed"),
        refused.is_some() != list.is_empty() && (refused.is_some() || !must_refuse),
        format_args!(
            "{}",
            match refused {
                Some(refusal) => RefusalNote::Refused(refusal),
                None => RefusalNote::Started,
            }
        ),
    );
    match refused {
        None => Some(domain),
        Some(_) if best_effort => {
            let mut domain = domain.with_best_effort();
            match domain.start() {
                Ok(()) => {
                    println!("{NAME}: {name} started with best effort");
                    Some(domain)
                }
                Err(refusal) => {
                    checks::fail(
                        format_args!("{NAME}/{name}/best-effort"),
                        format_args!("still refused: {refusal}"),
                    );
                    None
                }
            }
        }
        Some(_) => None,
    }
}

/// What the fail-closed check line says.
enum RefusalNote {
    Refused(xen_levelling::levelling::Unenforceable),
    Started,
}

impl core::fmt::Display for RefusalNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RefusalNote::Refused(refusal) => write!(f, "refused: {refusal}"),
            RefusalNote::Started => {
                f.write_str("started: the hardware hides everything its policy lacks")
            }
        }
    }
}
