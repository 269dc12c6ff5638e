//! What the test hypervisor's ring-3 programs and its kernel agree on: the hypercall gate,
//! the hypercall numbers the programs use, and where a domain's memory sits in its address
//! space.
//!
//! The programs themselves are this package's binary (`src/main.rs`). The kernel takes its
//! hypercall numbers from here (`hypercall.rs` re-exports them) and asserts at compile time
//! that its gate vector (`idt.rs`) and user layout (`paging.rs`) are these: a change on one
//! side that the other does not follow fails the kernel build instead of desynchronising the
//! two.

#![no_std]

/// The interrupt vector of the hypercall gate (`int 0x82`, a DPL 3 gate).
pub const HYPERCALL_VECTOR: u8 = 0x82;

/// `exit(code)`: the domain is done; a code other than 0 is a failed check.
pub const HC_EXIT: u64 = 0;
/// `yield()`: let the next domain run.
pub const HC_YIELD: u64 = 1;
/// `report(check, ok, detail0, detail1)`: a check the guest judged itself.
pub const HC_REPORT: u64 = 2;
/// `cpuid_result(leaf, subleaf, a, b, c, d)`: what a CPUID returned to the guest.
pub const HC_CPUID_RESULT: u64 = 3;
/// `sysctl(arg)`: Xen's `__HYPERVISOR_sysctl`, `arg` the address of a `xen_sysctl`.
pub const HC_SYSCTL: u64 = 35;
/// `domctl(arg)`: Xen's `__HYPERVISOR_domctl`, `arg` the address of a `xen_domctl`.
pub const HC_DOMCTL: u64 = 36;
/// `domain_create(domid, kind, flags)`.
pub const HC_DOMAIN_CREATE: u64 = 64;
/// `domain_start(domid, boot data, length)`: the data lands at the start of the new
/// domain's data page.
pub const HC_DOMAIN_START: u64 = 65;
/// `check(name, ok, got, expected, tag)`: a check the program judged itself; `name` is the
/// address of a NUL-terminated string, `tag` 0 or `leaf << 32 | subleaf << 8 | register`.
pub const HC_CHECK: u64 = 66;
/// `nop()`: returns 0 at once (the bare trap round trip the benchmarks compare with).
pub const HC_NOP: u64 = 67;
/// `bench(id, value)`: records a benchmark figure.
pub const HC_BENCH: u64 = 68;

/// [`HC_DOMAIN_CREATE`] kind: a PV domain.
pub const KIND_PV: u64 = 0;
/// [`HC_DOMAIN_CREATE`] kind: an HVM domain on hardware-assisted paging.
pub const KIND_HVM_HAP: u64 = 1;
/// [`HC_DOMAIN_CREATE`] kind: an HVM domain on shadow paging.
pub const KIND_HVM_SHADOW: u64 = 2;
/// [`HC_DOMAIN_CREATE`] flag: the domain may start although the hardware cannot hide every
/// feature its policy lacks.
pub const CREATE_BEST_EFFORT: u64 = 1 << 0;

/// The first user virtual address; the programs' image is linked here (`user.ld`), and the
/// kernel maps its `.user_text` pages, which start with the image, from here.
pub const USER_CODE: u64 = 0x0000_0080_0000_0000;
/// The domain's data page (RDI at entry): zeroed, or the boot data its starter passed.
pub const USER_DATA: u64 = USER_CODE + 0x10_0000;
/// The size of the data page; the page after it is not mapped.
pub const DATA_PAGE_SIZE: u64 = 4096;
/// The top of the domain's stack (RSP at entry).
pub const USER_STACK_TOP: u64 = USER_CODE + 0x20_0000;
