//! Page tables: the kernel's supervisor-only identity map and one address space per domain.
//!
//! - **Kernel**: PML4[0] → PDPT[0] → PD: the first 1 GiB identity-mapped with 2 MiB pages,
//!   U/S = 0 (`boot.rs` builds it). Every address space shares this PDPT, so the kernel runs
//!   on whichever CR3 is loaded, and ring 3 cannot touch any of it.
//! - **Domain**: its own PML4 whose slot 1 (user virtual addresses from
//!   [`USER_BASE`] = 512 GiB) leads, U/S = 1 at every level, to one page table holding the
//!   guest programs ([`USER_CODE`], read-only, shared frames of the `.user_text` section), the
//!   domain's data page ([`USER_DATA`], its own frame) and its stack (below
//!   [`USER_STACK_TOP`], its own frames). Data and stack are NX where EFER.NXE is on.
//! - SMEP and SMAP are turned on where the CPU has them: the kernel then can neither run nor
//!   read user pages by accident. It reads and writes guest memory only through [`read_user`]
//!   and [`write_user`], a software walk of the domain's tables (one per page) that checks U/S
//!   (and R/W for writes), through the identity map.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use x86::controlregs::{Cr4, cr4, cr4_write};
use x86::msr::{IA32_EFER, rdmsr, wrmsr};

use crate::extable::extable_site;
use crate::hardware::cpuid;
use crate::sync::{KernelCell, Page};

/// A page table: 512 entries.
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

/// Present (bit 0).
const P: u64 = 1 << 0;
/// Writable (bit 1).
const RW: u64 = 1 << 1;
/// User-accessible (bit 2).
const US: u64 = 1 << 2;
/// Large page at PDPT/PD level (bit 7).
const PS: u64 = 1 << 7;
/// Execute-disable (bit 63), valid only with EFER.NXE.
const NX: u64 = 1 << 63;
/// Physical address bits of an entry (51:12).
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The kernel's PML4 (filled by `boot.rs`; slot 0 only).
pub static KERNEL_PML4: KernelCell<PageTable> = KernelCell::new(PageTable([0; 512]));
/// The kernel's PDPT, shared by every address space (slot 0 only).
pub static KERNEL_PDPT: KernelCell<PageTable> = KernelCell::new(PageTable([0; 512]));
/// The kernel's PD: 512 × 2 MiB supervisor pages.
pub static KERNEL_PD: KernelCell<PageTable> = KernelCell::new(PageTable([0; 512]));

/// How much the kernel identity-maps, and so how far [`read_user`] may follow a frame.
pub const IDENTITY_LIMIT: u64 = 1 << 30;

// Where the `.user_text` pages appear in every domain (`USER_CODE`), its data page (its walk
// list and parameters) and the top of its stack: the layout the ring-3 programs are linked for.
pub use xl_user::{USER_CODE, USER_DATA, USER_STACK_TOP};
/// The first user virtual address (PML4 slot 1).
pub const USER_BASE: u64 = USER_CODE;
const _: () = assert!(USER_BASE == 1 << 39, "the user half starts at PML4 slot 1");
/// Pages of user stack.
const USER_STACK_PAGES: u64 = 4;

static NX_ON: AtomicBool = AtomicBool::new(false);
static SMAP_ON: AtomicBool = AtomicBool::new(false);
static SMEP_ON: AtomicBool = AtomicBool::new(false);

/// Page frames for domain tables, stacks and data pages. Handed out once, never freed: a boot
/// runs one scenario with a handful of domains.
const POOL_PAGES: usize = 224; // `smp` on 4 CPUs: 16 domains
static POOL: KernelCell<[Page; POOL_PAGES]> = KernelCell::new([Page::ZERO; POOL_PAGES]);
static POOL_NEXT: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    /// Start of `.user_text` (linker/kernel.ld), page aligned.
    static __user_text_start: u8;
    /// End of `.user_text`, page aligned.
    static __user_text_end: u8;
}

