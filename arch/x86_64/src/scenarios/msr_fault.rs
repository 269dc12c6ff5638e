//! `msr-fault`: a levelling MSR starts raising #GP mid-run (as after a microcode update that
//! withdrew it); the kernel notices on the next switch, marks the mechanism failed, keeps Xen
//! and dom0 running, refuses new levelled PV guests (fail closed; best effort still starts),
//! and reports the running domains whose levelling can no longer be guaranteed.
//!
//! Above the silicon shim only (the shim's `FAIL_MSR` call makes the model's `fail_msr`);
//! on plain QEMU, or on a dump with no levelling mechanism, it skips.
//!
//! | phase | domains | what |
//! |---|---|---|
//! | 1 | dom0 (native CPUID, judged against the host), domU1 (levelled PV guest, forced-emulation CPUID, yielding after every CPUID) | after `after=N` switches to domU1 (default 4) the mechanism's MSR (faulting control, or the last mask MSR) faults; later switches to domU1 get `Err(MsrFault)`, the mechanism is marked failed; dom0 keeps seeing the host, domU1 its policy (forced emulation is exact whatever the hardware) |
//! | report | | domU1 listed as unguaranteed (levelled PV, started on the mechanism, running when it failed); dom0 not |
//! | 2 | domU2 (levelled, no best effort), domU3 (the same, best effort), dom0 | domU2 refused (fail closed: nothing can hide its list now), domU3 and dom0 run |

use xen_levelling::levelling::{DomainLevelling, Mechanism};
use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::DomainKind;

use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{WALK_FORCED, WALK_YIELD, WalkList};
use crate::levelling::MechanismName;
use crate::xen::Host;
use crate::{checks, levelling, println, sched, shim};

/// The scenario's name on the command line.
pub const NAME: &str = "msr-fault";

/// Leaves every domain walks.
const LEAVES: &[(u32, u32)] = &[(0x0, 0), (0x1, 0), (0x7, 0), (0xd, 1), (0x8000_0001, 0)];

/// Runs the scenario.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let mechanism = levelling::current().mechanism();
    if !shim::active() || mechanism == Mechanism::None {
        checks::skip(
            format_args!("{NAME}/mechanism"),
            format_args!(
                "needs the silicon shim and a levelling mechanism ({})",
                MechanismName(mechanism)
            ),
        );
        return;
    }
    let rounds = cmdline.number("rounds", 4).max(2);
    let after = cmdline.number("after", 4);
    let list = WalkList::of(LEAVES);
    let Some(policy) = host.default_policy_or_fail(DomainKind::Pv, format_args!("{NAME}/policy"))
    else {
        return;
    };
    let walk = |flags| Program::Walk {
        list: &list,
        rounds,
        flags: flags | WALK_YIELD,
    };
    let dom0 = |name| DomainSpec {
        name,
        domid: 0,
        hardware_domain: true,
        policy: host.policies.host,
        oracle: Oracle::HostCpl0,
        program: walk(0),
        per_result_checks: false,
    };
    let guest = |name, domid| DomainSpec {
        name,
        domid,
        hardware_domain: false,
        policy,
        oracle: Oracle::Policy(CpuidEntry::ForcedEmulation),
        program: walk(WALK_FORCED),
        per_result_checks: false,
    };

    // Phase 1: the MSR fails while dom0 and a levelled guest switch.
    let mut running: [Option<(&str, DomainLevelling)>; 2] = [None, None];
    let d0 = Domain::new(NAME, dom0("dom0"), host);
    running[0] = Some(("dom0", *d0.levelling()));
    // domU1 is levelled: started without best effort where the mechanism hides everything
    // (a faulting CPU), with best effort where masks cannot (as a toolstack would).
    let mut d1 = Domain::new(NAME, guest("domU1", 1), host);
    if !d1.levelling().unenforceable().is_empty() {
        d1 = d1.with_best_effort();
    }
    running[1] = Some(("domU1", *d1.levelling()));
    // The MSR that fails: the faulting control, or the first mask MSR whose value domU1
    // needs changed (so that the next switch to it must write it).
    let defaults = *levelling::current().defaults();
    let msr = match mechanism {
        Mechanism::Faulting { control, .. } => Some(control.msr_and_bit().0),
        Mechanism::Masking(masks) => masks
            .kinds()
            .find(|&(kind, _)| d1.levelling().masks().get(kind) != defaults.get(kind))
            .map(|(_, index)| index),
        Mechanism::None => None,
    };
    let Some(msr) = msr else {
        checks::skip(
            format_args!("{NAME}/mechanism"),
            format_args!("domU1's masks are the defaults: no switch would write an MSR"),
        );
        return;
    };
    println!(
        "{NAME}: {}: MSR {msr:#x} will raise #GP after {after} switches to domU1",
        MechanismName(mechanism)
    );
    levelling::expect_faults(true);
    levelling::arm_msr_failure(u64::from(after), msr);
    sched::add(d0);
    sched::add(d1);
    sched::run();
    let (faults, first) = levelling::fault_tally();
    let failure = levelling::failure();
    checks::noted(
        format_args!("{NAME}/levelling/fault-noticed-on-switch"),
        faults > 0 && first.is_some_and(|f| f.msr == msr) && failure.is_some_and(|f| f.msr == msr),
        format_args!(
            "{faults} switches got Err(MsrFault) (first: MSR {:#x}); mechanism failure recorded: MSR {:#x}",
            first.map_or(0, |f| f.msr),
            failure.map_or(0, |f| f.msr)
        ),
    );
    let guaranteed = levelling::current().guaranteed_mechanism();
    checks::noted(
        format_args!("{NAME}/levelling/guaranteed-mechanism-is-none"),
        guaranteed == Mechanism::None,
        format_args!(
            "probed {}; guaranteed now {}",
            MechanismName(mechanism),
            MechanismName(guaranteed)
        ),
    );
    // The domains whose levelling can no longer be guaranteed: the crate's
    // `DomainTable::unguaranteed` rule on the domains that ran.
    for (name, l) in running.iter().flatten() {
        let unguaranteed = failure.is_some()
            && l.levelled()
            && l.kind() == DomainKind::Pv
            && l.mechanism() != Mechanism::None;
        let expected = *name == "domU1";
        checks::noted(
            format_args!("{NAME}/{name}/levelling-guaranteed"),
            unguaranteed == expected,
            format_args!(
                "{}",
                if unguaranteed {
                    "NO: a levelled PV guest started on the failed mechanism (reported unguaranteed)"
                } else {
                    "yes: not levelled, nothing to lose"
                }
            ),
        );
    }
    levelling::report_switches("msr-fault/run1");

    // Phase 2: fail closed for new levelled guests, best effort still allowed; dom0 runs on.
    let mut d2 = Domain::new(NAME, guest("domU2", 2), host);
    let refused = d2.start().is_err();
    checks::noted(
        format_args!("{NAME}/domU2/fail-closed"),
        refused,
        format_args!(
            "a new levelled PV guest without best effort is {}; its fail-closed list: [{}]",
            if refused { "refused" } else { "started" },
            d2.levelling().unenforceable().names()
        ),
    );
    sched::add(Domain::new(NAME, dom0("dom0-after"), host));
    sched::add(Domain::new(NAME, guest("domU3", 3), host).with_best_effort());
    sched::run();
    levelling::report_switches("msr-fault/run2");
    levelling::expect_faults(false);
}
