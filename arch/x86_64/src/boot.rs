//! PVH entry: the Xen ELF note, the 32-bit entry QEMU jumps to, and the climb to long mode.
//!
//! QEMU's `-kernel` loads this ELF and, seeing the `Xen` note of type 18
//! (XEN_ELFNOTE_PHYS32_ENTRY), enters `_start32` in 32-bit protected mode with paging off and
//! EBX = the physical address of `hvm_start_info` (qemu-facts.md section 1). The entry zeroes
//! .bss, identity-maps the first 1 GiB with supervisor-only 2 MiB pages (the kernel tables of
//! `paging`), turns on PAE, EFER.LME and paging, and far-jumps into 64-bit code, which calls
//! [`crate::kernel_main`] on the boot stack with the `hvm_start_info` address.

use core::arch::global_asm;

use crate::paging::{KERNEL_PD, KERNEL_PDPT, KERNEL_PML4};

/// Size of the boot stack, which stays the kernel's main stack for the whole run.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

global_asm!(
    r#"
    # The PVH note: namesz 4, descsz 8, type 18, "Xen", then the 64-bit entry address.
    # 4-byte alignment only: see linker/kernel.ld.
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad _start32
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    movl %ebx, %esi                     # hvm_start_info: kept in ESI until kernel_main

    # Zero .bss: page tables and stacks live there.
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    # PML4[0] -> PDPT, PDPT[0] -> PD: P (bit 0) | RW (bit 1); U/S (bit 2) clear.
    movl ${pdpt}, %eax
    orl $0x3, %eax
    movl %eax, {pml4}
    movl ${pd}, %eax
    orl $0x3, %eax
    movl %eax, {pdpt}
    # PD[i] = i * 2 MiB | P | RW | PS (bit 7): 512 supervisor-only 2 MiB pages = 1 GiB.
    movl ${pd}, %edi
    movl $0x83, %eax
    xorl %ecx, %ecx
2:
    movl %eax, (%edi,%ecx,8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $512, %ecx
    jne 2b

    # CR4 = PAE (bit 5) | OSFXSR (bit 9) | OSXMMEXCPT (bit 10).
    movl $0x620, %eax
    movl %eax, %cr4
    movl ${pml4}, %eax
    movl %eax, %cr3
    # EFER.LME (MSR C000_0080h[8]).
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    # CR0: PG (31) | WP (16) | NE (5) | MP (1) | PE (0); EM (2) and TS (3) cleared.
    movl %cr0, %eax
    andl $0xfffffff3, %eax
    orl $0x80010023, %eax
    movl %eax, %cr0

    lgdt xl_boot_gdt_ptr
    ljmp $0x08, $xl_long_mode_entry

    .code64
xl_long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $xl_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                     # kernel_main(start_info_paddr)
    call {main}
    ud2
    .popsection

    # The boot GDT: just enough to reach 64-bit code; gdt.rs loads the real one.
    .pushsection .rodata.xl_boot_gdt, "a"
    .balign 8
xl_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            # 0x08: code, L = 1 (64-bit), DPL 0
    .quad 0x00cf92000000ffff            # 0x10: data, DPL 0
xl_boot_gdt_ptr:
    .word xl_boot_gdt_ptr - xl_boot_gdt - 1
    .long xl_boot_gdt
    .popsection

    .pushsection .bss.xl_boot_stack, "aw", @nobits
    .balign 16
xl_boot_stack:
    .skip {stack_size}
xl_boot_stack_top:
    .popsection
    "#,
    pml4 = sym KERNEL_PML4,
    pdpt = sym KERNEL_PDPT,
    pd = sym KERNEL_PD,
    main = sym crate::kernel_main,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);
