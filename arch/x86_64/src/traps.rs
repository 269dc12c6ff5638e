//! What happens on a trap: `trap_dispatch`, called by the IDT stubs with the saved frame.
//!
//! - From ring 0: a #GP, #UD or #PF at a registered `*_safe` site resumes at its fixup
//!   (`extable.rs`); anything else is a kernel bug, reported and ended with exit code 37.
//! - From ring 3: while the levelling probe runs CPUID at CPL 3, its trap ends the probe
//!   (`userprobe.rs`); otherwise the hypercall gate goes to `hypercall.rs`; #UD and #GP go
//!   first to the crate's trap emulation (`emulate.rs`), which handles what is an emulated
//!   CPUID; everything else (and what it declines) is the domain's fault: the scheduler
//!   records it and moves on to the next domain.

use x86::controlregs::cr2;

use crate::emulate::{self, Emulated};
use crate::exit::{ExitCode, exit};
use crate::idt::{HYPERCALL_VECTOR, TrapFrame, vector};
use crate::{extable, hypercall, println, sched, userprobe};

/// The Rust side of every trap stub.
pub extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if !frame.is_user() {
        return kernel_trap(frame);
    }
    if userprobe::trap(frame) {
        return;
    }
    let handled = match frame.vector {
        v if v == u64::from(HYPERCALL_VECTOR) => {
            hypercall::from_pv(frame);
            return;
        }
        vector::UD => emulate::pv_invalid_opcode(frame),
        vector::GP => emulate::pv_general_protection(frame),
        _ => Emulated::NotEmulated,
    };
    if handled == Emulated::NotEmulated {
        sched::guest_fault(frame);
    }
}

/// A trap in ring 0: an exception-table fixup, or the end.
fn kernel_trap(frame: &mut TrapFrame) {
    if matches!(frame.vector, vector::UD | vector::GP | vector::PF)
        && let Some(fixup) = extable::fixup(frame.rip)
    {
        frame.rip = fixup;
        return;
    }
    // SAFETY: reading CR2 has no side effect.
    let cr2 = unsafe { cr2() };
    println!(
        "UNHANDLED EXCEPTION vector={} error={:#x} rip={:#x} cs={:#x} rflags={:#x} rsp={:#x} cr2={:#x}",
        frame.vector, frame.error, frame.rip, frame.cs, frame.rflags, frame.rsp, cr2
    );
    exit(ExitCode::Unhandled)
}
