//! The IDT, the trap entry stubs and the [`TrapFrame`] they build.
//!
//! Vectors 0-31 (exceptions) and 0x82 (the hypercall gate, DPL 3, the vector Xen's 32-bit PV
//! ABI uses) have stubs; every other vector is not present, so an `int n` from ring 3 #GPs.
//! Each stub pushes a dummy error code where the CPU pushes none, then the vector, and jumps
//! to a common path that saves the 15 GPRs and calls `traps::trap_dispatch(&mut TrapFrame)`.
//! Everything the handler changes in the frame (registers, RIP, even a whole other domain's
//! context) takes effect at the `iretq`.

use core::arch::global_asm;
use core::mem::size_of;

use x86::dtables::{DescriptorTablePointer, lidt};

use crate::gdt::{IST_DOUBLE_FAULT, IST_NMI_MC, KERNEL_CS};
use crate::sync::KernelCell;

// The hypercall vector: `int 0x82` from ring 3 (shared with the ring-3 programs).
pub use xl_user::HYPERCALL_VECTOR;

/// Exception vectors the kernel names.
pub mod vector {
    /// Non-maskable interrupt.
    pub const NMI: u64 = 2;
    /// Invalid opcode (the forced-emulation prefix starts with `ud2`).
    pub const UD: u64 = 6;
    /// Double fault.
    pub const DF: u64 = 8;
    /// General protection (CPUID faulting raises it).
    pub const GP: u64 = 13;
    /// Page fault.
    pub const PF: u64 = 14;
    /// Machine check.
    pub const MC: u64 = 18;
}

/// The general-purpose registers as the stubs push them (RAX first, so R15 ends lowest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)] // one field per register, named after it
pub struct Gprs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
}

/// What a trap leaves on the stack: our pushes, then the CPU's.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// The interrupted code's registers.
    pub gprs: Gprs,
    /// The vector (pushed by the stub).
    pub vector: u64,
    /// The CPU's error code, or 0 where the vector has none.
    pub error: u64,
    /// Where the interrupted code resumes.
    pub rip: u64,
    /// Its CS; the low 2 bits are the CPL it ran at.
    pub cs: u64,
    /// Its RFLAGS.
    pub rflags: u64,
    /// Its RSP.
    pub rsp: u64,
    /// Its SS.
    pub ss: u64,
}

// Our pushes (15 GPRs, vector, error) plus the CPU's 5 quadwords keep the stack 16-byte
// aligned for the call into Rust (the CPU aligns RSP before pushing its frame).
const _: () =
    assert!(size_of::<TrapFrame>() == 22 * 8 && size_of::<TrapFrame>().is_multiple_of(16));

impl TrapFrame {
    /// True if the trap came from ring 3.
    pub fn is_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

global_asm!(
    r#"
    .pushsection .text.xl_traps, "ax"
    .macro XL_TRAP vec, has_error
    .balign 16
xl_trap_\vec:
    .if \has_error == 0
    push 0
    .endif
    push \vec
    jmp xl_trap_common
    .endm

    .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,130
    XL_TRAP \v, 0
    .endr
    .irp v, 8,10,11,12,13,14,17,21,29,30
    XL_TRAP \v, 1
    .endr

xl_trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
    .popsection

    # The stub addresses: vectors 0-31, then 0x82.
    .pushsection .rodata.xl_trap_stubs, "a"
    .balign 8
    .global xl_trap_stubs
xl_trap_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,130
    .quad xl_trap_\v
    .endr
    .popsection
    "#,
    dispatch = sym crate::traps::trap_dispatch,
);

unsafe extern "C" {
    /// The stub addresses, from the assembly above.
    static xl_trap_stubs: [u64; 33];
}

/// One IDT entry: a 64-bit interrupt gate (Intel SDM vol. 3 figure 6-8).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 2:0: IST slot (0 = no stack switch unless the privilege changes).
    ist: u8,
    /// P (bit 7) | DPL (bits 6:5) | type 0xE (64-bit interrupt gate: IF cleared on entry).
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    };

    fn new(handler: u64, dpl: u8, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CS,
            ist,
            attributes: 0x80 | dpl << 5 | 0xe,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

static IDT: KernelCell<[Gate; 256]> = KernelCell::new([Gate::MISSING; 256]);

/// Fills and loads the IDT.
pub fn init() {
    // SAFETY: `xl_trap_stubs` is a read-only table the assembly above defines.
    let stubs: &[u64; 33] = unsafe { &xl_trap_stubs };
    // SAFETY: runs once at boot; nothing else refers to the IDT yet.
    let idt = unsafe { &mut *IDT.get() };
    for (vector, &stub) in stubs[..32].iter().enumerate() {
        let ist = match vector as u64 {
            vector::DF => IST_DOUBLE_FAULT,
            vector::NMI | vector::MC => IST_NMI_MC,
            _ => 0,
        };
        idt[vector] = Gate::new(stub, 0, ist);
    }
    idt[HYPERCALL_VECTOR as usize] = Gate::new(stubs[32], 3, 0);
    load();
}

/// Loads the (shared, already filled) IDT on this CPU: every CPU takes its traps through the
/// same stubs, on the stacks of its own TSS.
pub fn load() {
    // SAFETY: only the address of the table is taken.
    let idt = unsafe { &*IDT.get() };
    let pointer = DescriptorTablePointer::new_from_slice(&idt[..]);
    // SAFETY: the IDT is a static that lives forever and every present gate points at a stub
    // that saves state and returns with iretq.
    unsafe { lidt(&pointer) };
}

/// The IDT's base and limit, for the HVM guest's IDTR.
pub fn idtr() -> (u64, u16) {
    (IDT.get() as u64, (size_of::<[Gate; 256]>() - 1) as u16)
}
