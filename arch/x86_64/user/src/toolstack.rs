//! The toolstack's hypercalls over the crate's wire types: a `xen_sysctl` and a `xen_domctl`
//! in the program's memory, filled from a payload type, passed by address, and read back.

use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY, Payload,
    SYSCTL_INTERFACE_VERSION, XenDomctl, XenDomctlCpuPolicy, XenSysctl,
};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xl_user::{HC_DOMAIN_CREATE, HC_DOMAIN_START, HC_DOMCTL, HC_SYSCTL};

use crate::hypercall::call;
use crate::policy::PolicyBuffer;

/// What set_cpu_policy's error fields go in as: on failure they must come back `~0` or
/// naming the bad leaf or MSR, on success untouched.
pub const ERR_FIELDS_POISON: u32 = 0x5a5a_5a5a;

/// The last sysctl and domctl a program passed, with what the hypervisor wrote back.
pub struct Toolstack {
    /// The last `xen_sysctl`.
    pub sysctl: XenSysctl,
    /// The last `xen_domctl`.
    pub domctl: XenDomctl,
}

impl Toolstack {
    /// Nothing passed yet.
    pub const fn new() -> Toolstack {
        Toolstack {
            sysctl: XenSysctl {
                cmd: 0,
                interface_version: 0,
                u: [0; 16],
            },
            domctl: XenDomctl {
                cmd: 0,
                interface_version: 0,
                domain: 0,
                pad: [0; 3],
                u: [0; 16],
            },
        }
    }

    /// Fills the sysctl: `cmd`, the current interface version, `payload`, the rest zero.
    pub fn prepare_sysctl(&mut self, cmd: u32, payload: &impl Payload) {
        self.sysctl = XenSysctl {
            cmd,
            interface_version: SYSCTL_INTERFACE_VERSION,
            u: [0; 16],
        };
        payload.store_in_union(&mut self.sysctl.u);
    }

    /// Passes the sysctl as it is.
    pub fn sysctl_as_is(&mut self) -> i64 {
        call(HC_SYSCTL, [&raw mut self.sysctl as u64, 0, 0, 0, 0])
    }

    /// sysctl `cmd` with `payload`.
    pub fn sysctl(&mut self, cmd: u32, payload: &impl Payload) -> i64 {
        self.prepare_sysctl(cmd, payload);
        self.sysctl_as_is()
    }

    /// The payload of the last sysctl, as the hypervisor left it.
    pub fn sysctl_out<P: Payload>(&self) -> P {
        P::from_union(&self.sysctl.u)
    }

    /// Fills the domctl: `cmd` on `domain`, the current interface version, `payload`, the
    /// rest zero.
    pub fn prepare_domctl(&mut self, cmd: u32, domain: u16, payload: &impl Payload) {
        self.domctl = XenDomctl {
            cmd,
            interface_version: DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: [0; 16],
        };
        payload.store_in_union(&mut self.domctl.u);
    }

    /// Passes the domctl as it is.
    pub fn domctl_as_is(&mut self) -> i64 {
        call(HC_DOMCTL, [&raw mut self.domctl as u64, 0, 0, 0, 0])
    }

    /// domctl `cmd` on `domain` with `payload`.
    pub fn domctl(&mut self, cmd: u32, domain: u16, payload: &impl Payload) -> i64 {
        self.prepare_domctl(cmd, domain, payload);
        self.domctl_as_is()
    }

    /// The payload of the last domctl, as the hypervisor left it.
    pub fn domctl_out<P: Payload>(&self) -> P {
        P::from_union(&self.domctl.u)
    }

    /// set_cpu_policy on `domain`: `nr_leaves` leaves at `leaves`, `nr_msrs` MSRs at `msrs`
    /// (user addresses, which may be bad on purpose), the error fields poisoned.
    pub fn set_policy(
        &mut self,
        domain: u16,
        (leaves, nr_leaves): (u64, u32),
        (msrs, nr_msrs): (u64, u32),
    ) -> i64 {
        let payload = XenDomctlCpuPolicy {
            nr_leaves,
            nr_msrs,
            leaves,
            msrs,
            err_leaf: ERR_FIELDS_POISON,
            err_subleaf: ERR_FIELDS_POISON,
            err_msr: ERR_FIELDS_POISON,
            pad: 0,
        };
        self.domctl(DOMCTL_SET_CPU_POLICY, domain, &payload)
    }

    /// set_cpu_policy on `domain` with the policy in `policy`.
    pub fn set_policy_from(&mut self, domain: u16, policy: &mut PolicyBuffer) -> i64 {
        let leaves = (policy.leaves_address(), policy.nr_leaves);
        let msrs = (policy.msrs_address(), policy.nr_msrs);
        self.set_policy(domain, leaves, msrs)
    }

    /// get_cpu_policy of `domain` into arrays of the largest size at `leaves` and `msrs`.
    pub fn get_policy(&mut self, domain: u16, leaves: u64, msrs: u64) -> i64 {
        let payload = XenDomctlCpuPolicy {
            nr_leaves: MAX_SERIALISED_LEAVES as u32,
            nr_msrs: MAX_SERIALISED_MSRS as u32,
            leaves,
            msrs,
            ..XenDomctlCpuPolicy::default()
        };
        self.domctl(DOMCTL_GET_CPU_POLICY, domain, &payload)
    }

    /// get_cpu_policy of `domain` into `policy`, with the counts the hypervisor reports.
    pub fn get_policy_into(&mut self, domain: u16, policy: &mut PolicyBuffer) -> i64 {
        let ret = self.get_policy(domain, policy.leaves_address(), policy.msrs_address());
        let out: XenDomctlCpuPolicy = self.domctl_out();
        policy.nr_leaves = out.nr_leaves;
        policy.nr_msrs = out.nr_msrs;
        ret
    }

    /// The error fields of the last domctl: leaf, subleaf, MSR.
    pub fn err_fields(&self) -> [u32; 3] {
        let out: XenDomctlCpuPolicy = self.domctl_out();
        [out.err_leaf, out.err_subleaf, out.err_msr]
    }
}

/// `domain_create(domid, kind, flags)`.
pub fn create(domid: u64, kind: u64, flags: u64) -> i64 {
    call(HC_DOMAIN_CREATE, [domid, kind, flags, 0, 0])
}

/// `domain_start(domid, boot data, length)`.
pub fn start(domid: u64, data: u64, len: u64) -> i64 {
    call(HC_DOMAIN_START, [domid, data, len, 0, 0])
}
