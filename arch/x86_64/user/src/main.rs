//! The toolstack side of the hypercall ABI as ring-3 programs, in Rust over the crate's own
//! wire types (`xen_levelling::abi`): a change to a structure's layout changes these
//! programs with it.
//!
//! | entry | runs as | what it does |
//! |---|---|---|
//! | `xl_toolstack` ([`dom0`]) | dom0, the control domain | levelling caps, featuresets, system policy; builds a guest policy; creates, sets, reads back and starts guests; then every error path of set_cpu_policy, each followed by a read-back proving nothing changed |
//! | `xl_toolstack_unpriv` ([`unpriv`]) | a PV guest | the same hypercalls: each must be `-EPERM` |
//! | `xl_toolstack_guest` ([`guest`]) | a guest dom0 started | checks, with the forced-emulation CPUID, the feature registers its boot data lists (built by dom0 from the policy it read back) |
//!
//! Every check is judged by the program itself and reported with the `check` hypercall:
//! `check abi/<domain>/<name>: ok`.
//!
//! # How this becomes ring-3 code
//!
//! This binary is built on its own for `x86_64-unknown-none` with the target's
//! position-independent code and linked, not as a PIE, at [`xl_user::USER_CODE`] (`user.ld`):
//! every address in it, code and data, is final, so the image needs no relocation, and a
//! linker-script assertion refuses writable data (the image runs from read-only pages that
//! every domain shares). Everything it calls, `memcpy` and the panic path included, is linked
//! into the image itself, so no call can leave user pages. The kernel's build script builds
//! it, flattens it and embeds it as the first pages of the kernel's `.user_text`, which the
//! kernel maps at `USER_CODE` into every domain (`arch/x86_64/build/user_image.rs`).
//!
//! Each domain enters at its entry symbol with RDI = its data page and RSP = the top of its
//! stack; the stacks and the data page are its own memory, which the kernel reads and writes
//! only through the domain's page tables.

#![no_std]
#![no_main]

mod boot_data;
mod dom0;
mod guest;
mod hypercall;
mod policy;
mod toolstack;
mod unpriv;

use core::arch::naked_asm;

/// Exit code of a program that could not go on (a panic, or a policy without leaf 1).
const ABORT: u64 = 1;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    hypercall::exit(ABORT)
}

/// dom0's entry: calls [`dom0::run`] with the data page (a `call`, so that the stack is
/// aligned as the ABI expects at a function's entry).
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn xl_toolstack() {
    naked_asm!("call {run}", "ud2", run = sym dom0::run)
}

/// The unprivileged guest's entry: calls [`unpriv::run`].
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn xl_toolstack_unpriv() {
    naked_asm!("call {run}", "ud2", run = sym unpriv::run)
}

/// The entry of a guest dom0 started: calls [`guest::run`] with its boot data.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn xl_toolstack_guest() {
    naked_asm!("call {run}", "ud2", run = sym guest::run)
}
