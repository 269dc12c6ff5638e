//! `pv-forced`: a PV guest at the PV default policy sees exactly its policy through the
//! forced-emulation CPUID (`ud2; .ascii "xen"; cpuid`) on every leaf the policy covers.

use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::DomainKind;

use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{WALK_FORCED, WalkList};
use crate::sched;
use crate::xen::Host;

/// The scenario's name on the command line.
pub const NAME: &str = "pv-forced";

/// Runs the scenario.
pub fn run(host: &Host) {
    let Some(policy) =
        host.default_policy_or_fail(DomainKind::Pv, format_args!("{NAME}/domU1/policy"))
    else {
        return;
    };
    let list = WalkList::for_policy(&policy);
    sched::add(
        Domain::new(
            NAME,
            DomainSpec {
                name: "domU1",
                domid: 1,
                hardware_domain: false,
                policy,
                oracle: Oracle::Policy(CpuidEntry::ForcedEmulation),
                program: Program::Walk {
                    list: &list,
                    rounds: 1,
                    flags: WALK_FORCED,
                },
                per_result_checks: true,
            },
            host,
        )
        // It runs only forced-emulation CPUID, which is exact on any CPU: started with best
        // effort, as a toolstack would on a host that cannot hide its native view.
        .with_best_effort(),
    );
    sched::run();
}