/// Turns on EFER.NXE, CR4.SMEP and CR4.SMAP where the CPU enumerates them.
pub fn init() {
    // CPUID.80000001H:EDX[20] NX → EFER.NXE (MSR C000_0080h[11]).
    if cpuid(0x8000_0000, 0).a >= 0x8000_0001 && cpuid(0x8000_0001, 0).d & 1 << 20 != 0 {
        // SAFETY: setting NXE only makes bit 63 of page-table entries meaningful; no entry
        // has it set yet.
        unsafe { wrmsr(IA32_EFER, rdmsr(IA32_EFER) | 1 << 11) };
        NX_ON.store(true, Ordering::Relaxed);
    }
    // CPUID.07H.0:EBX[7] SMEP → CR4.SMEP (bit 20); EBX[20] SMAP → CR4.SMAP (bit 21).
    // Out-of-range leaves repeat the highest basic leaf under TCG (qemu-facts.md section 7).
    let leaf7 = if cpuid(0, 0).a >= 7 { cpuid(7, 0).b } else { 0 };
    let mut flags = Cr4::empty();
    if leaf7 & 1 << 7 != 0 {
        flags |= Cr4::CR4_ENABLE_SMEP;
        SMEP_ON.store(true, Ordering::Relaxed);
    }
    if leaf7 & 1 << 20 != 0 {
        flags |= Cr4::CR4_ENABLE_SMAP;
        SMAP_ON.store(true, Ordering::Relaxed);
    }
    // SAFETY: the kernel never executes or touches user pages through user addresses, so
    // SMEP and SMAP change nothing for correct kernel code.
    unsafe { cr4_write(cr4() | flags) };
}

/// What `init` turned on, for the boot banner: (NX, SMEP, SMAP).
pub fn protections() -> (bool, bool, bool) {
    (
        NX_ON.load(Ordering::Relaxed),
        SMEP_ON.load(Ordering::Relaxed),
        SMAP_ON.load(Ordering::Relaxed),
    )
}

/// The kernel's CR3 (identity map only).
pub fn kernel_cr3() -> u64 {
    KERNEL_PML4.get() as u64
}

/// A zeroed page frame from the pool: its physical (= kernel virtual) address.
///
/// # Panics
///
/// When the pool is exhausted: a scenario created more domains than the pool is sized for.
pub fn alloc_frame() -> u64 {
    let index = POOL_NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(index < POOL_PAGES, "page-frame pool exhausted");
    // The pool is zeroed by the boot code and each frame is handed out once.
    POOL.get() as u64 + (index * 4096) as u64
}

/// The table at physical address `frame`, through the identity map.
///
/// # Safety
///
/// `frame` must be a page-table frame from [`alloc_frame`] (or a kernel table) that no other
/// live reference points into.
unsafe fn table(frame: u64) -> &'static mut PageTable {
    // SAFETY: identity-mapped, page aligned, exclusively borrowed by the caller's contract.
    unsafe { &mut *(frame as *mut PageTable) }
}

/// One domain's address space and its private frames.
#[derive(Clone, Copy, Debug)]
pub struct AddressSpace {
    /// The PML4's physical address: the value for CR3.
    pub cr3: u64,
    /// The data page's frame (the kernel writes the walk list there).
    pub data_frame: u64,
}

impl AddressSpace {
    /// A new address space: the kernel identity map (supervisor) plus the user code, a fresh
    /// data page and a fresh stack.
    pub fn new() -> AddressSpace {
        let pml4 = alloc_frame();
        let pdpt = alloc_frame();
        let pd = alloc_frame();
        let pt = alloc_frame();
        let data_frame = alloc_frame();
        let nx = if NX_ON.load(Ordering::Relaxed) { NX } else { 0 };
        // SAFETY: the four frames were just allocated for this address space only; the
        // kernel PML4's slot 0 is read, not written.
        unsafe {
            let kernel_slot0 = table(kernel_cr3()).0[0];
            table(pml4).0[0] = kernel_slot0;
            table(pml4).0[pml4_index(USER_BASE)] = pdpt | P | RW | US;
            table(pdpt).0[pdpt_index(USER_BASE)] = pd | P | RW | US;
            table(pd).0[pd_index(USER_BASE)] = pt | P | RW | US;
            let pt = table(pt);
            let (code_start, code_end) = user_text();
            for (i, frame) in (code_start..code_end).step_by(4096).enumerate() {
                pt.0[pt_index(USER_CODE) + i] = frame | P | US; // read-only, executable
            }
            pt.0[pt_index(USER_DATA)] = data_frame | P | RW | US | nx;
            for page in 1..=USER_STACK_PAGES {
                let va = USER_STACK_TOP - page * 4096;
                pt.0[pt_index(va)] = alloc_frame() | P | RW | US | nx;
            }
        }
        AddressSpace {
            cr3: pml4,
            data_frame,
        }
    }
}

/// The physical range of `.user_text`.
fn user_text() -> (u64, u64) {
    (
        &raw const __user_text_start as u64,
        &raw const __user_text_end as u64,
    )
}

/// The user virtual address of a symbol that lives in `.user_text`.
pub fn user_code_address(symbol: u64) -> u64 {
    let (start, end) = user_text();
    assert!(
        (start..end).contains(&symbol),
        "not in .user_text: {symbol:#x}"
    );
    USER_CODE + (symbol - start)
}

fn pml4_index(va: u64) -> usize {
    (va >> 39) as usize & 511
}
fn pdpt_index(va: u64) -> usize {
    (va >> 30) as usize & 511
}
fn pd_index(va: u64) -> usize {
    (va >> 21) as usize & 511
}
fn pt_index(va: u64) -> usize {
    (va >> 12) as usize & 511
}

