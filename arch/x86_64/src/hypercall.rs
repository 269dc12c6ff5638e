//! The hypercall ABI the guest programs use, and its PV entry (`int 0x82`).
//!
//! RAX = number; arguments in RDI, RSI, RDX, R10, R8, R9 (the Linux syscall order, so the
//! same registers serve `syscall` should the gate move there); the result comes back in RAX;
//! every other register is preserved. HVM guests make the same calls with VMMCALL
//! (`hvm.rs`), where only exit, yield, report, cpuid_result, nop and bench mean anything.
//!
//! | nr | call | arguments | returns |
//! |---|---|---|---|
//! | 0 | exit | code | (does not return) |
//! | 1 | yield | | 0 |
//! | 2 | report | check ([`Report`]), ok (0/1), two detail values | 0 |
//! | 3 | cpuid_result | leaf, subleaf, EAX, EBX, ECX, EDX as the guest saw them | 0 |
//! | **35** | **sysctl** (Xen's `__HYPERVISOR_sysctl`) | address of a `xen_sysctl` | 0 or -errno |
//! | **36** | **domctl** (Xen's `__HYPERVISOR_domctl`) | address of a `xen_domctl` | 0 or -errno |
//! | 64 | domain_create | domid, kind (0 PV, 1 HVM on HAP, 2 HVM on shadow), flags ([`CREATE_BEST_EFFORT`]) | 0 or -errno |
//! | 65 | domain_start | domid, address and length of its boot data (at most 4096 bytes, copied to its data page) | 0 or -errno |
//! | 66 | check | address of a NUL-terminated name, ok (0/1), got, expected, tag | 0 |
//! | 67 | nop | | 0 (the bare trap round trip the benchmarks compare with) |
//! | 68 | bench | figure id, value | 0 |
//!
//! Numbers 0-3 and 64-68 are this kernel's own: Xen has no hypercalls for them (its toolstack
//! creates and unpauses domains with domctls this kernel does not implement, and it has no
//! test reporting). 64-68 sit above Xen's numbers (0-41, and the arch-specific 48-55). Only
//! sysctl and domctl carry Xen's numbers and Xen's structures, and they go straight to the
//! crate's dispatcher ([`do_sysctl`], [`do_domctl`]).
//!
//! **sysctl, domctl, domain_create and domain_start** exist once a scenario has installed the
//! toolstack ABI ([`install_abi`]; `-ENOSYS` before). Only the control domain (dom0) may call
//! them: anyone else gets `-EPERM` (for sysctl and domctl after the interface version check,
//! as in Xen). Every guest address is copied through the caller's own page tables
//! ([`UserCopy`]): a byte that is not mapped user-accessible (and writable, for what the
//! hypercall writes) is a copy fault, `-EFAULT`; a kernel address is never followed.
//!
//! domain_create errors: `-EINVAL` bad kind or flags, `-EEXIST` the id is taken, `-ENOSPC` no
//! free slot, `-EOPNOTSUPP` no policy for the kind on this host (HAP without nested paging).
//! domain_start errors: `-ESRCH` no such domain, `-EEXIST` already started, `-EINVAL` not a PV
//! domain (this kernel runs only PV domains for the toolstack) or boot data over 4096 bytes,
//! `-EFAULT` the boot data faulted, and
//! **`-EOPNOTSUPP` refused, fail closed**: the hardware cannot hide every feature its policy
//! lacks and it was created without [`CREATE_BEST_EFFORT`]; the toolstack reads which
//! features with the `DOMCTL_GET_LEVELLING` extension. On any error nothing changed. A
//! started domain runs the scenario's guest program with its boot data as its data page.
//!
//! check prints `check <scenario>/<domain>/<name>[/<leaf>.<subleaf>.<reg>]: ok` or `FAIL got
//! G expected E`: the guest judged `ok` itself. A non-zero tag names a CPUID register: leaf in
//! bits 63:32, subleaf in 31:8, register (0 EAX ... 3 EDX) in 7:0.

use xen_levelling::CpuidRegs;
use xen_levelling::abi::dispatch::{Caller, CopyFault, GuestCopy, do_domctl, do_sysctl, errno};
use xen_levelling::abi::domain::{Domain as DomainRecord, DomainError, Domains};
use xen_levelling::levelling::DomainRole;
use xen_levelling::policy::system::DomainKind;

use crate::checks;
use crate::domain::{DomId, Domain};
use crate::idt::{Gprs, TrapFrame};
use crate::sync::KernelCell;
use crate::{paging, sched, xen};

