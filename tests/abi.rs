//! The hypercall ABI (`abi::dispatch::{do_sysctl, do_domctl}`) from the toolstack's side of the
//! gate, against hosts booted from real CPUID dumps: every success and error path of the
//! sysctls (levelling caps 25, featureset 26, policy 29) and domctls (get 82, set 83, the
//! levelling extension 1000), with the exact errno and OUT fields Xen gives (reference
//! `xen-levelling.md` 6 and 7.3), and after every failure a domain table that is exactly as it
//! was. Property tests: set(get(policy)) is the identity, and arbitrary bytes as the envelopes
//! and arrays never panic and never change anything when the call fails.
//!
//! Arguments go through [`GuestMem`], a fake guest address space: one mapped region, an
//! optional range inside it that faults on every access (a page the guest never mapped), and
//! an optional read-only range.
//!
//! Four tests pin down places where the dispatcher once differed from Xen or broke its own
//! atomicity rule (found while writing this file, fixed since).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use xen_levelling::abi::dispatch::{Caller, CopyFault, GuestCopy, do_domctl, do_sysctl, errno};
use xen_levelling::abi::domain::{Domain, DomainError, DomainTable, Domains, Host, PolicyUpdate};
use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_GET_LEVELLING, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY,
    Payload, SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_POLICY,
    SYSCTL_INTERFACE_VERSION, Wire, XenCpuidLeaf, XenDomctl, XenDomctlCpuPolicy,
    XenDomctlLevelling, XenMsrEntry, XenSysctl, XenSysctlCpuFeatureset, XenSysctlCpuLevellingCaps,
    XenSysctlCpuPolicy, levelcap, levelling_flags,
};
use xen_levelling::cpuid::{NO_SUBLEAF, Vendor};
use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature::NR_WORDS;
use xen_levelling::host::HostConfig;
use xen_levelling::levelling::{DomainRole, Mechanism};
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xen_levelling::policy::system::{DomainKind, SystemPolicies};
use xen_levelling::policy::{MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO};
use xen_levelling::silicon::SiliconModel;
use xen_levelling::{CpuPolicy, Feature, Featureset};

// ---------------------------------------------------------------------------------------------
// Hosts from the dumps.

mod common;

use common::dumps;
use xen_levelling::levelling::generation::expected_mechanism;
use xen_levelling::levelling::masks::MaskKind;

/// Ivy Bridge and later Intel: CPUID faulting.
const SKYLAKE: &str = "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt";
/// Sandy Bridge-E: masks for leaf 1, 0x80000001 and 0xD:1.
const SANDY_BRIDGE_E: &str = "GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt";
/// Zen 4: AMD's CpuidUserDis faulting.
const GENOA: &str = "AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt";
/// Core 2: a leaf 1 mask only, no MSR_PLATFORM_INFO.
const PENRYN: &str = "GenuineIntel0010676_Penryn_CPUID.txt";

/// Boot "Xen" on the silicon model of `file` as `tests/levelling.rs` does: raw policy through
/// the hardware, probe, derive the system policies.
fn boot(file: &str) -> Host {
    let text = dumps::read(file);
    let dump = Aida64Dump::parse(&text).unwrap();
    let mut model = SiliconModel::new(&dump, dump.raw_msrs());
    Host::boot(&mut model, HostConfig::default())
}

/// Each dump is booted once per test binary.
fn host(file: &str) -> Host {
    static CACHE: OnceLock<Mutex<HashMap<String, Host>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(file) {
        return *h;
    }
    let h = boot(file);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(file.to_string(), h);
    h
}

/// The repository's dumps whose file name starts with `prefix` (the vendor string).
fn dump_files(prefix: &str) -> Vec<String> {
    dumps::bundled()
        .into_iter()
        .map(|f| f.name)
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// The PV pool level of every Intel dump (what a toolstack would level a mixed pool to).
fn intel_pool_level() -> Featureset {
    static LEVEL: OnceLock<Featureset> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        dump_files("GenuineIntel")
            .iter()
            .map(|f| host(f).system().pv_default.featureset())
            .fold(Featureset::FULL, |a, b| a & b)
            .closed()
    })
}

// ---------------------------------------------------------------------------------------------
// A fake guest address space.

/// Where the guest's memory starts.
const BASE: u64 = 0x0010_0000;
/// How much of it is mapped.
const SIZE: usize = 0x8000;
/// What untouched memory holds.
const FILL: u8 = 0xa5;
/// An address nothing is mapped at.
const UNMAPPED: u64 = 0x1000;
/// Where the envelopes go.
const ENVELOPE: u64 = BASE;
/// Where the leaf arrays go (120 * 24 bytes fit in 0x1000).
const LEAVES: u64 = BASE + 0x1000;
/// Where the MSR arrays go.
const MSRS: u64 = BASE + 0x2000;
/// Where featureset buffers go.
const WORDS: u64 = BASE + 0x3000;
/// A second featureset buffer.
const WORDS2: u64 = BASE + 0x3400;
/// A page inside the mapping that faults (set with [`GuestMem::with_hole`]).
const HOLE: Range<u64> = BASE + 0x5000..BASE + 0x6000;
/// The error-field sentinel: written by the caller, must survive a success.
const SENTINEL: u32 = 0x5e17_1e1a;

/// A guest's memory: `bytes` mapped at [`BASE`]; everything else, and `hole`, faults.
#[derive(Clone, Debug)]
struct GuestMem {
    bytes: Vec<u8>,
    hole: Option<Range<u64>>,
    read_only: Option<Range<u64>>,
}

fn overlaps(r: &Option<Range<u64>>, start: u64, end: u64) -> bool {
    r.as_ref().is_some_and(|r| start < r.end && end > r.start)
}

impl GuestMem {
    fn new() -> GuestMem {
        GuestMem {
            bytes: vec![FILL; SIZE],
            hole: None,
            read_only: None,
        }
    }

    fn with_hole(mut self) -> GuestMem {
        self.hole = Some(HOLE);
        self
    }

    /// The offsets of `[address, address + len)` if all of it is mapped.
    fn mapped(&self, address: u64, len: usize) -> Option<Range<usize>> {
        let end = address.checked_add(len as u64)?;
        if address < BASE
            || end > BASE + self.bytes.len() as u64
            || overlaps(&self.hole, address, end)
        {
            return None;
        }
        let start = (address - BASE) as usize;
        Some(start..start + len)
    }

    /// Test setup and inspection: straight at the bytes, holes ignored.
    fn poke(&mut self, address: u64, data: &[u8]) {
        let start = (address - BASE) as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
    }

    fn peek(&self, address: u64, len: usize) -> Vec<u8> {
        let start = (address - BASE) as usize;
        self.bytes[start..start + len].to_vec()
    }

    fn put<T: Wire>(&mut self, address: u64, value: &T) {
        let mut b = vec![0; T::SIZE];
        value.encode(&mut b);
        self.poke(address, &b);
    }

    fn get<T: Wire>(&self, address: u64) -> T {
        T::decode(&self.peek(address, T::SIZE))
    }

    fn put_array<T: Wire>(&mut self, address: u64, items: &[T]) {
        for (i, item) in items.iter().enumerate() {
            self.put(address + (i * T::SIZE) as u64, item);
        }
    }

    fn get_array<T: Wire>(&self, address: u64, n: usize) -> Vec<T> {
        (0..n)
            .map(|i| self.get(address + (i * T::SIZE) as u64))
            .collect()
    }

