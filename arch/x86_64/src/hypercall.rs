//! The hypercall ABI the guest programs use, and its PV entry (`int 0x82`).
//!
//! RAX = number; arguments in RDI, RSI, RDX, R10, R8, R9 (the Linux syscall order, so the
//! same registers serve `syscall` should the gate move there); the result comes back in RAX;
//! every other register is preserved. HVM guests make the same calls with VMMCALL
//! (`hvm.rs`).
//!
//! | nr | call | arguments |
//! |---|---|---|
//! | 0 | exit | code |
//! | 1 | yield | |
//! | 2 | report | check ([`Report`]), ok (0/1), two detail values |
//! | 3 | cpuid_result | leaf, subleaf, EAX, EBX, ECX, EDX as the guest saw them |

use xen_levelling::CpuidRegs;

use crate::idt::{Gprs, TrapFrame};
use crate::sched;

/// `exit(code)`: the domain is done.
pub const HC_EXIT: u64 = 0;
/// `yield()`: let the next domain run.
pub const HC_YIELD: u64 = 1;
/// `report(check, ok, detail0, detail1)`: a check the guest judged itself.
pub const HC_REPORT: u64 = 2;
/// `cpuid_result(leaf, subleaf, a, b, c, d)`: what a CPUID returned to the guest.
pub const HC_CPUID_RESULT: u64 = 3;

/// Returned in RAX for an unknown hypercall (`-ENOSYS`).
pub const ENOSYS: u64 = (-38i64) as u64;

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
            nr => Hypercall::Unknown { nr },
        }
    }
}

/// `int 0x82` from a PV domain.
pub fn from_pv(frame: &mut TrapFrame) {
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
        Hypercall::Unknown { .. } => frame.gprs.rax = ENOSYS,
    }
}