// The numbers and flags, one list shared with the ring-3 programs.
pub use xl_user::{
    CREATE_BEST_EFFORT, HC_BENCH, HC_CHECK, HC_CPUID_RESULT, HC_DOMAIN_CREATE, HC_DOMAIN_START,
    HC_DOMCTL, HC_EXIT, HC_NOP, HC_REPORT, HC_SYSCTL, HC_YIELD, KIND_HVM_HAP, KIND_HVM_SHADOW,
    KIND_PV,
};

/// The most boot data [`HC_DOMAIN_START`] copies: one data page.
pub const MAX_BOOT_DATA: u64 = xl_user::DATA_PAGE_SIZE;

/// Returned in RAX for an unknown hypercall (`-ENOSYS`).
pub const ENOSYS: u64 = (-38i64) as u64;

/// `-errno` as the 64-bit RAX value.
const fn neg(errno: i32) -> u64 {
    (-(errno as i64)) as u64
}

/// `ENOSPC`: no space (Xen's errno.h).
const ENOSPC: i32 = 28;

/// The checks a guest reports with [`HC_REPORT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Report {
    /// The value the walk program pushed at its start was still on its stack at the end
    /// (detail: found, written): its stack, in its own address space, survived every switch.
    StackTag = 1,
    /// The isolation probe read a kernel page from ring 3 (it must not get there).
    KernelReadSucceeded = 2,
}

impl Report {
    /// The report `id` names, if any.
    pub fn from_id(id: u64) -> Option<Report> {
        match id {
            1 => Some(Report::StackTag),
            2 => Some(Report::KernelReadSucceeded),
            _ => None,
        }
    }

    /// The name in check lines.
    pub fn name(self) -> &'static str {
        match self {
            Report::StackTag => "stack-tag",
            Report::KernelReadSucceeded => "isolation-probe",
        }
    }
}

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// [`HC_EXIT`].
    Exit {
        /// The guest's exit code.
        code: u64,
    },
    /// [`HC_YIELD`].
    Yield,
    /// [`HC_REPORT`].
    Report {
        /// Which check (unknown ids are reported as such).
        id: u64,
        /// The guest's verdict.
        ok: bool,
        /// Values for the message.
        detail: [u64; 2],
    },
    /// [`HC_CPUID_RESULT`].
    CpuidResult {
        /// EAX input.
        leaf: u32,
        /// ECX input.
        subleaf: u32,
        /// What CPUID returned.
        regs: CpuidRegs,
    },
    /// [`HC_SYSCTL`].
    Sysctl {
        /// Guest address of the `xen_sysctl`.
        arg: u64,
    },
    /// [`HC_DOMCTL`].
    Domctl {
        /// Guest address of the `xen_domctl`.
        arg: u64,
    },
    /// [`HC_DOMAIN_CREATE`].
    DomainCreate {
        /// The new domain's id.
        domid: u64,
        /// [`KIND_PV`], [`KIND_HVM_HAP`] or [`KIND_HVM_SHADOW`].
        kind: u64,
        /// [`CREATE_BEST_EFFORT`].
        flags: u64,
    },
    /// [`HC_DOMAIN_START`].
    DomainStart {
        /// The domain.
        domid: u64,
        /// Guest address of its boot data.
        data: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// [`HC_CHECK`].
    Check {
        /// Guest address of the NUL-terminated name.
        name: u64,
        /// The guest's verdict.
        ok: bool,
        /// What it got.
        got: u64,
        /// What it expected.
        expected: u64,
        /// 0, or a CPUID register (leaf << 32 | subleaf << 8 | register).
        tag: u64,
    },
    /// [`HC_NOP`].
    Nop,
    /// [`HC_BENCH`].
    Bench {
        /// Which figure.
        id: u64,
        /// Its value.
        value: u64,
    },
    /// Any other number.
    Unknown {
        /// The number.
        nr: u64,
    },
}

