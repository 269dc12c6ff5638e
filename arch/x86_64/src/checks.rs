//! Check reporting: one line per check, then `N passed, M failed` and the exit code.
//!
//! Lines are `check <name>: ok` or `check <name>: FAIL <why>`; the xtask shows them and
//! reads the closing line. A run with no check at all fails: it proved nothing.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use xen_levelling::CpuidRegs;

use crate::exit::{ExitCode, exit};
use crate::println;

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static SKIPPED: AtomicU32 = AtomicU32::new(0);

/// Records a passed check.
pub fn pass(name: fmt::Arguments) {
    PASSED.fetch_add(1, Ordering::Relaxed);
    println!("check {name}: ok");
}

/// Records a passed check with a note on what it covered.
pub fn pass_with(name: fmt::Arguments, note: fmt::Arguments) {
    PASSED.fetch_add(1, Ordering::Relaxed);
    println!("check {name}: ok ({note})");
}

/// Records a failed check.
pub fn fail(name: fmt::Arguments, why: fmt::Arguments) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    println!("check {name}: FAIL {why}");
}

/// Records a skipped check (the CPU lacks what it needs).
pub fn skip(name: fmt::Arguments, why: fmt::Arguments) {
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    println!("check {name}: SKIP {why}");
}

/// Records `ok` as a pass or a failure with `why`; returns `ok`.
pub fn check(name: fmt::Arguments, ok: bool, why: fmt::Arguments) -> bool {
    if ok {
        pass(name);
    } else {
        fail(name, why);
    }
    ok
}

/// Records `ok` as a pass or a failure, with `note` on the line either way; returns `ok`.
pub fn noted(name: fmt::Arguments, ok: bool, note: fmt::Arguments) -> bool {
    if ok {
        pass_with(name, note);
    } else {
        fail(name, note);
    }
    ok
}

/// Compares CPUID results: passes when `got == expected`; returns whether it did.
pub fn cpuid(name: fmt::Arguments, expected: CpuidRegs, got: CpuidRegs) -> bool {
    check(
        name,
        expected == got,
        format_args!("expected {} got {}", Regs(expected), Regs(got)),
    )
}

/// The counts so far: (passed, failed, skipped).
pub fn counts() -> (u32, u32, u32) {
    (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed),
    )
}

/// Prints the closing line and leaves QEMU: fail if anything failed or nothing ran; skipped
/// (status 39, never mistaken for a pass) if the scenario skipped what it is about; else pass.
pub fn finish() -> ! {
    let (passed, failed, skipped) = counts();
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    let code = match (passed, failed, skipped) {
        (_, 1.., _) | (0, 0, 0) => ExitCode::Fail,
        (_, 0, 1..) => ExitCode::Skipped,
        (1.., 0, 0) => ExitCode::Pass,
    };
    exit(code)
}

/// CPUID registers as `eax ebx ecx edx` in hex.
#[derive(Clone, Copy)]
pub struct Regs(pub CpuidRegs);

impl fmt::Display for Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{:08x} {:08x} {:08x} {:08x}", r.a, r.b, r.c, r.d)
    }
}

/// A CPUID query as `leaf.subleaf` in hex, for check names.
#[derive(Clone, Copy)]
pub struct Leaf(pub u32, pub u32);

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}.{:x}", self.0, self.1)
    }
}
