//! Per-CPU identity: each CPU's index (0 = the boot CPU, then the application processors in
//! the order `smp` started them), found from the stack it runs on, as Xen's `get_cpu_info()`
//! finds its per-CPU block from RSP. Every CPU runs kernel code on stacks of its own: its
//! trap stacks (`gdt`: the ring-0 stack and the IST stacks, one set per CPU) and, on an AP,
//! its main stack (`smp`); the boot stack (and, above the shim, the kernel's stack there) is
//! the boot CPU's. Under the silicon shim each AP's L0 runs on a stack of its own
//! (`shim::cpu_of_host_stack`), so the shim's per-CPU state (its host save area, host VMCB and
//! descriptors) is found the same way. Nothing ring 3 can change is consulted: a PV guest may load GS (and so
//! IA32_GS_BASE) at will, so a GS-based index would let a guest on one CPU make the kernel
//! use another CPU's slots.
//!
//! Per-CPU state is then an array indexed by [`id`] (`[T; MAX_CPUS]`), each slot touched only
//! by its own CPU (or handed over through `smp`'s release/acquire flags).

use crate::{gdt, shim, smp};

/// The most CPUs the kernel runs on (more are left in wait-for-SIPI).
pub const MAX_CPUS: usize = 4;

/// This CPU's index: the CPU whose trap stack or AP main stack holds the current stack
/// pointer, else the boot CPU (boot stack).
#[inline]
pub fn id() -> usize {
    // The address of a local: somewhere on the stack this CPU runs on now.
    let here = 0u8;
    id_at(core::hint::black_box(&raw const here) as u64)
}

/// [`id`] from an address on the stack this CPU runs on now (a trap handler has one: its
/// frame, which the CPU pushed on this CPU's trap stack).
#[inline]
pub fn id_at(rsp: u64) -> usize {
    gdt::cpu_of_trap_stack(rsp)
        .or_else(|| smp::cpu_of_main_stack(rsp))
        .or_else(|| shim::cpu_of_host_stack(rsp))
        .unwrap_or(0)
}