impl Hypercall {
    /// Decodes the call in `gprs` (RAX = number, then RDI, RSI, RDX, R10, R8, R9).
    pub fn decode(gprs: &Gprs) -> Hypercall {
        match gprs.rax {
            HC_EXIT => Hypercall::Exit { code: gprs.rdi },
            HC_YIELD => Hypercall::Yield,
            HC_REPORT => Hypercall::Report {
                id: gprs.rdi,
                ok: gprs.rsi != 0,
                detail: [gprs.rdx, gprs.r10],
            },
            HC_CPUID_RESULT => Hypercall::CpuidResult {
                leaf: gprs.rdi as u32,
                subleaf: gprs.rsi as u32,
                regs: CpuidRegs::new(
                    gprs.rdx as u32,
                    gprs.r10 as u32,
                    gprs.r8 as u32,
                    gprs.r9 as u32,
                ),
            },
            HC_SYSCTL => Hypercall::Sysctl { arg: gprs.rdi },
            HC_DOMCTL => Hypercall::Domctl { arg: gprs.rdi },
            HC_DOMAIN_CREATE => Hypercall::DomainCreate {
                domid: gprs.rdi,
                kind: gprs.rsi,
                flags: gprs.rdx,
            },
            HC_DOMAIN_START => Hypercall::DomainStart {
                domid: gprs.rdi,
                data: gprs.rsi,
                len: gprs.rdx,
            },
            HC_CHECK => Hypercall::Check {
                name: gprs.rdi,
                ok: gprs.rsi != 0,
                got: gprs.rdx,
                expected: gprs.r10,
                tag: gprs.r8,
            },
            HC_NOP => Hypercall::Nop,
            HC_BENCH => Hypercall::Bench {
                id: gprs.rdi,
                value: gprs.rsi,
            },
            nr => Hypercall::Unknown { nr },
        }
    }
}

/// `int 0x82` from a PV domain.
pub fn from_pv(frame: &mut TrapFrame) {
    // The bare round trip the benchmarks compare with: nothing but the decode.
    if frame.gprs.rax == HC_NOP {
        frame.gprs.rax = 0;
        return;
    }
    let call = Hypercall::decode(&frame.gprs);
    frame.gprs.rax = 0;
    match call {
        Hypercall::Exit { code } => sched::exit_current(frame, code),
        Hypercall::Yield => sched::yield_current(frame),
        Hypercall::Report { id, ok, detail } => sched::with_current(|d| d.report(id, ok, detail)),
        Hypercall::CpuidResult {
            leaf,
            subleaf,
            regs,
        } => sched::with_current(|d| d.cpuid_result(leaf, subleaf, regs)),
        Hypercall::Sysctl { .. }
        | Hypercall::Domctl { .. }
        | Hypercall::DomainCreate { .. }
        | Hypercall::DomainStart { .. } => frame.gprs.rax = toolstack_call(call),
        Hypercall::Check {
            name,
            ok,
            got,
            expected,
            tag,
        } => guest_check(name, ok, got, expected, tag),
        Hypercall::Nop => {}
        Hypercall::Bench { id, value } => record_bench(id, value),
        Hypercall::Unknown { .. } => frame.gprs.rax = ENOSYS,
    }
}

/// The calling domain's memory, through its own page tables: only user pages, and for writes
/// only writable ones (Xen's `copy_{from,to}_guest`). Kernel addresses are never mapped
/// user-accessible, so they fault like unmapped ones.
#[derive(Clone, Copy, Debug)]
pub struct UserCopy {
    /// The caller's CR3.
    pub cr3: u64,
}

impl GuestCopy for UserCopy {
    fn copy_from_guest(&self, address: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        paging::read_user(self.cr3, address, buf).map_err(|_| CopyFault)
    }

    fn copy_to_guest(&mut self, address: u64, data: &[u8]) -> Result<(), CopyFault> {
        paging::write_user(self.cr3, address, data).map_err(|_| CopyFault)
    }
}

/// What a scenario that installed the toolstack ABI ([`install_abi`]) gave it. The domains
/// the hypercalls act on are the scheduler's (`sched::with_registry`), the host the crate's
/// booted one (`xen::with_core_host`).
struct AbiState {
    /// The scenario, for check names.
    scenario: &'static str,
    /// What a domain the toolstack starts runs.
    guest_program: extern "C" fn(),
    /// Checks reported by domains other than the control domain.
    guest_checks: u32,
}

static ABI: KernelCell<Option<AbiState>> = KernelCell::new(None);

/// The ABI state, if installed.
///
/// # Safety
///
/// One reference at a time: the main flow uses it only while no domain runs, the hypercall
/// handlers one at a time, dropping it before they return.
unsafe fn abi() -> Option<&'static mut AbiState> {
    // SAFETY: exclusive by the caller's contract; the toolstack scenarios that install the
    // ABI run on the boot CPU alone, interrupts off.
    unsafe { (*ABI.get()).as_mut() }
}

