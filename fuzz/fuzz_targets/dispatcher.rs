//! `do_sysctl` / `do_domctl` on hostile guest memory.
//!
//! The input lays out guest memory (a byte buffer mapped at [`BASE`], a read-only prefix, the
//! rest unmapped) and a sequence of calls: envelopes laid out by the harness from typed fields
//! (so valid commands and handles are reachable) or taken raw from the bytes already in memory,
//! arrays of leaves/MSRs built from real policies with edits, domain creation and start.
//!
//! Oracles:
//! - no panic;
//! - a call that returns an error leaves the DomainTable exactly as it was;
//! - after a successful `set_cpu_policy`: the domain's policy is within its kind's max, its
//!   levelling is the one computed from the policy, and setting what `get_cpu_policy` returns
//!   succeeds and changes nothing;
//! - a successful get (sysctl or domctl) wrote arrays that read back as the policy.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

use xen_levelling::abi::dispatch::{Caller, GuestCopy, do_domctl, do_sysctl};
use xen_levelling::abi::domain::{Domain, DomainTable, Host, levelling_of};
use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_GET_LEVELLING, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY,
    Payload, SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_POLICY,
    SYSCTL_INTERFACE_VERSION, Wire, XenCpuidLeaf, XenDomctl, XenDomctlCpuPolicy,
    XenDomctlLevelling, XenMsrEntry, XenSysctl, XenSysctlCpuFeatureset, XenSysctlCpuPolicy,
};
use xen_levelling::levelling::DomainRole;
use xen_levelling::policy::CpuPolicy;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xen_levelling::policy::system::{DomainKind, SystemPolicy};
use xen_levelling_fuzz::GuestMem;

/// Where guest memory is mapped.
const BASE: u64 = 0x7fff_0000;
/// The most guest memory an input maps.
const MAX_MEM: usize = 16 * 1024;
/// Domain slots.
const SLOTS: usize = 8;
/// Calls per input.
const MAX_CALLS: usize = 12;

