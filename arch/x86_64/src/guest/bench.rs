//! The benchmark programs: timed loops whose RDTSC deltas, under `-icount shift=0`, are exact
//! instruction counts (qemu-facts.md section 8). Each loop runs its operation N times (N at
//! offset 0 of the data page) between two RDTSCs, with the same four bookkeeping instructions
//! per iteration in every loop (`mov eax, leaf; xor ecx, ecx; ...; dec; jnz`), so that
//! (loop - empty loop) / N is the operation's own count. Every delta goes to the kernel with
//! the `bench(id, delta)` hypercall (`hypercall.rs`).
//!
//! | symbol | runs as | figures ([`figure`]) |
//! |---|---|---|
//! | `xl_bench_pv` | PV guest, ring 3 | empty loop, `int 0x82` nop hypercall (the bare trap), forced-emulation CPUID of leaves 0, 1, 7, 0xD.0, 0xD.1, 0x80000001 and 0x3fffffff (out of range), native CPUID of leaf 1 (faulted where the host faults) |
//! | `xl_bench_yield` | PV domain, ring 3 | empty loop, then N yields to its partner: each iteration is two switches |
//! | `xl_bench_partner` | PV domain, ring 3 | N + 1 yields back, then exit (reports nothing) |
//! | `xl_bench_hvm` | HVM guest, CPL0 under SVM | empty loop, VMMCALL nop (the bare exit), intercepted CPUID of leaves 0, 1, 7 and 0xD |

use core::arch::global_asm;

use crate::hypercall::{HC_BENCH, HC_EXIT, HC_NOP, HC_YIELD};
use crate::idt::HYPERCALL_VECTOR;

/// The figure ids the programs report.
pub mod figure {
    /// PV: the empty loop.
    pub const PV_EMPTY: u64 = 1;
    /// PV: `int 0x82` with the nop hypercall.
    pub const PV_TRAP_NOP: u64 = 2;
    /// PV: forced-emulation CPUID, leaf 0.
    pub const PV_FORCED_LEAF0: u64 = 3;
    /// PV: forced-emulation CPUID, leaf 1.
    pub const PV_FORCED_LEAF1: u64 = 4;
    /// PV: forced-emulation CPUID, leaf 7.
    pub const PV_FORCED_LEAF7: u64 = 5;
    /// PV: forced-emulation CPUID, leaf 0xD subleaf 0 (its size depends on XCR0).
    pub const PV_FORCED_LEAFD: u64 = 6;
    /// PV: native CPUID, leaf 1 (a #GP round trip where the host faults, else the bare
    /// instruction).
    pub const PV_NATIVE_LEAF1: u64 = 7;
    /// PV: forced-emulation CPUID, leaf 0xD subleaf 1.
    pub const PV_FORCED_LEAFD1: u64 = 8;
    /// PV: forced-emulation CPUID, leaf 0x80000001.
    pub const PV_FORCED_EXTD1: u64 = 9;
    /// PV: forced-emulation CPUID of a leaf out of every range (0x3fffffff): the round trip
    /// with the least lookup, what Xen's figures are split against.
    pub const PV_FORCED_OUT_OF_RANGE: u64 = 10;
    /// Switch pair: the measuring domain's empty loop.
    pub const YIELD_EMPTY: u64 = 20;
    /// Switch pair: N yields, each iteration two switches and the partner's three
    /// bookkeeping instructions.
    pub const YIELD_LOOP: u64 = 21;
    /// HVM: the empty loop.
    pub const HVM_EMPTY: u64 = 40;
    /// HVM: VMMCALL with the nop hypercall (the bare exit).
    pub const HVM_VMMCALL_NOP: u64 = 41;
    /// HVM: intercepted CPUID, leaf 0.
    pub const HVM_CPUID_LEAF0: u64 = 42;
    /// HVM: intercepted CPUID, leaf 1.
    pub const HVM_CPUID_LEAF1: u64 = 43;
    /// HVM: intercepted CPUID, leaf 7.
    pub const HVM_CPUID_LEAF7: u64 = 44;
    /// HVM: intercepted CPUID, leaf 0xD subleaf 0.
    pub const HVM_CPUID_LEAFD: u64 = 45;
}

/// The partner's bookkeeping instructions per iteration, counted in a yield loop's
/// iteration besides the two switches: `dec`, `jnz`, `mov eax` (its `int` belongs to the
/// switch).
pub const PARTNER_LOOP_INSTRUCTIONS: u64 = 3;

