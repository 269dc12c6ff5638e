//! The trap-emulation seam: every place where a guest's CPUID reaches Xen by a trap, and is
//! answered from the guest's policy. The crate's trap decoder and emulation (being written in
//! `xen_levelling::levelling`) replace the bodies here; the callers stay.
//!
//! | trap | handler | entry kind | today |
//! |---|---|---|---|
//! | #UD from a PV domain | [`pv_invalid_opcode`] | `CpuidEntry::ForcedEmulation` | recognises the 7-byte prefix itself ([`forced_cpuid_at`]) |
//! | #GP from a PV domain | [`pv_general_protection`] | `CpuidEntry::Fault` | declines (no faulting under QEMU; LEVELLING) |
//! | SVM CPUID intercept | [`hvm_cpuid`] | `CpuidEntry::VmExit` | `guest_cpuid` |

use xen_levelling::CpuPolicy;
use xen_levelling::CpuidRegs;
use xen_levelling::policy::guest::{CpuidEntry, GuestContext, guest_cpuid};

use crate::idt::TrapFrame;
use crate::paging;
use crate::sched;

/// Xen's forced-emulation CPUID: `ud2; .ascii "xen"; cpuid` (XEN_EMULATE_PREFIX + 0F A2).
pub const FORCED_CPUID: [u8; 7] = [0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2];

/// What a handler did with a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulated {
    /// Emulated: the frame holds the result and RIP is past the instruction.
    Done,
    /// Not an instruction this seam emulates: the trap is the guest's fault.
    NotEmulated,
}

/// True if the guest bytes at user address `rip` (in the tables at `cr3`) are the
/// forced-emulation CPUID.
///
/// LEVELLING: this is the one function the crate's decoder replaces.
pub fn forced_cpuid_at(cr3: u64, rip: u64) -> bool {
    let mut bytes = [0u8; FORCED_CPUID.len()];
    paging::read_user(cr3, rip, &mut bytes).is_ok() && bytes == FORCED_CPUID
}

/// Writes a CPUID result into the frame the way the instruction does (zero-extending into
/// the 64-bit registers).
fn set_cpuid_result(frame: &mut TrapFrame, regs: CpuidRegs) {
    frame.gprs.rax = u64::from(regs.a);
    frame.gprs.rbx = u64::from(regs.b);
    frame.gprs.rcx = u64::from(regs.c);
    frame.gprs.rdx = u64::from(regs.d);
}

/// #UD from a PV domain: the forced-emulation CPUID is answered from the domain's policy and
/// RIP moves past the 7 bytes; any other #UD is declined.
pub fn pv_invalid_opcode(frame: &mut TrapFrame) -> Emulated {
    sched::with_current(|domain| {
        if !forced_cpuid_at(domain.space.cr3, frame.rip) {
            return Emulated::NotEmulated;
        }
        let (leaf, subleaf) = (frame.gprs.rax as u32, frame.gprs.rcx as u32);
        let regs = domain.answer_cpuid(leaf, subleaf, CpuidEntry::ForcedEmulation);
        domain.count_trapped();
        set_cpuid_result(frame, regs);
        frame.rip += FORCED_CPUID.len() as u64;
        Emulated::Done
    })
}

/// #GP from a PV domain.
///
/// LEVELLING: with CPUID faulting on, a ring-3 CPUID raises #GP(0); the crate's emulation
/// recognises `0F A2` at RIP and answers with `CpuidEntry::Fault` (RIP + 2). QEMU implements
/// no faulting, so today every #GP is the guest's fault.
pub fn pv_general_protection(frame: &mut TrapFrame) -> Emulated {
    let _ = frame;
    Emulated::NotEmulated
}

/// The HVM CPUID intercept: what the guest's CPUID returns.
///
/// LEVELLING: the crate's HVM exit handling goes here (with `CpuidEntry::VmExit`).
pub fn hvm_cpuid(policy: &CpuPolicy, leaf: u32, subleaf: u32, ctx: &GuestContext) -> CpuidRegs {
    guest_cpuid(policy, leaf, subleaf, ctx)
}
