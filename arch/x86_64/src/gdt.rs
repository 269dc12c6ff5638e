//! The runtime GDT and the TSS with its ring-0 stack and IST stacks.
//!
//! | selector | descriptor | value |
//! |---|---|---|
//! | 0x08 | kernel code, 64-bit, DPL 0 | `0x00af9a000000ffff` |
//! | 0x10 | kernel data, DPL 0 | `0x00cf92000000ffff` |
//! | 0x18 | user data, DPL 3 (SS = 0x1b) | `0x00cff2000000ffff` |
//! | 0x20 | user code, 64-bit, DPL 3 (CS = 0x23) | `0x00affa000000ffff` |
//! | 0x28 | 64-bit TSS (two slots) | built at run time from the TSS address |
//!
//! The order suits SYSRET (STAR[63:48] = 0x10), should the gate ever move to `syscall`.
//! Traps from ring 3 land on `TSS.RSP0`; #DF uses IST1 and NMI/#MC use IST2, so that a
//! broken kernel stack still gets a readable report.

use core::arch::asm;
use core::mem::size_of;

use x86::Ring;
use x86::dtables::{DescriptorTablePointer, lgdt};
use x86::segmentation::{SegmentSelector, load_ds, load_es, load_fs, load_gs, load_ss};
use x86::task::load_tr;

use crate::percpu::MAX_CPUS;
use crate::sync::{KernelCell, Stack};

/// Kernel code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data (stack) segment selector, RPL 3.
pub const USER_DS: u16 = 0x18 | 3;
/// User code segment selector, RPL 3.
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS_SEL: u16 = 0x28;

/// IST slot (1-based, as the IDT gate names it) for #DF.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMI and #MC.
pub const IST_NMI_MC: u8 = 2;

/// The 64-bit TSS (Intel SDM vol. 3 figure 8-11): only the stack pointers matter here.
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    /// RSP0-2: the stacks for a privilege change to rings 0-2.
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// IST1-7.
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// Offset of the I/O permission bitmap; at or past the limit means none (ring 3 `in`/`out`
    /// then #GP, as IOPL is 0).
    pub iomap_base: u16,
}

const _: () = assert!(size_of::<Tss>() == 104);

const TSS_INIT: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
};

const GDT_INIT: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff, // 0x08: P, DPL 0, code exec/read, L = 1
    0x00cf_9200_0000_ffff, // 0x10: P, DPL 0, data read/write, G, D/B
    0x00cf_f200_0000_ffff, // 0x18: P, DPL 3, data read/write, G, D/B
    0x00af_fa00_0000_ffff, // 0x20: P, DPL 3, code exec/read, L = 1
    0,                     // 0x28: TSS, low half (filled by `init`)
    0,                     // 0x30: TSS, high half
];

/// The slot of [`TABLES`] the silicon shim (the boot CPU as L0, `shim::run`) loads before
/// it enters the kernel above, which then loads slot 0 as its boot CPU: the two never share
/// a GDT, TSS or trap stack. Past the CPU slots, so [`cpu_of_trap_stack`] maps it to no CPU.
pub const SHIM_SLOT: usize = MAX_CPUS;

/// The slot the shim's L0 on CPU `cpu` loads ([`SHIM_SLOT`] on the boot CPU; an AP's shim
/// loads its own, so that the kernel above on that AP, which loads slot `cpu`, never shares
/// its GDT, TSS or trap stacks).
pub const fn shim_slot(cpu: usize) -> usize {
    SHIM_SLOT + cpu
}

/// One CPU's descriptors and trap stacks: each CPU loads its own GDT (its TSS descriptor
/// goes busy on `ltr`) and takes traps on its own stacks.
struct CpuTables {
    tss: Tss,
    gdt: [u64; 7],
    /// Ring-0 stack for traps from ring 3 (hypercalls, emulation, guest faults).
    rsp0: Stack<{ 64 * 1024 }>,
    ist1: Stack<{ 16 * 1024 }>,
    ist2: Stack<{ 16 * 1024 }>,
}

