//! The application processors: found in the ACPI MADT, started with INIT-SIPI-SIPI through
//! the local APIC (xAPIC MMIO at 0xFEE00000), each climbing from a real-mode trampoline copied
//! to [`TRAMPOLINE`] (below 1 MiB) to long mode on the kernel's page tables, then into
//! [`ap_main`] on its own stack (which tells `percpu::id` who it is), where it loads its own
//! GDT, TSS and IST stacks (`gdt::init(cpu)`), the shared IDT, paging features, and brings
//! its levelling up (`levelling::init_this_cpu`: the crate's `LevellingState::init` on that
//! CPU). It then waits for work: [`run_on`] hands it a function, [`wait_all`] waits until
//! every CPU has finished its own.
//!
//! | step | where | what |
//! |---|---|---|
//! | find CPUs | [`start_aps`] | `hvm_start_info.rsdp_paddr` (or a scan of the BIOS area) → RSDT/XSDT → MADT type-0 entries, enabled, other than the boot CPU's APIC ID; at most `percpu::MAX_CPUS` |
//! | map the APIC | [`map_lapic`] | PDPT slot 3 → a PD whose 2 MiB page 0xFEE00000 is uncached, supervisor-only |
//! | start one | [`start_one`] | ICR: INIT (level assert), ~10 ms, SIPI vector 0x08 (0x8000) twice; then wait for its `ONLINE` bit |
//! | trampoline | `xl_ap_trampoline` | 16-bit: lgdt, PE; 32-bit: PAE and CR3 (the kernel's PML4), EFER.LME (and NXE as the boot CPU has it), PG; 64-bit: its stack, `ap_main(cpu)` |
//!
//! One AP starts at a time: the trampoline's parameters (stack, CPU index) are rewritten for
//! each. Above the silicon shim the kernel (an SVM guest on the boot CPU) starts the APs the
//! same way, but each AP's trampoline enters that AP's own L0 (`shim::ap_entry`, on the shim's
//! stack for it): its own GDT, TSS, host save area, VMCB and copy of the `SiliconModel` at
//! power-on; it then runs [`ap_main`] as its SVM guest, so every CPU's CPUID and levelling
//! MSRs reach that CPU's own model.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use x86::msr::{IA32_EFER, rdmsr};

use crate::paging::{KERNEL_PDPT, PageTable, kernel_cr3};
use crate::percpu::MAX_CPUS;
use crate::sync::{KernelCell, Stack};
use crate::{gdt, hardware, idt, levelling, paging, println, shim};

/// Where the trampoline is copied: page 8, SIPI vector 0x08.
const TRAMPOLINE: u64 = 0x8000;
/// The local APIC's registers (xAPIC MMIO).
const LAPIC: u64 = 0xfee0_0000;
/// The local APIC ID register (ID in bits 31:24).
const LAPIC_ID: u64 = 0x20;
/// ICR low (command) and high (destination) registers.
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
/// ICR delivery status (bit 12): the IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;
/// INIT, level assert; SIPI with the trampoline's page number.
const ICR_INIT: u32 = 0x0000_4500;
const ICR_SIPI: u32 = 0x0000_4600 | (TRAMPOLINE >> 12) as u32;

/// Stack of each AP (the boot CPU keeps the boot stack).
const AP_STACK: usize = 128 * 1024;
static AP_STACKS: KernelCell<[Stack<AP_STACK>; MAX_CPUS]> =
    KernelCell::new([const { Stack::new() }; MAX_CPUS]);
/// The PD that maps the local APIC (PDPT slot 3: 3-4 GiB).
static LAPIC_PD: KernelCell<PageTable> = KernelCell::new(PageTable([0; 512]));

/// Set by [`start_aps`] before its first INIT IPI: an AP may run kernel code from now on.
static APS_STARTED: AtomicBool = AtomicBool::new(false);
/// Bit n: CPU n is up (the boot CPU's bit is set by [`start_aps`]).
static ONLINE: AtomicU32 = AtomicU32::new(1);
/// How many CPUs run (1 until [`start_aps`]).
static CPUS: AtomicUsize = AtomicUsize::new(1);
/// APIC ID of each CPU.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Work for each AP: a `fn(usize)` as an address, 0 when idle. Set by [`run_on`] (release),
/// taken by the AP (acquire), cleared by the AP when done (release).
static WORK: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