/// The physical address behind user virtual address `va` in the tables at `cr3`, if every
/// level is present and user-accessible (and, for a `write`, writable at every level), with
/// the number of bytes from `va` to the end of its page.
fn translate_user(cr3: u64, va: u64, write: bool) -> Option<(u64, u64)> {
    let need = if write { P | US | RW } else { P | US };
    let mut table_pa = cr3 & ADDR;
    // (index shift, whether a PS leaf is allowed at this level and its page size)
    for (shift, large) in [
        (39, None),
        (30, Some(1u64 << 30)),
        (21, Some(1 << 21)),
        (12, None),
    ] {
        if table_pa >= IDENTITY_LIMIT {
            return None;
        }
        let index = (va >> shift) as usize & 511;
        // SAFETY: `table_pa` is below the identity-mapped limit and page aligned (from an
        // entry's address bits), so the read is of mapped kernel memory; page tables are
        // plain data.
        let entry = unsafe { core::ptr::read_volatile((table_pa as *const u64).add(index)) };
        if entry & need != need {
            return None;
        }
        let size = match large {
            Some(size) if entry & PS != 0 => size,
            _ if shift == 12 => 4096,
            _ => {
                table_pa = entry & ADDR;
                continue;
            }
        };
        let pa = (entry & ADDR & !(size - 1)) | (va & (size - 1));
        return Some((pa, size - (va & (size - 1))));
    }
    None
}

/// Calls `each(physical address, offset into the buffer, length)` for the identity-mapped
/// chunks behind `len` user bytes at `va`, one per page (one walk per page, not per byte).
/// `Err(address)` names the first byte that is not mapped user-accessible (and writable, for
/// a `write`) or lies past the identity map. A `write` checks the whole range before the first
/// call, so a range that faults part-way is not touched at all.
fn user_chunks(
    cr3: u64,
    va: u64,
    len: usize,
    write: bool,
    mut each: impl FnMut(u64, usize, usize),
) -> Result<(), u64> {
    let passes: &[bool] = if write { &[false, true] } else { &[true] };
    for &copy in passes {
        let mut done = 0usize;
        while done < len {
            let address = va.wrapping_add(done as u64);
            let (pa, in_page) = translate_user(cr3, address, write).ok_or(address)?;
            let n = (len - done).min(usize::try_from(in_page).unwrap_or(usize::MAX));
            if pa
                .checked_add(n as u64)
                .is_none_or(|end| end > IDENTITY_LIMIT)
            {
                return Err(address);
            }
            if copy {
                each(pa, done, n);
            }
            done += n;
        }
    }
    Ok(())
}

/// Copies guest bytes at user address `va` into `out`, following the tables at `cr3`.
/// `Err(address)` names the first byte that is not mapped user-accessible (`out` may then
/// hold the bytes before it).
///
/// When `cr3` is the one loaded (a trap or hypercall from the running domain) and the range
/// lies in the user half every domain maps user-accessible at every level (PML4 slot 1), the
/// bytes are copied directly, as Xen's and Linux's `copy_from_user` do: `rep movsb` under
/// `stac` where SMAP is on, a #PF caught by the exception table. Only a fault takes the
/// software walk (to name the address). Anything outside the user half, the kernel's
/// identity map included, never gets the direct copy.
#[inline]
pub fn read_user(cr3: u64, va: u64, out: &mut [u8]) -> Result<(), u64> {
    let len = out.len();
    let in_user_half = va >= USER_BASE
        && va
            .checked_add(len as u64)
            .is_some_and(|end| end <= USER_LIMIT);
    // SAFETY: reading CR3 has no side effect.
    let loaded = unsafe { x86::controlregs::cr3() } == cr3;
    if in_user_half && len != 0 && loaded && read_current(va, out) {
        return Ok(());
    }
    read_user_walk(cr3, va, out)
}

