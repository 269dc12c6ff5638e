//! Per-CPU identity: each CPU's index (0 = the boot CPU, then the application processors in
//! the order `smp` started them) lives in its IA32_GS_BASE, which the kernel sets once per
//! CPU and never uses for anything else (no `swapgs`; ring 3 cannot write it: CR4.FSGSBASE
//! stays off, and the guest programs never load GS).
//!
//! Per-CPU state is then an array indexed by [`id`] (`[T; MAX_CPUS]`), each slot touched only
//! by its own CPU (or handed over through `smp`'s release/acquire flags).

use x86::msr::{IA32_GS_BASE, rdmsr, wrmsr};

/// The most CPUs the kernel runs on (more are left in wait-for-SIPI).
pub const MAX_CPUS: usize = 4;

/// This CPU's index. 0 on the boot CPU (GS base 0 after `gdt::init`, which loads a null GS).
pub fn id() -> usize {
    // SAFETY: reading IA32_GS_BASE has no side effect; every x86-64 CPU has it.
    let index = unsafe { rdmsr(IA32_GS_BASE) } as usize;
    // A GS base that is not an index (never set by this kernel) reads as the boot CPU.
    if index < MAX_CPUS { index } else { 0 }
}

/// Makes this CPU `index` (after `gdt::init`, whose null GS load clears the base).
pub fn set_id(index: usize) {
    assert!(index < MAX_CPUS);
    // SAFETY: IA32_GS_BASE is used for nothing but the index (module docs).
    unsafe { wrmsr(IA32_GS_BASE, index as u64) };
}