global_asm!(
    r#"
    .pushsection .rodata.xl_ap_trampoline, "a"
    .balign 16
    .global xl_ap_trampoline, xl_ap_trampoline_end, xl_ap_params
    .code16
xl_ap_trampoline:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl ({tb} + (xl_ap_gdt_ptr - xl_ap_trampoline))
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, ${tb} + (xl_ap_pm32 - xl_ap_trampoline)

    .code32
xl_ap_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    # CR4 = PAE | OSFXSR | OSXMMEXCPT, as boot.rs.
    movl $0x620, %eax
    movl %eax, %cr4
    movl ({tb} + (xl_ap_params - xl_ap_trampoline)), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    movl ({tb} + (xl_ap_params - xl_ap_trampoline) + 8), %eax
    xorl %edx, %edx
    wrmsr
    movl %cr0, %eax
    andl $0xfffffff3, %eax
    orl $0x80010023, %eax
    movl %eax, %cr0
    ljmpl $0x18, ${tb} + (xl_ap_lm64 - xl_ap_trampoline)

    .code64
xl_ap_lm64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq ({tb} + (xl_ap_params - xl_ap_trampoline) + 16), %rsp
    movq ({tb} + (xl_ap_params - xl_ap_trampoline) + 24), %rdi
    movq ({tb} + (xl_ap_params - xl_ap_trampoline) + 32), %rax
    callq *%rax
    ud2

    .balign 8
xl_ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            # 0x08: code, 32-bit, DPL 0
    .quad 0x00cf92000000ffff            # 0x10: data, DPL 0
    .quad 0x00af9a000000ffff            # 0x18: code, 64-bit, DPL 0
xl_ap_gdt_ptr:
    .word xl_ap_gdt_ptr - xl_ap_gdt - 1
    .long {tb} + (xl_ap_gdt - xl_ap_trampoline)
    .balign 8
    # Parameters, patched in the copy: CR3, EFER, RSP, the CPU index, the entry.
xl_ap_params:
    .quad 0, 0, 0, 0, 0
xl_ap_trampoline_end:
    .popsection
    "#,
    tb = const TRAMPOLINE,
    options(att_syntax)
);

unsafe extern "C" {
    static xl_ap_trampoline: u8;
    static xl_ap_trampoline_end: u8;
    static xl_ap_params: u8;
}

/// The trampoline's parameters, as laid out at `xl_ap_params`.
#[repr(C)]
struct Params {
    cr3: u64,
    efer: u64,
    rsp: u64,
    cpu: u64,
    entry: u64,
}

/// How many CPUs run.
pub fn cpus() -> usize {
    CPUS.load(Ordering::Acquire)
}

/// True once [`start_aps`] has begun starting APs (false on one CPU, and before it runs): only the boot CPU calls `start_aps`, so while the boot CPU sees false no
/// AP runs kernel code, nor can one start until the boot CPU itself calls it.
pub fn aps_started() -> bool {
    APS_STARTED.load(Ordering::Acquire)
}

/// Starts every AP the MADT lists (at most `MAX_CPUS` CPUs in all); above the shim each
/// enters its own L0 first.
pub fn start_aps(start_info: u32) {
    let mut ids = [0u32; MAX_CPUS];
    let found = madt_apic_ids(start_info, &mut ids);
    if found <= 1 {
        APIC_IDS[0].store(hardware::cpuid(1, 0).b >> 24, Ordering::Relaxed);
        return;
    }
    APS_STARTED.store(true, Ordering::Release);
    map_lapic();
    // The local APIC's own ID register (not CPUID, which above the shim is the modelled CPU's).
    let bsp = lapic_read(LAPIC_ID) >> 24;
    APIC_IDS[0].store(bsp, Ordering::Relaxed);
    let aps = ids[..found].iter().filter(|&&id| id != bsp);
    copy_trampoline();
    for &apic_id in aps {
        let cpu = cpus();
        if cpu >= MAX_CPUS {
            println!("smp: APIC ID {apic_id}: over {MAX_CPUS} CPUs, left waiting for SIPI");
            continue;
        }
        APIC_IDS[cpu].store(apic_id, Ordering::Relaxed);
        if start_one(cpu, apic_id) {
            CPUS.store(cpu + 1, Ordering::Release);
        } else {
            println!("smp: APIC ID {apic_id} did not come up");
        }
    }
    println!(
        "smp: {} CPUs up (APIC IDs {:?})",
        cpus(),
        &APIC_IDS[..cpus()]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect::<Ids>()
    );
}

/// APIC IDs for printing.
struct Ids([u32; MAX_CPUS], usize);

impl FromIterator<u32> for Ids {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Ids {
        let mut ids = Ids([0; MAX_CPUS], 0);
        for id in iter.into_iter().take(MAX_CPUS) {
            ids.0[ids.1] = id;
            ids.1 += 1;
        }
        ids
    }
}

