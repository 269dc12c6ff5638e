//! The exception table: how a faulting `*_safe` instruction becomes an `Err` instead of a crash.
//!
//! Each `*_safe` asm site ([`extable_site!`]: `hardware.rs`, `paging.rs`) emits, next to its instruction, a pair
//! `(fault RIP, fixup RIP)` into the `__ex_table` section, and a fixup stub (in `.text.fixup`)
//! that sets the site's error flag and jumps back behind the instruction. When a #GP, #UD or
//! #PF hits ring 0, the trap handler looks the RIP up here and, on a hit, resumes at the fixup
//! instead of declaring the exception unhandled: Linux's and Xen's `_ASM_EXTABLE`. Registers
//! and the stack are left as they were (the `Hardware` trait's `_safe` contract).

/// One exception-table site: `asm!` around a single instruction that may fault, with the
/// instruction registered in `__ex_table` and its fixup stub in `.text.fixup`. Expands to
///
/// ```text
/// xor {fault:e}, {fault:e}; <before...>; 2: <site>; 3: <after...>
/// .text.fixup:  4: mov {fault:e}, 1; jmp 3b
/// __ex_table:   .quad 2b, 4b
/// ```
///
/// with `fault = out(reg) <fault>` and the caller's operands and options appended, so that
/// `<fault>` (a `u32`) is 0 if `<site>` completed and 1 if it raised an exception that
/// `traps::trap_dispatch` resolved through [`fixup`]. Local labels 2, 3 and 4 are the
/// macro's; `before`/`after` may use others (`paging::read_current` uses 5 and 6).
///
/// # Safety
///
/// This is the one place the contract of every exception-table site is stated; each
/// caller's `unsafe` block cites it and adds what is specific to its instruction.
///
/// - `site` must be exactly one instruction whose only possible exceptions are ones the
///   trap handler resolves through the table (#GP, #UD, #PF at CPL 0); any state a faulting
///   instance leaves half-changed must be declared clobbered by the caller (RDMSR/WRMSR
///   change nothing; `rep movsb` leaves RSI, RDI and RCX partly advanced).
/// - On a fault, execution resumes at the fixup with every register and RSP as at the
///   fault (the handler rewrites only RIP in the frame), sets the flag and jumps to label 3,
///   so `after` runs on both paths; it must restore whatever `before` changed (e.g. RFLAGS.AC).
/// - The fixup stub touches only the flag register, and neither it nor the site uses the
///   stack, so `options(nostack)` (which callers should pass) holds.
/// - Whatever the instruction itself does when it does not fault (which MSR it reads or
///   writes, which memory it copies) is the caller's to justify.
macro_rules! extable_site {
    (
        fault = $fault:ident,
        before = [$($before:literal),* $(,)?],
        site = $site:literal,
        after = [$($after:literal),* $(,)?],
        $($operands:tt)*
    ) => {
        ::core::arch::asm!(
            "xor {fault:e}, {fault:e}",
            $($before,)*
            "2:",
            $site,
            "3:",
            $($after,)*
            ".pushsection .text.fixup, \"ax\"",
            "4:",
            "mov {fault:e}, 1",
            "jmp 3b",
            ".popsection",
            ".pushsection __ex_table, \"a\"",
            ".balign 8",
            ".quad 2b, 4b",
            ".popsection",
            fault = out(reg) $fault,
            $($operands)*
        )
    };
}

pub(crate) use extable_site;

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