/// Installs the toolstack ABI for a scenario: the domains it acts on are the scheduler's
/// (those the scenario adds, those the toolstack creates); a domain the toolstack starts runs
/// `guest_program`.
pub fn install_abi(scenario: &'static str, guest_program: extern "C" fn()) {
    // SAFETY: main flow, no domain runs.
    unsafe {
        *ABI.get() = Some(AbiState {
            scenario,
            guest_program,
            guest_checks: 0,
        });
    }
}

/// What the toolstack left: the checks guests reported. Removes the ABI.
pub fn uninstall_abi() -> u32 {
    // SAFETY: main flow, no domain runs.
    let state = unsafe { (*ABI.get()).take() };
    state.map_or(0, |s| s.guest_checks)
}

/// sysctl, domctl, domain_create, domain_start: the caller is the running domain.
///
/// Out of line: its buffers (a policy's leaves, a page of boot data) must not enlarge the
/// stack frame of the trap path every trap takes.
#[inline(never)]
fn toolstack_call(call: Hypercall) -> u64 {
    let (cr3, domid, control) = sched::with_current(|d| (d.space.cr3, d.domid(), d.is_control()));
    // SAFETY: trap context, the only reference; dropped before returning.
    let Some(state) = (unsafe { abi() }) else {
        return ENOSYS;
    };
    let caller = Caller { domid, control };
    let mut mem = UserCopy { cr3 };
    match call {
        Hypercall::Sysctl { arg } => {
            xen::with_core_host(|host| do_sysctl(host, caller, &mut mem, arg)) as u64
        }
        Hypercall::Domctl { arg } => xen::with_core_host(|host| {
            sched::with_registry(|domains| do_domctl(host, domains, caller, &mut mem, arg))
        }) as u64,
        Hypercall::DomainCreate { domid, kind, flags } => {
            match create(state, caller, domid, kind, flags) {
                Ok(()) => 0,
                Err(e) => neg(e),
            }
        }
        Hypercall::DomainStart { domid, data, len } => {
            match start(caller, &mem, domid, data, len) {
                Ok(()) => 0,
                Err(e) => neg(e),
            }
        }
        _ => ENOSYS,
    }
}

/// `domain_create`: the crate's record with the default policy of its kind, in a scheduler
/// slot, not started.
fn create(
    state: &mut AbiState,
    caller: Caller,
    domid: u64,
    kind: u64,
    flags: u64,
) -> Result<(), i32> {
    if !caller.control {
        return Err(errno::EPERM);
    }
    let domid = u16::try_from(domid).map_err(|_| errno::EINVAL)?;
    let kind = match kind {
        KIND_PV => DomainKind::Pv,
        KIND_HVM_HAP => DomainKind::HvmHap,
        KIND_HVM_SHADOW => DomainKind::HvmShadow,
        _ => return Err(errno::EINVAL),
    };
    if flags & !CREATE_BEST_EFFORT != 0 {
        return Err(errno::EINVAL);
    }
    let best_effort = flags & CREATE_BEST_EFFORT != 0;
    // Checked before the domain takes frames for its address space.
    sched::with_registry(|domains| {
        if domains.domain(domid).is_some() {
            Err(DomainError::Exists(domid))
        } else if !domains.has_room() {
            Err(DomainError::TableFull)
        } else {
            Ok(())
        }
    })
    .map_err(create_errno)?;
    // The mechanism as it stands now: a levelling MSR that faulted since makes new levelled
    // guests fail closed.
    let record = xen::with_core_host(|host| {
        DomainRecord::create(host, domid, kind, DomainRole::Guest, best_effort)
    })
    .map_err(create_errno)?;
    let domain = Domain::created(
        state.scenario,
        domain_name(domid),
        record,
        state.guest_program,
        xen::host(),
    );
    sched::add_created(domain).ok_or(ENOSPC)?;
    Ok(())
}

fn create_errno(e: DomainError) -> i32 {
    match e {
        DomainError::Exists(_) => errno::EEXIST,
        DomainError::TableFull => ENOSPC,
        DomainError::NoPolicy | DomainError::Unenforceable(_) => errno::EOPNOTSUPP,
        DomainError::NoSuchDomain(_) => errno::ESRCH,
    }
}

