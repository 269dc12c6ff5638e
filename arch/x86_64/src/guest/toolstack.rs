//! The toolstack side of the hypercall ABI, as ring-3 programs (assembly in `.user_text`,
//! like the other guest programs, so they are position independent and touch only their own
//! memory).
//!
//! | symbol | runs as | what it does |
//! |---|---|---|
//! | `xl_toolstack` | dom0, the control domain | levelling caps, featuresets, system policy; builds a guest policy; creates, sets, reads back and starts guests; then every error path of set_cpu_policy, each followed by a read-back proving nothing changed |
//! | `xl_toolstack_unpriv` | a PV guest | the same hypercalls: each must be `-EPERM` |
//! | `xl_toolstack_guest` | a guest dom0 started | checks, with the forced-emulation CPUID, the feature registers its boot data lists (built by dom0 from the policy it read back) |
//!
//! Every check is judged by the program itself and reported with the `check` hypercall
//! (`hypercall.rs`): `check abi/<domain>/<name>: ok`.
//!
//! dom0's memory: its data page ([`USER_DATA`]) holds the `xen_sysctl` and `xen_domctl` it
//! passes, a featureset buffer, the MSR arrays, scratch arrays for the bad inputs, the boot
//! data for the guests and its variables; the low 9 KiB of its stack pages hold three
//! `xen_cpuid_leaf_t[120]` arrays: A (the policy it builds), B (what it reads back after
//! setting A) and C (every later read-back, compared with B).

use core::arch::global_asm;

use xen_levelling::Feature;
use xen_levelling::abi::dispatch::errno;
use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_GET_LEVELLING, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY,
    SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_POLICY,
    SYSCTL_INTERFACE_VERSION,
};
use xen_levelling::cpuid::NO_SUBLEAF;
use xen_levelling::feature::NR_WORDS;
use xen_levelling::msr::PLATFORM_INFO as MSR_PLATFORM_INFO;
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};

use crate::hypercall::{
    CREATE_BEST_EFFORT, HC_CHECK, HC_DOMAIN_CREATE, HC_DOMAIN_START, HC_DOMCTL, HC_EXIT, HC_SYSCTL,
    KIND_PV,
};
use crate::idt::HYPERCALL_VECTOR;
use crate::paging::{USER_BASE, USER_DATA, USER_STACK_TOP};

/// Offsets in dom0's data page.
mod page {
    /// The `xen_sysctl` (136 bytes).
    pub const SYSCTL: usize = 0x000;
    /// The `xen_domctl` (144 bytes).
    pub const DOMCTL: usize = 0x100;
    /// A featureset buffer (32 words).
    pub const FSBUF: usize = 0x200;
    /// MSR arrays A, B, C (2 entries each) and a scratch one.
    pub const MSR_A: usize = 0x280;
    /// See [`MSR_A`].
    pub const MSR_B: usize = 0x2a0;
    /// See [`MSR_A`].
    pub const MSR_C: usize = 0x2c0;
    /// See [`MSR_A`].
    pub const MSR_X: usize = 0x2e0;
    /// Scratch leaves for the bad inputs (2 entries).
    pub const LEAF_X: usize = 0x340;
    /// The unenforceable featureset the levelling domctl returns (32 words).
    pub const LEVBUF: usize = 0x380;
    /// The guests' boot data: a count, then the expectations.
    pub const BOOT: usize = 0x400;
    /// Variables.
    pub const VARS: usize = 0xf00;
    /// A leaf array whose second entry crosses into the unmapped page after the data page.
    pub const CROSS: usize = 0x1000 - 24;
}

/// Variables (u32) in dom0's data page: leaves and MSRs in A, then in B.
const V_NA: usize = page::VARS;
const V_NMA: usize = page::VARS + 4;
const V_NB: usize = page::VARS + 8;
const V_NMB: usize = page::VARS + 12;

/// The leaf arrays, relative to the data page (they live in the stack pages).
const STACK_BASE: usize = (USER_STACK_TOP - 0x4000 - USER_DATA) as usize;
const BUF_A: usize = STACK_BASE;
const BUF_B: usize = STACK_BASE + 0xc00;
const BUF_C: usize = STACK_BASE + 0x1800;
const _: () = assert!(MAX_SERIALISED_LEAVES * 24 <= 0xc00 && NR_WORDS <= 32);
const _: () = assert!(page::BOOT + 8 + EXPECT_SLOTS * 20 <= page::VARS);

/// An unmapped user address, and a kernel one (mapped supervisor-only in every domain).
const UNMAPPED: u64 = USER_BASE + 0x30_0000;
const KERNEL_ADDRESS: u64 = 0x10_0000;

/// What dom0 takes out of the PV default policy: SSE3 and POPCNT from leaf 1 ECX (SSE3
/// drags its dependents with it when the hypervisor recalculates), BMI2 from leaf 7 EBX.
const REMOVE_1C: u32 = Feature::SSE3.mask() | Feature::POPCNT.mask();
const REMOVE_7B: u32 = Feature::BMI2.mask();
/// A feature dom0 keeps and checks is still there.
const KEEP_1D: u32 = Feature::SSE2.mask();
/// A feature no PV policy may have (HVM only): the incompatible-policy input.
const HVM_ONLY_1C: u32 = Feature::VMX.mask();

/// How many expectations the guest checks at most (the table below).
const EXPECT_SLOTS: usize = 11;

/// `-errno` as an assembler immediate.
const fn neg(e: i32) -> i64 {
    -(e as i64)
}

