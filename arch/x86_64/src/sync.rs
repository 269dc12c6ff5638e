//! [`KernelCell`]: mutable kernel state shared between the main flow and trap handlers.
//!
//! Interrupts are off everywhere (RFLAGS.IF = 0 in ring 0 and in ring 3), so on one CPU a
//! trap handler runs only while that CPU's main flow is suspended at a known point (inside
//! `sched::run` or `svm` run loops) and never concurrently with it. A cell is either used by
//! the boot CPU alone (the shim, the HVM guest, the ABI, the boot probe), or is one slot per
//! CPU that only its own CPU touches ([`crate::percpu`]), or is handed from one CPU to another
//! through an atomic flag with release/acquire ordering (`smp::run_on`). Every access still
//! takes a raw pointer and an `unsafe` block that says why no other borrow of the same cell
//! is live. State that several CPUs really share goes behind a [`SpinLock`] or [`RwSpinLock`].

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out one `&mut T` at a time, across CPUs.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is free, then holds it until the guard drops.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        SpinGuard { lock: self }
    }
}

/// Holds a [`SpinLock`].
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock: no other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as `deref`, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A readers-writer spin lock: many readers or one writer.
pub struct RwSpinLock<T> {
    /// Bit 31: a writer holds it; bits 30:0: readers.
    state: AtomicU32,
    value: UnsafeCell<T>,
}

const WRITER: u32 = 1 << 31;

// SAFETY: shared references only while no writer holds it; one `&mut T` at a time.
unsafe impl<T: Send + Sync> Sync for RwSpinLock<T> {}

impl<T> RwSpinLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        RwSpinLock {
            state: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access until the guard drops.
    pub fn read(&self) -> ReadGuard<'_, T> {
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & WRITER == 0
                && self
                    .state
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return ReadGuard { lock: self };
            }
            core::hint::spin_loop();
        }
    }

    /// Exclusive access until the guard drops.
    pub fn write(&self) -> WriteGuard<'_, T> {
        while self
            .state
            .compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        WriteGuard { lock: self }
    }
}

/// Shared access to a [`RwSpinLock`].
pub struct ReadGuard<'a, T> {
    lock: &'a RwSpinLock<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers hold it; no writer can until they all drop.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access to a [`RwSpinLock`].
pub struct WriteGuard<'a, T> {
    lock: &'a RwSpinLock<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds it alone.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer holds it alone.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.store(0, Ordering::Release);
    }
}
