//! The guest programs, in assembly so that they are position independent and touch nothing
//! but their own registers, stack and walk page.
//!
//! | symbol | runs as | what it does |
//! |---|---|---|
//! | `xl_user_walk` | PV domain, ring 3, from `.user_text` mapped at `USER_CODE` | walks its walk page with native or forced-emulation CPUID, reports via `int 0x82` |
//! | `xl_user_probe` | PV domain, ring 3 | reads the kernel address in the walk page: must #PF |
//! | `xl_hvm_walk` | HVM guest, CPL0 under SVM | the same walk, CPUID intercepted, reports via VMMCALL |
//!
//! Entry: RDI = the walk page. The hypercall ABI is `hypercall.rs`'s: RAX = number, then RDI,
//! RSI, RDX, R10, R8, R9; every register but RAX survives a hypercall. The forced-emulation
//! CPUID is Xen's `ud2; .ascii "xen"; cpuid` (bytes 0F 0B 78 65 6E 0F A2): the `ud2` raises
//! #UD, the kernel recognises the 7 bytes at RIP, answers, and resumes after them.

use core::arch::global_asm;
use core::mem::offset_of;

use super::{WALK_FORCED, WALK_YIELD, WalkPage};
use crate::hypercall::{HC_CPUID_RESULT, HC_EXIT, HC_REPORT, HC_YIELD, Report};
use crate::idt::HYPERCALL_VECTOR;

global_asm!(
    r#"
    .macro XL_GATE_INT
    int {vector}
    .endm
    .macro XL_GATE_VMMCALL
    vmmcall
    .endm

    # The walk, assembled once per gate.
    .macro XL_WALK name, gate
    .balign 16
    .global \name
\name:
    mov r12, rdi                            # the walk page, for the whole run
    mov eax, dword ptr [r12 + {tag}]
    push rax                                # the stack tag, checked at the end
    mov ebp, dword ptr [r12 + {rounds}]
2:
    test ebp, ebp
    jz 8f
    xor r15d, r15d
3:
    cmp r15d, dword ptr [r12 + {count}]
    jae 7f
    mov eax, dword ptr [r12 + r15 * 8 + {leaves}]
    mov ecx, dword ptr [r12 + r15 * 8 + {leaves} + 4]
    test dword ptr [r12 + {flags}], {forced}
    jnz 4f
    cpuid
    jmp 5f
4:
    ud2
    .ascii "xen"
    cpuid
5:
    mov r9d, edx                            # cpuid_result(leaf, subleaf, a, b, c, d)
    mov r8d, ecx
    mov r10d, ebx
    mov edx, eax
    mov edi, dword ptr [r12 + r15 * 8 + {leaves}]
    mov esi, dword ptr [r12 + r15 * 8 + {leaves} + 4]
    mov eax, {hc_cpuid}
    \gate
    test dword ptr [r12 + {flags}], {yield_flag}
    jz 6f
    mov eax, {hc_yield}
    \gate
6:
    inc r15d
    jmp 3b
7:
    dec ebp
    jmp 2b
8:
    mov rdx, qword ptr [rsp]                # report(stack tag, ok, found, written)
    mov r10d, dword ptr [r12 + {tag}]
    xor esi, esi
    cmp rdx, r10
    sete sil
    mov edi, {report_tag}
    mov eax, {hc_report}
    \gate
    xor edi, edi
    mov eax, {hc_exit}
    \gate
    ud2
    .endm

    .pushsection .user_text, "ax"
    XL_WALK xl_user_walk, XL_GATE_INT

    .balign 16
    .global xl_user_probe
xl_user_probe:
    mov rax, qword ptr [rdi + {probe}]
    mov rdx, qword ptr [rax]                # a supervisor page: must #PF
    mov edi, {report_probe}                 # report(kernel read succeeded, ok = 0, value)
    xor esi, esi
    mov eax, {hc_report}
    int {vector}
    xor edi, edi
    mov eax, {hc_exit}
    int {vector}
    ud2
    .popsection

    .pushsection .text.xl_hvm_walk, "ax"
    XL_WALK xl_hvm_walk, XL_GATE_VMMCALL
    .popsection
    "#,
    vector = const HYPERCALL_VECTOR,
    tag = const offset_of!(WalkPage, tag),
    rounds = const offset_of!(WalkPage, rounds),
    count = const offset_of!(WalkPage, count),
    flags = const offset_of!(WalkPage, flags),
    leaves = const offset_of!(WalkPage, leaves),
    probe = const offset_of!(WalkPage, probe),
    forced = const WALK_FORCED,
    yield_flag = const WALK_YIELD,
    hc_cpuid = const HC_CPUID_RESULT,
    hc_yield = const HC_YIELD,
    hc_report = const HC_REPORT,
    hc_exit = const HC_EXIT,
    report_tag = const Report::StackTag as u64,
    report_probe = const Report::KernelReadSucceeded as u64,
);

unsafe extern "C" {
    /// The PV walk program (in `.user_text`).
    pub safe fn xl_user_walk();
    /// The isolation probe (in `.user_text`).
    pub safe fn xl_user_probe();
    /// The HVM walk program (in `.text`: the HVM guest runs on the kernel's identity map).
    pub safe fn xl_hvm_walk();
}

/// A program's entry address in the kernel image (its physical address).
pub fn address(program: extern "C" fn()) -> u64 {
    program as *const () as u64
}
