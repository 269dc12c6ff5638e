//! A PV guest making dom0's toolstack calls: each must be refused with `-EPERM` (after the
//! interface version, which is checked first, as in Xen).

use xen_levelling::abi::dispatch::errno::{EACCES, EPERM};
use xen_levelling::abi::{
    DOMCTL_GET_LEVELLING, SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_LEVELLING_CAPS,
    SYSCTL_GET_CPU_POLICY, XenDomctlLevelling, XenSysctlCpuFeatureset, XenSysctlCpuLevellingCaps,
    XenSysctlCpuPolicy,
};
use xl_user::KIND_PV;

use crate::hypercall::{check_eq, check_ret, err, exit};
use crate::policy::PolicyBuffer;
use crate::toolstack::{self, ERR_FIELDS_POISON, Toolstack};

/// Its own domain id (the `abi` scenario's).
const ITSELF: u16 = 9;
/// The control domain.
const DOM0: u16 = 0;

/// The guest's program.
pub extern "C" fn run(_data: u64) -> ! {
    let mut ts = Toolstack::new();
    // Room for a whole policy, should a read-back wrongly succeed.
    let mut buf = PolicyBuffer::EMPTY;
    let eperm = err(EPERM);

    let caps = XenSysctlCpuLevellingCaps::default();
    let ret = ts.sysctl(SYSCTL_GET_CPU_LEVELLING_CAPS, &caps);
    check_ret(c"sysctl/levelling-caps-eperm", ret, eperm);
    let featureset = XenSysctlCpuFeatureset {
        index: 2,
        ..Default::default()
    };
    let ret = ts.sysctl(SYSCTL_GET_CPU_FEATURESET, &featureset);
    check_ret(c"sysctl/featureset-eperm", ret, eperm);
    let policy = XenSysctlCpuPolicy {
        index: 4,
        ..Default::default()
    };
    let ret = ts.sysctl(SYSCTL_GET_CPU_POLICY, &policy);
    check_ret(c"sysctl/policy-eperm", ret, eperm);

    let ret = ts.get_policy(DOM0, buf.leaves_address(), buf.msrs_address());
    check_ret(c"domctl/get-policy-of-dom0-eperm", ret, eperm);
    let ret = ts.set_policy(DOM0, (buf.leaves_address(), 0), (buf.msrs_address(), 0));
    check_ret(c"domctl/set-policy-of-dom0-eperm", ret, eperm);
    check_eq(
        c"domctl/set-policy-eperm-leaves-err-fields",
        u64::from(ts.err_fields()[0]),
        u64::from(ERR_FIELDS_POISON),
    );
    let ret = ts.set_policy(ITSELF, (buf.leaves_address(), 0), (buf.msrs_address(), 0));
    check_ret(c"domctl/set-policy-of-itself-eperm", ret, eperm);
    let ret = ts.domctl(DOMCTL_GET_LEVELLING, DOM0, &XenDomctlLevelling::default());
    check_ret(c"domctl/get-levelling-eperm", ret, eperm);

    check_ret(c"create-eperm", toolstack::create(5, KIND_PV, 0), eperm);
    check_ret(c"start-eperm", toolstack::start(1, 0, 0), eperm);

    ts.prepare_sysctl(SYSCTL_GET_CPU_LEVELLING_CAPS, &caps);
    ts.sysctl.interface_version += 1;
    let ret = ts.sysctl_as_is();
    check_ret(c"sysctl/bad-version-eacces-before-eperm", ret, err(EACCES));
    exit(0)
}
