//! [`KernelCell`]: mutable kernel state shared between the main flow and trap handlers.
//!
//! Interrupts are off everywhere (RFLAGS.IF = 0 in ring 0 and in ring 3), so on one CPU a
//! trap handler runs only while that CPU's main flow is suspended at a known point (inside
//! `sched::run` or `svm` run loops) and never concurrently with it. A cell is either used by
//! the boot CPU alone (the shim, the HVM guest, the ABI, the boot probe), or is one slot per
//! CPU that only its own CPU touches ([`crate::percpu`]), or is handed from one CPU to another
//! through an atomic flag with release/acquire ordering (`smp::run_on`). Every access still
//! takes a raw pointer and an `unsafe` block that says why no other borrow of the same cell
//! is live. State that several CPUs really share goes behind a [`SpinLock`] or [`RwSpinLock`]
//! (the `spin` crate's).

use core::cell::UnsafeCell;

/// A `static` the kernel mutates, with the aliasing argument made at each access.
#[repr(transparent)]
pub struct KernelCell<T>(UnsafeCell<T>);

// SAFETY: interrupts are off, and a cell is used by the boot CPU alone, or one slot per CPU by
// that CPU alone, or handed between CPUs with release/acquire (module docs): there is no
// concurrent access; each access site argues that its borrow does not overlap another.
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

/// A spin lock (interrupts are always off, so a holder is never preempted on its own CPU).
pub type SpinLock<T> = spin::Mutex<T>;

/// A readers-writer spin lock: many readers or one writer.
pub type RwSpinLock<T> = spin::RwLock<T>;

/// Shared access to a [`RwSpinLock`].
pub type ReadGuard<'a, T> = spin::RwLockReadGuard<'a, T>;
