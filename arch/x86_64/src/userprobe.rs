//! CPUID at CPL 3, from the kernel, for the crate's probe: `Hardware::cpuid_user`, with which
//! the probe verifies CPUID faulting by its effect (CPL 3 CPUID must fault with faulting on
//! and return with it off) instead of trusting the enumeration.
//!
//! [`cpuid_user`] drops to ring 3 in an address space of its own (the user pages every domain
//! has, nothing else), runs `xl_user_cpuid_once` there (`cpuid; ud2`), and comes back through
//! the trap the program ends with: #UD at the `ud2` (CPUID returned, registers in the frame)
//! or #GP(0) at the CPUID itself (it faulted). `traps::trap_dispatch` hands every ring-3 trap
//! to [`trap`] first while a probe runs. The kernel's stack and callee-saved registers are
//! kept across the excursion the way `sched`'s `xl_enter_user` keeps them.
//!
//! The probe's state (`ACTIVE`, `SPACE`, `RESULT`, `PROBE_RESUME_RSP`) is one set of
//! globals, not per CPU: [`cpuid_user`] runs only on the boot CPU before any AP starts (the
//! crate's boot probe, `xen::Host::probe`, before `smp::start_aps`), and refuses otherwise.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use xen_levelling::CpuidRegs;
use xen_levelling::hardware::UserCpuid;

use crate::gdt::{USER_CS, USER_DS};
use crate::idt::{TrapFrame, vector};
use crate::paging::{self, AddressSpace, USER_STACK_TOP};
use crate::percpu;
use crate::smp;
use crate::sync::KernelCell;

/// A probe is running: ring-3 traps are its.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Its address space, made on first use.
static SPACE: KernelCell<Option<AddressSpace>> = KernelCell::new(None);
/// What the last probe saw.
static RESULT: KernelCell<UserCpuid> = KernelCell::new(UserCpuid::Unavailable);
/// The kernel stack pointer `xl_probe_enter` saved.
static PROBE_RESUME_RSP: KernelCell<u64> = KernelCell::new(0);

/// RFLAGS in ring 3: reserved bit 1 only (IF = 0, IOPL = 0).
const USER_RFLAGS: u64 = 0x2;

global_asm!(
    r#"
    .pushsection .user_text, "ax"
    .balign 16
    .global xl_user_cpuid_once
xl_user_cpuid_once:
    cpuid
    ud2
    .popsection

    .pushsection .text.xl_userprobe, "ax"
    # xl_probe_enter(rip, rsp, leaf, subleaf): save the kernel's callee-saved registers and
    # RSP, then iretq to ring 3 with EAX = leaf, ECX = subleaf.
    .global xl_probe_enter
xl_probe_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov qword ptr [rip + {resume_rsp}], rsp
    push {user_ss}
    push rsi
    push {rflags}
    push {user_cs}
    push rdi
    mov eax, edx
    xor edx, edx
    xor ebx, ebx
    iretq

    # xl_probe_resume(): back on the saved stack, returning from xl_probe_enter.
    .global xl_probe_resume
xl_probe_resume:
    mov rsp, qword ptr [rip + {resume_rsp}]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .popsection
    "#,
    resume_rsp = sym PROBE_RESUME_RSP,
    user_ss = const USER_DS,
    user_cs = const USER_CS,
    rflags = const USER_RFLAGS,
);

unsafe extern "C" {
    /// `cpuid; ud2`, in `.user_text`.
    safe fn xl_user_cpuid_once();
    /// Enters ring 3 at `rip` with `rsp`, EAX = `leaf`, ECX = `subleaf`; returns when
    /// [`xl_probe_resume`] runs.
    fn xl_probe_enter(rip: u64, rsp: u64, leaf: u32, subleaf: u32);
    /// Returns from the pending `xl_probe_enter`.
    fn xl_probe_resume() -> !;
}

/// CPUID `leaf`/`subleaf` executed at CPL 3.
///
/// Returns [`UserCpuid::Unavailable`] (the crate's probe then reports faulting as
/// unverifiable rather than wrong) when called on an AP or once `smp::start_aps` has begun:
/// the probe's statics and the ring-3 trap routing ([`trap`] consults the global `ACTIVE`
/// from any CPU) are shared by all CPUs, so two probes at once, or an AP's own ring-3 trap
/// during a probe, would corrupt the saved kernel stack pointer and the result. The boot
/// probe runs before the APs start, so it is never refused.
pub fn cpuid_user(leaf: u32, subleaf: u32) -> UserCpuid {
    if percpu::id() != 0 || smp::aps_started() {
        return UserCpuid::Unavailable;
    }
    // SAFETY: the boot CPU in its main flow with no AP started (checked above: only the boot
    // CPU starts APs, so none can start before this returns), no domain runs; the probe's
    // statics are used by this function and by `trap`, which runs only while this function
    // is suspended.
    let space = unsafe { &mut *SPACE.get() }.get_or_insert_with(AddressSpace::new);
    let entry = paging::user_code_address(xl_user_cpuid_once as *const () as u64);
    // SAFETY: reading CR3 has no side effect.
    let cr3 = unsafe { x86::controlregs::cr3() };
    paging::switch_address_space(space.cr3);
    ACTIVE.store(true, Ordering::Relaxed);
    // SAFETY: the entry is the probe program, mapped user-executable in the loaded address
    // space with its stack; it can only end in a trap, which `trap` turns into a return here.
    unsafe { xl_probe_enter(entry, USER_STACK_TOP, leaf, subleaf) };
    ACTIVE.store(false, Ordering::Relaxed);
    paging::switch_address_space(cr3);
    // SAFETY: the probe is over; `trap` wrote the result before resuming here.
    unsafe { *RESULT.get() }
}

/// A ring-3 trap: if a probe runs, it is the probe's end. Records what the CPUID did and
/// returns to the probe's caller; returns `false` (not ours) otherwise.
pub fn trap(frame: &TrapFrame) -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    let cpuid = paging::user_code_address(xl_user_cpuid_once as *const () as u64);
    let result = match frame.vector {
        vector::GP if frame.rip == cpuid && frame.error == 0 => UserCpuid::Faulted,
        vector::UD if frame.rip == cpuid + 2 => UserCpuid::Returned(CpuidRegs::new(
            frame.gprs.rax as u32,
            frame.gprs.rbx as u32,
            frame.gprs.rcx as u32,
            frame.gprs.rdx as u32,
        )),
        // Anything else cannot say what CPUID does at CPL 3.
        _ => UserCpuid::Unavailable,
    };
    // SAFETY: `cpuid_user` is suspended in `xl_probe_enter` and reads the result only after
    // the resume; its saved stack is intact (traps from ring 3 run on the TSS stack).
    unsafe {
        *RESULT.get() = result;
        xl_probe_resume()
    }
}
