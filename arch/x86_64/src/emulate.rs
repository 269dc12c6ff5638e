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

use xen_levelling::CpuidRegs;
use xen_levelling::levelling::trap::{
    self, CpuidFrame, CpuidRegisters, GuestMemory, MemoryFault, TrapContext, TrapOutcome,
};
use xen_levelling::policy::guest::{CpuidOverlay, CpuidTable};

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

    #[inline]
    fn read_word(&self, address: u64, len: usize) -> Result<u64, MemoryFault> {
        paging::read_user_word(self.cr3, address, len).map_err(|address| MemoryFault { address })
    }
}

/// The crate's handlers read and write the trap frame itself: nothing is copied per trap.
impl CpuidRegisters for TrapFrame {
    #[inline]
    fn rax(&self) -> u64 {
        self.gprs.rax
    }
    #[inline]
    fn rcx(&self) -> u64 {
        self.gprs.rcx
    }
    #[inline]
    fn rip(&self) -> u64 {
        self.rip
    }
    #[inline]
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    #[inline]
    fn set_cpuid(&mut self, r: CpuidRegs) {
        self.gprs.rax = u64::from(r.a);
        self.gprs.rbx = u64::from(r.b);
        self.gprs.rcx = u64::from(r.c);
        self.gprs.rdx = u64::from(r.d);
    }
}

/// Runs one of the crate's PV handlers on the running domain; on `Emulated` the frame holds
/// the results and the new RIP.
fn pv_trap(
    frame: &mut TrapFrame,
    handle: impl FnOnce(&TrapContext<'_>, &mut TrapFrame, &DomainMemory) -> TrapOutcome,
) -> Emulated {
    let at = &raw const *frame as u64;
    sched::with_current_at(at, |domain| {
        let memory = DomainMemory {
            cr3: domain.space.cr3,
        };
        let cpl = (frame.cs & 3) as u8;
        match handle(&domain.trap_context(cpl), frame, &memory) {
            TrapOutcome::Emulated => {
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

/// A trap context for an HVM vCPU whose domain's CPUID answers are `cpuid` and its own
/// `overlay` (no virtual faulting: our guest never turns it on).
pub fn hvm_context<'a>(
    cpuid: &'a CpuidTable,
    overlay: &'a CpuidOverlay,
    guest: &'a xen_levelling::policy::guest::GuestContext,
    cpl: u8,
) -> TrapContext<'a> {
    TrapContext {
        cpuid,
        overlay,
        guest,
        cpl,
        virtual_faulting: false,
    }
}