/// Slots 0 to `MAX_CPUS - 1`: the CPUs; [`SHIM_SLOT`] onwards: the shim on each CPU.
static TABLES: KernelCell<[CpuTables; 2 * MAX_CPUS]> = KernelCell::new(
    [const {
        CpuTables {
            tss: TSS_INIT,
            gdt: GDT_INIT,
            rsp0: Stack::new(),
            ist1: Stack::new(),
            ist2: Stack::new(),
        }
    }; 2 * MAX_CPUS],
);

/// Slot `slot`'s tables.
///
/// # Safety
///
/// Only the slot's owner may call it (CPU `slot`, or the shim for [`SHIM_SLOT`]), with no
/// other reference from it live.
unsafe fn tables(slot: usize) -> &'static mut CpuTables {
    // SAFETY: each slot is used by its owner alone (caller's contract).
    unsafe { &mut (*TABLES.get())[slot] }
}

/// The CPU whose slot of the descriptors and trap stacks holds address `rsp`, if any: a
/// trap taken on CPU n runs on CPU n's ring-0 or IST stack (`percpu::id`). The shim's slot
/// is no CPU's (`None`; the shim runs on the boot CPU, which `percpu::id` then finds).
pub fn cpu_of_trap_stack(rsp: u64) -> Option<usize> {
    let offset = rsp.checked_sub(TABLES.get() as u64)?;
    let cpu = usize::try_from(offset / size_of::<CpuTables>() as u64).ok()?;
    (cpu < MAX_CPUS).then_some(cpu)
}

fn top<const N: usize>(stack: &Stack<N>) -> u64 {
    stack as *const Stack<N> as u64 + N as u64
}

/// The two GDT slots of an available 64-bit TSS at `base` (Intel SDM vol. 3 figure 8-4).
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = size_of::<Tss>() as u64 - 1;
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40 // P (bit 47) | type 9: available 64-bit TSS
        | ((limit >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    [low, base >> 32]
}

/// Loads slot `slot`'s runtime GDT and TSS (CPU `slot`'s, or the shim's at [`SHIM_SLOT`]),
/// and reloads every segment register (FS and GS with null).
pub fn init(slot: usize) {
    // SAFETY: runs once per slot (slot 0: once on bare metal, once more in the kernel above
    // the shim, after the shim has moved to `SHIM_SLOT`), by its owner, before anything else
    // refers to its TSS or GDT.
    let t = unsafe { tables(slot) };
    t.tss.rsp[0] = top(&t.rsp0);
    t.tss.ist[IST_DOUBLE_FAULT as usize - 1] = top(&t.ist1);
    t.tss.ist[IST_NMI_MC as usize - 1] = top(&t.ist2);
    t.gdt = GDT_INIT;
    let [low, high] = tss_descriptor(&t.tss as *const Tss as u64);
    t.gdt[5] = low;
    t.gdt[6] = high;
    let pointer = DescriptorTablePointer::new_from_slice(&t.gdt[..]);
    // SAFETY: the GDT is a static slot that lives forever and holds the same kernel code and data
    // descriptors as the boot GDT, so the current CS/SS stay valid across the load; the far
    // return reloads CS with the new table's 0x08.
    unsafe {
        lgdt(&pointer);
        asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            cs = const KERNEL_CS as u64,
            tmp = lateout(reg) _,
        );
        let data = SegmentSelector::new(KERNEL_DS >> 3, Ring::Ring0);
        load_ds(data);
        load_es(data);
        load_ss(data);
        load_fs(SegmentSelector::from_raw(0));
        load_gs(SegmentSelector::from_raw(0));
        load_tr(SegmentSelector::new(TSS_SEL >> 3, Ring::Ring0));
    }
}

/// This CPU's GDT base and limit, for the HVM guest's GDTR (it runs on the host's
/// descriptors).
pub fn gdtr() -> (u64, u16) {
    // SAFETY: only the address of this CPU's slot is taken.
    let gdt = unsafe { &raw const (*TABLES.get())[crate::percpu::id()].gdt };
    (gdt as u64, (size_of::<[u64; 7]>() - 1) as u16)
}