impl core::fmt::Debug for Ids {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(&self.0[..self.1]).finish()
    }
}

/// Maps the local APIC's page, uncached, into the kernel's (shared) PDPT.
fn map_lapic() {
    // SAFETY: boot, main flow, APs not started; PDPT slot 3 is unused (the identity map is
    // slot 0), and every address space shares this PDPT.
    unsafe {
        let pd = &mut *LAPIC_PD.get();
        let index = ((LAPIC >> 21) & 0x1ff) as usize;
        // P | RW | PWT | PCD | PS: a 2 MiB uncached supervisor page.
        pd.0[index] = (LAPIC & !0x1f_ffff) | 1 | 2 | 8 | 16 | 0x80;
        (*KERNEL_PDPT.get()).0[3] = LAPIC_PD.get() as u64 | 1 | 2;
        x86::tlb::flush_all();
    }
}

fn lapic_write(register: u64, value: u32) {
    // SAFETY: the APIC page is mapped by `map_lapic`; a 32-bit aligned store to a register.
    unsafe { core::ptr::write_volatile((LAPIC + register) as *mut u32, value) };
}

fn lapic_read(register: u64) -> u32 {
    // SAFETY: as `lapic_write`.
    unsafe { core::ptr::read_volatile((LAPIC + register) as *const u32) }
}

/// Sends one IPI and waits until the APIC has sent it.
fn send_ipi(apic_id: u32, command: u32) {
    lapic_write(ICR_HIGH, apic_id << 24);
    lapic_write(ICR_LOW, command);
    while lapic_read(ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// Busy-waits `n` × 1000 spin-loop hints (no timer is calibrated: a rough delay).
fn delay(n: u32) {
    for _ in 0..n * 1000 {
        core::hint::spin_loop();
    }
}

/// The AP whose main stack holds address `rsp`, if any (`percpu::id`).
pub fn cpu_of_main_stack(rsp: u64) -> Option<usize> {
    let offset = rsp.checked_sub(AP_STACKS.get() as u64)?;
    let cpu = usize::try_from(offset / AP_STACK as u64).ok()?;
    (cpu < MAX_CPUS).then_some(cpu)
}

/// Copies the trampoline below 1 MiB.
fn copy_trampoline() {
    // SAFETY: the labels bound the trampoline in .rodata; the destination is conventional
    // low memory below 1 MiB that nothing else uses (the PVH command line is at 0x20000, the
    // kernel at 1 MiB), identity-mapped and writable.
    unsafe {
        let start = &raw const xl_ap_trampoline;
        let len = (&raw const xl_ap_trampoline_end).offset_from(start) as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
    }
}

/// The trampoline copy's parameter block.
fn params() -> *mut Params {
    // SAFETY: only addresses of the labels are taken.
    let offset = unsafe { (&raw const xl_ap_params).offset_from(&raw const xl_ap_trampoline) };
    (TRAMPOLINE + offset as u64) as *mut Params
}

/// Starts AP `cpu` (APIC ID `apic_id`) and waits for it to be online.
fn start_one(cpu: usize, apic_id: u32) -> bool {
    // SAFETY: reading EFER has no side effect.
    let efer = unsafe { rdmsr(IA32_EFER) } & (1 << 8 | 1 << 11); // LME | NXE
    // Above the shim the AP enters its own L0 on the shim's stack for it, which then runs
    // `ap_main` on the AP's kernel stack as its guest.
    let (stack_top, entry): (u64, extern "C" fn(u64) -> !) = if shim::active() {
        (shim::ap_host_stack_top(cpu), shim::ap_entry)
    } else {
        (ap_stack_top(cpu), ap_main)
    };
    // SAFETY: the parameter block of the copy; no AP runs the trampoline now (one at a time).
    unsafe {
        params().write_volatile(Params {
            cr3: kernel_cr3(),
            efer: efer | 1 << 8,
            rsp: stack_top,
            cpu: cpu as u64,
            entry: entry as *const () as u64,
        });
    }
    send_ipi(apic_id, ICR_INIT);
    delay(100);
    for _ in 0..2 {
        send_ipi(apic_id, ICR_SIPI);
        delay(10);
        if ONLINE.load(Ordering::Acquire) & 1 << cpu != 0 {
            return true;
        }
    }
    for _ in 0..200_000 {
        if ONLINE.load(Ordering::Acquire) & 1 << cpu != 0 {
            return true;
        }
        delay(1);
    }
    false
}

/// The top of AP `cpu`'s kernel stack.
pub fn ap_stack_top(cpu: usize) -> u64 {
    // SAFETY: only the address of the slot is taken.
    unsafe { &raw const (*AP_STACKS.get())[cpu] as u64 + AP_STACK as u64 }
}

/// An AP's first Rust code, on its own stack, in long mode on the kernel's tables (above the
/// shim: as the guest of that AP's L0, `shim::ap_entry`).
pub extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    gdt::init(cpu);
    idt::load();
    paging::init();
    let levelling = levelling::init_this_cpu();
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
    if let Err(fault) = levelling {
        println!("smp: cpu{cpu}: levelling bring-up faulted: {fault}");
    }
    loop {
        let work = WORK[cpu].load(Ordering::Acquire);
        if work == 0 {
            core::hint::spin_loop();
            continue;
        }
        // SAFETY: `run_on` stores only `fn(usize)` addresses.
        let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(work) };
        f(cpu);
        WORK[cpu].store(0, Ordering::Release);
    }
}

