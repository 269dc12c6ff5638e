//! `do_sysctl` and `do_domctl`: the hypercalls a toolstack uses to read featuresets and
//! policies and to set a domain's policy, with Xen's semantics and error codes (reference
//! `xen-levelling.md` 6.3).
//!
//! Every argument comes from guest memory through [`GuestCopy`], which can fault
//! (`-EFAULT`); nothing a guest passes can panic the dispatcher. Only the control domain may
//! call (`-EPERM`). `set_cpu_policy` is atomic: on any error the domain's policy and
//! levelling are exactly as before; on success both change together.

use super::domain::{Domains, Host, PolicyUpdate, levelling_of};
use super::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_GET_LEVELLING, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY,
    Payload, SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_POLICY,
    SYSCTL_INTERFACE_VERSION, Wire, XenCpuidLeaf, XenDomctl, XenDomctlCpuPolicy,
    XenDomctlLevelling, XenMsrEntry, XenSysctl, XenSysctlCpuFeatureset, XenSysctlCpuLevellingCaps,
    XenSysctlCpuPolicy, levelcap, levelling_flags,
};
use crate::feature::NR_WORDS;
use crate::levelling::{LevellingCaps, Mechanism};
use crate::policy::CpuPolicy;
use crate::policy::compat::check_compatible;
use crate::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS, PolicyArrayError};
use crate::policy::system::SystemPolicy;

/// Xen's errno values (`xen/include/public/errno.h`), returned negated.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such domain.
    pub const ESRCH: i32 = 3;
    /// Argument list too long.
    pub const E2BIG: i32 = 7;
    /// Permission denied (Xen: interface version mismatch).
    pub const EACCES: i32 = 13;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Exists (the domain has run).
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Out of range.
    pub const ERANGE: i32 = 34;
    /// Function not implemented.
    pub const ENOSYS: i32 = 38;
    /// Value too large.
    pub const EOVERFLOW: i32 = 75;
    /// Not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// No buffer space.
    pub const ENOBUFS: i32 = 105;
}

/// A guest copy that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyFault;

/// Copies to and from the calling guest's memory (Xen's `copy_{from,to}_guest`).
pub trait GuestCopy {
    /// Fill `buf` from guest address `address`.
    fn copy_from_guest(&self, address: u64, buf: &mut [u8]) -> core::result::Result<(), CopyFault>;
    /// Write `data` at guest address `address`.
    fn copy_to_guest(&mut self, address: u64, data: &[u8]) -> core::result::Result<(), CopyFault>;
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling domain.
    pub domid: u16,
    /// It is the control domain.
    pub control: bool,
}

/// Errors inside the dispatcher are positive errno values, negated at the boundary.
type Result<T> = core::result::Result<T, i32>;

fn read<T: Wire>(mem: &impl GuestCopy, address: u64) -> Result<T> {
    let mut bytes = [0u8; 144];
    let buf = &mut bytes[..T::SIZE];
    mem.copy_from_guest(address, buf)
        .map_err(|_| errno::EFAULT)?;
    Ok(T::decode(buf))
}

fn write<T: Wire>(mem: &mut impl GuestCopy, address: u64, value: &T) -> Result<()> {
    let mut bytes = [0u8; 144];
    let buf = &mut bytes[..T::SIZE];
    value.encode(buf);
    mem.copy_to_guest(address, buf).map_err(|_| errno::EFAULT)
}

/// The address of element `i` of a guest array at `base`; a wrap is a fault.
fn element(base: u64, i: usize, size: usize) -> Result<u64> {
    (i as u64)
        .checked_mul(size as u64)
        .and_then(|o| base.checked_add(o))
        .ok_or(errno::EFAULT)
}