/// `domain_start`: fail closed, then run it with its boot data.
fn start(caller: Caller, mem: &UserCopy, domid: u64, data: u64, len: u64) -> Result<(), i32> {
    if !caller.control {
        return Err(errno::EPERM);
    }
    let domid = u16::try_from(domid).map_err(|_| errno::ESRCH)?;
    let (running, kind) = sched::with_registry(|domains| {
        domains
            .domain(domid)
            .map(|d| (d.running(), d.kind()))
            .ok_or(errno::ESRCH)
    })?;
    if running {
        return Err(errno::EEXIST);
    }
    if kind != DomainKind::Pv || len > MAX_BOOT_DATA {
        return Err(errno::EINVAL);
    }
    let mut boot = [0u8; MAX_BOOT_DATA as usize];
    let boot = &mut boot[..len as usize];
    mem.copy_from_guest(data, boot).map_err(|_| errno::EFAULT)?;
    sched::with_registry(|domains| {
        let domain = domains.find_mut(domid).ok_or(errno::ESRCH)?;
        domain.start_by_toolstack().map_err(|_| errno::EOPNOTSUPP)?;
        // SAFETY: the data frame was allocated for this domain alone, is identity mapped and
        // one page long; `boot` is at most a page; the domain has not run yet.
        unsafe {
            core::ptr::copy_nonoverlapping(
                boot.as_ptr(),
                domain.space.data_frame as *mut u8,
                boot.len(),
            );
        }
        Ok(())
    })
}

/// A name for check lines.
fn domain_name(domid: DomId) -> &'static str {
    const NAMES: [&str; 8] = [
        "dom0", "domU1", "domU2", "domU3", "domU4", "domU5", "domU6", "domU7",
    ];
    NAMES.get(usize::from(domid)).copied().unwrap_or("domU")
}

/// The longest check name read from a guest.
const MAX_NAME: usize = 64;

/// `check`: prints the guest's verdict under its name (out of line, as [`toolstack_call`]).
#[inline(never)]
fn guest_check(name: u64, ok: bool, got: u64, expected: u64, tag: u64) {
    let (cr3, domain, control) = sched::with_current(|d| (d.space.cr3, d.name(), d.is_control()));
    let mut buf = [0u8; MAX_NAME];
    let mut len = 0;
    while len < MAX_NAME {
        let mut byte = [0u8];
        if paging::read_user(cr3, name.wrapping_add(len as u64), &mut byte).is_err() || byte[0] == 0
        {
            break;
        }
        buf[len] = byte[0];
        len += 1;
    }
    let name = core::str::from_utf8(&buf[..len]).unwrap_or("bad-name");
    // SAFETY: trap context, the only reference; dropped before returning.
    let scenario = match unsafe { abi() } {
        Some(state) => {
            if !control {
                state.guest_checks += 1;
            }
            state.scenario
        }
        None => "guest",
    };
    let reg = ["eax", "ebx", "ecx", "edx"];
    let suffix = Tag(tag, reg.get((tag & 0xff) as usize).copied().unwrap_or("?"));
    checks::check(
        format_args!("{scenario}/{domain}/{name}{suffix}"),
        ok,
        format_args!("got {got:#x} expected {expected:#x}"),
    );
}

/// A check tag as `/leaf.subleaf.reg`, or nothing.
struct Tag(u64, &'static str);

impl core::fmt::Display for Tag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == 0 {
            return Ok(());
        }
        write!(
            f,
            "/{:08x}.{:x}.{}",
            self.0 >> 32,
            (self.0 >> 8) & 0xff_ffff,
            self.1
        )
    }
}

/// How many benchmark figures one boot keeps.
const MAX_BENCH: usize = 64;

/// The figures guests reported with [`HC_BENCH`], in order.
struct BenchLog {
    len: usize,
    figures: [(u64, u64); MAX_BENCH],
}

static BENCH: KernelCell<BenchLog> = KernelCell::new(BenchLog {
    len: 0,
    figures: [(0, 0); MAX_BENCH],
});

/// `bench(id, value)`, from a PV domain or the HVM guest.
pub fn record_bench(id: u64, value: u64) {
    // SAFETY: one reference at a time (trap or exit handler), dropped before returning.
    let log = unsafe { &mut *BENCH.get() };
    if log.len < MAX_BENCH {
        log.figures[log.len] = (id, value);
        log.len += 1;
    }
}

/// The figures reported so far, which are then forgotten; `out` gets as many as fit.
pub fn take_bench(out: &mut [(u64, u64)]) -> usize {
    // SAFETY: main flow, no domain runs.
    let log = unsafe { &mut *BENCH.get() };
    let n = log.len.min(out.len());
    out[..n].copy_from_slice(&log.figures[..n]);
    log.len = 0;
    n
}