    fn words(&self, address: u64, n: usize) -> Vec<u32> {
        self.peek(address, 4 * n)
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

impl GuestCopy for GuestMem {
    fn copy_from_guest(&self, address: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        let r = self.mapped(address, buf.len()).ok_or(CopyFault)?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn copy_to_guest(&mut self, address: u64, data: &[u8]) -> Result<(), CopyFault> {
        let r = self.mapped(address, data.len()).ok_or(CopyFault)?;
        if overlaps(&self.read_only, address, address + data.len() as u64) {
            return Err(CopyFault);
        }
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[test]
fn the_fake_guest_memory_faults_where_it_should() {
    let mut m = GuestMem::new().with_hole();
    let mut b = [0u8; 8];
    assert_eq!(m.copy_from_guest(BASE, &mut b), Ok(()));
    assert_eq!(b, [FILL; 8]);
    assert_eq!(m.copy_from_guest(BASE - 1, &mut b), Err(CopyFault));
    assert_eq!(
        m.copy_from_guest(BASE + SIZE as u64 - 7, &mut b),
        Err(CopyFault)
    );
    assert_eq!(m.copy_from_guest(BASE + SIZE as u64 - 8, &mut b), Ok(()));
    assert_eq!(m.copy_from_guest(HOLE.start - 4, &mut b), Err(CopyFault));
    assert_eq!(m.copy_from_guest(HOLE.end - 1, &mut b), Err(CopyFault));
    assert_eq!(m.copy_from_guest(HOLE.end, &mut b), Ok(()));
    assert_eq!(m.copy_from_guest(u64::MAX - 3, &mut b), Err(CopyFault));
    assert_eq!(m.copy_to_guest(HOLE.start - 8, &b), Ok(()));
    assert_eq!(m.copy_to_guest(HOLE.start - 7, &b), Err(CopyFault));
    m.read_only = Some(ENVELOPE..ENVELOPE + 8);
    assert_eq!(m.copy_to_guest(ENVELOPE + 4, &b), Err(CopyFault));
    assert_eq!(m.copy_from_guest(ENVELOPE + 4, &mut b), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// The toolstack's side.

/// dom0, the control domain.
const DOM0: Caller = Caller {
    domid: 0,
    control: true,
};
/// A PV guest domain.
const PV: u16 = 1;
/// An HVM (HAP) guest domain.
const HVM: u16 = 2;
/// A PV guest created with best effort accepted.
const PV_BEST_EFFORT: u16 = 3;
/// No domain has this id.
const MISSING: u16 = 42;

/// Callers that are not the control domain (a guest, and dom0's id without the privilege).
const NOT_CONTROL: [Caller; 3] = [
    Caller {
        domid: PV,
        control: false,
    },
    Caller {
        domid: HVM,
        control: false,
    },
    Caller {
        domid: 0,
        control: false,
    },
];

struct Env {
    host: Host,
    domains: DomainTable<8>,
    mem: GuestMem,
}

fn sysctl_op<P: Payload>(cmd: u32, p: &P) -> XenSysctl {
    let mut op = XenSysctl {
        cmd,
        interface_version: SYSCTL_INTERFACE_VERSION,
        u: [0; 16],
    };
    p.store_in_union(&mut op.u);
    op
}

fn domctl_op<P: Payload>(cmd: u32, domain: u16, p: &P) -> XenDomctl {
    let mut op = XenDomctl {
        cmd,
        interface_version: DOMCTL_INTERFACE_VERSION,
        domain,
        pad: [0; 3],
        u: [0; 16],
    };
    p.store_in_union(&mut op.u);
    op
}

fn fs_query(index: u32, nr_features: u32, features: u64) -> XenSysctlCpuFeatureset {
    XenSysctlCpuFeatureset {
        index,
        nr_features,
        features,
    }
}

fn sys_policy_query(index: u32) -> XenSysctlCpuPolicy {
    XenSysctlCpuPolicy {
        index,
        nr_leaves: MAX_SERIALISED_LEAVES as u32,
        nr_msrs: MAX_SERIALISED_MSRS as u32,
        rsvd: 0,
        leaves: LEAVES,
        msrs: MSRS,
    }
}

/// A domctl cpu_policy payload for arrays at [`LEAVES`] and [`MSRS`], err fields pre-filled
/// with `err`.
fn dom_policy(nr_leaves: u32, nr_msrs: u32, err: u32) -> XenDomctlCpuPolicy {
    XenDomctlCpuPolicy {
        nr_leaves,
        nr_msrs,
        leaves: LEAVES,
        msrs: MSRS,
        err_leaf: err,
        err_subleaf: err,
        err_msr: err,
        pad: 0,
    }
}

fn levelling_query(nr_features: u32, unenforceable: u64, not_shown: u64) -> XenDomctlLevelling {
    XenDomctlLevelling {
        mechanism: SENTINEL,
        flags: SENTINEL,
        nr_features,
        rsvd: 0,
        unenforceable,
        not_shown,
    }
}

/// A policy as the arrays Xen serialises it to.
fn serialise(p: &CpuPolicy) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
    let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let n = p.write_leaves(&mut leaves).unwrap();
    let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
    let m = p.write_msrs(&mut msrs).unwrap();
    (leaves[..n].to_vec(), msrs[..m].to_vec())
}

impl Env {
    /// dom0 (PV, control), a PV guest, an HVM guest and a best-effort PV guest, all at their
    /// kind's default policy.
    fn new(file: &str) -> Env {
        Env::with_host(host(file))
    }

    fn with_host(host: Host) -> Env {
        let mut domains = DomainTable::default();
        for (domid, kind, role, best_effort) in [
            (0, DomainKind::Pv, DomainRole::Control, false),
            (PV, DomainKind::Pv, DomainRole::Guest, false),
            (HVM, DomainKind::HvmHap, DomainRole::Guest, false),
            (PV_BEST_EFFORT, DomainKind::Pv, DomainRole::Guest, true),
        ] {
            domains
                .create(&host, domid, kind, role, best_effort)
                .unwrap();
        }
        Env {
            host,
            domains,
            mem: GuestMem::new(),
        }
    }

    fn snapshot(&self) -> Vec<Domain> {
        self.domains.iter().copied().collect()
    }

    fn domain(&self, domid: u16) -> Domain {
        *self.domains.get(domid).unwrap()
    }

    fn sysctl_as(&mut self, caller: Caller, op: &XenSysctl) -> (i64, XenSysctl) {
        self.mem.put(ENVELOPE, op);
        let ret = do_sysctl(&self.host, caller, &mut self.mem, ENVELOPE);
        (ret, self.mem.get(ENVELOPE))
    }

    fn domctl_as(&mut self, caller: Caller, op: &XenDomctl) -> (i64, XenDomctl) {
        self.mem.put(ENVELOPE, op);
        let ret = do_domctl(
            &self.host,
            &mut self.domains,
            caller,
            &mut self.mem,
            ENVELOPE,
        );
        (ret, self.mem.get(ENVELOPE))
    }

    fn caps(&mut self) -> (i64, XenSysctl) {
        let mut op = sysctl_op(
            SYSCTL_GET_CPU_LEVELLING_CAPS,
            &XenSysctlCpuLevellingCaps::default(),
        );
        op.u = [0x1111_2222_3333_4444; 16];
        self.sysctl_as(DOM0, &op)
    }

    fn featureset(&mut self, p: XenSysctlCpuFeatureset) -> (i64, XenSysctlCpuFeatureset) {
        let (ret, op) = self.sysctl_as(DOM0, &sysctl_op(SYSCTL_GET_CPU_FEATURESET, &p));
        (ret, XenSysctlCpuFeatureset::from_union(&op.u))
    }

    fn system_policy(&mut self, p: XenSysctlCpuPolicy) -> (i64, XenSysctlCpuPolicy) {
        let (ret, op) = self.sysctl_as(DOM0, &sysctl_op(SYSCTL_GET_CPU_POLICY, &p));
        (ret, XenSysctlCpuPolicy::from_union(&op.u))
    }

    fn get_policy(&mut self, domid: u16, p: XenDomctlCpuPolicy) -> (i64, XenDomctlCpuPolicy) {
        let (ret, op) = self.domctl_as(DOM0, &domctl_op(DOMCTL_GET_CPU_POLICY, domid, &p));
        (ret, XenDomctlCpuPolicy::from_union(&op.u))
    }

    fn set_policy(&mut self, domid: u16, p: XenDomctlCpuPolicy) -> (i64, XenDomctlCpuPolicy) {
        self.set_policy_as(DOM0, domid, p)
    }

    fn set_policy_as(
        &mut self,
        caller: Caller,
        domid: u16,
        p: XenDomctlCpuPolicy,
    ) -> (i64, XenDomctlCpuPolicy) {
        let (ret, op) = self.domctl_as(caller, &domctl_op(DOMCTL_SET_CPU_POLICY, domid, &p));
        (ret, XenDomctlCpuPolicy::from_union(&op.u))
    }

    fn get_levelling(&mut self, domid: u16, p: XenDomctlLevelling) -> (i64, XenDomctlLevelling) {
        let (ret, op) = self.domctl_as(DOM0, &domctl_op(DOMCTL_GET_LEVELLING, domid, &p));
        (ret, XenDomctlLevelling::from_union(&op.u))
    }

    /// Place `leaves` and `msrs` at [`LEAVES`] / [`MSRS`] and set them on `domid`, with the err
    /// fields pre-filled with [`SENTINEL`].
    fn set_arrays(
        &mut self,
        domid: u16,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> (i64, XenDomctlCpuPolicy) {
        self.mem.put_array(LEAVES, leaves);
        self.mem.put_array(MSRS, msrs);
        self.set_policy(
            domid,
            dom_policy(leaves.len() as u32, msrs.len() as u32, SENTINEL),
        )
    }

    /// `domid`'s policy read back through domctl 82.
    fn read_back(&mut self, domid: u16) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
        let (ret, p) = self.get_policy(domid, dom_policy(120, 2, 0));
        assert_eq!(ret, 0);
        (
            self.mem.get_array(LEAVES, p.nr_leaves as usize),
            self.mem.get_array(MSRS, p.nr_msrs as usize),
        )
    }
}

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

// ---------------------------------------------------------------------------------------------
// Envelope checks: version, command, caller, address.

/// A valid payload for every command, so only the envelope can be at fault.
fn every_command(env: &mut Env) -> (Vec<XenSysctl>, Vec<XenDomctl>) {
    let (leaves, msrs) = serialise(env.domain(PV).policy());
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let sysctls = vec![
        sysctl_op(
            SYSCTL_GET_CPU_LEVELLING_CAPS,
            &XenSysctlCpuLevellingCaps::default(),
        ),
        sysctl_op(SYSCTL_GET_CPU_FEATURESET, &fs_query(0, 19, WORDS)),
        sysctl_op(SYSCTL_GET_CPU_POLICY, &sys_policy_query(0)),
    ];
    let set = dom_policy(leaves.len() as u32, msrs.len() as u32, !0);
    let domctls = vec![
        domctl_op(DOMCTL_GET_CPU_POLICY, PV, &dom_policy(120, 2, 0)),
        domctl_op(DOMCTL_SET_CPU_POLICY, PV, &set),
        domctl_op(
            DOMCTL_GET_LEVELLING,
            PV,
            &levelling_query(19, WORDS, WORDS2),
        ),
    ];
    (sysctls, domctls)
}

#[test]
fn an_interface_version_mismatch_is_eacces_and_touches_nothing() {
    let mut env = Env::new(SKYLAKE);
    let (sysctls, domctls) = every_command(&mut env);
    let before = env.snapshot();
    for caller in [DOM0, NOT_CONTROL[0]] {
        for version in [0, 0x15, 0x17, 0x18, 0x160, u32::MAX] {
            for op in &sysctls {
                let op = XenSysctl {
                    interface_version: version,
                    ..*op
                };
                env.mem.put(ENVELOPE, &op);
                let mem = env.mem.bytes.clone();
                let ret = do_sysctl(&env.host, caller, &mut env.mem, ENVELOPE);
                assert_eq!(
                    ret,
                    neg(errno::EACCES),
                    "sysctl {} version {version:#x}",
                    op.cmd
                );
                assert!(env.mem.bytes == mem, "sysctl {} wrote guest memory", op.cmd);
            }
        }
        // 0x17 is 4.21's domctl version: ours is HEAD's 0x18.
        for version in [0, 0x16, 0x17, 0x19, u32::MAX] {
            for op in &domctls {
                let op = XenDomctl {
                    interface_version: version,
                    ..*op
                };
                env.mem.put(ENVELOPE, &op);
                let mem = env.mem.bytes.clone();
                let ret = do_domctl(&env.host, &mut env.domains, caller, &mut env.mem, ENVELOPE);
                assert_eq!(
                    ret,
                    neg(errno::EACCES),
                    "domctl {} version {version:#x}",
                    op.cmd
                );
                assert!(env.mem.bytes == mem, "domctl {} wrote guest memory", op.cmd);
                assert_unchanged(&before, &env.snapshot(), "");
            }
        }
    }
}

#[test]
fn unknown_commands_are_enosys() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let before = env.snapshot();
    // 27/28 are other sysctls; the domctl numbers are not sysctls; 49 was set_cpuid (a domctl).
    for cmd in [0, 1, 24, 27, 28, 30, 49, 82, 83, 1000, u32::MAX] {
        let op = sysctl_op(cmd, &fs_query(0, 19, WORDS));
        env.mem.put(ENVELOPE, &op);
        let mem = env.mem.bytes.clone();
        let ret = do_sysctl(&env.host, DOM0, &mut env.mem, ENVELOPE);
        assert_eq!(ret, neg(errno::ENOSYS), "sysctl {cmd}");
        assert!(env.mem.bytes == mem, "sysctl {cmd} wrote guest memory");
    }
    // 49 is the obsolete XEN_DOMCTL_set_cpuid, gone since 4.13.
    for cmd in [0, 25, 26, 29, 49, 81, 84, 999, 1001, u32::MAX] {
        for domid in [0, PV, HVM] {
            let op = domctl_op(cmd, domid, &dom_policy(120, 2, !0));
            env.mem.put(ENVELOPE, &op);
            let mem = env.mem.bytes.clone();
            let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, ENVELOPE);
            assert_eq!(ret, neg(errno::ENOSYS), "domctl {cmd} on {domid}");
            assert!(env.mem.bytes == mem, "domctl {cmd} wrote guest memory");
            assert_unchanged(&before, &env.snapshot(), "");
        }
    }
}

#[test]
fn only_the_control_domain_may_call_any_command() {
    let mut env = Env::new(SKYLAKE);
    let (mut sysctls, mut domctls) = every_command(&mut env);
    // Xen's XSM check comes before the command switch: unknown commands are -EPERM too.
    sysctls.push(sysctl_op(27, &fs_query(0, 19, WORDS)));
    domctls.push(domctl_op(49, PV, &dom_policy(0, 0, !0)));
    let before = env.snapshot();
    for caller in NOT_CONTROL {
        for op in &sysctls {
            env.mem.put(ENVELOPE, op);
            let mem = env.mem.bytes.clone();
            let ret = do_sysctl(&env.host, caller, &mut env.mem, ENVELOPE);
            assert_eq!(ret, neg(errno::EPERM), "sysctl {} by {caller:?}", op.cmd);
            assert!(env.mem.bytes == mem, "sysctl {} wrote guest memory", op.cmd);
        }
        for op in &domctls {
            env.mem.put(ENVELOPE, op);
            let mem = env.mem.bytes.clone();
            let ret = do_domctl(&env.host, &mut env.domains, caller, &mut env.mem, ENVELOPE);
            assert_eq!(ret, neg(errno::EPERM), "domctl {} by {caller:?}", op.cmd);
            assert!(env.mem.bytes == mem, "domctl {} wrote guest memory", op.cmd);
            assert_unchanged(&before, &env.snapshot(), "");
        }
    }
    // The same calls from the control domain succeed (the payloads are valid).
    for op in &sysctls[..3] {
        assert_eq!(env.sysctl_as(DOM0, op).0, 0, "sysctl {}", op.cmd);
    }
    for op in &domctls[..3] {
        assert_eq!(env.domctl_as(DOM0, op).0, 0, "domctl {}", op.cmd);
    }
}

#[test]
fn an_envelope_the_guest_has_not_mapped_is_efault() {
    let mut env = Env::new(SKYLAKE);
    env.mem = GuestMem::new().with_hole();
    let (sysctls, domctls) = every_command(&mut env);
    let before = env.snapshot();
    let end = BASE + SIZE as u64;
    let addresses = [
        0,
        UNMAPPED,
        BASE - 8,
        end,
        end - 100, // runs off the end of the mapping
        HOLE.start,
        HOLE.start - 64, // runs into the hole
        u64::MAX - 64,   // wraps
        u64::MAX,
    ];
    for arg in addresses {
        for op in &sysctls {
            let mem = env.mem.bytes.clone();
            let ret = do_sysctl(&env.host, DOM0, &mut env.mem, arg);
            assert_eq!(ret, neg(errno::EFAULT), "sysctl {} at {arg:#x}", op.cmd);
            assert!(env.mem.bytes == mem);
        }
        for op in &domctls {
            let mem = env.mem.bytes.clone();
            let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, arg);
            assert_eq!(ret, neg(errno::EFAULT), "domctl {} at {arg:#x}", op.cmd);
            assert!(env.mem.bytes == mem);
            assert_unchanged(&before, &env.snapshot(), "");
        }
    }
}

#[test]
fn a_read_only_envelope_is_efault_for_the_gets() {
    // The sysctls and the get domctls write their OUT fields back: a read-only envelope
    // faults on the way out.
    let mut env = Env::new(SKYLAKE);
    let (sysctls, domctls) = every_command(&mut env);
    env.mem.read_only = Some(ENVELOPE..ENVELOPE + 144);
    for op in &sysctls {
        env.mem.put(ENVELOPE, op);
        let ret = do_sysctl(&env.host, DOM0, &mut env.mem, ENVELOPE);
        assert_eq!(ret, neg(errno::EFAULT), "sysctl {}", op.cmd);
    }
    for op in [&domctls[0], &domctls[2]] {
        env.mem.put(ENVELOPE, op);
        let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, ENVELOPE);
        assert_eq!(ret, neg(errno::EFAULT), "domctl {}", op.cmd);
    }
}

/// Xen's set_cpu_policy copies the envelope back only on failure (`copyback` is set only when
/// `update_domain_cpu_policy` fails), so a read-only envelope does not matter to a successful
/// set. Whatever the return, an error must mean nothing changed.
#[test]
fn a_set_with_a_read_only_envelope_is_atomic() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let mut fs = env.host.system().pv_default.featureset();
    fs.remove(Feature::AVX);
    let policy = env
        .host
        .system()
        .domain_policy(DomainKind::Pv, Vendor::Intel, &fs)
        .unwrap();
    let (leaves, msrs) = serialise(&policy);
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let op = domctl_op(
        DOMCTL_SET_CPU_POLICY,
        PV,
        &dom_policy(leaves.len() as u32, msrs.len() as u32, !0),
    );
    env.mem.put(ENVELOPE, &op);
    env.mem.read_only = Some(ENVELOPE..ENVELOPE + 144);
    let before = env.snapshot();
    let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, ENVELOPE);
    if ret == 0 {
        assert_eq!(env.domain(PV).policy().featureset(), policy.featureset());
    } else {
        assert_unchanged(&before, &env.snapshot(), &format!("returned {ret}"));
    }
    // Xen returns 0 here.
    assert_eq!(ret, 0);
}

