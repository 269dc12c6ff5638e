//! Ending the run through QEMU's `isa-debug-exit` device (I/O port 0xF4, 4 bytes wide).
//!
//! QEMU exits with status `(value << 1) | 1`, so the codes below give the statuses the xtask
//! maps (qemu-facts.md section 2): 33 pass, 35 a check failed, 37 an unhandled exception,
//! 39 skipped (the CPU lacks what the scenario needs), 41 a kernel panic. A triple fault
//! under `-no-reboot` gives 0 instead.

use x86::io::outl;

/// The `isa-debug-exit` I/O port (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the run concluded; the value is what the kernel writes to the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed (QEMU status 33).
    Pass = 0x10,
    /// At least one check failed, or none ran (status 35).
    Fail = 0x11,
    /// An exception the kernel could not handle (status 37).
    Unhandled = 0x12,
    /// The scenario cannot run on this CPU (status 39), e.g. `hvm` without SVM.
    Skipped = 0x13,
    /// A Rust panic in the kernel (status 41).
    Panic = 0x14,
}

/// Leaves QEMU with `code`; halts forever if the device is missing.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xF4 is the isa-debug-exit device, whose only effect is ending QEMU; without
    // the device the write is ignored.
    unsafe { outl(DEBUG_EXIT_PORT, code as u32) };
    loop {
        // SAFETY: interrupts are off, so this stops the CPU for good: nothing left to run.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
