//! Trap emulation: every place where a guest's CPUID reaches Xen by a trap and is answered
//! from the guest's policy, through the crate's `levelling::trap` handlers, which decode the
//! instruction (through [`DomainMemory`], a walk of the domain's own page tables that can
//! fail) and emulate it.
//!
//! | trap | handler | crate | entry kind |
//! |---|---|---|---|
//! | #UD from a PV domain | [`pv_invalid_opcode`] | `trap::handle_ud`: `ud2; .ascii "xen"; cpuid`, RIP + 7 | `CpuidEntry::ForcedEmulation` |
//! | #GP from a PV domain | [`pv_general_protection`] | `trap::handle_gp`: CPL > 0, error 0, `0F A2` at RIP, RIP + 2 | `CpuidEntry::Fault` |
//! | SVM CPUID intercept | [`hvm_cpuid_exit`] | `trap::handle_cpuid_exit`, RIP + 2 (no NRIPS under QEMU) | `CpuidEntry::VmExit` |
//!
//! A #GP or #UD the crate says is not a CPUID (or whose instruction cannot be fetched) is
//! the guest's own fault: the caller reflects it (for our ring-3 domains, the end of the
//! domain).

use xen_levelling::levelling::trap::{
    self, CpuidFrame, GuestMemory, MemoryFault, TrapContext, TrapOutcome,
};
use xen_levelling::{CpuPolicy, CpuidRegs};

use crate::idt::TrapFrame;
use crate::paging;
use crate::sched;

/// What a handler did with a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulated {
    /// Emulated: the frame holds the result and RIP is past the instruction.
    Done,
    /// Not an instruction this seam emulates (or not fetchable): the trap is the guest's fault.
    NotEmulated,
}

/// A domain's memory as its ring-3 code sees it: its page tables, user pages only.
#[derive(Clone, Copy, Debug)]
pub struct DomainMemory {
    /// The domain's CR3.
    pub cr3: u64,
}

impl GuestMemory for DomainMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        paging::read_user(self.cr3, address, buf).map_err(|address| MemoryFault { address })
    }
}

/// The registers CPUID emulation reads and writes, from a trap frame.
fn cpuid_frame(frame: &TrapFrame) -> CpuidFrame {
    CpuidFrame {
        rax: frame.gprs.rax,
        rbx: frame.gprs.rbx,
        rcx: frame.gprs.rcx,
        rdx: frame.gprs.rdx,
        rip: frame.rip,
    }
}

/// Runs one of the crate's PV handlers on the running domain; on `Emulated` the frame gets
/// the results and the new RIP.
fn pv_trap(
    frame: &mut TrapFrame,
    handle: impl FnOnce(&TrapContext<'_>, &mut CpuidFrame, &DomainMemory) -> TrapOutcome,
) -> Emulated {
    sched::with_current(|domain| {
        let memory = DomainMemory {
            cr3: domain.space.cr3,
        };
        let mut regs = cpuid_frame(frame);
        let cpl = (frame.cs & 3) as u8;
        match handle(&domain.trap_context(cpl), &mut regs, &memory) {
            TrapOutcome::Emulated => {
                frame.gprs.rax = regs.rax;
                frame.gprs.rbx = regs.rbx;
                frame.gprs.rcx = regs.rcx;
                frame.gprs.rdx = regs.rdx;
                frame.rip = regs.rip;
                domain.count_trapped();
                Emulated::Done
            }
            // Our domains never enable their virtual faulting, have no #GP/#PF handlers of
            // their own, and run nothing but CPUID that traps: the rest is their fault.
            TrapOutcome::InjectGp | TrapOutcome::NotOurs | TrapOutcome::InjectPageFault { .. } => {
                Emulated::NotEmulated
            }
        }
    })
}

/// #UD from a PV domain: the forced-emulation CPUID is answered from the domain's policy and
/// RIP moves past the 7 bytes; any other #UD is declined.
pub fn pv_invalid_opcode(frame: &mut TrapFrame) -> Emulated {
    pv_trap(frame, |ctx, regs, memory| {
        trap::handle_ud(ctx, regs, memory)
    })
}

/// #GP from a PV domain: with CPUID faulting on, a ring-3 CPUID raises #GP(0), which is
/// answered from the domain's policy (RIP + 2); any other #GP is declined.
pub fn pv_general_protection(frame: &mut TrapFrame) -> Emulated {
    let error = frame.error;
    pv_trap(frame, |ctx, regs, memory| {
        trap::handle_gp(ctx, regs, memory, error)
    })
}

/// What the HVM CPUID intercept does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmCpuid {
    /// Resume the guest at `rip` with `regs` in EAX, EBX, ECX, EDX.
    Emulated {
        /// CPUID's results.
        regs: CpuidRegs,
        /// The next RIP.
        rip: u64,
    },
    /// Inject #GP(0) without moving RIP (the guest's own CPUID faulting).
    InjectGp,
}

/// The HVM CPUID intercept at `rip`, with EAX = `leaf` and ECX = `subleaf`.
pub fn hvm_cpuid_exit(ctx: &TrapContext<'_>, leaf: u32, subleaf: u32, rip: u64) -> HvmCpuid {
    let mut regs = CpuidFrame {
        rax: u64::from(leaf),
        rcx: u64::from(subleaf),
        rip,
        ..CpuidFrame::default()
    };
    match trap::handle_cpuid_exit(ctx, &mut regs) {
        TrapOutcome::Emulated => HvmCpuid::Emulated {
            regs: CpuidRegs::new(
                regs.rax as u32,
                regs.rbx as u32,
                regs.rcx as u32,
                regs.rdx as u32,
            ),
            rip: regs.rip,
        },
        _ => HvmCpuid::InjectGp,
    }
}

/// A trap context for an HVM vCPU with `policy` (no virtual faulting: our guest never turns
/// it on).
pub fn hvm_context<'a>(
    policy: &'a CpuPolicy,
    guest: &'a xen_levelling::policy::guest::GuestContext,
    cpl: u8,
) -> TrapContext<'a> {
    TrapContext {
        policy,
        guest,
        cpl,
        virtual_faulting: false,
    }
}