// ---------------------------------------------------------------------------------------------
// sysctl 25: levelling caps.

/// The pre-4.22 public bits each generation's mechanism gives (reference 2.1 and 2.4).
/// The caps of each bundled CPU, by hand from its generation's documented MSRs.
fn expected_caps(file: &str) -> u32 {
    use levelcap::*;
    let leaf1 = ECX | EDX;
    let extd1 = EXTD_ECX | EXTD_EDX;
    let stem = &file[..file.find("_CPUID").unwrap()];
    match stem {
        "GenuineIntel0010676_Penryn" => leaf1,
        "GenuineIntel00106A2_Nehalem-EP" | "GenuineIntel00206A7_SandyBridge2" => leaf1 | extd1,
        "GenuineIntel00206D7_SandyBridgeE_00" => leaf1 | extd1 | XSAVE_EAX,
        "AuthenticAMD0100F21_K10_Barcelona" | "AuthenticAMD0100F80_K10_Istanbul" => leaf1 | extd1,
        "AuthenticAMD0600F12_K15_Interlagos" => leaf1 | extd1 | THERMAL_ECX,
        "AuthenticAMD0830F10_K17_CastlePeak" | "HygonGenuine0900F02_Hygon" => {
            leaf1 | extd1 | L7S0_EAX | L7S0_EBX
        }
        _ => FAULTING,
    }
}

/// The pre-4.22 caps bits of a mechanism: faulting, or one or two bits per mask MSR.
fn caps_of(mechanism: Mechanism) -> u32 {
    use levelcap::*;
    match mechanism {
        Mechanism::Faulting { .. } => FAULTING,
        Mechanism::None => 0,
        Mechanism::Masking(masks) => masks
            .kinds()
            .map(|(kind, _)| match kind {
                MaskKind::Leaf1 => ECX | EDX,
                MaskKind::Extd1 => EXTD_ECX | EXTD_EDX,
                MaskKind::Xsave1 => XSAVE_EAX,
                MaskKind::Thermal => THERMAL_ECX,
                MaskKind::Leaf7 => L7S0_EAX | L7S0_EBX,
            })
            .fold(0, |a, b| a | b),
    }
}

#[test]
fn levelling_caps_give_the_pre_4_22_bits_of_each_mechanism() {
    // The four hosts the brief names, with their exact values.
    assert_eq!(expected_caps(SKYLAKE), 0x01);
    assert_eq!(expected_caps(GENOA), 0x01);
    assert_eq!(expected_caps(SANDY_BRIDGE_E), 0x3e);
    assert_eq!(expected_caps(PENRYN), 0x06);
    let mut files: Vec<(String, Option<u32>)> = dumps::bundled()
        .into_iter()
        .map(|f| {
            let caps = expected_caps(&f.name);
            (f.name, Some(caps))
        })
        .collect();
    // Extra dumps: the caps of the mechanism the generations table promises.
    files.extend(
        dumps::extra()
            .into_iter()
            .map(|f| (f.path.to_string_lossy().into_owned(), None)),
    );
    for (file, documented) in &files {
        let mut env = Env::new(file);
        let (ret, op) = env.caps();
        assert_eq!(ret, 0, "{file}");
        let caps = XenSysctlCpuLevellingCaps::from_union(&op.u).caps;
        let text = dumps::read(file);
        let dump = Aida64Dump::parse(&text).unwrap();
        let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
        let promised = caps_of(expected_mechanism(&raw, dump.raw_msrs()));
        assert_eq!(caps, promised, "{file}: {caps:#x}");
        if let Some(documented) = documented {
            assert_eq!(caps, *documented, "{file}: {caps:#x}");
        }
        // Faulting and masking never both: Xen prefers faulting.
        let faulting = matches!(env.host.levelling().mechanism(), Mechanism::Faulting { .. });
        assert_eq!(caps == levelcap::FAULTING, faulting, "{file}");
        // Only the 4-byte `caps` is OUT: the rest of the union is as the caller left it.
        assert_eq!(op.u[0] >> 32, 0x1111_2222, "{file}");
        assert_eq!(op.u[1..], [0x1111_2222_3333_4444; 15], "{file}");
        assert_eq!(op.cmd, SYSCTL_GET_CPU_LEVELLING_CAPS);
        assert_eq!(op.interface_version, SYSCTL_INTERFACE_VERSION);
    }
}

// ---------------------------------------------------------------------------------------------
// sysctl 26: featuresets.

/// Xen's featureset indices: 2 and 3 are the *default* sets; the max sets came as 4 and 5.
fn featureset_by_index(s: &SystemPolicies, index: u32) -> Featureset {
    match index {
        0 => s.raw.featureset(),
        1 => s.host.featureset(),
        2 => s.pv_default.featureset(),
        3 => s.hvm_default.featureset(),
        4 => s.pv_max.featureset(),
        5 => s.hvm_max.featureset(),
        _ => unreachable!(),
    }
}

#[test]
fn every_featureset_index_returns_its_policy() {
    for file in [SKYLAKE, SANDY_BRIDGE_E, GENOA, PENRYN] {
        let mut env = Env::new(file);
        let s = *env.host.system();
        // The indices are told apart only if the sets differ: they do on these hosts.
        assert_ne!(s.pv_default.featureset(), s.pv_max.featureset(), "{file}");
        assert_ne!(s.hvm_default.featureset(), s.hvm_max.featureset(), "{file}");
        assert_ne!(
            s.pv_default.featureset(),
            s.hvm_default.featureset(),
            "{file}"
        );
        for index in 0..6 {
            // A buffer bigger than needed: 19 words written, the rest untouched.
            env.mem.poke(WORDS, &[FILL; 4 * 32]);
            let (ret, out) = env.featureset(fs_query(index, 32, WORDS));
            assert_eq!(ret, 0, "{file} index {index}");
            assert_eq!(out.nr_features, NR_WORDS as u32);
            assert_eq!(out.index, index);
            assert_eq!(out.features, WORDS);
            let words = env.mem.words(WORDS, NR_WORDS);
            assert_eq!(
                words,
                featureset_by_index(&s, index).words().to_vec(),
                "{file} index {index}"
            );
            assert_eq!(env.mem.peek(WORDS + 4 * 19, 4 * 13), vec![FILL; 4 * 13]);
        }
    }
}

#[test]
fn a_null_featureset_handle_asks_for_the_size() {
    let mut env = Env::new(SKYLAKE);
    assert_eq!(NR_WORDS, 19);
    for index in 0..6 {
        for nr in [0, 1, 19, 1000] {
            let mem = env.mem.bytes.clone();
            let (ret, out) = env.featureset(fs_query(index, nr, 0));
            assert_eq!((ret, out.nr_features), (0, 19), "index {index} nr {nr}");
            assert_eq!(out.features, 0);
            assert!(
                env.mem.bytes[0x100..] == mem[0x100..],
                "wrote past the envelope"
            );
        }
    }
}

/// Xen answers the NULL-handle size query before it looks at the index
/// (`xen/arch/x86/sysctl.c`: "Request for maximum number of features?" comes first).
#[test]
fn the_featureset_size_query_does_not_look_at_the_index() {
    let mut env = Env::new(SKYLAKE);
    for index in [6, u32::MAX] {
        let (ret, out) = env.featureset(fs_query(index, 0, 0));
        assert_eq!((ret, out.nr_features), (0, 19), "index {index}");
    }
}

#[test]
fn a_short_featureset_buffer_is_enobufs_after_writing_what_fits() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let s = *env.host.system();
    for index in 0..6 {
        let want = featureset_by_index(&s, index);
        for nr in [0, 1, 5, 18] {
            env.mem.poke(WORDS, &[FILL; 4 * 19]);
            let (ret, out) = env.featureset(fs_query(index, nr, WORDS));
            assert_eq!(ret, neg(errno::ENOBUFS), "index {index} nr {nr}");
            assert_eq!(out.nr_features, nr);
            let n = nr as usize;
            assert_eq!(env.mem.words(WORDS, n), want.words()[..n].to_vec());
            assert_eq!(
                env.mem.peek(WORDS + 4 * nr as u64, 4 * (19 - n)),
                vec![FILL; 4 * (19 - n)]
            );
        }
    }
}

#[test]
fn a_bad_featureset_index_is_einval() {
    let mut env = Env::new(SKYLAKE);
    for index in [6, 7, 0x100, u32::MAX] {
        let mem = env.mem.bytes.clone();
        let (ret, out) = env.featureset(fs_query(index, 19, WORDS));
        assert_eq!(ret, neg(errno::EINVAL), "index {index}");
        assert_eq!(out, fs_query(index, 19, WORDS));
        assert!(
            env.mem.bytes[0x100..] == mem[0x100..],
            "wrote past the envelope"
        );
    }
}