fn to_return(r: Result<()>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

/// Xen's order: an interface version other than `expected` is `-EACCES` whoever calls; then
/// only the control domain may call (`-EPERM`).
fn admit(caller: Caller, version: u32, expected: u32) -> Result<()> {
    if version != expected {
        return Err(errno::EACCES);
    }
    if !caller.control {
        return Err(errno::EPERM);
    }
    Ok(())
}

/// `__HYPERVISOR_sysctl(arg)`: returns 0 or a negative errno.
pub fn do_sysctl(host: &Host, caller: Caller, mem: &mut impl GuestCopy, arg: u64) -> i64 {
    to_return(sysctl(host, caller, mem, arg))
}

fn sysctl(host: &Host, caller: Caller, mem: &mut impl GuestCopy, arg: u64) -> Result<()> {
    let mut op: XenSysctl = read(mem, arg)?;
    admit(caller, op.interface_version, SYSCTL_INTERFACE_VERSION)?;
    let ret = match op.cmd {
        SYSCTL_GET_CPU_LEVELLING_CAPS => {
            let caps = XenSysctlCpuLevellingCaps {
                caps: public_levelling_caps(host.levelling().report().effective),
            };
            caps.store_in_union(&mut op.u);
            Ok(())
        }
        SYSCTL_GET_CPU_FEATURESET => {
            let mut p = XenSysctlCpuFeatureset::from_union(&op.u);
            let r = get_featureset(host, mem, &mut p);
            p.store_in_union(&mut op.u);
            r
        }
        SYSCTL_GET_CPU_POLICY => {
            let mut p = XenSysctlCpuPolicy::from_union(&op.u);
            let r = get_system_policy(host, mem, &mut p);
            p.store_in_union(&mut op.u);
            r
        }
        _ => return Err(errno::ENOSYS),
    };
    // OUT fields go back whatever happened (Xen copies the payload back on -ENOBUFS too).
    write(mem, arg, &op)?;
    ret
}

/// Current `LCAP_*` bits to the pre-4.22 public `XEN_SYSCTL_CPU_LEVELCAP_*` bits.
pub(crate) fn public_levelling_caps(caps: LevellingCaps) -> u32 {
    let map = [
        (LevellingCaps::FAULTING, levelcap::FAULTING),
        (LevellingCaps::MASK_1CD, levelcap::ECX | levelcap::EDX),
        (
            LevellingCaps::MASK_E1CD,
            levelcap::EXTD_ECX | levelcap::EXTD_EDX,
        ),
        (LevellingCaps::MASK_DA1, levelcap::XSAVE_EAX),
        (LevellingCaps::MASK_6C, levelcap::THERMAL_ECX),
        (
            LevellingCaps::MASK_7AB0,
            levelcap::L7S0_EAX | levelcap::L7S0_EBX,
        ),
    ];
    map.iter()
        .filter(|(c, _)| caps.contains(*c))
        .fold(0, |acc, (_, bits)| acc | bits)
}

/// The featureset sysctl's indexes. Note Xen's numbering: 2 and 3 are the default sets, the
/// max sets came later as 4 and 5.
pub const FEATURESET_INDEXES: [SystemPolicy; 6] = [
    SystemPolicy::Raw,
    SystemPolicy::Host,
    SystemPolicy::PvDefault,
    SystemPolicy::HvmDefault,
    SystemPolicy::PvMax,
    SystemPolicy::HvmMax,
];

/// The policy sysctl's indexes: another order than the featureset sysctl's.
pub const POLICY_INDEXES: [SystemPolicy; 6] = [
    SystemPolicy::Raw,
    SystemPolicy::Host,
    SystemPolicy::PvMax,
    SystemPolicy::HvmMax,
    SystemPolicy::PvDefault,
    SystemPolicy::HvmDefault,
];

/// The system policy `index` names in `indexes`; any other index is `-EINVAL`.
fn system_policy(indexes: &[SystemPolicy; 6], index: u32) -> Result<SystemPolicy> {
    usize::try_from(index)
        .ok()
        .and_then(|i| indexes.get(i))
        .copied()
        .ok_or(errno::EINVAL)
}

fn get_featureset(
    host: &Host,
    mem: &mut impl GuestCopy,
    p: &mut XenSysctlCpuFeatureset,
) -> Result<()> {
    // The size query comes first and ignores the index, as in Xen.
    if p.features == 0 {
        p.nr_features = NR_WORDS as u32;
        return Ok(());
    }
    let fs = host
        .system()
        .get(system_policy(&FEATURESET_INDEXES, p.index)?)
        .featureset();
    let nr = (p.nr_features as usize).min(NR_WORDS);
    write_words(mem, p.features, &fs.words()[..nr])?;
    p.nr_features = nr as u32;
    // A short buffer still gets what fits, and learns it was short.
    if nr < NR_WORDS {
        Err(errno::ENOBUFS)
    } else {
        Ok(())
    }
}

fn write_words(mem: &mut impl GuestCopy, base: u64, words: &[u32]) -> Result<()> {
    for (i, w) in words.iter().enumerate() {
        mem.copy_to_guest(element(base, i, 4)?, &w.to_le_bytes())
            .map_err(|_| errno::EFAULT)?;
    }
    Ok(())
}

fn get_system_policy(
    host: &Host,
    mem: &mut impl GuestCopy,
    p: &mut XenSysctlCpuPolicy,
) -> Result<()> {
    if p.rsvd != 0 {
        return Err(errno::EINVAL);
    }
    let policy = host.system().get(system_policy(&POLICY_INDEXES, p.index)?);
    put_policy(
        policy,
        mem,
        p.leaves,
        &mut p.nr_leaves,
        p.msrs,
        &mut p.nr_msrs,
    )
}

/// Serialise `policy` into the guest's arrays; a NULL handle asks for the most entries there
/// can be. A short array is `-ENOBUFS` and leaves its count alone.
fn put_policy(
    policy: &CpuPolicy,
    mem: &mut impl GuestCopy,
    leaves_handle: u64,
    nr_leaves: &mut u32,
    msrs_handle: u64,
    nr_msrs: &mut u32,
) -> Result<()> {
    if leaves_handle == 0 {
        *nr_leaves = MAX_SERIALISED_LEAVES as u32;
    } else {
        let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
        let n = policy
            .write_leaves(&mut leaves)
            .map_err(|_| errno::ENOBUFS)?;
        if (*nr_leaves as usize) < n {
            return Err(errno::ENOBUFS);
        }
        for (i, leaf) in leaves[..n].iter().enumerate() {
            write(mem, element(leaves_handle, i, XenCpuidLeaf::SIZE)?, leaf)?;
        }
        *nr_leaves = n as u32;
    }
    if msrs_handle == 0 {
        *nr_msrs = MAX_SERIALISED_MSRS as u32;
    } else {
        let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
        let n = policy.write_msrs(&mut msrs).map_err(|_| errno::ENOBUFS)?;
        if (*nr_msrs as usize) < n {
            return Err(errno::ENOBUFS);
        }
        for (i, msr) in msrs[..n].iter().enumerate() {
            write(mem, element(msrs_handle, i, XenMsrEntry::SIZE)?, msr)?;
        }
        *nr_msrs = n as u32;
    }
    Ok(())
}

/// `__HYPERVISOR_domctl(arg)`: returns 0 or a negative errno.
pub fn do_domctl(
    host: &Host,
    domains: &mut impl Domains,
    caller: Caller,
    mem: &mut impl GuestCopy,
    arg: u64,
) -> i64 {
    to_return(domctl(host, domains, caller, mem, arg))
}

fn domctl(
    host: &Host,
    domains: &mut impl Domains,
    caller: Caller,
    mem: &mut impl GuestCopy,
    arg: u64,
) -> Result<()> {
    let mut op: XenDomctl = read(mem, arg)?;
    admit(caller, op.interface_version, DOMCTL_INTERFACE_VERSION)?;
    let ret = match op.cmd {
        DOMCTL_GET_CPU_POLICY => {
            let domain = domains.domain(op.domain).ok_or(errno::ESRCH)?;
            let mut p = XenDomctlCpuPolicy::from_union(&op.u);
            let r = put_policy(
                domain.policy(),
                mem,
                p.leaves,
                &mut p.nr_leaves,
                p.msrs,
                &mut p.nr_msrs,
            );
            p.store_in_union(&mut op.u);
            r
        }
        DOMCTL_SET_CPU_POLICY => {
            let mut p = XenDomctlCpuPolicy::from_union(&op.u);
            let r = set_policy(host, domains, caller, mem, op.domain, &mut p);
            // Only the error fields are OUT, and only on failure: a successful set writes
            // nothing back, so it cannot fail after the domain changed.
            if r.is_ok() {
                return Ok(());
            }
            p.store_in_union(&mut op.u);
            r
        }
        DOMCTL_GET_LEVELLING => {
            let mut p = XenDomctlLevelling::from_union(&op.u);
            let r = get_levelling(domains, mem, op.domain, &mut p);
            p.store_in_union(&mut op.u);
            r
        }
        _ => return Err(errno::ENOSYS),
    };
    write(mem, arg, &op)?;
    ret
}

fn set_policy(
    host: &Host,
    domains: &mut impl Domains,
    caller: Caller,
    mem: &mut impl GuestCopy,
    domid: u16,
    p: &mut XenDomctlCpuPolicy,
) -> Result<()> {
    if domid == caller.domid {
        return Err(errno::EINVAL);
    }
    let domain = domains.domain(domid).ok_or(errno::ESRCH)?;
    if domain.running() {
        return Err(errno::EEXIST);
    }
    // From here on, as in Xen's update_domain_cpu_policy: the error fields start at ~0.
    (p.err_leaf, p.err_subleaf, p.err_msr) = (!0, !0, !0);
    let record = |e: PolicyArrayError, p: &mut XenDomctlCpuPolicy| {
        let (code, leaf, subleaf, msr) = array_error(e);
        (p.err_leaf, p.err_subleaf, p.err_msr) = (leaf, subleaf, msr);
        code
    };
    // Leaves first, then MSRs, each counted, copied and merged in turn (Xen's order).
    let nr_leaves = p.nr_leaves as usize;
    if nr_leaves > MAX_SERIALISED_LEAVES {
        return Err(errno::E2BIG);
    }
    let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    for (i, leaf) in leaves[..nr_leaves].iter_mut().enumerate() {
        *leaf = read(mem, element(p.leaves, i, XenCpuidLeaf::SIZE)?)?;
    }
    let policy = domain
        .policy()
        .merged(&leaves[..nr_leaves], &[])
        .map_err(|e| record(e, p))?;
    let nr_msrs = p.nr_msrs as usize;
    if nr_msrs > MAX_SERIALISED_MSRS {
        return Err(errno::E2BIG);
    }
    let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
    for (i, msr) in msrs[..nr_msrs].iter_mut().enumerate() {
        *msr = read(mem, element(p.msrs, i, XenMsrEntry::SIZE)?)?;
    }
    let mut policy = policy
        .merged(&[], &msrs[..nr_msrs])
        .map_err(|e| record(e, p))?;
    policy.clear_out_of_range_leaves();
    let max = host
        .system()
        .max_for(domain.kind())
        .ok_or(errno::EOPNOTSUPP)?;
    if let Err(e) = check_compatible(&max, &policy) {
        (p.err_leaf, p.err_subleaf, p.err_msr) = (e.leaf, e.subleaf, e.msr);
        return Err(errno::EINVAL);
    }
    let policy = host
        .system()
        .recalculate(domain.kind(), &policy)
        .ok_or(errno::EOPNOTSUPP)?;
    let levelling = levelling_of(host, domain.kind(), domain.role(), &policy);
    // Both change together, and only now.
    domains
        .set_policy(domid, PolicyUpdate::new(policy, levelling))
        .map_err(|_| errno::ESRCH)
}

/// errno and the (leaf, subleaf, msr) error fields for a rejected array.
fn array_error(e: PolicyArrayError) -> (i32, u32, u32, u32) {
    match e {
        PolicyArrayError::TooManyLeaves { .. } | PolicyArrayError::TooManyMsrs { .. } => {
            (errno::E2BIG, !0, !0, !0)
        }
        PolicyArrayError::LeafOutOfRange { leaf, subleaf } => (errno::ERANGE, leaf, subleaf, !0),
        PolicyArrayError::MsrFlags { msr, .. } => (errno::EINVAL, !0, !0, msr),
        PolicyArrayError::MsrOverflow { msr, .. } => (errno::EOVERFLOW, !0, !0, msr),
        PolicyArrayError::UnknownMsr { msr } => (errno::ERANGE, !0, !0, msr),
        PolicyArrayError::BufferTooSmall { .. } => (errno::ENOBUFS, !0, !0, !0),
    }
}

fn get_levelling(
    domains: &impl Domains,
    mem: &mut impl GuestCopy,
    domid: u16,
    p: &mut XenDomctlLevelling,
) -> Result<()> {
    if p.rsvd != 0 {
        return Err(errno::EINVAL);
    }
    let d = domains.domain(domid).ok_or(errno::ESRCH)?;
    let l = d.levelling();
    p.mechanism = match l.mechanism() {
        Mechanism::None => 0,
        Mechanism::Faulting { .. } => 1,
        Mechanism::Masking(_) => 2,
    };
    let flag = |on: bool, bit: u32| if on { bit } else { 0 };
    p.flags = flag(l.levelled(), levelling_flags::LEVELLED)
        | flag(l.faulting(), levelling_flags::FAULTING)
        | flag(d.best_effort(), levelling_flags::BEST_EFFORT)
        | flag(d.running(), levelling_flags::RUNNING);
    if p.unenforceable == 0 && p.not_shown == 0 {
        p.nr_features = NR_WORDS as u32;
        return Ok(());
    }
    let nr = (p.nr_features as usize).min(NR_WORDS);
    for (handle, fs) in [
        (p.unenforceable, l.unenforceable()),
        (p.not_shown, l.not_shown()),
    ] {
        if handle != 0 {
            write_words(mem, handle, &fs.words()[..nr])?;
        }
    }
    p.nr_features = nr as u32;
    if nr < NR_WORDS {
        Err(errno::ENOBUFS)
    } else {
        Ok(())
    }
}