global_asm!(
    r#"
    .macro XB_INT
    int {vector}
    .endm
    .macro XB_VMMCALL
    vmmcall
    .endm
    .macro XB_NONE
    .endm
    .macro XB_FORCED
    ud2
    .ascii "xen"
    cpuid
    .endm
    .macro XB_CPUID
    cpuid
    .endm

    # One timed loop: R13D iterations of `mov eax, leaf; xor ecx, ecx; op; dec; jnz`, then
    # bench(id, TSC delta) through `gate`. Uses R14, R15; CPUID clobbers RBX, RCX, RDX.
    .macro XB_TIMED id, leaf, op, gate
    XB_TIMED_SUB \id, \leaf, 0, \op, \gate
    .endm

    # The same with subleaf `sub` in ECX (`mov ecx, sub` is one instruction, as `xor` is).
    .macro XB_TIMED_SUB id, leaf, sub, op, gate
    mov r15d, r13d
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
1:  mov eax, \leaf
    .if \sub
    mov ecx, \sub
    .else
    xor ecx, ecx
    .endif
    \op
    dec r15d
    jnz 1b
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r14
    mov rsi, rax
    mov edi, \id
    mov eax, {hc_bench}
    \gate
    .endm

    .macro XB_EXIT gate
    xor edi, edi
    mov eax, {hc_exit}
    \gate
    ud2
    .endm

    .pushsection .user_text, "ax"
    .balign 16
    .global xl_bench_pv
xl_bench_pv:
    mov r13d, dword ptr [rdi]
    XB_TIMED {pv_empty}, 0, XB_NONE, XB_INT
    XB_TIMED {pv_trap_nop}, {hc_nop}, XB_INT, XB_INT
    XB_TIMED {pv_forced0}, 0, XB_FORCED, XB_INT
    XB_TIMED {pv_forced1}, 1, XB_FORCED, XB_INT
    XB_TIMED {pv_forced7}, 7, XB_FORCED, XB_INT
    XB_TIMED {pv_forcedd}, 0xd, XB_FORCED, XB_INT
    XB_TIMED_SUB {pv_forcedd1}, 0xd, 1, XB_FORCED, XB_INT
    XB_TIMED {pv_forcede1}, 0x80000001, XB_FORCED, XB_INT
    XB_TIMED {pv_forced_oor}, 0x3fffffff, XB_FORCED, XB_INT
    XB_TIMED {pv_native1}, 1, XB_CPUID, XB_INT
    XB_EXIT XB_INT

    .balign 16
    .global xl_bench_yield
xl_bench_yield:
    mov r13d, dword ptr [rdi]
    mov eax, {hc_yield}                     # let the partner reach its loop first
    int {vector}
    XB_TIMED {yield_empty}, {hc_yield}, XB_NONE, XB_INT
    XB_TIMED {yield_loop}, {hc_yield}, XB_INT, XB_INT
    XB_EXIT XB_INT

    .balign 16
    .global xl_bench_partner
xl_bench_partner:
    mov r15d, dword ptr [rdi]
    inc r15d
1:  mov eax, {hc_yield}
    int {vector}
    dec r15d
    jnz 1b
    XB_EXIT XB_INT

    # A forced-emulation CPUID the kernel's breakdown decodes in place (never executed).
    .global xl_bench_forced_site
xl_bench_forced_site:
    XB_FORCED
    ud2
    .popsection

    .pushsection .text.xl_bench_hvm, "ax"
    .balign 16
    .global xl_bench_hvm
xl_bench_hvm:
    mov r13d, dword ptr [rdi]
    XB_TIMED {hvm_empty}, 0, XB_NONE, XB_VMMCALL
    XB_TIMED {hvm_nop}, {hc_nop}, XB_VMMCALL, XB_VMMCALL
    XB_TIMED {hvm_cpuid0}, 0, XB_CPUID, XB_VMMCALL
    XB_TIMED {hvm_cpuid1}, 1, XB_CPUID, XB_VMMCALL
    XB_TIMED {hvm_cpuid7}, 7, XB_CPUID, XB_VMMCALL
    XB_TIMED {hvm_cpuidd}, 0xd, XB_CPUID, XB_VMMCALL
    XB_EXIT XB_VMMCALL
    .popsection
    "#,
    vector = const HYPERCALL_VECTOR,
    hc_bench = const HC_BENCH,
    hc_exit = const HC_EXIT,
    hc_nop = const HC_NOP,
    hc_yield = const HC_YIELD,
    pv_empty = const figure::PV_EMPTY,
    pv_trap_nop = const figure::PV_TRAP_NOP,
    pv_forced0 = const figure::PV_FORCED_LEAF0,
    pv_forced1 = const figure::PV_FORCED_LEAF1,
    pv_forced7 = const figure::PV_FORCED_LEAF7,
    pv_forcedd = const figure::PV_FORCED_LEAFD,
    pv_native1 = const figure::PV_NATIVE_LEAF1,
    pv_forcedd1 = const figure::PV_FORCED_LEAFD1,
    pv_forcede1 = const figure::PV_FORCED_EXTD1,
    pv_forced_oor = const figure::PV_FORCED_OUT_OF_RANGE,
    yield_empty = const figure::YIELD_EMPTY,
    yield_loop = const figure::YIELD_LOOP,
    hvm_empty = const figure::HVM_EMPTY,
    hvm_nop = const figure::HVM_VMMCALL_NOP,
    hvm_cpuid0 = const figure::HVM_CPUID_LEAF0,
    hvm_cpuid1 = const figure::HVM_CPUID_LEAF1,
    hvm_cpuid7 = const figure::HVM_CPUID_LEAF7,
    hvm_cpuidd = const figure::HVM_CPUID_LEAFD,
);

unsafe extern "C" {
    /// The PV trap benchmarks (in `.user_text`).
    pub safe fn xl_bench_pv();
    /// The measuring side of a switch pair (in `.user_text`).
    pub safe fn xl_bench_yield();
    /// The other side of a switch pair (in `.user_text`).
    pub safe fn xl_bench_partner();
    /// The HVM exit benchmarks (in `.text`: the HVM guest runs on the kernel's identity map).
    pub safe fn xl_bench_hvm();
    /// `ud2; .ascii "xen"; cpuid` in `.user_text`, for decoding in place (never run).
    pub safe fn xl_bench_forced_site();
}