global_asm!(
    r#"
    .macro TS_HCALL nr
    mov eax, \nr
    int {vector}
    .endm

    # Zero [r12 + off, + len), len a multiple of 8. Clobbers RDI, RCX, RAX.
    .macro TS_ZERO off, len
    lea rdi, [r12 + \off]
    mov ecx, \len / 8
    xor eax, eax
    rep stosq
    .endm

    # check(name, got == expected, got, expected, 0). `got` and `expected`: a register other
    # than RDI, RSI, RDX, R10, R8, RAX (RAX is fine as `got`), or an immediate.
    .macro TS_CHECK name, got, expected
    mov rdx, \got
    mov r10, \expected
    xor esi, esi
    cmp rdx, r10
    sete sil
    TS_REPORT "\name"
    .endm

    # The same with any condition code `cc` on `cmp got, expected` (unsigned: a, ae, ...).
    .macro TS_CHECK_CC name, cc, got, expected
    mov rdx, \got
    mov r10, \expected
    xor esi, esi
    cmp rdx, r10
    set\cc sil
    TS_REPORT "\name"
    .endm

    .macro TS_REPORT name
    xor r8d, r8d
    lea rdi, [rip + 1f]
    jmp 2f
1:  .asciz "\name"
2:  mov eax, {hc_check}
    int {vector}
    .endm

    .macro TS_SYSCTL_START cmd
    TS_ZERO {sysctl}, 136
    mov dword ptr [r12 + {sysctl}], \cmd
    mov dword ptr [r12 + {sysctl} + 4], {sysctl_version}
    .endm

    .macro TS_SYSCTL_CALL
    lea rdi, [r12 + {sysctl}]
    TS_HCALL {hc_sysctl}
    .endm

    # domctl(cmd) on domain R9 with everything else zero, for the caller to fill.
    .macro TS_DOMCTL_START cmd
    TS_ZERO {domctl}, 144
    mov dword ptr [r12 + {domctl}], \cmd
    mov dword ptr [r12 + {domctl} + 4], {domctl_version}
    mov word ptr [r12 + {domctl} + 8], r9w
    .endm

    .macro TS_DOMCTL_CALL
    lea rdi, [r12 + {domctl}]
    TS_HCALL {hc_domctl}
    .endm

    # set_cpu_policy(dom, A) and get it back: the state must be B.
    .macro TS_UNCHANGED name, dom
    mov r9d, \dom
    call ts_unchanged
    TS_CHECK "\name", rax, 0
    .endm

    # The err fields of the last domctl: leaf, subleaf, msr.
    .macro TS_ERR_FIELDS name, leaf, subleaf, msr
    mov ebx, dword ptr [r12 + {domctl} + 40]
    TS_CHECK "\name-err-leaf", rbx, \leaf
    mov ebx, dword ptr [r12 + {domctl} + 44]
    TS_CHECK "\name-err-subleaf", rbx, \subleaf
    mov ebx, dword ptr [r12 + {domctl} + 48]
    TS_CHECK "\name-err-msr", rbx, \msr
    .endm

    .macro TS_CREATE dom, kind, flags
    mov edi, \dom
    mov esi, \kind
    mov edx, \flags
    TS_HCALL {hc_create}
    .endm

    .pushsection .user_text, "ax"

    # ---- dom0 ------------------------------------------------------------------------------
    .balign 16
    .global xl_toolstack
xl_toolstack:
    mov r12, rdi

    # Levelling caps (sysctl 25).
    TS_SYSCTL_START {sysctl_caps}
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/levelling-caps", rax, 0
    mov ebx, dword ptr [r12 + {sysctl} + 8]
    and rbx, -512
    TS_CHECK "sysctl/levelling-caps-known-bits-only", rbx, 0

    # Featureset (sysctl 26): the NULL size query, the full read, a short buffer, a bad index.
    TS_SYSCTL_START {sysctl_fs}
    mov dword ptr [r12 + {sysctl} + 8], 2
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/featureset-size-query", rax, 0
    mov r14d, dword ptr [r12 + {sysctl} + 12]
    TS_CHECK "sysctl/featureset-size-query-nr", r14, {nr_words}
    TS_SYSCTL_START {sysctl_fs}
    mov dword ptr [r12 + {sysctl} + 8], 2
    mov dword ptr [r12 + {sysctl} + 12], r14d
    lea rax, [r12 + {fsbuf}]
    mov qword ptr [r12 + {sysctl} + 16], rax
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/featureset-pv-default", rax, 0
    mov ebx, dword ptr [r12 + {sysctl} + 12]
    TS_CHECK "sysctl/featureset-pv-default-nr", rbx, r14
    lea r15, [r14 - 1]
    TS_SYSCTL_START {sysctl_fs}
    mov dword ptr [r12 + {sysctl} + 8], 2
    mov dword ptr [r12 + {sysctl} + 12], r15d
    lea rax, [r12 + {levbuf}]
    mov qword ptr [r12 + {sysctl} + 16], rax
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/featureset-short-buffer-enobufs", rax, {enobufs}
    mov ebx, dword ptr [r12 + {sysctl} + 12]
    TS_CHECK "sysctl/featureset-short-buffer-nr", rbx, r15
    TS_SYSCTL_START {sysctl_fs}
    mov dword ptr [r12 + {sysctl} + 8], 6
    mov dword ptr [r12 + {sysctl} + 12], r14d
    lea rax, [r12 + {levbuf}]
    mov qword ptr [r12 + {sysctl} + 16], rax
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/featureset-bad-index-einval", rax, {einval}

    # System policy (sysctl 29): the size query, PV default into A, a short buffer, bad input.
    TS_SYSCTL_START {sysctl_policy}
    mov dword ptr [r12 + {sysctl} + 8], 4
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/policy-size-query", rax, 0
    mov ebx, dword ptr [r12 + {sysctl} + 12]
    TS_CHECK "sysctl/policy-size-query-leaves", rbx, {max_leaves}
    mov ebx, dword ptr [r12 + {sysctl} + 16]
    TS_CHECK "sysctl/policy-size-query-msrs", rbx, {max_msrs}
    mov r14d, {max_leaves}
    mov r15d, 4
    call ts_sysctl_policy_a
    TS_CHECK "sysctl/policy-pv-default", rax, 0
    mov ebx, dword ptr [r12 + {sysctl} + 12]
    mov dword ptr [r12 + {v_na}], ebx
    TS_CHECK_CC "sysctl/policy-pv-default-has-leaves", a, rbx, 0
    mov ebx, dword ptr [r12 + {sysctl} + 16]
    mov dword ptr [r12 + {v_nma}], ebx
    mov r14d, dword ptr [r12 + {v_na}]
    dec r14d
    mov r15d, 4
    call ts_sysctl_policy_a
    TS_CHECK "sysctl/policy-short-buffer-enobufs", rax, {enobufs}
    mov r14d, {max_leaves}
    mov r15d, 6
    call ts_sysctl_policy_a
    TS_CHECK "sysctl/policy-bad-index-einval", rax, {einval}
    # Refetch A (the short-buffer call may have left part of it).
    mov r14d, {max_leaves}
    mov r15d, 4
    call ts_sysctl_policy_a
    TS_CHECK "sysctl/policy-pv-default-again", rax, 0

    # The featureset and the policy agree (Xen word 0 = leaf 1 EDX, word 1 = leaf 1 ECX).
    lea rsi, [r12 + {buf_a}]
    mov ecx, dword ptr [r12 + {v_na}]
    mov edi, 1
    mov edx, {no_subleaf}
    call ts_find
    mov rbx, rax
    TS_CHECK_CC "sysctl/policy-has-leaf-1", ne, rbx, 0
    test rbx, rbx
    jz .Lts_abort
    mov r9d, dword ptr [rbx + 16]
    mov r11d, dword ptr [r12 + {fsbuf} + 4]
    TS_CHECK "sysctl/featureset-matches-policy-leaf1-ecx", r9, r11
    mov r9d, dword ptr [rbx + 20]
    mov r11d, dword ptr [r12 + {fsbuf}]
    TS_CHECK "sysctl/featureset-matches-policy-leaf1-edx", r9, r11

    # Build the guest policy in A: the PV default minus some features.
    and dword ptr [rbx + 16], {keep_1c}
    lea rsi, [r12 + {buf_a}]
    mov ecx, dword ptr [r12 + {v_na}]
    mov edi, 7
    xor edx, edx
    call ts_find
    test rax, rax
    jz 3f
    and dword ptr [rax + 12], {keep_7b}
3:

    # domU1: created without best effort, A set, read back into B.
    TS_CREATE 1, {kind_pv}, 0
    TS_CHECK "create/domU1", rax, 0
    TS_CREATE 1, {kind_pv}, 0
    TS_CHECK "create/existing-id-eexist", rax, {eexist}
    TS_CREATE 5, 7, 0
    TS_CHECK "create/bad-kind-einval", rax, {einval}
    TS_CREATE 5, {kind_pv}, 2
    TS_CHECK "create/bad-flags-einval", rax, {einval}
    mov r9d, 1
    call ts_set_a
    TS_CHECK "domctl/set-policy-domU1", rax, 0
    mov ebx, dword ptr [r12 + {domctl} + 40]
    TS_CHECK "domctl/set-policy-success-leaves-err-fields", rbx, 0x5a5a5a5a
    mov r9d, 1
    TS_DOMCTL_START {domctl_get}
    TS_DOMCTL_CALL
    TS_CHECK "domctl/get-policy-size-query", rax, 0
    mov ebx, dword ptr [r12 + {domctl} + 16]
    TS_CHECK "domctl/get-policy-size-query-leaves", rbx, {max_leaves}
    mov r9d, 1
    lea rsi, [r12 + {buf_b}]
    lea r10, [r12 + {msr_b}]
    call ts_get
    TS_CHECK "domctl/get-policy-domU1", rax, 0
    mov ebx, dword ptr [r12 + {domctl} + 16]
    mov dword ptr [r12 + {v_nb}], ebx
    mov ebx, dword ptr [r12 + {domctl} + 20]
    mov dword ptr [r12 + {v_nmb}], ebx
    lea rsi, [r12 + {buf_b}]
    mov ecx, dword ptr [r12 + {v_nb}]
    mov edi, 1
    mov edx, {no_subleaf}
    call ts_find
    mov rbx, rax
    TS_CHECK_CC "domctl/read-back-has-leaf-1", ne, rbx, 0
    test rbx, rbx
    jz .Lts_abort
    mov r9d, dword ptr [rbx + 16]
    and r9d, {remove_1c}
    TS_CHECK "domctl/read-back-lacks-removed-leaf1-ecx", r9, 0
    mov r9d, dword ptr [rbx + 20]
    and r9d, {keep_1d}
    TS_CHECK "domctl/read-back-keeps-sse2", r9, {keep_1d}
    lea rsi, [r12 + {buf_b}]
    mov ecx, dword ptr [r12 + {v_nb}]
    mov edi, 7
    xor edx, edx
    call ts_find
    xor r9d, r9d
    test rax, rax
    jz 3f
    mov r9d, dword ptr [rax + 12]
    and r9d, {remove_7b}
3:  TS_CHECK "domctl/read-back-lacks-removed-leaf7-ebx", r9, 0

    # domU1's levelling (extension domctl): what can its hardware not hide?
    mov r9d, 1
    TS_DOMCTL_START {domctl_levelling}
    mov dword ptr [r12 + {domctl} + 24], 32
    lea rax, [r12 + {levbuf}]
    mov qword ptr [r12 + {domctl} + 32], rax
    TS_DOMCTL_CALL
    TS_CHECK "domctl/get-levelling-domU1", rax, 0
    mov ebx, dword ptr [r12 + {domctl} + 20]
    and ebx, 1
    TS_CHECK "domctl/levelling-domU1-levelled", rbx, 1
    mov ecx, dword ptr [r12 + {domctl} + 24]
    lea rsi, [r12 + {levbuf}]
    xor r15d, r15d
    test ecx, ecx
    jz 3f
4:  or r15d, dword ptr [rsi]
    add rsi, 4
    dec ecx
    jnz 4b
3:

    # The guests' boot data, from B; then start domU1: refused exactly when its hardware
    # cannot hide what its policy lacks (fail closed, no best effort asked).
    call ts_build_expect
    mov r14, rax
    mov edi, 1
    lea rsi, [r12 + {boot}]
    mov rdx, r14
    TS_HCALL {hc_start}
    xor r9d, r9d
    mov r11, {eopnotsupp}
    test r15d, r15d
    cmovnz r9, r11
    TS_CHECK "start/domU1-refused-iff-unenforceable", rax, r9

    # domU2: best effort, A, started.
    TS_CREATE 2, {kind_pv}, {best_effort}
    TS_CHECK "create/domU2-best-effort", rax, 0
    mov r9d, 2
    call ts_set_a
    TS_CHECK "domctl/set-policy-domU2", rax, 0
    TS_UNCHANGED "domctl/domU2-reads-back-as-domU1", 2
    mov edi, 2
    lea rsi, [r12 + {boot}]
    mov rdx, r14
    TS_HCALL {hc_start}
    TS_CHECK "start/domU2", rax, 0
    mov edi, 2
    lea rsi, [r12 + {boot}]
    mov rdx, r14
    TS_HCALL {hc_start}
    TS_CHECK "start/already-started-eexist", rax, {eexist}
    mov edi, 42
    xor esi, esi
    xor edx, edx
    TS_HCALL {hc_start}
    TS_CHECK "start/no-such-domain-esrch", rax, {esrch}

    # domU3: never started; the target of every error path.
    TS_CREATE 3, {kind_pv}, 0
    TS_CHECK "create/domU3", rax, 0
    mov r9d, 3
    call ts_set_a
    TS_CHECK "domctl/set-policy-domU3", rax, 0
    TS_UNCHANGED "domctl/domU3-reads-back-as-domU1", 3
    mov edi, 3
    mov rsi, {kernel_address}
    mov edx, 8
    TS_HCALL {hc_start}
    TS_CHECK "start/boot-data-at-kernel-address-efault", rax, {efault}
    # set(get(policy)) is the identity.
    mov r9d, 3
    lea rsi, [r12 + {buf_b}]
    mov edx, dword ptr [r12 + {v_nb}]
    lea r10, [r12 + {msr_b}]
    mov r8d, dword ptr [r12 + {v_nmb}]
    call ts_set
    TS_CHECK "domctl/set-read-back-policy", rax, 0
    TS_UNCHANGED "domctl/set-get-is-identity", 3

    # Too many leaves, too many MSRs: -E2BIG, err fields all ~0.
    mov r9d, 3
    lea rsi, [r12 + {buf_a}]
    mov edx, {max_leaves} + 1
    lea r10, [r12 + {msr_a}]
    mov r8d, dword ptr [r12 + {v_nma}]
    call ts_set
    TS_CHECK "error/too-many-leaves-e2big", rax, {e2big}
    TS_ERR_FIELDS "error/too-many-leaves", 0xffffffff, 0xffffffff, 0xffffffff
    TS_UNCHANGED "error/too-many-leaves-unchanged", 3
    mov r9d, 3
    lea rsi, [r12 + {buf_a}]
    mov edx, dword ptr [r12 + {v_na}]
    lea r10, [r12 + {msr_a}]
    mov r8d, {max_msrs} + 1
    call ts_set
    TS_CHECK "error/too-many-msrs-e2big", rax, {e2big}
    TS_UNCHANGED "error/too-many-msrs-unchanged", 3

    # A good leaf that changes the policy, then a bad one (leaf 1 has no subleaves):
    # -ERANGE naming the bad one, and the good one not applied either.
    call ts_leaf1_to_x
    mov dword ptr [r12 + {leaf_x} + 20], 0
    mov dword ptr [r12 + {leaf_x} + 24], 1
    mov dword ptr [r12 + {leaf_x} + 28], 5
    mov r9d, 3
    lea rsi, [r12 + {leaf_x}]
    mov edx, 2
    lea r10, [r12 + {msr_a}]
    xor r8d, r8d
    call ts_set
    TS_CHECK "error/bad-leaf-erange", rax, {erange}
    TS_ERR_FIELDS "error/bad-leaf", 1, 5, 0xffffffff
    TS_UNCHANGED "error/bad-leaf-unchanged", 3

    # MSRs: non-zero flags -EINVAL, a PLATFORM_INFO value over 32 bits -EOVERFLOW, an MSR
    # no policy holds -ERANGE; each names the MSR.
    mov dword ptr [r12 + {msr_x}], {platform_info}
    mov dword ptr [r12 + {msr_x} + 4], 1
    mov qword ptr [r12 + {msr_x} + 8], 0
    call ts_set_msr_x
    TS_CHECK "error/msr-flags-einval", rax, {einval}
    TS_ERR_FIELDS "error/msr-flags", 0xffffffff, 0xffffffff, {platform_info}
    TS_UNCHANGED "error/msr-flags-unchanged", 3
    mov dword ptr [r12 + {msr_x} + 4], 0
    mov rax, 1 << 32
    mov qword ptr [r12 + {msr_x} + 8], rax
    call ts_set_msr_x
    TS_CHECK "error/platform-info-overflow-eoverflow", rax, {eoverflow}
    TS_ERR_FIELDS "error/platform-info-overflow", 0xffffffff, 0xffffffff, {platform_info}
    TS_UNCHANGED "error/platform-info-overflow-unchanged", 3
    mov dword ptr [r12 + {msr_x}], 0x1234
    mov qword ptr [r12 + {msr_x} + 8], 0
    call ts_set_msr_x
    TS_CHECK "error/unknown-msr-erange", rax, {erange}
    TS_ERR_FIELDS "error/unknown-msr", 0xffffffff, 0xffffffff, 0x1234
    TS_UNCHANGED "error/unknown-msr-unchanged", 3

    # A feature the PV max policy lacks: -EINVAL naming leaf 1.
    call ts_leaf1_to_x
    or dword ptr [r12 + {leaf_x} + 16], {hvm_only_1c}
    mov r9d, 3
    lea rsi, [r12 + {leaf_x}]
    mov edx, 1
    lea r10, [r12 + {msr_a}]
    xor r8d, r8d
    call ts_set
    TS_CHECK "error/incompatible-policy-einval", rax, {einval}
    mov ebx, dword ptr [r12 + {domctl} + 40]
    TS_CHECK "error/incompatible-policy-err-leaf", rbx, 1
    TS_UNCHANGED "error/incompatible-policy-unchanged", 3

    # Buffers that fault: unmapped, a kernel address, an array running off the data page, a
    # read-back into read-only code, the domctl itself at a kernel address.
    mov r9d, 3
    mov rsi, {unmapped}
    call ts_set_leaves_at
    TS_CHECK "error/leaves-unmapped-efault", rax, {efault}
    TS_UNCHANGED "error/leaves-unmapped-unchanged", 3
    mov r9d, 3
    mov rsi, {kernel_address}
    call ts_set_leaves_at
    TS_CHECK "error/leaves-at-kernel-address-efault", rax, {efault}
    TS_UNCHANGED "error/leaves-at-kernel-address-unchanged", 3
    call ts_leaf1_to_x
    lea rsi, [r12 + {leaf_x}]
    lea rdi, [r12 + {cross}]
    mov ecx, 24
    rep movsb
    mov r9d, 3
    lea rsi, [r12 + {cross}]
    mov edx, 2
    lea r10, [r12 + {msr_a}]
    xor r8d, r8d
    call ts_set
    TS_CHECK "error/leaves-crossing-into-unmapped-efault", rax, {efault}
    TS_UNCHANGED "error/leaves-crossing-into-unmapped-unchanged", 3
    mov r9d, 3
    lea rsi, [r12 + {buf_a}]
    mov edx, dword ptr [r12 + {v_na}]
    mov r10, {kernel_address}
    mov r8d, 1
    call ts_set
    TS_CHECK "error/msrs-at-kernel-address-efault", rax, {efault}
    TS_UNCHANGED "error/msrs-at-kernel-address-unchanged", 3
    mov r9d, 3
    lea rsi, [rip + xl_toolstack]
    lea r10, [r12 + {msr_c}]
    call ts_get
    TS_CHECK "error/read-back-into-read-only-code-efault", rax, {efault}
    mov rdi, {kernel_address}
    TS_HCALL {hc_domctl}
    TS_CHECK "error/domctl-at-kernel-address-efault", rax, {efault}
    mov rdi, {unmapped}
    TS_HCALL {hc_sysctl}
    TS_CHECK "error/sysctl-unmapped-efault", rax, {efault}

    # Interface versions, unknown commands.
    mov r9d, 3
    TS_DOMCTL_START {domctl_get}
    dec dword ptr [r12 + {domctl} + 4]
    TS_DOMCTL_CALL
    TS_CHECK "error/domctl-bad-version-eacces", rax, {eacces}
    TS_SYSCTL_START {sysctl_caps}
    inc dword ptr [r12 + {sysctl} + 4]
    TS_SYSCTL_CALL
    TS_CHECK "error/sysctl-bad-version-eacces", rax, {eacces}
    mov r9d, 3
    TS_DOMCTL_START 99
    TS_DOMCTL_CALL
    TS_CHECK "error/domctl-unknown-command-enosys", rax, {enosys}
    TS_SYSCTL_START 99
    TS_SYSCTL_CALL
    TS_CHECK "error/sysctl-unknown-command-enosys", rax, {enosys}

    # A running domain, dom0 itself, a domain that does not exist.
    mov r9d, 2
    call ts_set_a
    TS_CHECK "error/set-running-domain-eexist", rax, {eexist}
    TS_UNCHANGED "error/set-running-domain-unchanged", 2
    mov r9d, 0
    call ts_set_a
    TS_CHECK "error/set-itself-einval", rax, {einval}
    mov r9d, 42
    call ts_set_a
    TS_CHECK "error/set-no-such-domain-esrch", rax, {esrch}
    mov r9d, 42
    lea rsi, [r12 + {buf_c}]
    lea r10, [r12 + {msr_c}]
    call ts_get
    TS_CHECK "error/get-no-such-domain-esrch", rax, {esrch}
    TS_UNCHANGED "error/after-all-errors-domU3-unchanged", 3

    TS_CHECK "toolstack-done", 0, 0
    xor edi, edi
    TS_HCALL {hc_exit}
    ud2
.Lts_abort:
    mov edi, 1
    TS_HCALL {hc_exit}
    ud2

    # sysctl get_cpu_policy, index R15, R14 leaves, into A and MSR A. Returns RAX.
ts_sysctl_policy_a:
    TS_SYSCTL_START {sysctl_policy}
    mov dword ptr [r12 + {sysctl} + 8], r15d
    mov dword ptr [r12 + {sysctl} + 12], r14d
    mov dword ptr [r12 + {sysctl} + 16], {max_msrs}
    lea rax, [r12 + {buf_a}]
    mov qword ptr [r12 + {sysctl} + 24], rax
    lea rax, [r12 + {msr_a}]
    mov qword ptr [r12 + {sysctl} + 32], rax
    TS_SYSCTL_CALL
    ret

    # RAX = the entry of leaf EDI, subleaf EDX among the ECX entries at RSI, or 0.
    # Clobbers RSI, RCX.
ts_find:
    test ecx, ecx
    jz 2f
1:  cmp dword ptr [rsi], edi
    jne 3f
    cmp dword ptr [rsi + 4], edx
    jne 3f
    mov rax, rsi
    ret
3:  add rsi, 24
    dec ecx
    jnz 1b
2:  xor eax, eax
    ret

    # set_cpu_policy on domain R9: RSI leaves, EDX of them, R10 MSRs, R8D of them. The err
    # fields go in as 0x5a5a5a5a (they must come back ~0 or named on failure, untouched on
    # success). Returns RAX.
ts_set:
    TS_DOMCTL_START {domctl_set}
    mov dword ptr [r12 + {domctl} + 16], edx
    mov dword ptr [r12 + {domctl} + 20], r8d
    mov qword ptr [r12 + {domctl} + 24], rsi
    mov qword ptr [r12 + {domctl} + 32], r10
    mov eax, 0x5a5a5a5a
    mov dword ptr [r12 + {domctl} + 40], eax
    mov dword ptr [r12 + {domctl} + 44], eax
    mov dword ptr [r12 + {domctl} + 48], eax
    TS_DOMCTL_CALL
    ret

    # set_cpu_policy(R9, A).
ts_set_a:
    lea rsi, [r12 + {buf_a}]
    mov edx, dword ptr [r12 + {v_na}]
    lea r10, [r12 + {msr_a}]
    mov r8d, dword ptr [r12 + {v_nma}]
    jmp ts_set

    # set_cpu_policy(R9, A's count of leaves at RSI, A's MSRs).
ts_set_leaves_at:
    mov edx, dword ptr [r12 + {v_na}]
    lea r10, [r12 + {msr_a}]
    mov r8d, dword ptr [r12 + {v_nma}]
    jmp ts_set

    # set_cpu_policy(domU3, no leaves, the one MSR in MSR X).
ts_set_msr_x:
    mov r9d, 3
    lea rsi, [r12 + {buf_a}]
    xor edx, edx
    lea r10, [r12 + {msr_x}]
    mov r8d, 1
    jmp ts_set

    # get_cpu_policy of domain R9 into RSI (leaves) and R10 (MSRs). Returns RAX.
ts_get:
    TS_DOMCTL_START {domctl_get}
    mov dword ptr [r12 + {domctl} + 16], {max_leaves}
    mov dword ptr [r12 + {domctl} + 20], {max_msrs}
    mov qword ptr [r12 + {domctl} + 24], rsi
    mov qword ptr [r12 + {domctl} + 32], r10
    TS_DOMCTL_CALL
    ret

    # Reads domain R9's policy into C and compares it with B: RAX = 0 if the same.
ts_unchanged:
    lea rsi, [r12 + {buf_c}]
    lea r10, [r12 + {msr_c}]
    call ts_get
    test rax, rax
    jnz 9f
    mov ecx, dword ptr [r12 + {domctl} + 16]
    cmp ecx, dword ptr [r12 + {v_nb}]
    jne 8f
    imul ecx, ecx, 24
    lea rsi, [r12 + {buf_b}]
    lea rdi, [r12 + {buf_c}]
    test ecx, ecx
    repe cmpsb
    jne 8f
    mov ecx, dword ptr [r12 + {domctl} + 20]
    cmp ecx, dword ptr [r12 + {v_nmb}]
    jne 8f
    shl ecx, 4
    lea rsi, [r12 + {msr_b}]
    lea rdi, [r12 + {msr_c}]
    test ecx, ecx
    repe cmpsb
    jne 8f
    xor eax, eax
    ret
8:  mov eax, 1
9:  ret

    # LEAF X[0] = B's leaf 1 with EDX cleared (a change nobody could miss).
ts_leaf1_to_x:
    lea rsi, [r12 + {buf_b}]
    mov ecx, dword ptr [r12 + {v_nb}]
    mov edi, 1
    mov edx, {no_subleaf}
    call ts_find
    test rax, rax
    jz .Lts_abort
    mov rsi, rax
    lea rdi, [r12 + {leaf_x}]
    mov ecx, 24
    rep movsb
    mov dword ptr [r12 + {leaf_x} + 20], 0
    ret

    # The boot data for a guest: count, then (leaf, subleaf, register, mask, value) for each
    # slot of ts_expect_table that B holds, value = B's register & mask. RAX = its length.
ts_build_expect:
    push rbx
    push rbp
    push r13
    push r14
    push r15
    lea r13, [rip + ts_expect_table]
    mov r14d, {expect_slots}
    xor r15d, r15d
1:  test r14d, r14d
    jz 5f
    lea rsi, [r12 + {buf_b}]
    mov ecx, dword ptr [r12 + {v_nb}]
    mov edi, dword ptr [r13]
    mov edx, dword ptr [r13 + 4]
    call ts_find
    test rax, rax
    jz 4f
    mov ebx, dword ptr [r13 + 12]
    mov ebx, dword ptr [rax + 8 + rbx * 4]
    and ebx, dword ptr [r13 + 16]
    lea rbp, [r15 + r15 * 4]
    lea rbp, [r12 + rbp * 4 + {boot} + 8]
    mov ecx, dword ptr [r13]
    mov dword ptr [rbp], ecx
    mov ecx, dword ptr [r13 + 8]
    mov dword ptr [rbp + 4], ecx
    mov ecx, dword ptr [r13 + 12]
    mov dword ptr [rbp + 8], ecx
    mov ecx, dword ptr [r13 + 16]
    mov dword ptr [rbp + 12], ecx
    mov dword ptr [rbp + 16], ebx
    inc r15d
4:  add r13, 20
    dec r14d
    jmp 1b
5:  mov dword ptr [r12 + {boot}], r15d
    lea rax, [r15 + r15 * 4]
    lea rax, [rax * 4 + 8]
    pop r15
    pop r14
    pop r13
    pop rbp
    pop rbx
    ret

    # (leaf, serialised subleaf, subleaf asked, register, mask): the registers a guest checks.
    # The masks leave out what the hypervisor fills in from live state (OSXSAVE, OSPKE).
    .balign 4
ts_expect_table:
    .long 0, {no_subleaf}, 0, 1, 0xffffffff
    .long 0, {no_subleaf}, 0, 2, 0xffffffff
    .long 0, {no_subleaf}, 0, 3, 0xffffffff
    .long 1, {no_subleaf}, 0, 2, {not_osxsave}
    .long 1, {no_subleaf}, 0, 3, 0xffffffff
    .long 7, 0, 0, 1, 0xffffffff
    .long 7, 0, 0, 2, {not_ospke}
    .long 7, 0, 0, 3, 0xffffffff
    .long 0x80000001, {no_subleaf}, 0, 2, 0xffffffff
    .long 0x80000001, {no_subleaf}, 0, 3, 0xffffffff
    .long 0xd, 1, 1, 0, 0xffffffff

    # ---- a PV guest making dom0's calls ----------------------------------------------------
    .balign 16
    .global xl_toolstack_unpriv
xl_toolstack_unpriv:
    mov r12, rdi
    TS_SYSCTL_START {sysctl_caps}
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/levelling-caps-eperm", rax, {eperm}
    TS_SYSCTL_START {sysctl_fs}
    mov dword ptr [r12 + {sysctl} + 8], 2
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/featureset-eperm", rax, {eperm}
    TS_SYSCTL_START {sysctl_policy}
    mov dword ptr [r12 + {sysctl} + 8], 4
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/policy-eperm", rax, {eperm}
    mov r9d, 0
    lea rsi, [r12 + {leaf_x}]
    lea r10, [r12 + {msr_x}]
    call ts_get
    TS_CHECK "domctl/get-policy-of-dom0-eperm", rax, {eperm}
    mov r9d, 0
    lea rsi, [r12 + {leaf_x}]
    xor edx, edx
    lea r10, [r12 + {msr_x}]
    xor r8d, r8d
    call ts_set
    TS_CHECK "domctl/set-policy-of-dom0-eperm", rax, {eperm}
    mov ebx, dword ptr [r12 + {domctl} + 40]
    TS_CHECK "domctl/set-policy-eperm-leaves-err-fields", rbx, 0x5a5a5a5a
    mov r9d, 9
    lea rsi, [r12 + {leaf_x}]
    xor edx, edx
    lea r10, [r12 + {msr_x}]
    xor r8d, r8d
    call ts_set
    TS_CHECK "domctl/set-policy-of-itself-eperm", rax, {eperm}
    mov r9d, 0
    TS_DOMCTL_START {domctl_levelling}
    TS_DOMCTL_CALL
    TS_CHECK "domctl/get-levelling-eperm", rax, {eperm}
    TS_CREATE 5, {kind_pv}, 0
    TS_CHECK "create-eperm", rax, {eperm}
    mov edi, 1
    xor esi, esi
    xor edx, edx
    TS_HCALL {hc_start}
    TS_CHECK "start-eperm", rax, {eperm}
    # As in Xen, the interface version is checked first.
    TS_SYSCTL_START {sysctl_caps}
    inc dword ptr [r12 + {sysctl} + 4]
    TS_SYSCTL_CALL
    TS_CHECK "sysctl/bad-version-eacces-before-eperm", rax, {eacces}
    xor edi, edi
    TS_HCALL {hc_exit}
    ud2

    # ---- a guest dom0 started: does it see its policy? -------------------------------------
    # Boot data: count at +0, then 20-byte (leaf, subleaf, register, mask, value) entries.
    .balign 16
    .global xl_toolstack_guest
xl_toolstack_guest:
    mov r12, rdi
    mov r15d, dword ptr [r12]
    xor r13d, r13d
1:  cmp r13d, r15d
    jae 2f
    lea r14, [r13 + r13 * 4]
    lea r14, [r12 + r14 * 4 + 8]
    mov eax, dword ptr [r14]
    mov ecx, dword ptr [r14 + 4]
    ud2
    .ascii "xen"
    cpuid
    mov dword ptr [rsp - 16], eax
    mov dword ptr [rsp - 12], ebx
    mov dword ptr [rsp - 8], ecx
    mov dword ptr [rsp - 4], edx
    mov eax, dword ptr [r14 + 8]
    and eax, 3
    mov edx, dword ptr [rsp + rax * 4 - 16]
    and edx, dword ptr [r14 + 12]
    mov r10d, dword ptr [r14 + 16]
    xor esi, esi
    cmp edx, r10d
    sete sil
    mov r8d, dword ptr [r14]
    shl r8, 32
    mov ecx, dword ptr [r14 + 4]
    shl ecx, 8
    or r8, rcx
    or r8, rax
    lea rdi, [rip + 3f]
    mov eax, {hc_check}
    int {vector}
    inc r13d
    jmp 1b
3:  .asciz "sees-policy"
2:  TS_CHECK_CC "sees-policy-registers-checked", a, r15, 0
    xor edi, edi
    TS_HCALL {hc_exit}
    ud2
    .popsection
    "#,
    vector = const HYPERCALL_VECTOR,
    hc_check = const HC_CHECK,
    hc_sysctl = const HC_SYSCTL,
    hc_domctl = const HC_DOMCTL,
    hc_create = const HC_DOMAIN_CREATE,
    hc_start = const HC_DOMAIN_START,
    hc_exit = const HC_EXIT,
    sysctl_version = const SYSCTL_INTERFACE_VERSION,
    domctl_version = const DOMCTL_INTERFACE_VERSION,
    sysctl_caps = const SYSCTL_GET_CPU_LEVELLING_CAPS,
    sysctl_fs = const SYSCTL_GET_CPU_FEATURESET,
    sysctl_policy = const SYSCTL_GET_CPU_POLICY,
    domctl_get = const DOMCTL_GET_CPU_POLICY,
    domctl_set = const DOMCTL_SET_CPU_POLICY,
    domctl_levelling = const DOMCTL_GET_LEVELLING,
    sysctl = const page::SYSCTL,
    domctl = const page::DOMCTL,
    fsbuf = const page::FSBUF,
    msr_a = const page::MSR_A,
    msr_b = const page::MSR_B,
    msr_c = const page::MSR_C,
    msr_x = const page::MSR_X,
    leaf_x = const page::LEAF_X,
    levbuf = const page::LEVBUF,
    boot = const page::BOOT,
    cross = const page::CROSS,
    v_na = const V_NA,
    v_nma = const V_NMA,
    v_nb = const V_NB,
    v_nmb = const V_NMB,
    buf_a = const BUF_A,
    buf_b = const BUF_B,
    buf_c = const BUF_C,
    nr_words = const NR_WORDS,
    max_leaves = const MAX_SERIALISED_LEAVES,
    max_msrs = const MAX_SERIALISED_MSRS,
    no_subleaf = const NO_SUBLEAF,
    keep_1c = const !REMOVE_1C,
    keep_7b = const !REMOVE_7B,
    remove_1c = const REMOVE_1C,
    remove_7b = const REMOVE_7B,
    keep_1d = const KEEP_1D,
    hvm_only_1c = const HVM_ONLY_1C,
    not_osxsave = const !Feature::OSXSAVE.mask(),
    not_ospke = const !Feature::OSPKE.mask(),
    platform_info = const MSR_PLATFORM_INFO,
    kind_pv = const KIND_PV,
    best_effort = const CREATE_BEST_EFFORT,
    unmapped = const UNMAPPED,
    kernel_address = const KERNEL_ADDRESS,
    expect_slots = const EXPECT_SLOTS,
    eperm = const neg(errno::EPERM),
    esrch = const neg(errno::ESRCH),
    e2big = const neg(errno::E2BIG),
    eacces = const neg(errno::EACCES),
    efault = const neg(errno::EFAULT),
    eexist = const neg(errno::EEXIST),
    einval = const neg(errno::EINVAL),
    erange = const neg(errno::ERANGE),
    enosys = const neg(errno::ENOSYS),
    eoverflow = const neg(errno::EOVERFLOW),
    eopnotsupp = const neg(errno::EOPNOTSUPP),
    enobufs = const neg(errno::ENOBUFS),
);

unsafe extern "C" {
    /// dom0's toolstack (in `.user_text`).
    pub safe fn xl_toolstack();
    /// A PV guest making the toolstack's calls (in `.user_text`).
    pub safe fn xl_toolstack_unpriv();
    /// A guest started by the toolstack, checking what it sees (in `.user_text`).
    pub safe fn xl_toolstack_guest();
}