/// Runs `f(cpu)` on AP `cpu` (which must be idle); returns at once. What the caller wrote
/// before is visible to `f`.
pub fn run_on(cpu: usize, f: fn(usize)) {
    assert!(cpu != 0 && cpu < cpus(), "no AP {cpu}");
    let previous = WORK[cpu].swap(f as usize, Ordering::AcqRel);
    assert!(previous == 0, "AP {cpu} is busy");
}

/// Waits until every AP has finished its work; what they wrote is then visible.
pub fn wait_all() {
    for work in &WORK[1..cpus()] {
        while work.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
    }
}

/// The APIC IDs of the MADT's enabled processors (at most `ids.len()`); how many.
fn madt_apic_ids(start_info: u32, ids: &mut [u32]) -> usize {
    let Some(rsdp) = rsdp(start_info) else {
        println!("smp: no ACPI RSDP; one CPU");
        return 0;
    };
    // SAFETY (all reads below): ACPI tables in low RAM, identity-mapped; each address is
    // checked against the identity map's limit first.
    let read = |address: u64, len: usize| -> Option<&'static [u8]> {
        let end = address.checked_add(len as u64)?;
        (address != 0 && end <= paging::IDENTITY_LIMIT)
            // SAFETY: see above.
            .then(|| unsafe { core::slice::from_raw_parts(address as *const u8, len) })
    };
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let Some(r) = read(rsdp, 36) else { return 0 };
    let (root, entry_size) = if r[15] >= 2 && u64::from_le_bytes(r[24..32].try_into().unwrap()) != 0
    {
        (u64::from_le_bytes(r[24..32].try_into().unwrap()), 8)
    } else {
        (u64::from(u32_at(r, 16)), 4)
    };
    let Some(header) = read(root, 36) else {
        return 0;
    };
    let Some(entries) = read(root, u32_at(header, 4) as usize).and_then(|t| t.get(36..)) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.chunks_exact(entry_size) {
        let address = if entry_size == 8 {
            u64::from_le_bytes(entry.try_into().unwrap())
        } else {
            u64::from(u32_at(entry, 0))
        };
        let Some(h) = read(address, 36) else { continue };
        if &h[..4] != b"APIC" {
            continue;
        }
        let Some(madt) = read(address, u32_at(h, 4) as usize) else {
            continue;
        };
        let mut at = 44;
        while at + 2 <= madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            if len < 2 || at + len > madt.len() {
                break;
            }
            // Type 0: processor local APIC; flags bit 0: enabled.
            if kind == 0 && len >= 8 && u32_at(madt, at + 4) & 1 != 0 && count < ids.len() {
                ids[count] = u32::from(madt[at + 3]);
                count += 1;
            }
            at += len;
        }
    }
    count
}

/// The RSDP: from `hvm_start_info.rsdp_paddr` (version 1 and later, offset 32), or found by
/// scanning 0xE0000-0xFFFFF for `RSD PTR `.
fn rsdp(start_info: u32) -> Option<u64> {
    let base = u64::from(start_info);
    // SAFETY: QEMU's PVH loader put hvm_start_info in low RAM (cmdline.rs reads it too).
    let (version, paddr) = unsafe {
        (
            core::ptr::read_volatile((base + 4) as *const u32),
            core::ptr::read_volatile((base + 32) as *const u64),
        )
    };
    if version >= 1 && paddr != 0 {
        return Some(paddr);
    }
    (0xe_0000u64..0x10_0000).step_by(16).find(|&a| {
        // SAFETY: the BIOS area, identity-mapped and readable.
        unsafe { core::ptr::read_volatile(a as *const [u8; 8]) == *b"RSD PTR " }
    })
}
