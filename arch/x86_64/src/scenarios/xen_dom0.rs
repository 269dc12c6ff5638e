//! `xen-dom0`: Xen and dom0 keep the full host CPUID; ring 3 cannot read kernel pages.
//!
//! dom0 walks every leaf the CPU reports (the raw policy's leaves, plus the Xen leaves and the
//! first leaves past each range) with native CPUID in ring 3; the kernel runs each query at
//! CPL0 and compares. An isolation probe in its own ring-3 domain reads a kernel address and
//! must take #PF. After both, Xen's own CPL0 CPUID must still equal the boot-time read.

use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::WalkList;
use crate::paging;
use crate::sched;
use crate::xen::Host;

/// The scenario's name on the command line.
pub const NAME: &str = "xen-dom0";

/// Runs the scenario.
pub fn run(host: &Host) {
    let list = WalkList::for_policy(&host.policies.raw);
    sched::add(Domain::new(
        NAME,
        DomainSpec {
            per_result_checks: true,
            ..DomainSpec::dom0(
                host,
                Program::Walk {
                    list: &list,
                    rounds: 1,
                    flags: 0,
                },
            )
        },
        host,
    ));
    sched::add(Domain::new(
        NAME,
        DomainSpec {
            name: "dom0-probe",
            domid: 0,
            hardware_domain: true,
            policy: host.policies.host,
            oracle: Oracle::HostCpl0,
            // The kernel's own page tables: present, supervisor-only.
            program: Program::Probe {
                address: paging::kernel_cr3(),
            },
            per_result_checks: false,
        },
        host,
    ));
    sched::run();
    super::check_xen_sees_host(NAME, host, &list);
}
