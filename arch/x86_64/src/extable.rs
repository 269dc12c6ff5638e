//! The exception table: how a faulting `*_safe` instruction becomes an `Err` instead of a crash.
//!
//! Each `*_safe` asm site (see `hardware.rs`) emits, next to its instruction, a pair
//! `(fault RIP, fixup RIP)` into the `__ex_table` section, and a fixup stub (in `.text.fixup`)
//! that sets the site's error flag and jumps back behind the instruction. When a #GP, #UD or
//! #PF hits ring 0, the trap handler looks the RIP up here and, on a hit, resumes at the fixup
//! instead of declaring the exception unhandled: Linux's and Xen's `_ASM_EXTABLE`. Registers
//! and the stack are left as they were (the `Hardware` trait's `_safe` contract).

/// One `(fault RIP, fixup RIP)` pair, as the asm sites emit it with `.quad`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Entry {
    fault: u64,
    fixup: u64,
}

unsafe extern "C" {
    /// First entry (linker/kernel.ld).
    static __ex_table_start: Entry;
    /// One past the last entry.
    static __ex_table_end: Entry;
}

/// The table the linker gathered.
fn entries() -> &'static [Entry] {
    let start = &raw const __ex_table_start;
    let end = &raw const __ex_table_end;
    let len = (end as usize - start as usize) / core::mem::size_of::<Entry>();
    // SAFETY: the linker script puts every `__ex_table` input section (8-byte aligned pairs of
    // quadwords) between the two symbols, and the section is never written.
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// The fixup address for an exception at `rip`, if `rip` is a registered `*_safe` site.
pub fn fixup(rip: u64) -> Option<u64> {
    entries()
        .iter()
        .find(|entry| entry.fault == rip)
        .map(|entry| entry.fixup)
}

/// How many sites the table holds (printed at boot: 0 would mean the section was dropped).
pub fn len() -> usize {
    entries().len()
}
