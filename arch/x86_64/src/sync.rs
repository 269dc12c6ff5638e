//! [`KernelCell`]: mutable kernel state shared between the main flow and trap handlers.
//!
//! The kernel runs on one CPU (the APs are never started) with interrupts off everywhere
//! (RFLAGS.IF = 0 in ring 0 and in ring 3), so a trap handler runs only while the main flow is
//! suspended at a known point (inside `sched::run` or `svm` run loops) and never concurrently
//! with it. Every access still takes a raw pointer and an `unsafe` block that says why no
//! other borrow of the same cell is live.

use core::cell::UnsafeCell;

/// A `static` the kernel mutates, with the aliasing argument made at each access.
#[repr(transparent)]
pub struct KernelCell<T>(UnsafeCell<T>);

// SAFETY: one CPU, interrupts off: there is no concurrent access (module docs); each access
// site argues that its borrow does not overlap another.
unsafe impl<T> Sync for KernelCell<T> {}

impl<T> KernelCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        KernelCell(UnsafeCell::new(value))
    }

    /// A raw pointer to the contents; dereferencing it is the caller's `unsafe`.
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// A page-aligned, page-sized block of memory (page tables, guest pages, VMCBs).
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct Page(pub [u8; 4096]);

impl Page {
    /// A zeroed page.
    pub const ZERO: Page = Page([0; 4096]);
}

/// A stack of `N` bytes, 16-byte aligned, whose top is handed to the CPU.
#[repr(C, align(16))]
pub struct Stack<const N: usize>(pub [u8; N]);

impl<const N: usize> Stack<N> {
    /// A zeroed stack.
    pub const fn new() -> Self {
        Stack([0; N])
    }
}

/// The address one past the end of the stack in `cell`: the initial RSP.
pub fn stack_top<const N: usize>(cell: &KernelCell<Stack<N>>) -> u64 {
    cell.get() as u64 + N as u64
}