/// The `len` (at most 8) bytes at user address `va` as a little-endian word, the bytes past
/// `len` zero (an instruction fetch); `Err` as [`read_user`]. In the common case (the tables
/// at `cr3` loaded, the 8 bytes at `va` within one page of the user half) one 8-byte load
/// under `stac`, whose bytes past the range are in the same page, so it faults exactly when
/// the range does; otherwise [`read_user`].
#[inline]
pub fn read_user_word(cr3: u64, va: u64, len: usize) -> Result<u64, u64> {
    let len = len.min(8);
    let keep = if len == 8 {
        !0
    } else {
        (1u64 << (len * 8)) - 1
    };
    // SAFETY: reading CR3 has no side effect.
    let loaded = unsafe { x86::controlregs::cr3() } == cr3;
    // The user half is PML4 slot 1 (`USER_BASE..USER_LIMIT`): bits 63:39 of `va` are 1. With
    // the 8 bytes in one page, all of them are in it.
    const _: () = assert!(USER_BASE == 1 << 39 && USER_LIMIT == 2 << 39);
    if va >> 39 == 1 && va & 0xfff <= 0x1000 - 8 && loaded {
        let fault: u32;
        let word: u64;
        // SAFETY: the `extable_site!` contract (extable.rs). The 8 bytes at `va` lie in one
        // page of the user half of the loaded address space (checked above), whose every
        // present page is a user page; a not-present one raises #PF at the load, which the
        // table turns into the flag, and `after` runs on both paths, so AC is cleared again
        // (SMAP_ON, an AtomicBool, is read as the byte it is, and does not change once the
        // first domain runs). Only `word` is written.
        unsafe {
            extable_site!(
                fault = fault,
                before = ["cmp byte ptr [rip + {smap}], 0", "je 5f", "stac", "5:"],
                site = "mov {word}, qword ptr [{va}]",
                after = ["cmp byte ptr [rip + {smap}], 0", "je 6f", "clac", "6:"],
                smap = sym SMAP_ON,
                va = in(reg) va,
                word = out(reg) word,
                options(nostack, readonly),
            );
        }
        if fault == 0 {
            return Ok(word & keep);
        }
    }
    let mut bytes = [0u8; 8];
    read_user(cr3, va, &mut bytes[..len])?;
    Ok(u64::from_le_bytes(bytes))
}

/// [`read_user`] by the software walk (out of line: the direct copy is the common case).
#[inline(never)]
fn read_user_walk(cr3: u64, va: u64, out: &mut [u8]) -> Result<(), u64> {
    let len = out.len();
    user_chunks(cr3, va, len, false, |pa, at, n| {
        // SAFETY: `pa..pa + n` is identity-mapped kernel memory (checked by `user_chunks`)
        // backing a user page; `at..at + n` lies within `out`.
        unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, out[at..].as_mut_ptr(), n) };
    })
}

/// The end of the user half: PML4 slot 1, which every domain maps user-accessible at every
/// level and nothing else maps (the kernel lives in slot 0, supervisor-only).
const USER_LIMIT: u64 = USER_BASE + (1 << 39);

/// Copies `out.len()` bytes from `va` through the page tables loaded now; false if a page
/// fault stopped it. The caller has checked that the range lies in the user half.
fn read_current(va: u64, out: &mut [u8]) -> bool {
    let smap = u32::from(SMAP_ON.load(Ordering::Relaxed));
    let fault: u32;
    // SAFETY: the `extable_site!` contract (extable.rs). The source range is in the user half
    // of the loaded address space (checked by the caller), whose every present page is a user
    // page; a not-present one raises #PF at the `rep movsb`, which the table turns into the
    // flag, and `after` runs on both paths, so AC is cleared again. RSI, RDI and RCX are
    // declared clobbered (a fault leaves them partly advanced). The destination is `out`,
    // exactly `out.len()` bytes. DF is clear (the trap stubs and the ABI keep it so).
    unsafe {
        extable_site!(
            fault = fault,
            before = ["test {smap:e}, {smap:e}", "jz 5f", "stac", "5:"],
            site = "rep movsb",
            after = ["test {smap:e}, {smap:e}", "jz 6f", "clac", "6:"],
            smap = in(reg) smap,
            inout("rsi") va => _,
            inout("rdi") out.as_mut_ptr() => _,
            inout("rcx") out.len() => _,
            options(nostack),
        );
    }
    fault == 0
}

/// Copies `data` to user address `va`, following the tables at `cr3`: every byte must be
/// mapped user-accessible and writable. `Err(address)` names the first byte that is not;
/// nothing is written then.
pub fn write_user(cr3: u64, va: u64, data: &[u8]) -> Result<(), u64> {
    user_chunks(cr3, va, data.len(), true, |pa, at, n| {
        // SAFETY: `pa..pa + n` is identity-mapped kernel memory (checked by `user_chunks`)
        // backing a writable user page, never a kernel structure (those are not mapped
        // user-accessible); `at..at + n` lies within `data`.
        unsafe { core::ptr::copy_nonoverlapping(data[at..].as_ptr(), pa as *mut u8, n) };
    })
}

/// Loads `cr3` if it is not the current one (a CR3 write flushes the non-global TLB).
pub fn switch_address_space(cr3: u64) {
    // SAFETY: every CR3 the kernel loads (kernel or domain) maps the kernel identically at
    // PML4 slot 0, so the code and stack in use stay mapped.
    unsafe {
        if x86::controlregs::cr3() != cr3 {
            x86::controlregs::cr3_write(cr3);
        }
    }
}