#[derive(Arbitrary, Debug)]
struct Input {
    host: u8,
    mem_size: u16,
    read_only: u16,
    fill: Vec<u8>,
    calls: Vec<Call>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Null,
    Off(u16),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum DomSel {
    /// One of the domains created at the start (0 = dom0, the control domain).
    Known(u8),
    Raw(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct CallerSel {
    domain: DomSel,
    control: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Version {
    Right,
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SysCmd {
    Caps,
    Featureset,
    Policy,
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum DomCmd {
    Get,
    Set,
    Levelling,
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Count {
    /// What the last `PutLeaves`/`PutMsrs` wrote.
    Put,
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Edit {
    And {
        i: u8,
        reg: u8,
        mask: u32,
    },
    Or {
        i: u8,
        reg: u8,
        bits: u32,
    },
    Set {
        i: u8,
        reg: u8,
        value: u32,
    },
    Remove {
        i: u8,
    },
    Duplicate {
        i: u8,
    },
    Truncate {
        n: u8,
    },
    Retarget {
        i: u8,
        leaf: u32,
        subleaf: u32,
    },
    Push {
        leaf: u32,
        subleaf: u32,
        regs: [u32; 4],
    },
}

#[derive(Arbitrary, Debug, Clone)]
enum LeafSource {
    Domain { domain: DomSel, edits: Vec<Edit> },
    System { which: u8, edits: Vec<Edit> },
    Raw(Vec<[u32; 6]>),
}

#[derive(Arbitrary, Debug, Clone)]
enum MsrSource {
    Domain {
        domain: DomSel,
        edits: Vec<(u8, u32, u32, u64)>,
    },
    Raw(Vec<(u32, u32, u64)>),
}

#[derive(Arbitrary, Debug, Clone)]
enum Call {
    /// The envelope as the bytes at `at` already are.
    RawSysctl {
        caller: CallerSel,
        at: Addr,
    },
    RawDomctl {
        caller: CallerSel,
        at: Addr,
    },
    Sysctl {
        caller: CallerSel,
        at: u16,
        arg: Addr,
        version: Version,
        cmd: SysCmd,
        index: u8,
        nr_a: Count,
        nr_b: Count,
        rsvd: u32,
        h1: Addr,
        h2: Addr,
        tail: [u64; 2],
    },
    Domctl {
        caller: CallerSel,
        at: u16,
        arg: Addr,
        version: Version,
        cmd: DomCmd,
        domain: DomSel,
        pad: [u16; 3],
        nr_leaves: Count,
        nr_msrs: Count,
        leaves: Addr,
        msrs: Addr,
        err: [u32; 4],
        tail: [u64; 2],
    },
    PutLeaves {
        at: u16,
        src: LeafSource,
    },
    PutMsrs {
        at: u16,
        src: MsrSource,
    },
    Start {
        domain: DomSel,
    },
    Create {
        domid: u16,
        kind: u8,
        control: bool,
        best_effort: bool,
    },
}

struct World {
    host: &'static Host,
    host_file: &'static str,
    domids: Vec<u16>,
    domains: DomainTable<SLOTS>,
    mem: GuestMem,
    put_leaves: u32,
    put_msrs: u32,
}

fn kind_of(k: u8) -> DomainKind {
    match k % 3 {
        0 => DomainKind::Pv,
        1 => DomainKind::HvmHap,
        _ => DomainKind::HvmShadow,
    }
}

impl World {
    fn domid(&self, d: DomSel) -> u16 {
        match d {
            DomSel::Known(i) => self.domids[i as usize % self.domids.len()],
            DomSel::Raw(d) => d,
        }
    }

    fn addr(&self, a: Addr) -> u64 {
        match a {
            Addr::Null => 0,
            // Mostly inside the mapping; a little past its end.
            Addr::Off(o) => BASE + o as u64 % (self.mem.bytes.len() as u64 + 32),
            Addr::Raw(r) => r,
        }
    }

    fn caller(&self, c: CallerSel) -> Caller {
        Caller {
            domid: self.domid(c.domain),
            control: c.control,
        }
    }

    fn count(&self, c: Count, put: u32) -> u32 {
        match c {
            Count::Put => put,
            Count::Raw(n) => n,
        }
    }

    fn snapshot(&self) -> Vec<Domain> {
        self.domains.iter().copied().collect()
    }
}

fn serialise(p: &CpuPolicy) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
    let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let n = p
        .write_leaves(&mut leaves)
        .expect("a policy fits the array");
    let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
    let m = p.write_msrs(&mut msrs).expect("the MSRs fit");
    (leaves[..n].to_vec(), msrs[..m].to_vec())
}

fn reg_mut(l: &mut XenCpuidLeaf, reg: u8) -> &mut u32 {
    match reg % 4 {
        0 => &mut l.a,
        1 => &mut l.b,
        2 => &mut l.c,
        _ => &mut l.d,
    }
}

fn apply_edits(leaves: &mut Vec<XenCpuidLeaf>, edits: &[Edit]) {
    for e in edits.iter().take(16) {
        let idx = |i: u8, len: usize| (len > 0).then(|| i as usize % len);
        match *e {
            Edit::And { i, reg, mask } => {
                if let Some(i) = idx(i, leaves.len()) {
                    *reg_mut(&mut leaves[i], reg) &= mask;
                }
            }
            Edit::Or { i, reg, bits } => {
                if let Some(i) = idx(i, leaves.len()) {
                    *reg_mut(&mut leaves[i], reg) |= bits;
                }
            }
            Edit::Set { i, reg, value } => {
                if let Some(i) = idx(i, leaves.len()) {
                    *reg_mut(&mut leaves[i], reg) = value;
                }
            }
            Edit::Remove { i } => {
                if let Some(i) = idx(i, leaves.len()) {
                    leaves.remove(i);
                }
            }
            Edit::Duplicate { i } => {
                if let Some(i) = idx(i, leaves.len()) {
                    let l = leaves[i];
                    leaves.insert(i, l);
                }
            }
            Edit::Truncate { n } => leaves.truncate(n as usize),
            Edit::Retarget { i, leaf, subleaf } => {
                if let Some(i) = idx(i, leaves.len()) {
                    leaves[i].leaf = leaf;
                    leaves[i].subleaf = subleaf;
                }
            }
            Edit::Push {
                leaf,
                subleaf,
                regs,
            } => leaves.push(XenCpuidLeaf {
                leaf,
                subleaf,
                a: regs[0],
                b: regs[1],
                c: regs[2],
                d: regs[3],
            }),
        }
    }
}

fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut b = vec![0u8; T::SIZE];
    v.encode(&mut b);
    b
}

fn system_policy(index: u8) -> SystemPolicy {
    SystemPolicy::ALL[index as usize % SystemPolicy::ALL.len()]
}

/// The policy sysctl's index for a policy (Xen's order: raw, host, PV max, HVM max, PV
/// default, HVM default).
fn policy_for_sysctl_index(host: &Host, index: u32) -> Option<&CpuPolicy> {
    let which = match index {
        0 => SystemPolicy::Raw,
        1 => SystemPolicy::Host,
        2 => SystemPolicy::PvMax,
        3 => SystemPolicy::HvmMax,
        4 => SystemPolicy::PvDefault,
        5 => SystemPolicy::HvmDefault,
        _ => return None,
    };
    Some(host.system().get(which))
}

/// Do the regions `[a, a+la)` and `[b, b+lb)` overlap (in u128 so nothing wraps)?
fn overlap(a: u64, la: usize, b: u64, lb: usize) -> bool {
    let (a, b) = (a as u128, b as u128);
    a < b + lb as u128 && b < a + la as u128
}

/// Read back arrays the dispatcher wrote and check they deserialise to `expected`.
fn check_readback(
    mem: &GuestMem,
    leaves_at: u64,
    nr_leaves: u32,
    msrs_at: u64,
    nr_msrs: u32,
    envelope_at: u64,
    envelope_len: usize,
    expected: &CpuPolicy,
) {
    let (nl, nm) = (nr_leaves as usize, nr_msrs as usize);
    let (ll, lm) = (nl * XenCpuidLeaf::SIZE, nm * XenMsrEntry::SIZE);
    if overlap(leaves_at, ll, msrs_at, lm)
        || overlap(leaves_at, ll, envelope_at, envelope_len)
        || overlap(msrs_at, lm, envelope_at, envelope_len)
    {
        return;
    }
    let mut leaves = Vec::new();
    for i in 0..nl {
        let mut b = [0u8; 24];
        mem.copy_from_guest(leaves_at + (i * 24) as u64, &mut b)
            .expect("the dispatcher wrote there");
        leaves.push(XenCpuidLeaf::decode(&b));
    }
    let mut msrs = Vec::new();
    for i in 0..nm {
        let mut b = [0u8; 16];
        mem.copy_from_guest(msrs_at + (i * 16) as u64, &mut b)
            .expect("the dispatcher wrote there");
        msrs.push(XenMsrEntry::decode(&b));
    }
    let back = CpuPolicy::from_arrays(&leaves, &msrs).expect("a written policy reads back");
    assert_eq!(
        &back, expected,
        "get_cpu_policy arrays do not read back as the policy"
    );
}

/// After a successful set: invariants, and set(get()) is accepted and changes nothing.
fn check_after_set(w: &World, domid: u16, caller: Caller) {
    if std::env::var_os("FUZZ_TRACE").is_some() {
        eprintln!("TRACE set_cpu_policy ok: domain {domid} on {}", w.host_file);
    }
    let d = *w.domains.get(domid).expect("the domain exists");
    let max = w
        .host
        .system()
        .max_for(d.kind())
        .expect("set succeeded, so there is a max");
    if let Err(e) = check_compatible(&max, d.policy()) {
        panic!("after set_cpu_policy, the policy exceeds its max: {e}");
    }
    assert_eq!(
        *d.levelling(),
        levelling_of(w.host, d.kind(), d.role(), d.policy()),
        "levelling not recomputed with the policy"
    );
    // Round trip through the hypercalls on scratch memory.
    let (leaves, msrs) = serialise(d.policy());
    let mut mem = GuestMem {
        base: BASE,
        bytes: vec![0; 4096],
        read_only: 0,
        copies: 0,
    };
    for (i, l) in leaves.iter().enumerate() {
        mem.poke(1024 + i * 24, &encode(l));
    }
    for (i, m) in msrs.iter().enumerate() {
        mem.poke(512 + i * 16, &encode(m));
    }
    let mut op = XenDomctl {
        cmd: DOMCTL_SET_CPU_POLICY,
        interface_version: DOMCTL_INTERFACE_VERSION,
        domain: domid,
        pad: [0; 3],
        u: [0; 16],
    };
    XenDomctlCpuPolicy {
        nr_leaves: leaves.len() as u32,
        nr_msrs: msrs.len() as u32,
        leaves: BASE + 1024,
        msrs: BASE + 512,
        ..Default::default()
    }
    .store_in_union(&mut op.u);
    mem.poke(0, &encode(&op));
    let mut domains = w.domains.clone();
    let r = do_domctl(w.host, &mut domains, caller, &mut mem, BASE);
    if r != 0 {
        let mut env = [0u8; XenDomctl::SIZE];
        mem.copy_from_guest(BASE, &mut env).expect("mapped");
        let out = XenDomctlCpuPolicy::from_union(&XenDomctl::decode(&env).u);
        panic!(
            "setting the policy get_cpu_policy returns is refused: {r}, err leaf {:#x} subleaf \
             {:#x} msr {:#x}; domain {domid} {:?} on {}; compatible: {:?}",
            out.err_leaf,
            out.err_subleaf,
            out.err_msr,
            d.kind(),
            w.host_file,
            check_compatible(&max, d.policy()).map_err(|e| e.to_string())
        );
    }
    let again = domains.get(domid).expect("still there");
    assert_eq!(again.policy(), d.policy(), "set(get()) changed the policy");
}

/// Known findings are reported once and then tolerated, so that a long run can find others;
/// `FUZZ_STRICT=1` checks them again (to reproduce the saved regressions).
fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("FUZZ_STRICT").is_some_and(|v| v == "1"))
}

/// Finding D1: `set_cpu_policy` commits, then the envelope write-back faults and the call
/// returns -EFAULT with the domain changed. True when that is what happened.
fn known_d1(w: &World, r: i64, cmd: u32, arg: u64) -> bool {
    !strict()
        && r == -14
        && cmd == DOMCTL_SET_CPU_POLICY
        && overlap(arg, XenDomctl::SIZE, BASE, w.mem.read_only)
}

/// One domctl at `arg`, with the oracles, which read the envelope the dispatcher will read.
fn domctl_checked(w: &mut World, caller: Caller, arg: u64, before: &[Domain]) {
    let mut env = [0u8; XenDomctl::SIZE];
    let op = w
        .mem
        .copy_from_guest(arg, &mut env)
        .ok()
        .map(|()| XenDomctl::decode(&env));
    let r = do_domctl(w.host, &mut w.domains, caller, &mut w.mem, arg);
    if std::env::var_os("FUZZ_TRACE").is_some() {
        eprintln!("TRACE domctl {:?} -> {r}", op.map(|o| o.cmd));
    }
    assert!(r <= 0, "domctl returned {r}");
    let Some(op) = op else {
        assert_eq!(r, -14, "an unreadable envelope is -EFAULT");
        assert_eq!(
            before,
            &w.snapshot()[..],
            "an unreadable envelope changed the domains"
        );
        return;
    };
    if r < 0 {
        if !known_d1(w, r, op.cmd, arg) {
            assert_eq!(
                before,
                &w.snapshot()[..],
                "domctl {} failed ({r}) but changed the domains",
                op.cmd
            );
        }
        return;
    }
    match op.cmd {
        DOMCTL_SET_CPU_POLICY => check_after_set(w, op.domain, caller),
        DOMCTL_GET_CPU_POLICY => {
            assert_eq!(
                before,
                &w.snapshot()[..],
                "get_cpu_policy changed the domains"
            );
            let p = XenDomctlCpuPolicy::from_union(&op.u);
            if p.leaves != 0 && p.msrs != 0 {
                let mut env = [0u8; XenDomctl::SIZE];
                if w.mem.copy_from_guest(arg, &mut env).is_ok() {
                    let out = XenDomctlCpuPolicy::from_union(&XenDomctl::decode(&env).u);
                    let expected = w.domains.get(op.domain).expect("get succeeded").policy();
                    check_readback(
                        &w.mem,
                        p.leaves,
                        out.nr_leaves,
                        p.msrs,
                        out.nr_msrs,
                        arg,
                        XenDomctl::SIZE,
                        &expected,
                    );
                }
            }
        }
        _ => assert_eq!(
            before,
            &w.snapshot()[..],
            "a read-only domctl changed the domains"
        ),
    }
}

fn run(input: Input) {
    let booted = xen_levelling_fuzz::host(input.host);
    let host = &booted.host;
    let mut domains = DomainTable::<SLOTS>::default();
    let mut domids = Vec::new();
    // dom0, a PV guest, HVM HAP and shadow guests, a running PV guest (best effort).
    for (domid, kind, role, best_effort, start) in [
        (0, DomainKind::Pv, DomainRole::Control, false, true),
        (1, DomainKind::Pv, DomainRole::Guest, false, false),
        (2, DomainKind::HvmHap, DomainRole::Guest, false, false),
        (3, DomainKind::HvmShadow, DomainRole::Guest, false, false),
        (4, DomainKind::Pv, DomainRole::Guest, true, true),
    ] {
        if domains.create(host, domid, kind, role, best_effort).is_ok() {
            domids.push(domid);
            if start {
                let _ = domains.start(domid);
            }
        }
    }
    let size = (input.mem_size as usize).clamp(256, MAX_MEM);
    let mut bytes = vec![0u8; size];
    for (dst, src) in bytes.iter_mut().zip(&input.fill) {
        *dst = *src;
    }
    let mut w = World {
        host,
        host_file: booted.file,
        domids,
        domains,
        mem: GuestMem {
            base: BASE,
            bytes,
            read_only: input.read_only as usize % (size + 1),
            copies: 0,
        },
        put_leaves: 0,
        put_msrs: 0,
    };

    for call in input.calls.into_iter().take(MAX_CALLS) {
        let before = w.snapshot();
        match call {
            Call::PutLeaves { at, src } => {
                let mut leaves = match src {
                    LeafSource::Domain { domain, edits } => {
                        let domid = w.domid(domain);
                        let p = w
                            .domains
                            .get(domid)
                            .map_or(host.system().pv_default, |d| *d.policy());
                        let mut l = serialise(&p).0;
                        apply_edits(&mut l, &edits);
                        l
                    }
                    LeafSource::System { which, edits } => {
                        let mut l = serialise(host.system().get(system_policy(which))).0;
                        apply_edits(&mut l, &edits);
                        l
                    }
                    LeafSource::Raw(raw) => raw
                        .into_iter()
                        .map(|r| XenCpuidLeaf {
                            leaf: r[0],
                            subleaf: r[1],
                            a: r[2],
                            b: r[3],
                            c: r[4],
                            d: r[5],
                        })
                        .collect(),
                };
                leaves.truncate(200);
                for (i, l) in leaves.iter().enumerate() {
                    w.mem.poke(at as usize + i * XenCpuidLeaf::SIZE, &encode(l));
                }
                w.put_leaves = leaves.len() as u32;
            }
            Call::PutMsrs { at, src } => {
                let msrs: Vec<XenMsrEntry> = match src {
                    MsrSource::Domain { domain, edits } => {
                        let domid = w.domid(domain);
                        let p = w
                            .domains
                            .get(domid)
                            .map_or(host.system().pv_default, |d| *d.policy());
                        let mut m = serialise(&p).1;
                        for (i, idx, flags, val) in edits.into_iter().take(4) {
                            if m.is_empty() {
                                break;
                            }
                            let n = m.len();
                            let e = &mut m[i as usize % n];
                            match i / 64 {
                                0 => e.val = val,
                                1 => e.flags = flags,
                                2 => e.idx = idx,
                                _ => {
                                    m.remove(i as usize % n);
                                }
                            }
                        }
                        m
                    }
                    MsrSource::Raw(raw) => raw
                        .into_iter()
                        .take(8)
                        .map(|(idx, flags, val)| XenMsrEntry { idx, flags, val })
                        .collect(),
                };
                for (i, m) in msrs.iter().enumerate() {
                    w.mem.poke(at as usize + i * XenMsrEntry::SIZE, &encode(m));
                }
                w.put_msrs = msrs.len() as u32;
            }
            Call::Start { domain } => {
                let domid = w.domid(domain);
                let _ = w.domains.start(domid);
            }
            Call::Create {
                domid,
                kind,
                control,
                best_effort,
            } => {
                let role = if control {
                    DomainRole::Control
                } else {
                    DomainRole::Guest
                };
                if w.domains
                    .create(host, domid, kind_of(kind), role, best_effort)
                    .is_ok()
                {
                    w.domids.push(domid);
                }
            }
            Call::RawSysctl { caller, at } => {
                let caller = w.caller(caller);
                let arg = w.addr(at);
                let r = do_sysctl(host, caller, &mut w.mem, arg);
                assert!(r <= 0, "sysctl returned {r}");
            }
            Call::RawDomctl { caller, at } => {
                let caller = w.caller(caller);
                let arg = w.addr(at);
                domctl_checked(&mut w, caller, arg, &before);
            }
            Call::Sysctl {
                caller,
                at,
                arg,
                version,
                cmd,
                index,
                nr_a,
                nr_b,
                rsvd,
                h1,
                h2,
                tail,
            } => {
                let caller = w.caller(caller);
                let cmd = match cmd {
                    SysCmd::Caps => SYSCTL_GET_CPU_LEVELLING_CAPS,
                    SysCmd::Featureset => SYSCTL_GET_CPU_FEATURESET,
                    SysCmd::Policy => SYSCTL_GET_CPU_POLICY,
                    SysCmd::Raw(c) => c,
                };
                let mut op = XenSysctl {
                    cmd,
                    interface_version: match version {
                        Version::Right => SYSCTL_INTERFACE_VERSION,
                        Version::Raw(v) => v,
                    },
                    u: [0; 16],
                };
                op.u[14] = tail[0];
                op.u[15] = tail[1];
                let index = index as u32 % 8;
                let (h1, h2) = (w.addr(h1), w.addr(h2));
                let (nr_a, nr_b) = (w.count(nr_a, w.put_leaves), w.count(nr_b, w.put_msrs));
                match cmd {
                    SYSCTL_GET_CPU_FEATURESET => XenSysctlCpuFeatureset {
                        index,
                        nr_features: nr_a,
                        features: h1,
                    }
                    .store_in_union(&mut op.u),
                    _ => XenSysctlCpuPolicy {
                        index,
                        nr_leaves: nr_a,
                        nr_msrs: nr_b,
                        rsvd,
                        leaves: h1,
                        msrs: h2,
                    }
                    .store_in_union(&mut op.u),
                }
                let at = at as usize % w.mem.bytes.len();
                w.mem.poke(at, &encode(&op));
                let arg = match arg {
                    Addr::Null => BASE + at as u64,
                    a => w.addr(a),
                };
                let r = do_sysctl(host, caller, &mut w.mem, arg);
                assert!(r <= 0, "sysctl returned {r}");
                if r == 0 && cmd == SYSCTL_GET_CPU_POLICY && arg == BASE + at as u64 {
                    let mut env = [0u8; XenSysctl::SIZE];
                    w.mem.copy_from_guest(arg, &mut env).expect("written back");
                    let out = XenSysctlCpuPolicy::from_union(&XenSysctl::decode(&env).u);
                    let expected = policy_for_sysctl_index(host, index).expect("valid index");
                    if h1 != 0 && h2 != 0 {
                        check_readback(
                            &w.mem,
                            h1,
                            out.nr_leaves,
                            h2,
                            out.nr_msrs,
                            arg,
                            XenSysctl::SIZE,
                            expected,
                        );
                    }
                }
            }
            Call::Domctl {
                caller,
                at,
                arg,
                version,
                cmd,
                domain,
                pad,
                nr_leaves,
                nr_msrs,
                leaves,
                msrs,
                err,
                tail,
            } => {
                let caller = w.caller(caller);
                let cmd = match cmd {
                    DomCmd::Get => DOMCTL_GET_CPU_POLICY,
                    DomCmd::Set => DOMCTL_SET_CPU_POLICY,
                    DomCmd::Levelling => DOMCTL_GET_LEVELLING,
                    DomCmd::Raw(c) => c,
                };
                let domid = w.domid(domain);
                let mut op = XenDomctl {
                    cmd,
                    interface_version: match version {
                        Version::Right => DOMCTL_INTERFACE_VERSION,
                        Version::Raw(v) => v,
                    },
                    domain: domid,
                    pad,
                    u: [0; 16],
                };
                op.u[14] = tail[0];
                op.u[15] = tail[1];
                let (hl, hm) = (w.addr(leaves), w.addr(msrs));
                let (nl, nm) = (
                    w.count(nr_leaves, w.put_leaves),
                    w.count(nr_msrs, w.put_msrs),
                );
                match cmd {
                    DOMCTL_GET_LEVELLING => XenDomctlLevelling {
                        mechanism: err[0],
                        flags: err[1],
                        nr_features: nl,
                        rsvd: err[2],
                        unenforceable: hl,
                        not_shown: hm,
                    }
                    .store_in_union(&mut op.u),
                    _ => XenDomctlCpuPolicy {
                        nr_leaves: nl,
                        nr_msrs: nm,
                        leaves: hl,
                        msrs: hm,
                        err_leaf: err[0],
                        err_subleaf: err[1],
                        err_msr: err[2],
                        pad: err[3],
                    }
                    .store_in_union(&mut op.u),
                }
                let at = at as usize % w.mem.bytes.len();
                w.mem.poke(at, &encode(&op));
                let arg = match arg {
                    Addr::Null => BASE + at as u64,
                    a => w.addr(a),
                };
                domctl_checked(&mut w, caller, arg, &before);
            }
        }
    }
}

fuzz_target!(|input: Input| run(input));
