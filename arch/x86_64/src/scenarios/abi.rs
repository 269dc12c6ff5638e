//! `abi`: the hypercall ABI end to end. dom0's ring-3 toolstack (`user/src/dom0.rs`) reads
//! the levelling caps, a featureset and the PV default policy through sysctls, builds a guest
//! policy in its own memory, creates guests, sets the policy (domctl 83), reads it back
//! (domctl 82) and starts them (fail closed unless best effort); each started guest checks
//! with the forced-emulation CPUID that it sees that policy. A PV guest making the same calls
//! gets `-EPERM`. dom0 then walks every error path of set_cpu_policy, each followed by a
//! read-back proving the policy did not change.
//!
//! The checks are the programs' own (`check abi/<domain>/<name>`); the kernel adds that the
//! guests did report, and that the scheduler's domains (the one registry the dispatcher acts
//! on) are as dom0 left them.

use xen_levelling::abi::domain::Domains;
use xen_levelling::policy::system::DomainKind;

use crate::checks;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::toolstack::{xl_toolstack, xl_toolstack_guest, xl_toolstack_unpriv};
use crate::hypercall;
use crate::sched;
use crate::xen::Host;

/// The scenario's name on the command line.
pub const NAME: &str = "abi";

/// The unprivileged guest's domain id.
const UNPRIV_DOMID: u16 = 9;
/// The fewest checks the guests must report: the unprivileged guest's 11, and a started
/// guest's registers of leaves 0, 1 and 0x80000001 (which every policy has) plus its summary.
const MIN_GUEST_CHECKS: u32 = 11 + 8;

/// Runs the scenario.
pub fn run(host: &Host) {
    let Some(pv) = host.default_policy_or_fail(DomainKind::Pv, format_args!("{NAME}/policy"))
    else {
        return;
    };
    hypercall::install_abi(NAME, xl_toolstack_guest);
    let program = |entry| Program::Raw { entry };
    sched::add(Domain::new(
        NAME,
        DomainSpec::dom0(host, program(xl_toolstack)),
        host,
    ));
    sched::add(
        Domain::new(
            NAME,
            DomainSpec {
                name: "domU9",
                domid: UNPRIV_DOMID,
                hardware_domain: false,
                policy: pv,
                oracle: Oracle::HostCpl0,
                program: program(xl_toolstack_unpriv),
                per_result_checks: false,
            },
            host,
        )
        // Its CPUID is not what it is here for: on a host that cannot hide features it still runs.
        .with_best_effort(),
    );
    // What the toolstack left: domU2 started (best effort), domU3 never did.
    let (started, never) = sched::run_then(|domains| {
        let of = |domid| domains.domain(domid).map(|d| (*d.policy(), d.running()));
        (of(2), of(3))
    });
    checks::check(
        format_args!("{NAME}/xen/domU2-started-domU3-not"),
        matches!(started, Some((_, true))) && matches!(never, Some((_, false))),
        format_args!(
            "domU2 running {:?}, domU3 running {:?}",
            started.map(|d| d.1),
            never.map(|d| d.1)
        ),
    );
    // Both were given the same policy by dom0, and every error left domU3's alone.
    checks::check(
        format_args!("{NAME}/xen/domU3-policy-is-domU2s"),
        matches!((started, never), (Some((a, _)), Some((b, _))) if a == b),
        format_args!("the policies differ"),
    );
    let guest_checks = hypercall::uninstall_abi();
    checks::check(
        format_args!("{NAME}/xen/guests-reported"),
        guest_checks >= MIN_GUEST_CHECKS,
        format_args!("{guest_checks} checks from guests, expected at least {MIN_GUEST_CHECKS}"),
    );
}
