//! `hvm`: an HVM guest under SVM sees exactly its HVM default policy on every leaf, while Xen
//! and dom0 on the same CPU still see the full host CPUID. Skipped (exit status 39) on a CPU
//! without SVM.

use crate::checks;
use crate::domain::{Domain, DomainSpec, Program};
use crate::guest::WalkList;
use crate::svm::{self, SvmError};
use crate::xen::Host;
use crate::{hvm, sched};

/// The scenario's name on the command line.
pub const NAME: &str = "hvm";

/// Runs the scenario.
pub fn run(host: &Host) {
    if !svm::present() {
        checks::skip(
            format_args!("{NAME}/svm"),
            format_args!("{}", SvmError::NotPresent),
        );
        return;
    }
    let kind = host.hvm_kind();
    let policy = match host.default_domain_policy(kind) {
        Ok(policy) => policy,
        Err(error) => {
            checks::fail(format_args!("{NAME}/hvm/policy"), format_args!("{error}"));
            return;
        }
    };
    let list = WalkList::for_policy(&policy);
    let domain = host.guest_domain(kind, 1, false);
    if let Err(error) = hvm::run_walk(NAME, policy, domain, host.cr4_osxsave, &list) {
        checks::skip(format_args!("{NAME}/svm"), format_args!("{error}"));
        return;
    }
    // The same CPU, after the HVM guest: dom0 and Xen are not levelled.
    let host_list = WalkList::for_policy(&host.policies.raw);
    sched::add(Domain::new(
        NAME,
        DomainSpec::dom0(
            host,
            Program::Walk {
                list: &host_list,
                rounds: 1,
                flags: 0,
            },
        ),
        host,
    ));
    sched::run();
    super::check_xen_sees_host(NAME, host, &host_list);
}