#[test]
fn a_featureset_buffer_that_faults_is_efault() {
    let mut env = Env::new(SKYLAKE);
    env.mem = GuestMem::new().with_hole();
    let end = BASE + SIZE as u64;
    // Unmapped, in the hole, running into the hole after 3 words, off the end, wrapping.
    for handle in [UNMAPPED, HOLE.start, HOLE.start - 12, end - 8, u64::MAX - 8] {
        for index in 0..6 {
            let (ret, out) = env.featureset(fs_query(index, 19, handle));
            assert_eq!(ret, neg(errno::EFAULT), "index {index} at {handle:#x}");
            // The count is not updated on a fault.
            assert_eq!(out.nr_features, 19);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sysctl 29: system policies.

/// Xen's policy indices (not the featureset order): raw, host, pv_max, hvm_max, pv_default,
/// hvm_default.
fn policy_by_index(s: &SystemPolicies, index: u32) -> CpuPolicy {
    [
        s.raw,
        s.host,
        s.pv_max,
        s.hvm_max,
        s.pv_default,
        s.hvm_default,
    ][index as usize]
}

#[test]
fn every_system_policy_index_returns_its_policy() {
    for file in [SKYLAKE, SANDY_BRIDGE_E, GENOA, PENRYN] {
        let mut env = Env::new(file);
        let s = *env.host.system();
        for index in 0..6 {
            let want = policy_by_index(&s, index);
            let (want_leaves, want_msrs) = serialise(&want);
            let (ret, out) = env.system_policy(sys_policy_query(index));
            assert_eq!(ret, 0, "{file} index {index}");
            assert_eq!(out.nr_leaves as usize, want_leaves.len());
            assert_eq!(out.nr_leaves as usize, want.nr_serialised_leaves());
            assert_eq!(out.nr_msrs, 2);
            assert_eq!(
                (out.index, out.rsvd, out.leaves, out.msrs),
                (index, 0, LEAVES, MSRS)
            );
            let leaves: Vec<XenCpuidLeaf> = env.mem.get_array(LEAVES, out.nr_leaves as usize);
            let msrs: Vec<XenMsrEntry> = env.mem.get_array(MSRS, 2);
            assert_eq!(leaves, want_leaves, "{file} index {index}");
            assert_eq!(msrs, want_msrs, "{file} index {index}");
            assert_eq!(msrs[0].idx, MSR_PLATFORM_INFO);
            assert_eq!(msrs[1].idx, MSR_ARCH_CAPABILITIES);
            // The arrays decode back to exactly the system policy.
            let decoded = CpuPolicy::from_arrays(&leaves, &msrs).unwrap();
            assert_eq!(decoded, want, "{file} index {index}");
        }
    }
}

#[test]
fn null_policy_handles_ask_for_the_most_there_can_be() {
    let mut env = Env::new(GENOA);
    let s = *env.host.system();
    for index in 0..6 {
        let p = XenSysctlCpuPolicy {
            leaves: 0,
            msrs: 0,
            nr_leaves: 3,
            nr_msrs: 0,
            ..sys_policy_query(index)
        };
        let (ret, out) = env.system_policy(p);
        assert_eq!(
            (ret, out.nr_leaves, out.nr_msrs),
            (0, 120, 2),
            "index {index}"
        );
        // Each handle on its own: NULL leaves with a real MSR buffer, and the other way.
        let (ret, out) = env.system_policy(XenSysctlCpuPolicy {
            leaves: 0,
            nr_leaves: 0,
            ..sys_policy_query(index)
        });
        assert_eq!((ret, out.nr_leaves, out.nr_msrs), (0, 120, 2));
        let (ret, out) = env.system_policy(XenSysctlCpuPolicy {
            msrs: 0,
            nr_msrs: 0,
            ..sys_policy_query(index)
        });
        let n = policy_by_index(&s, index).nr_serialised_leaves() as u32;
        assert_eq!((ret, out.nr_leaves, out.nr_msrs), (0, n, 2));
    }
}

#[test]
fn a_short_policy_buffer_is_enobufs_and_leaves_the_count() {
    let mut env = Env::new(SKYLAKE);
    let s = *env.host.system();
    for index in 0..6 {
        let n = policy_by_index(&s, index).nr_serialised_leaves() as u32;
        for short in [0, 1, n - 1] {
            let (ret, out) = env.system_policy(XenSysctlCpuPolicy {
                nr_leaves: short,
                ..sys_policy_query(index)
            });
            assert_eq!(ret, neg(errno::ENOBUFS), "index {index} nr_leaves {short}");
            assert_eq!(out.nr_leaves, short);
            assert_eq!(out.nr_msrs, 2);
        }
        for short in [0, 1] {
            let (ret, out) = env.system_policy(XenSysctlCpuPolicy {
                nr_msrs: short,
                ..sys_policy_query(index)
            });
            assert_eq!(ret, neg(errno::ENOBUFS), "index {index} nr_msrs {short}");
            assert_eq!(out.nr_msrs, short);
        }
        // Exactly enough is enough.
        let (ret, out) = env.system_policy(XenSysctlCpuPolicy {
            nr_leaves: n,
            ..sys_policy_query(index)
        });
        assert_eq!((ret, out.nr_leaves), (0, n));
    }
}

#[test]
fn reserved_bits_and_bad_policy_indices_are_einval() {
    let mut env = Env::new(SKYLAKE);
    let cases = [
        (0, 1),
        (5, 1),
        (1, 0x8000_0000),
        (6, 0),
        (7, 0),
        (u32::MAX, 0),
    ];
    for (index, rsvd) in cases {
        for (leaves, msrs) in [(LEAVES, MSRS), (0, 0)] {
            let p = XenSysctlCpuPolicy {
                rsvd,
                leaves,
                msrs,
                ..sys_policy_query(index)
            };
            let mem = env.mem.bytes.clone();
            let (ret, out) = env.system_policy(p);
            assert_eq!(ret, neg(errno::EINVAL), "index {index} rsvd {rsvd:#x}");
            assert_eq!(out, p, "OUT fields changed");
            assert!(
                env.mem.bytes[0x100..] == mem[0x100..],
                "wrote past the envelope"
            );
        }
    }
}

#[test]
fn a_policy_buffer_that_faults_is_efault() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    env.mem = GuestMem::new().with_hole();
    for index in 0..6 {
        for (leaves, msrs) in [
            (UNMAPPED, MSRS),
            (HOLE.start - 24 * 5, MSRS), // faults at leaf 5
            (LEAVES, UNMAPPED),
            (LEAVES, HOLE.start - 16), // faults at the second MSR
            (u64::MAX - 24, MSRS),
        ] {
            let p = XenSysctlCpuPolicy {
                leaves,
                msrs,
                ..sys_policy_query(index)
            };
            let (ret, _) = env.system_policy(p);
            assert_eq!(
                ret,
                neg(errno::EFAULT),
                "index {index} {leaves:#x} {msrs:#x}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// domctl 82: a domain's policy.

#[test]
fn get_cpu_policy_reads_the_domains_policy() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let s = *env.host.system();
    // A new domain's policy is its kind's default, recalculated per domain.
    let pv = s.recalculate(DomainKind::Pv, &s.pv_default).unwrap();
    let hvm = s.recalculate(DomainKind::HvmHap, &s.hvm_default).unwrap();
    for (domid, want) in [(0, pv), (PV, pv), (HVM, hvm)] {
        assert_eq!(*env.domain(domid).policy(), want);
        let (ret, out) = env.get_policy(domid, dom_policy(120, 2, SENTINEL));
        assert_eq!(ret, 0, "dom{domid}");
        assert_eq!(out.nr_leaves as usize, want.nr_serialised_leaves());
        assert_eq!(out.nr_msrs, 2);
        // get never writes the error fields.
        assert_eq!(
            (out.err_leaf, out.err_subleaf, out.err_msr),
            (SENTINEL, SENTINEL, SENTINEL)
        );
        let (leaves, msrs) = serialise(&want);
        assert_eq!(
            env.mem.get_array::<XenCpuidLeaf>(LEAVES, leaves.len()),
            leaves
        );
        assert_eq!(env.mem.get_array::<XenMsrEntry>(MSRS, 2), msrs);
        // Size query.
        let (ret, out) = env.get_policy(
            domid,
            XenDomctlCpuPolicy {
                leaves: 0,
                msrs: 0,
                ..dom_policy(0, 0, 0)
            },
        );
        assert_eq!((ret, out.nr_leaves, out.nr_msrs), (0, 120, 2));
        // Short buffers.
        let n = want.nr_serialised_leaves() as u32;
        let (ret, out) = env.get_policy(domid, dom_policy(n - 1, 2, 0));
        assert_eq!((ret, out.nr_leaves), (neg(errno::ENOBUFS), n - 1));
        let (ret, out) = env.get_policy(domid, dom_policy(120, 1, 0));
        assert_eq!((ret, out.nr_msrs), (neg(errno::ENOBUFS), 1));
        // A buffer that faults.
        let (ret, _) = env.get_policy(
            domid,
            XenDomctlCpuPolicy {
                leaves: UNMAPPED,
                ..dom_policy(120, 2, 0)
            },
        );
        assert_eq!(ret, neg(errno::EFAULT));
        let (ret, _) = env.get_policy(
            domid,
            XenDomctlCpuPolicy {
                msrs: UNMAPPED,
                ..dom_policy(120, 2, 0)
            },
        );
        assert_eq!(ret, neg(errno::EFAULT));
    }
    for domid in [MISSING, 4, 0x7ff0, u16::MAX] {
        let mem = env.mem.bytes.clone();
        let (ret, _) = env.get_policy(domid, dom_policy(120, 2, 0));
        assert_eq!(ret, neg(errno::ESRCH), "dom{domid}");
        assert!(
            env.mem.bytes[0x100..] == mem[0x100..],
            "wrote past the envelope"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// domctl 83: set a domain's policy.

/// The PV default less a few leaf 1 features every host here has (SSE4.1 goes with its
/// dependents), as a toolstack would build it.
fn smaller_pv_policy(host: &Host) -> CpuPolicy {
    let default = host.system().pv_default.featureset();
    let mut fs = default;
    for f in [
        Feature::SSE4_1,
        Feature::SSSE3,
        Feature::AVX,
        Feature::RDRAND,
    ] {
        fs.remove(f);
    }
    let fs = fs.closed();
    assert_ne!(
        fs.word(1),
        default.word(1),
        "nothing removed from leaf 1 ECX"
    );
    host.system()
        .domain_policy(DomainKind::Pv, host.system().host.vendor(), &fs)
        .unwrap()
}

/// Which domains differ, and in what: a short message instead of two whole tables.
fn changes(before: &[Domain], after: &[Domain]) -> String {
    if before.len() != after.len() {
        return format!("{} domains became {}", before.len(), after.len());
    }
    let mut out = Vec::new();
    for (b, a) in before.iter().zip(after) {
        let mut parts = Vec::new();
        if b.policy() != a.policy() {
            let (bl, bm) = serialise(b.policy());
            let (al, am) = serialise(a.policy());
            let gone: Vec<_> = bl.iter().filter(|l| !al.contains(l)).collect();
            let came: Vec<_> = al.iter().filter(|l| !bl.contains(l)).collect();
            parts.push(format!("policy (leaves {gone:x?} -> {came:x?})"));
            if bm != am {
                parts.push(format!("msrs {bm:x?} -> {am:x?}"));
            }
        }
        if b.levelling() != a.levelling() {
            parts.push("levelling".to_string());
        }
        if (b.domid(), b.kind(), b.role(), b.best_effort(), b.running())
            != (a.domid(), a.kind(), a.role(), a.best_effort(), a.running())
        {
            parts.push(format!("identity/state {b:?}"));
        }
        if !parts.is_empty() {
            out.push(format!("dom{}: {}", b.domid(), parts.join(", ")));
        }
    }
    out.join("; ")
}

#[track_caller]
fn assert_unchanged(before: &[Domain], after: &[Domain], what: &str) {
    assert!(before == after, "{what}: {}", changes(before, after));
}

#[test]
fn set_cpu_policy_changes_policy_and_levelling_together() {
    for file in [SANDY_BRIDGE_E, SKYLAKE, GENOA, PENRYN] {
        let mut env = Env::new(file);
        let policy = smaller_pv_policy(&env.host);
        let before = env.domain(PV);
        assert_ne!(*before.policy(), policy, "{file}");
        let (leaves, msrs) = serialise(&policy);
        let (ret, out) = env.set_arrays(PV, &leaves, &msrs);
        assert_eq!(ret, 0, "{file}");
        // The error fields are written back only on failure.
        assert_eq!(
            (out.err_leaf, out.err_subleaf, out.err_msr),
            (SENTINEL, SENTINEL, SENTINEL),
            "{file}"
        );
        assert_eq!(out, dom_policy(leaves.len() as u32, 2, SENTINEL));
        let after = env.domain(PV);
        assert_eq!(*after.policy(), policy, "{file}");
        let levelling = env
            .host
            .levelling()
            .assess(DomainKind::Pv, DomainRole::Guest, &policy);
        assert_eq!(*after.levelling(), levelling, "{file}");
        if matches!(env.host.levelling().mechanism(), Mechanism::Masking(_)) {
            assert_ne!(
                after.levelling().masks(),
                before.levelling().masks(),
                "{file}"
            );
        } else {
            assert!(after.levelling().faulting(), "{file}");
        }
        // Nothing else changed: the other domains, and this one's identity.
        assert_eq!(
            (after.domid(), after.kind(), after.role()),
            (PV, DomainKind::Pv, DomainRole::Guest)
        );
        assert!(!after.running() && !after.best_effort());
        for d in [0, HVM, PV_BEST_EFFORT] {
            assert_eq!(env.domain(d), Env::new(file).domain(d));
        }
        // And it reads back as it was set.
        assert_eq!(env.read_back(PV), (leaves, msrs));
    }
}

/// An embedder's own registry, which derives state from each domain's policy (here the
/// featureset its trap handlers would answer from): what `Domains::set_policy` hands it.
struct Embedder {
    table: DomainTable<8>,
    derived: Vec<(u16, Featureset)>,
}

impl Domains for Embedder {
    fn domain(&self, domid: u16) -> Option<&Domain> {
        self.table.domain(domid)
    }

    fn set_policy(&mut self, domid: u16, update: PolicyUpdate) -> Result<(), DomainError> {
        self.derived.push((domid, update.policy().featureset()));
        self.table.set_policy(domid, update)
    }
}

/// The dispatcher hands an embedder every accepted policy (once, with its levelling) and
/// never a rejected one, so that what the embedder derives cannot fall behind.
#[test]
fn an_embedder_hears_of_every_accepted_policy_and_of_no_other() {
    let mut env = Env::new(SKYLAKE);
    let mut embedder = Embedder {
        table: env.domains.clone(),
        derived: Vec::new(),
    };
    let policy = smaller_pv_policy(&env.host);
    let (leaves, msrs) = serialise(&policy);
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let set = |env: &mut Env, embedder: &mut Embedder, nr_leaves: usize| {
        let p = dom_policy(nr_leaves as u32, msrs.len() as u32, SENTINEL);
        env.mem
            .put(ENVELOPE, &domctl_op(DOMCTL_SET_CPU_POLICY, PV, &p));
        do_domctl(&env.host, embedder, DOM0, &mut env.mem, ENVELOPE)
    };
    // Rejected: more leaves than a policy holds.
    assert_eq!(
        set(&mut env, &mut embedder, MAX_SERIALISED_LEAVES + 1),
        -i64::from(errno::E2BIG)
    );
    assert!(embedder.derived.is_empty());
    assert_eq!(set(&mut env, &mut embedder, leaves.len()), 0);
    assert_eq!(embedder.derived, [(PV, policy.featureset())]);
    let d = *embedder.table.domain(PV).unwrap();
    assert_eq!(*d.policy(), policy);
    let levelling = env
        .host
        .levelling()
        .assess(DomainKind::Pv, DomainRole::Guest, &policy);
    assert_eq!(*d.levelling(), levelling);
}

/// An empty set is a no-op, and so is setting a domain's own arrays back, once its policy
/// has been through set_cpu_policy.
#[test]
fn setting_nothing_or_the_same_again_keeps_the_policy() {
    for file in [SKYLAKE, SANDY_BRIDGE_E, GENOA, PENRYN] {
        let mut env = Env::new(file);
        let (leaves, msrs) = serialise(&smaller_pv_policy(&env.host));
        assert_eq!(env.set_arrays(PV, &leaves, &msrs).0, 0);
        let before = env.snapshot();
        // nr 0: the handles are not even read.
        let (ret, out) = env.set_policy(
            PV,
            XenDomctlCpuPolicy {
                leaves: UNMAPPED,
                msrs: 0,
                ..dom_policy(0, 0, SENTINEL)
            },
        );
        assert_eq!(ret, 0, "{file}");
        assert_eq!(out.err_leaf, SENTINEL);
        assert_unchanged(&before, &env.snapshot(), file);
        let (l, m) = env.read_back(PV);
        assert_eq!(env.set_arrays(PV, &l, &m).0, 0);
        assert_unchanged(&before, &env.snapshot(), file);
    }
}

/// Xen's `init_domain_cpu_policy()` runs `recalculate_cpuid_policy()` on the copy of the
/// default policy, so a new domain's policy is already what any set would make of it: an
/// empty set changes nothing, and get-then-set on a fresh domain is the identity.
#[test]
fn a_new_domains_policy_is_already_recalculated() {
    let mut failures = Vec::new();
    for file in [SKYLAKE, SANDY_BRIDGE_E, GENOA, PENRYN] {
        for domid in [PV, HVM] {
            let mut env = Env::new(file);
            let before = env.snapshot();
            let (ret, _) = env.set_policy(domid, dom_policy(0, 0, !0));
            assert_eq!(ret, 0);
            let after = env.snapshot();
            if before != after {
                failures.push(format!("{file}: {}", changes(&before, &after)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "an empty set changed a new domain:\n{}",
        failures.join("\n")
    );
}

#[test]
fn set_cpu_policy_merges_into_the_current_policy() {
    // Only leaf 1 given: the rest stays the domain's.
    let mut env = Env::new(SANDY_BRIDGE_E);
    let mut leaf1 = serialise(env.domain(PV).policy())
        .0
        .into_iter()
        .find(|l| l.leaf == 1)
        .unwrap();
    leaf1.c &= !Feature::AVX.mask();
    let (ret, _) = env.set_arrays(PV, &[leaf1], &[]);
    assert_eq!(ret, 0);
    let p = *env.domain(PV).policy();
    assert!(!p.featureset().contains(Feature::AVX));
    assert!(p.featureset().contains(Feature::SSE4_2));
    assert_eq!(
        *env.domain(PV).levelling(),
        env.host
            .levelling()
            .assess(DomainKind::Pv, DomainRole::Guest, &p)
    );
}

/// Set `leaves`/`msrs` on `domid` and check the call fails with `errno` and the error fields,
/// and that every domain is exactly as before.
#[track_caller]
fn assert_set_fails(
    env: &mut Env,
    domid: u16,
    leaves: &[XenCpuidLeaf],
    msrs: &[XenMsrEntry],
    errno: i32,
    err: ErrFields,
) {
    let before = env.snapshot();
    let arrays_before = env.read_back(domid);
    let (ret, out) = env.set_arrays(domid, leaves, msrs);
    assert_eq!(ret, neg(errno), "set on dom{domid}");
    assert_eq!((out.err_leaf, out.err_subleaf, out.err_msr), err);
    // The IN fields are returned as given.
    assert_eq!(
        (out.nr_leaves, out.nr_msrs),
        (leaves.len() as u32, msrs.len() as u32)
    );
    assert_eq!((out.leaves, out.msrs), (LEAVES, MSRS));
    assert_unchanged(&before, &env.snapshot(), "a failed set changed a domain");
    assert_eq!(env.read_back(domid), arrays_before);
}

fn entry(leaves: &mut [XenCpuidLeaf], leaf: u32, subleaf: u32) -> &mut XenCpuidLeaf {
    leaves
        .iter_mut()
        .find(|l| l.leaf == leaf && l.subleaf == subleaf)
        .unwrap()
}

#[test]
fn too_many_entries_are_e2big() {
    let mut env = Env::new(SKYLAKE);
    let (mut leaves, msrs) = serialise(env.domain(PV).policy());
    // 121 valid entries: the count alone is at fault.
    while leaves.len() < 121 {
        leaves.push(leaves[1]);
    }
    let none = (!0, !0, !0);
    assert_set_fails(&mut env, PV, &leaves, &msrs, errno::E2BIG, none);
    let leaves = &leaves[..120];
    assert_eq!(
        env.set_arrays(PV, leaves, &msrs).0,
        0,
        "120 entries are fine"
    );
    let three = [msrs[0], msrs[1], msrs[0]];
    assert_set_fails(&mut env, PV, leaves, &three, errno::E2BIG, none);
    // Huge counts fail on the count, before any array is read.
    for (nr_leaves, nr_msrs) in [(u32::MAX, 0), (0, u32::MAX), (121, 3)] {
        let before = env.snapshot();
        let (ret, _) = env.set_policy(
            PV,
            XenDomctlCpuPolicy {
                leaves: UNMAPPED,
                msrs: UNMAPPED,
                ..dom_policy(nr_leaves, nr_msrs, !0)
            },
        );
        assert_eq!(ret, neg(errno::E2BIG), "{nr_leaves} {nr_msrs}");
        assert_unchanged(&before, &env.snapshot(), "");
    }
}

#[test]
fn leaves_a_policy_cannot_hold_are_erange_with_the_leaf() {
    let mut env = Env::new(SKYLAKE);
    let (good, msrs) = serialise(env.domain(PV).policy());
    let bad = |leaf, subleaf| XenCpuidLeaf {
        leaf,
        subleaf,
        ..XenCpuidLeaf::default()
    };
    let cases = [
        bad(0xe, NO_SUBLEAF), // basic leaves end at 0xD
        bad(0x14, NO_SUBLEAF),
        bad(0x4, 6), // leaf 4 subleaves end at 5
        bad(0x7, 3),
        bad(0xb, 2),
        bad(0xd, 63),
        bad(0x4, NO_SUBLEAF),
        bad(0x1, 0), // a leaf without subleaves given one
        bad(0x0, 1),
        bad(0x8000_0022, NO_SUBLEAF), // extended leaves end at 0x80000021
        bad(0x8000_0001, 0),
        bad(0x4000_0001, NO_SUBLEAF), // only the two Xen limits
        bad(0x4000_0000, 0),
        bad(0x4000_0100, 1),
        bad(0x4000_0200, NO_SUBLEAF),
        bad(0xc000_0000, NO_SUBLEAF),
        bad(0x2000_0000, NO_SUBLEAF),
        bad(u32::MAX, NO_SUBLEAF),
    ];
    for b in cases {
        // On its own, first, in the middle, and last of an otherwise good array.
        for at in [None, Some(0), Some(good.len() / 2), Some(good.len())] {
            let leaves = match at {
                None => vec![b],
                Some(i) => {
                    let mut l = good.clone();
                    l.insert(i, b);
                    l
                }
            };
            assert_set_fails(
                &mut env,
                PV,
                &leaves,
                &msrs,
                errno::ERANGE,
                (b.leaf, b.subleaf, !0),
            );
        }
    }
}

#[test]
fn bad_msr_entries_are_rejected_with_the_msr() {
    let mut env = Env::new(SKYLAKE);
    let (leaves, msrs) = serialise(env.domain(PV).policy());
    let pi = msrs[0];
    let ac = msrs[1];
    assert_eq!((pi.idx, ac.idx), (MSR_PLATFORM_INFO, MSR_ARCH_CAPABILITIES));
    let cases = [
        // Reserved flags.
        (
            vec![XenMsrEntry { flags: 1, ..pi }],
            errno::EINVAL,
            MSR_PLATFORM_INFO,
        ),
        (
            vec![
                pi,
                XenMsrEntry {
                    flags: 0x8000_0000,
                    ..ac
                },
            ],
            errno::EINVAL,
            MSR_ARCH_CAPABILITIES,
        ),
        // Flags are checked before the index.
        (
            vec![XenMsrEntry {
                idx: 0x10,
                flags: 2,
                val: 0,
            }],
            errno::EINVAL,
            0x10,
        ),
        // PLATFORM_INFO is held in 32 bits.
        (
            vec![XenMsrEntry { val: 1 << 32, ..pi }],
            errno::EOVERFLOW,
            MSR_PLATFORM_INFO,
        ),
        (
            vec![
                ac,
                XenMsrEntry {
                    val: u64::MAX,
                    ..pi
                },
            ],
            errno::EOVERFLOW,
            MSR_PLATFORM_INFO,
        ),
        // MSRs a policy does not hold.
        (
            vec![XenMsrEntry {
                idx: 0x10,
                flags: 0,
                val: 0,
            }],
            errno::ERANGE,
            0x10,
        ),
        (
            vec![
                pi,
                XenMsrEntry {
                    idx: 0x48,
                    flags: 0,
                    val: 0,
                },
            ],
            errno::ERANGE,
            0x48,
        ),
        (
            vec![XenMsrEntry {
                idx: u32::MAX,
                flags: 0,
                val: 0,
            }],
            errno::ERANGE,
            u32::MAX,
        ),
    ];
    for (bad, code, msr) in cases {
        assert_set_fails(&mut env, PV, &leaves, &bad, code, (!0, !0, msr));
        assert_set_fails(&mut env, PV, &[], &bad, code, (!0, !0, msr));
    }
}

/// err_leaf, err_subleaf, err_msr.
type ErrFields = (u32, u32, u32);

#[test]
fn a_policy_beyond_the_max_is_einval_with_where() {
    for file in [SKYLAKE, SANDY_BRIDGE_E, GENOA] {
        let mut env = Env::new(file);
        let s = *env.host.system();
        let (good, msrs) = serialise(env.domain(PV).policy());
        let mut cases: Vec<(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>, ErrFields)> = Vec::new();
        // VMX / SVM are HVM features: never in PV max.
        let (virt, home) = if s.host.vendor() == Vendor::Intel {
            (Feature::VMX, 1)
        } else {
            (Feature::SVM, 0x8000_0001)
        };
        assert!(!s.pv_max.featureset().contains(virt), "{file}");
        let mut l = good.clone();
        entry(&mut l, home, NO_SUBLEAF).c |= virt.mask();
        cases.push((l.clone(), msrs.clone(), (home, NO_SUBLEAF, !0)));
        // Together with a raised max leaf, the max leaf is named first (Xen's order).
        entry(&mut l, 0, NO_SUBLEAF).a = s.pv_max.max_basic_leaf() + 1;
        cases.push((l, msrs.clone(), (0, NO_SUBLEAF, !0)));
        // An MSR_ARCH_CAPABILITIES bit PV max lacks.
        let missing = !s.pv_max.arch_caps() & 0xffff_ffff;
        let mut m = msrs.clone();
        m[1].val |= missing & missing.wrapping_neg();
        cases.push((good.clone(), m, (!0, !0, MSR_ARCH_CAPABILITIES)));
        // A max basic leaf above PV max's.
        let mut l = good.clone();
        entry(&mut l, 0, NO_SUBLEAF).a = s.pv_max.max_basic_leaf() + 1;
        cases.push((l, msrs.clone(), (0, NO_SUBLEAF, !0)));
        // Another vendor.
        let mut l = good.clone();
        entry(&mut l, 0, NO_SUBLEAF).b ^= 0x0101_0101;
        cases.push((l, msrs.clone(), (0, NO_SUBLEAF, !0)));
        // A max leaf 7 subleaf above PV max's.
        let mut l = good.clone();
        entry(&mut l, 7, 0).a = s.pv_max.max_feat_subleaf() + 1;
        cases.push((l, msrs.clone(), (7, 0, !0)));
        // A max extended leaf above PV max's.
        let mut l = good.clone();
        entry(&mut l, 0x8000_0000, NO_SUBLEAF).a = s.pv_max.max_extd_leaf() + 1;
        cases.push((l, msrs.clone(), (0x8000_0000, NO_SUBLEAF, !0)));
        // A PLATFORM_INFO bit PV max lacks.
        let missing = !s.pv_max.platform_info();
        let mut m = msrs.clone();
        m[0].val |= u64::from(missing & missing.wrapping_neg());
        cases.push((good.clone(), m, (!0, !0, MSR_PLATFORM_INFO)));
        for (leaves, msrs, err) in cases {
            assert_set_fails(&mut env, PV, &leaves, &msrs, errno::EINVAL, err);
        }
        // The same feature is fine for the HVM guest: the check is against its kind's max.
        let (mut l, m) = serialise(env.domain(HVM).policy());
        assert!(s.hvm_max.featureset().contains(virt), "{file}");
        entry(&mut l, home, NO_SUBLEAF).c |= virt.mask();
        assert_eq!(env.set_arrays(HVM, &l, &m).0, 0, "{file}");
        assert!(
            env.domain(HVM).policy().featureset().contains(virt),
            "{file}"
        );
    }
}

#[test]
fn a_started_domain_is_eexist() {
    let mut env = Env::new(SKYLAKE);
    // Faulting hides everything: a guest at its default starts without best effort.
    env.domains.start(PV).unwrap();
    assert!(env.domain(PV).running());
    let policy = smaller_pv_policy(&env.host);
    let (leaves, msrs) = serialise(&policy);
    let before = env.snapshot();
    // libxc pre-fills the error fields with ~0.
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let (ret, out) = env.set_policy(PV, dom_policy(leaves.len() as u32, 2, !0));
    assert_eq!(ret, neg(errno::EEXIST));
    assert_eq!((out.err_leaf, out.err_subleaf, out.err_msr), (!0, !0, !0));
    assert_unchanged(&before, &env.snapshot(), "");
    // Even an empty set.
    let (ret, _) = env.set_policy(PV, dom_policy(0, 0, !0));
    assert_eq!(ret, neg(errno::EEXIST));
    assert_unchanged(&before, &env.snapshot(), "");
    // The other domains can still be set.
    assert_eq!(env.set_arrays(PV_BEST_EFFORT, &leaves, &msrs).0, 0);
}

/// In Xen, -EEXIST (a running domain), -EINVAL (a domain on itself) and -ESRCH leave the
/// envelope alone: `copyback` is set only when `update_domain_cpu_policy()` fails, and the
/// domain lookup fails before anything. Only libxc's habit of pre-filling ~0 hides the
/// difference.
#[test]
fn set_preconditions_do_not_write_the_error_fields() {
    let mut env = Env::new(SKYLAKE);
    env.domains.start(PV).unwrap();
    for domid in [PV, 0, MISSING] {
        let (ret, out) = env.set_policy(domid, dom_policy(0, 0, SENTINEL));
        assert!(ret < 0, "dom{domid}");
        assert_eq!(
            (out.err_leaf, out.err_subleaf, out.err_msr),
            (SENTINEL, SENTINEL, SENTINEL),
            "dom{domid}: returned {ret}"
        );
    }
}

#[test]
fn a_domain_cannot_set_its_own_policy() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let (leaves, msrs) = serialise(&smaller_pv_policy(&env.host));
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let before = env.snapshot();
    let (ret, _) = env.set_policy(0, dom_policy(leaves.len() as u32, 2, !0));
    assert_eq!(ret, neg(errno::EINVAL));
    assert_unchanged(&before, &env.snapshot(), "");
    // A control domain with another id, on itself.
    let me = Caller {
        domid: PV,
        control: true,
    };
    let (ret, _) = env.set_policy_as(me, PV, dom_policy(leaves.len() as u32, 2, !0));
    assert_eq!(ret, neg(errno::EINVAL));
    assert_unchanged(&before, &env.snapshot(), "");
    // ... and it may set dom0's.
    let (ret, _) = env.set_policy_as(me, 0, dom_policy(leaves.len() as u32, 2, !0));
    assert_eq!(ret, 0);
}

#[test]
fn a_missing_domain_is_esrch() {
    let mut env = Env::new(SKYLAKE);
    let (leaves, msrs) = serialise(&smaller_pv_policy(&env.host));
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let before = env.snapshot();
    for domid in [MISSING, 4, u16::MAX] {
        let (ret, _) = env.set_policy(domid, dom_policy(leaves.len() as u32, 2, !0));
        assert_eq!(ret, neg(errno::ESRCH), "dom{domid}");
        let (ret, _) = env.get_levelling(domid, levelling_query(19, WORDS, WORDS2));
        assert_eq!(ret, neg(errno::ESRCH), "dom{domid}");
        assert_unchanged(&before, &env.snapshot(), "");
    }
}

#[test]
fn arrays_that_fault_are_efault_and_change_nothing() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    env.mem = GuestMem::new().with_hole();
    let (leaves, msrs) = serialise(&smaller_pv_policy(&env.host));
    let n = leaves.len() as u32;
    // A copy of the good arrays running into the hole at leaf 7 / MSR 1.
    let leaves_at = HOLE.start - 24 * 7;
    let msrs_at = HOLE.start - 16;
    env.mem.put_array(leaves_at, &leaves);
    env.mem.put_array(msrs_at, &msrs);
    env.mem.put_array(LEAVES, &leaves);
    env.mem.put_array(MSRS, &msrs);
    let before = env.snapshot();
    for (l, m) in [
        (UNMAPPED, MSRS),
        (0, MSRS), // NULL with a count
        (leaves_at, MSRS),
        (LEAVES, UNMAPPED),
        (LEAVES, msrs_at),
        (u64::MAX - 24, MSRS),
        (LEAVES, u64::MAX - 8),
    ] {
        let (ret, out) = env.set_policy(
            PV,
            XenDomctlCpuPolicy {
                leaves: l,
                msrs: m,
                ..dom_policy(n, 2, SENTINEL)
            },
        );
        assert_eq!(ret, neg(errno::EFAULT), "{l:#x} {m:#x}");
        assert_eq!((out.err_leaf, out.err_subleaf, out.err_msr), (!0, !0, !0));
        assert_unchanged(&before, &env.snapshot(), &format!("{l:#x} {m:#x}"));
    }
    // The same arrays where they are mapped work.
    assert_eq!(env.set_policy(PV, dom_policy(n, 2, SENTINEL)).0, 0);
}

// ---------------------------------------------------------------------------------------------
// domctl 1000 (extension): a domain's levelling; DomainTable::start.

/// A PV guest at the Intel pool level, set through the ABI on `domid`.
fn level_to_intel_pool(env: &mut Env, domid: u16) -> CpuPolicy {
    let policy = env
        .host
        .system()
        .domain_policy(DomainKind::Pv, Vendor::Intel, &intel_pool_level())
        .unwrap();
    let (leaves, msrs) = serialise(&policy);
    let (ret, _) = env.set_arrays(domid, &leaves, &msrs);
    assert_eq!(ret, 0);
    assert_eq!(*env.domain(domid).policy(), policy);
    policy
}

#[test]
fn sandy_bridge_e_cannot_hide_everything_from_a_pool_levelled_guest() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    level_to_intel_pool(&mut env, PV);
    let d = env.domain(PV);
    assert!(
        !d.levelling().unenforceable().is_empty(),
        "masks cannot hide every word"
    );
    // The extension reports it.
    env.mem.poke(WORDS, &[FILL; 4 * 19]);
    env.mem.poke(WORDS2, &[FILL; 4 * 19]);
    let (ret, out) = env.get_levelling(PV, levelling_query(19, WORDS, WORDS2));
    assert_eq!(ret, 0);
    assert_eq!(out.mechanism, 2, "mask MSRs");
    assert_eq!(out.flags, levelling_flags::LEVELLED);
    assert_eq!(out.nr_features, 19);
    assert_eq!(
        env.mem.words(WORDS, 19),
        d.levelling().unenforceable().words().to_vec()
    );
    assert_eq!(
        env.mem.words(WORDS2, 19),
        d.levelling().not_shown().words().to_vec()
    );
    // Fail closed: start refuses, naming the features, and nothing changes.
    let before = env.snapshot();
    match env.domains.start(PV) {
        Err(DomainError::Unenforceable(u)) => {
            assert_eq!(u.features, d.levelling().unenforceable());
            assert_eq!(u.mechanism, env.host.levelling().mechanism());
        }
        other => panic!("started: {other:?}"),
    }
    assert_unchanged(&before, &env.snapshot(), "");
    // With best effort accepted, the same policy starts.
    level_to_intel_pool(&mut env, PV_BEST_EFFORT);
    assert_eq!(env.domains.start(PV_BEST_EFFORT), Ok(()));
    let (ret, out) = env.get_levelling(PV_BEST_EFFORT, levelling_query(0, 0, 0));
    assert_eq!(ret, 0);
    assert_eq!(
        out.flags,
        levelling_flags::LEVELLED | levelling_flags::BEST_EFFORT | levelling_flags::RUNNING
    );
    // Once running, its policy is fixed.
    let (leaves, msrs) = serialise(&env.host.system().pv_default);
    assert_set_fails(
        &mut env,
        PV_BEST_EFFORT,
        &leaves,
        &msrs,
        errno::EEXIST,
        // Xen never reaches update_domain_cpu_policy: the caller's error fields stay as given.
        (SENTINEL, SENTINEL, SENTINEL),
    );
}

#[test]
fn skylake_faulting_hides_everything_from_a_pool_levelled_guest() {
    let mut env = Env::new(SKYLAKE);
    level_to_intel_pool(&mut env, PV);
    env.mem.poke(WORDS, &[FILL; 4 * 19]);
    env.mem.poke(WORDS2, &[FILL; 4 * 19]);
    let (ret, out) = env.get_levelling(PV, levelling_query(19, WORDS, WORDS2));
    assert_eq!(ret, 0);
    assert_eq!(out.mechanism, 1, "CPUID faulting");
    assert_eq!(
        out.flags,
        levelling_flags::LEVELLED | levelling_flags::FAULTING
    );
    assert_eq!(env.mem.words(WORDS, 19), vec![0; 19]);
    assert_eq!(env.mem.words(WORDS2, 19), vec![0; 19]);
    assert_eq!(env.domains.start(PV), Ok(()));
    let (_, out) = env.get_levelling(PV, levelling_query(0, 0, 0));
    assert_eq!(
        out.flags,
        levelling_flags::LEVELLED | levelling_flags::FAULTING | levelling_flags::RUNNING
    );
}

#[test]
fn get_levelling_for_dom0_and_hvm_guests() {
    for (file, mechanism) in [(SKYLAKE, 1), (GENOA, 1), (SANDY_BRIDGE_E, 2), (PENRYN, 2)] {
        let mut env = Env::new(file);
        // dom0 keeps the full host (Xen 4.7 default): not levelled.
        let (ret, out) = env.get_levelling(0, levelling_query(0, 0, 0));
        assert_eq!((ret, out.mechanism, out.flags), (0, mechanism, 0), "{file}");
        // HVM guests are levelled by their CPUID exits, never by faulting or masks.
        let (ret, out) = env.get_levelling(HVM, levelling_query(0, 0, 0));
        assert_eq!(
            (ret, out.mechanism, out.flags),
            (0, mechanism, levelling_flags::LEVELLED),
            "{file}"
        );
        let (_, out) = env.get_levelling(PV_BEST_EFFORT, levelling_query(0, 0, 0));
        assert_ne!(out.flags & levelling_flags::BEST_EFFORT, 0);
    }
}

#[test]
fn get_levelling_size_query_short_buffers_and_bad_arguments() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    level_to_intel_pool(&mut env, PV);
    let d = env.domain(PV);
    // Both NULL: the size.
    let (ret, out) = env.get_levelling(PV, levelling_query(0, 0, 0));
    assert_eq!((ret, out.nr_features), (0, 19));
    assert_eq!((out.mechanism, out.flags), (2, levelling_flags::LEVELLED));
    // One buffer only: the other is not written.
    env.mem.poke(WORDS, &[FILL; 4 * 19]);
    let (ret, out) = env.get_levelling(PV, levelling_query(19, WORDS, 0));
    assert_eq!((ret, out.nr_features), (0, 19));
    assert_eq!(
        env.mem.words(WORDS, 19),
        d.levelling().unenforceable().words().to_vec()
    );
    // Short buffers: what fits, then -ENOBUFS.
    for nr in [0, 4, 18] {
        env.mem.poke(WORDS, &[FILL; 4 * 19]);
        env.mem.poke(WORDS2, &[FILL; 4 * 19]);
        let (ret, out) = env.get_levelling(PV, levelling_query(nr, WORDS, WORDS2));
        assert_eq!((ret, out.nr_features), (neg(errno::ENOBUFS), nr), "nr {nr}");
        let n = nr as usize;
        assert_eq!(
            env.mem.words(WORDS, n),
            d.levelling().unenforceable().words()[..n].to_vec()
        );
        assert_eq!(
            env.mem.words(WORDS2, n),
            d.levelling().not_shown().words()[..n].to_vec()
        );
        assert_eq!(env.mem.peek(WORDS + 4 * n as u64, 4), vec![FILL; 4]);
        assert_eq!(env.mem.peek(WORDS2 + 4 * n as u64, 4), vec![FILL; 4]);
    }
    // Reserved bits.
    let (ret, _) = env.get_levelling(
        PV,
        XenDomctlLevelling {
            rsvd: 1,
            ..levelling_query(19, WORDS, WORDS2)
        },
    );
    assert_eq!(ret, neg(errno::EINVAL));
    // Faulting buffers.
    for (a, b) in [(UNMAPPED, WORDS2), (WORDS, UNMAPPED), (u64::MAX - 4, 0)] {
        let (ret, _) = env.get_levelling(PV, levelling_query(19, a, b));
        assert_eq!(ret, neg(errno::EFAULT), "{a:#x} {b:#x}");
    }
}

// ---------------------------------------------------------------------------------------------
// The byte layout from the guest's side.

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn a_hand_encoded_set_cpu_policy_is_read_at_xens_offsets() {
    let mut env = Env::new(SANDY_BRIDGE_E);
    let policy = smaller_pv_policy(&env.host);
    let (leaves, msrs) = serialise(&policy);
    // The arrays, by hand: xen_cpuid_leaf_t is {leaf, subleaf, a, b, c, d} in 24 bytes,
    // xen_msr_entry_t {u32 idx, u32 flags, u64 val} in 16.
    for (i, l) in leaves.iter().enumerate() {
        let mut b = [0u8; 24];
        for (j, v) in [l.leaf, l.subleaf, l.a, l.b, l.c, l.d].iter().enumerate() {
            b[4 * j..4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
        env.mem.poke(LEAVES + 24 * i as u64, &b);
    }
    for (i, m) in msrs.iter().enumerate() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&m.idx.to_le_bytes());
        b[4..8].copy_from_slice(&m.flags.to_le_bytes());
        b[8..16].copy_from_slice(&m.val.to_le_bytes());
        env.mem.poke(MSRS + 16 * i as u64, &b);
    }
    // struct xen_domctl: cmd @0, interface_version @4, domain @8, pad, union @16; and
    // xen_domctl_cpu_policy in the union: nr_leaves @0, nr_msrs @4, leaves @8, msrs @16,
    // err_leaf @24, err_subleaf @28, err_msr @32.
    let envelope = |nr_leaves: u32| {
        let mut b = [0xeeu8; 144];
        b[0..4].copy_from_slice(&83u32.to_le_bytes());
        b[4..8].copy_from_slice(&0x18u32.to_le_bytes());
        b[8..10].copy_from_slice(&PV.to_le_bytes());
        b[10..16].fill(0);
        b[16..20].copy_from_slice(&nr_leaves.to_le_bytes());
        b[20..24].copy_from_slice(&2u32.to_le_bytes());
        b[24..32].copy_from_slice(&LEAVES.to_le_bytes());
        b[32..40].copy_from_slice(&MSRS.to_le_bytes());
        b[40..44].copy_from_slice(&SENTINEL.to_le_bytes());
        b[44..48].copy_from_slice(&SENTINEL.to_le_bytes());
        b[48..52].copy_from_slice(&SENTINEL.to_le_bytes());
        b
    };
    let b = envelope(leaves.len() as u32);
    env.mem.poke(ENVELOPE, &b);
    let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, ENVELOPE);
    assert_eq!(ret, 0);
    assert_eq!(*env.domain(PV).policy(), policy);
    // Success: the envelope's bytes are as the guest wrote them.
    assert_eq!(env.mem.peek(ENVELOPE, 144), b.to_vec());
    // A bad leaf: err_leaf @40, err_subleaf @44, err_msr @48 (envelope offsets).
    env.mem.poke(LEAVES + 24 * leaves.len() as u64, &{
        let mut e = [0u8; 24];
        e[0..4].copy_from_slice(&4u32.to_le_bytes());
        e[4..8].copy_from_slice(&6u32.to_le_bytes());
        e
    });
    let b = envelope(leaves.len() as u32 + 1);
    env.mem.poke(ENVELOPE, &b);
    let before = env.snapshot();
    let ret = do_domctl(&env.host, &mut env.domains, DOM0, &mut env.mem, ENVELOPE);
    assert_eq!(ret, -34);
    assert_unchanged(&before, &env.snapshot(), "");
    let out = env.mem.peek(ENVELOPE, 144);
    assert_eq!(le32(&out, 40), 4);
    assert_eq!(le32(&out, 44), 6);
    assert_eq!(le32(&out, 48), !0);
    // Everything else is as the guest wrote it, the rest of the union included.
    assert_eq!(out[..40], b[..40]);
    assert_eq!(out[52..], b[52..]);
}

#[test]
fn hand_encoded_sysctls_are_read_and_written_at_xens_offsets() {
    let mut env = Env::new(SKYLAKE);
    let s = *env.host.system();
    // struct xen_sysctl: cmd @0, interface_version @4, union @8. The featureset payload:
    // index @0, nr_features @4, features @8.
    let mut b = [0xeeu8; 136];
    b[0..4].copy_from_slice(&26u32.to_le_bytes());
    b[4..8].copy_from_slice(&0x16u32.to_le_bytes());
    b[8..12].copy_from_slice(&4u32.to_le_bytes()); // pv_max
    b[12..16].copy_from_slice(&7u32.to_le_bytes());
    b[16..24].copy_from_slice(&WORDS.to_le_bytes());
    env.mem.poke(ENVELOPE, &b);
    let ret = do_sysctl(&env.host, DOM0, &mut env.mem, ENVELOPE);
    assert_eq!(ret, neg(errno::ENOBUFS));
    let out = env.mem.peek(ENVELOPE, 136);
    assert_eq!(le32(&out, 12), 7);
    assert_eq!(out[..12], b[..12]);
    assert_eq!(out[16..], b[16..]);
    assert_eq!(
        env.mem.words(WORDS, 7),
        s.pv_max.featureset().words()[..7].to_vec()
    );
    // The policy payload: index @0, nr_leaves @4, nr_msrs @8, _rsvd @12, leaves @16,
    // msrs @24 (envelope offsets +8).
    let mut b = [0xeeu8; 136];
    b[0..4].copy_from_slice(&29u32.to_le_bytes());
    b[4..8].copy_from_slice(&0x16u32.to_le_bytes());
    b[8..12].copy_from_slice(&5u32.to_le_bytes()); // hvm_default
    b[12..16].copy_from_slice(&120u32.to_le_bytes());
    b[16..20].copy_from_slice(&2u32.to_le_bytes());
    b[20..24].fill(0);
    b[24..32].copy_from_slice(&LEAVES.to_le_bytes());
    b[32..40].copy_from_slice(&MSRS.to_le_bytes());
    env.mem.poke(ENVELOPE, &b);
    assert_eq!(do_sysctl(&env.host, DOM0, &mut env.mem, ENVELOPE), 0);
    let out = env.mem.peek(ENVELOPE, 136);
    let n = s.hvm_default.nr_serialised_leaves();
    assert_eq!(le32(&out, 12) as usize, n);
    assert_eq!(le32(&out, 16), 2);
    assert_eq!(out[20..], b[20..]);
    let raw = env.mem.peek(LEAVES, 24 * n);
    let (want, _) = serialise(&s.hvm_default);
    for (i, w) in want.iter().enumerate() {
        let e = &raw[24 * i..];
        assert_eq!(
            [
                le32(e, 0),
                le32(e, 4),
                le32(e, 8),
                le32(e, 12),
                le32(e, 16),
                le32(e, 20)
            ],
            [w.leaf, w.subleaf, w.a, w.b, w.c, w.d]
        );
    }
    let m = env.mem.peek(MSRS, 32);
    assert_eq!(le32(&m, 0), MSR_PLATFORM_INFO);
    assert_eq!(le32(&m, 4), 0);
    assert_eq!(
        u64::from_le_bytes(m[8..16].try_into().unwrap()),
        u64::from(s.hvm_default.platform_info())
    );
    assert_eq!(le32(&m, 16), MSR_ARCH_CAPABILITIES);
    // Caps: the u32 at union offset 0.
    let mut b = [0xeeu8; 136];
    b[0..4].copy_from_slice(&25u32.to_le_bytes());
    b[4..8].copy_from_slice(&0x16u32.to_le_bytes());
    env.mem.poke(ENVELOPE, &b);
    assert_eq!(do_sysctl(&env.host, DOM0, &mut env.mem, ENVELOPE), 0);
    let out = env.mem.peek(ENVELOPE, 136);
    assert_eq!(le32(&out, 8), levelcap::FAULTING);
    assert_eq!(out[12..], b[12..]);
}

// ---------------------------------------------------------------------------------------------
// Properties.

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep failures out of `proptest-regressions/`.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

const PROPERTY_HOSTS: [&str; 4] = [SKYLAKE, SANDY_BRIDGE_E, GENOA, PENRYN];

/// A domain policy a toolstack could ask for: a random subset of the kind's default
/// featureset, through `domain_policy`; or the canonical (recalculated) default policy.
fn random_policy(
    host: &Host,
    kind: DomainKind,
    keep: &[u32; NR_WORDS],
    canonical: bool,
) -> CpuPolicy {
    let default = host.system().default_for(kind);
    if canonical {
        return host.system().recalculate(kind, &default).unwrap();
    }
    let mut words = *default.featureset().words();
    for (w, k) in words.iter_mut().zip(keep) {
        *w &= k;
    }
    let fs = Featureset::from_words(words).closed();
    host.system()
        .domain_policy(kind, host.system().host.vendor(), &fs)
        .unwrap()
}

proptest! {
    #![proptest_config(config(96))]

    /// get then set on a fresh domain, then get again: the same arrays and the same policy.
    #[test]
    fn set_of_get_is_the_identity(
        host_index in 0..PROPERTY_HOSTS.len(),
        hvm in any::<bool>(),
        canonical in prop::bool::weighted(0.2),
        keep in prop::array::uniform19(prop_oneof![Just(!0u32), any::<u32>(), Just(0u32)]),
    ) {
        let mut env = Env::new(PROPERTY_HOSTS[host_index]);
        let kind = if hvm { DomainKind::HvmHap } else { DomainKind::Pv };
        let (a, b) = (10, 11);
        for domid in [a, b] {
            env.domains.create(&env.host, domid, kind, DomainRole::Guest, false).unwrap();
        }
        // Put the random policy on domain a through the ABI.
        let policy = random_policy(&env.host, kind, &keep, canonical);
        let (leaves, msrs) = serialise(&policy);
        let (ret, _) = env.set_arrays(a, &leaves, &msrs);
        prop_assert_eq!(ret, 0);
        prop_assert_eq!(*env.domain(a).policy(), policy);
        // get(a) -> set(b) -> get(b).
        let got_a = env.read_back(a);
        let (ret, out) = env.set_arrays(b, &got_a.0, &got_a.1);
        prop_assert_eq!(ret, 0);
        prop_assert_eq!((out.err_leaf, out.err_subleaf, out.err_msr), (SENTINEL, SENTINEL, SENTINEL));
        let got_b = env.read_back(b);
        prop_assert_eq!(&got_a, &got_b);
        let (da, db) = (env.domain(a), env.domain(b));
        prop_assert_eq!(da.policy(), db.policy());
        prop_assert_eq!(da.levelling(), db.levelling());
        // And setting a's own arrays back on a changes nothing.
        let before = env.snapshot();
        prop_assert_eq!(env.set_arrays(a, &got_a.0, &got_a.1).0, 0);
        let after = env.snapshot();
        prop_assert!(before == after, "{}", changes(&before, &after));
    }
}

const SYSCTL_CMDS: [u32; 3] = [
    SYSCTL_GET_CPU_LEVELLING_CAPS,
    SYSCTL_GET_CPU_FEATURESET,
    SYSCTL_GET_CPU_POLICY,
];
/// set_cpu_policy, with the most paths, comes up most.
const DOMCTL_CMDS: [u32; 5] = [
    DOMCTL_GET_CPU_POLICY,
    DOMCTL_SET_CPU_POLICY,
    DOMCTL_SET_CPU_POLICY,
    DOMCTL_SET_CPU_POLICY,
    DOMCTL_GET_LEVELLING,
];

/// Where the fuzzed envelope goes: its arrays are the rest of the mapping.
const FUZZ_ENVELOPE: u64 = BASE + 0x10;

fn cmd_strategy(real: &[u32]) -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => prop::sample::select(real.to_vec()),
        1 => any::<u32>(),
        1 => 0u32..1100,
    ]
}

fn version_strategy(real: u32) -> impl Strategy<Value = u32> {
    prop_oneof![16 => Just(real), 1 => Just(real - 1), 1 => any::<u32>()]
}

/// A 64-bit word of the union: handles into the mapping (anywhere in it, or at the arrays),
/// NULL, small counts, or anything.
fn union_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => (0u64..SIZE as u64).prop_map(|o| BASE + o),
        2 => prop::sample::select(vec![LEAVES, MSRS, WORDS, WORDS2, HOLE.start - 24]),
        1 => Just(0u64),
        // Two small u32s: index/counts packed in one word.
        3 => (0u64..130, 0u64..6).prop_map(|(a, b)| a | b << 32),
        1 => (0u64..8, 0u64..130).prop_map(|(a, b)| a | b << 32),
    ]
}

/// A guest handle: mostly the array it should be, sometimes anything.
fn handle(real: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        24 => Just(real),
        1 => Just(0u64),
        1 => Just(UNMAPPED),
        1 => Just(HOLE.start - 24 * 3),
        1 => (0u64..SIZE as u64).prop_map(|o| BASE + o),
        1 => any::<u64>(),
    ]
}

/// The fields of a payload, laid into the union for whichever command is fuzzed.
#[derive(Clone, Debug)]
struct Args {
    index: u32,
    /// `None`: exactly the entries (or words) there are.
    nr_a: Option<u32>,
    nr_b: u32,
    rsvd: u32,
    h1: u64,
    h2: u64,
    err: u32,
}

fn args_strategy() -> impl Strategy<Value = Args> {
    (
        prop_oneof![4 => 0u32..6, 1 => any::<u32>()],
        prop_oneof![
            6 => Just(None),
            2 => (0u32..=122).prop_map(Some),
            1 => any::<u32>().prop_map(Some),
        ],
        prop_oneof![6 => Just(2u32), 2 => 0u32..=3, 1 => any::<u32>()],
        prop_oneof![8 => Just(0u32), 1 => any::<u32>()],
        handle(LEAVES),
        handle(MSRS),
        prop_oneof![Just(!0u32), any::<u32>()],
    )
        .prop_map(|(index, nr_a, nr_b, rsvd, h1, h2, err)| Args {
            index,
            nr_a,
            nr_b,
            rsvd,
            h1,
            h2,
            err,
        })
}

/// The union for `cmd` with `args` laid over `words` (the bytes past the payload stay random).
fn structured_union(
    cmd: u32,
    domctl: bool,
    args: &Args,
    nr_leaves: u32,
    words: [u64; 16],
) -> [u64; 16] {
    let mut u = words;
    let a = args;
    match (domctl, cmd) {
        (false, SYSCTL_GET_CPU_FEATURESET) => XenSysctlCpuFeatureset {
            index: a.index,
            nr_features: a.nr_a.unwrap_or(19),
            features: a.h1,
        }
        .store_in_union(&mut u),
        (false, SYSCTL_GET_CPU_POLICY) => XenSysctlCpuPolicy {
            index: a.index,
            nr_leaves: a.nr_a.unwrap_or(nr_leaves),
            nr_msrs: a.nr_b,
            rsvd: a.rsvd,
            leaves: a.h1,
            msrs: a.h2,
        }
        .store_in_union(&mut u),
        (true, DOMCTL_GET_CPU_POLICY | DOMCTL_SET_CPU_POLICY) => XenDomctlCpuPolicy {
            nr_leaves: a.nr_a.unwrap_or(nr_leaves),
            nr_msrs: a.nr_b,
            leaves: a.h1,
            msrs: a.h2,
            err_leaf: a.err,
            err_subleaf: a.err,
            err_msr: a.err,
            pad: a.rsvd,
        }
        .store_in_union(&mut u),
        (true, DOMCTL_GET_LEVELLING) => XenDomctlLevelling {
            mechanism: a.err,
            flags: a.err,
            nr_features: a.nr_a.unwrap_or(19),
            rsvd: a.rsvd,
            unenforceable: a.h1,
            not_shown: a.h2,
        }
        .store_in_union(&mut u),
        _ => {}
    }
    u
}

/// An edit of the laid-out policy arrays: (entry, field, value). Leaf fields 0/1 (leaf,
/// subleaf) are replaced; register fields 2..6 have the value's bits cleared (fewer
/// features: a policy that may well be accepted) or flipped. MSR fields: 0 idx, 1 flags,
/// 2 val (replaced).
#[derive(Clone, Debug)]
enum Edit {
    Leaf(usize, usize, u32, bool),
    Msr(usize, usize, u64),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let leaf_value = prop_oneof![
        2 => 0u32..0x20,
        1 => (0u32..0x30).prop_map(|x| 0x8000_0000 + x),
        1 => prop::sample::select(vec![NO_SUBLEAF, 0x4000_0000, 0x4000_0100, 0x4000_0001]),
        2 => (0u32..32).prop_map(|b| 1 << b),
        1 => any::<u32>(),
    ];
    let msr_value = prop_oneof![
        Just(1u64 << 32),
        (0u32..64).prop_map(|b| 1u64 << b),
        prop::sample::select(vec![
            u64::from(MSR_PLATFORM_INFO),
            u64::from(MSR_ARCH_CAPABILITIES),
            0x10,
        ]),
        any::<u64>(),
    ];
    prop_oneof![
        4 => (
            0usize..MAX_SERIALISED_LEAVES,
            prop_oneof![1 => 0usize..2, 3 => 2usize..6],
            leaf_value,
            prop::bool::weighted(0.6),
        )
            .prop_map(|(i, f, v, clear)| Edit::Leaf(i, f, v, clear)),
        1 => (0usize..2, 0usize..3, msr_value).prop_map(|(i, f, v)| Edit::Msr(i, f, v)),
    ]
}

fn apply(edit: &Edit, leaves: &mut [XenCpuidLeaf], msrs: &mut [XenMsrEntry]) {
    match *edit {
        Edit::Leaf(i, field, v, clear) => {
            let Some(l) = leaves.get_mut(i % leaves.len().max(1)) else {
                return;
            };
            let reg = match field {
                0 => return l.leaf = v,
                1 => return l.subleaf = v,
                2 => &mut l.a,
                3 => &mut l.b,
                4 => &mut l.c,
                _ => &mut l.d,
            };
            if clear {
                *reg &= !v;
            } else {
                *reg ^= v;
            }
        }
        Edit::Msr(i, field, v) => {
            let m = &mut msrs[i];
            match field {
                0 => m.idx = v as u32,
                1 => m.flags = v as u32,
                _ => m.val = v,
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Fuzz {
    host_index: usize,
    domctl: bool,
    cmd: u32,
    version: u32,
    domain: u16,
    pad: [u16; 3],
    union: [u64; 16],
    /// Lay a payload for the command over the random union (otherwise the union is all random).
    structured: Option<Args>,
    caller: Caller,
    /// Edits of the valid policy laid at LEAVES/MSRS.
    edits: Vec<Edit>,
    /// Raw bytes somewhere in the mapping.
    noise: Vec<u8>,
    noise_at: usize,
    hole: bool,
    started: bool,
}

fn fuzz_strategy() -> impl Strategy<Value = Fuzz> {
    (
        (0..PROPERTY_HOSTS.len(), any::<bool>()),
        prop::array::uniform16(union_word()),
        prop::option::weighted(0.75, args_strategy()),
        prop_oneof![
            8 => prop::sample::select(vec![0u16, PV, HVM, PV_BEST_EFFORT]),
            1 => any::<u16>(),
        ],
        prop_oneof![8 => Just([0u16; 3]), 1 => any::<[u16; 3]>()],
        prop_oneof![
            16 => Just(DOM0),
            1 => Just(NOT_CONTROL[0]),
            1 => (any::<u16>(), any::<bool>())
                .prop_map(|(domid, control)| Caller { domid, control }),
        ],
        prop_oneof![
            2 => Just(Vec::new()),
            3 => prop::collection::vec(edit_strategy(), 1..4),
        ],
        prop_oneof![
            3 => Just((Vec::new(), 0usize)),
            1 => (prop::collection::vec(any::<u8>(), 0..256), 0usize..SIZE - 256),
        ],
        (any::<bool>(), prop::bool::weighted(0.2)),
    )
        .prop_flat_map(
            |(
                (host_index, domctl),
                union,
                structured,
                domain,
                pad,
                caller,
                edits,
                noise,
                flags,
            )| {
                let cmd = if domctl {
                    cmd_strategy(&DOMCTL_CMDS).boxed()
                } else {
                    cmd_strategy(&SYSCTL_CMDS).boxed()
                };
                let version = if domctl {
                    version_strategy(DOMCTL_INTERFACE_VERSION).boxed()
                } else {
                    version_strategy(SYSCTL_INTERFACE_VERSION).boxed()
                };
                (cmd, version).prop_map(move |(cmd, version)| Fuzz {
                    host_index,
                    domctl,
                    cmd,
                    version,
                    domain,
                    pad,
                    union,
                    structured: structured.clone(),
                    caller,
                    edits: edits.clone(),
                    noise: noise.0.clone(),
                    noise_at: noise.1,
                    hole: flags.0,
                    started: flags.1,
                })
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary envelopes and arrays: no panic; an error changes no domain; a success of
    /// set_cpu_policy leaves a policy within the max with its levelling recomputed.
    #[test]
    fn arbitrary_arguments_never_panic_nor_change_anything_on_error(f in fuzz_strategy()) {
        let mut env = Env::new(PROPERTY_HOSTS[f.host_index]);
        if f.hole {
            env.mem = GuestMem::new().with_hole();
        }
        if f.started {
            env.domains.start(PV_BEST_EFFORT).unwrap();
        }
        // A real policy at the arrays, so that deeper paths are reached, then damage.
        let (mut leaves, mut msrs) = serialise(&smaller_pv_policy(&env.host));
        for e in &f.edits {
            apply(e, &mut leaves, &mut msrs);
        }
        env.mem.put_array(LEAVES, &leaves);
        env.mem.put_array(MSRS, &msrs);
        env.mem.poke(BASE + f.noise_at as u64, &f.noise);
        let union = match &f.structured {
            Some(a) => structured_union(f.cmd, f.domctl, a, leaves.len() as u32, f.union),
            None => f.union,
        };
        let before = env.snapshot();
        let ret = if f.domctl {
            let op = XenDomctl {
                cmd: f.cmd,
                interface_version: f.version,
                domain: f.domain,
                pad: f.pad,
                u: union,
            };
            env.mem.put(FUZZ_ENVELOPE, &op);
            do_domctl(&env.host, &mut env.domains, f.caller, &mut env.mem, FUZZ_ENVELOPE)
        } else {
            let op = XenSysctl { cmd: f.cmd, interface_version: f.version, u: union };
            env.mem.put(FUZZ_ENVELOPE, &op);
            do_sysctl(&env.host, f.caller, &mut env.mem, FUZZ_ENVELOPE)
        };
        let after = env.snapshot();
        prop_assert!(ret <= 0);
        let known = [1, 3, 7, 13, 14, 17, 22, 34, 38, 75, 95, 105];
        prop_assert!(ret == 0 || known.contains(&-ret), "unexpected errno {}", ret);
        if ret != 0 {
            prop_assert!(after == before, "{}", changes(&before, &after));
        } else if f.domctl && f.cmd == DOMCTL_SET_CPU_POLICY {
            // Only the target can have changed, and only its policy and levelling, together.
            for (b, a) in before.iter().zip(&after) {
                if a.domid() != f.domain {
                    prop_assert!(a == b, "{}", changes(&[*b], &[*a]));
                    continue;
                }
                prop_assert_eq!(
                    (a.kind(), a.role(), a.best_effort(), a.running()),
                    (b.kind(), b.role(), b.best_effort(), b.running())
                );
                prop_assert!(!a.running());
                let max = env.host.system().max_for(a.kind()).unwrap();
                prop_assert!(check_compatible(&max, a.policy()).is_ok());
                prop_assert_eq!(*a.levelling(), env.host.levelling().assess(a.kind(), a.role(), a.policy()));
            }
        } else {
            prop_assert!(after == before, "{}", changes(&before, &after));
        }
    }
}
