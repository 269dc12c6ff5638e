//! The COM1 console (16550 UART at I/O port 0x3F8) and the `print!`/`println!` macros.
//!
//! QEMU connects COM1 to its stdout with `-serial stdio`; the xtask captures it.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use x86::io::{inb, outb};

/// COM1's base I/O port.
const COM1: u16 = 0x3f8;
/// Line Status Register (base + 5); bit 5 = transmit holding register empty.
const LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    let setup: [(u16, u8); 7] = [
        (COM1 + 1, 0x00), // IER: no interrupts
        (COM1 + 3, 0x80), // LCR: DLAB = 1 to reach the divisor latch
        (COM1, 0x01),     // DLL: divisor 1 = 115200 baud
        (COM1 + 1, 0x00), // DLM
        (COM1 + 3, 0x03), // LCR: 8 data bits, no parity, 1 stop bit, DLAB = 0
        (COM1 + 2, 0xc7), // FCR: enable and clear FIFOs, 14-byte threshold
        (COM1 + 4, 0x03), // MCR: DTR | RTS (OUT2 off: no IRQ)
    ];
    for (port, value) in setup {
        // SAFETY: ports 0x3F8-0x3FF are the COM1 UART; writing its setup registers has no
        // effect beyond the UART.
        unsafe { outb(port, value) };
    }
}

/// Sends one byte, waiting until the transmitter can take it.
fn put_byte(byte: u8) {
    // SAFETY: reading the UART's line status register has no side effect.
    while unsafe { inb(LSR) } & LSR_THR_EMPTY == 0 {
        core::hint::spin_loop();
    }
    // SAFETY: writing the UART's transmit holding register sends one byte.
    unsafe { outb(COM1, byte) };
}

/// The console as a `fmt::Write` sink.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                put_byte(b'\r');
            }
            put_byte(byte);
        }
        Ok(())
    }
}

/// Which CPU holds the console (its index + 1; 0: free). Re-entrant on the holding CPU, so
/// that a panic or a trap report in the middle of a line still prints.
static OWNER: AtomicUsize = AtomicUsize::new(0);

/// Writes formatted text to the console (what `print!` expands to), one whole call at a time
/// across CPUs.
pub fn print(args: fmt::Arguments) {
    let me = crate::percpu::id() + 1;
    let nested = OWNER.load(Ordering::Relaxed) == me;
    if !nested {
        while OWNER
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    let _ = fmt::Write::write_fmt(&mut Console, args);
    if !nested {
        OWNER.store(0, Ordering::Release);
    }
}

/// Prints to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::serial::print(format_args!($($arg)*)));
}

/// Prints to COM1, with a newline.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::serial::print(format_args!("{}\n", format_args!($($arg)*))));
}
