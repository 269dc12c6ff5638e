//! The silicon shim: a small L0 hypervisor that runs the kernel above it as an SVM guest on a
//! modelled CPU, so that the kernel's real `cpuid`, `rdmsr` and `wrmsr` meet that CPU's
//! levelling hardware. QEMU 7.2 TCG implements neither CPUID faulting nor any mask MSR (every
//! MSR reads 0 and swallows writes, qemu-facts.md section 5); through the shim the kernel's
//! probing, masking, faulting and trap emulation run end to end on every real CPU of
//! `data/cpuid-dumps/` (all embedded at build time; the matrix boots each).
//!
//! `-append "shim=<dump stem> scenario=…"` picks the CPU (the file stem, e.g.
//! `GenuineIntel00206D7_SandyBridgeE_00_CPUID`; the part before `_CPUID`, or any unique part
//! of a stem, also works). The boot CPU then runs [`l0::run`] instead of the kernel: it parses
//! the embedded dump, builds the crate's [`SiliconModel`] of it, and enters the kernel
//! (`kernel_main_l1`) as an SVM guest, which boots as on bare metal and runs the scenario.
//!
//! With `-smp N` the kernel above starts the APs (`smp`), and each AP's trampoline enters
//! [`l0::ap_entry`]: that AP's own L0, with its own GDT, TSS and trap stacks
//! (`gdt::shim_slot`), host save area and host VMCB (`svm`, per CPU), guest VMCB, and its own
//! copy of the model as it was at power-on (the levelling MSRs are per-CPU state on real
//! hardware); it runs `smp::ap_main` as its guest. The MSR permission map is shared (written by
//! the boot CPU's L0 before the kernel starts, then only read).
//!
//! # What is modelled, and from which facts
//!
//! The model is the crate's `silicon` module (`xen_levelling::silicon::SiliconModel`), the
//! same one the host tests drive; the shim only connects it to the guest's instructions:
//!
//! | guest does | the shim | facts |
//! |---|---|---|
//! | CPUID, at any CPL | intercepted (VMCB 0x00C bit 18) and answered by `model.cpuid_at(cpl, leaf, subleaf)` under the MSR values loaded now; CPL from the VMCB (0x4CB); the model's live CR4.OSXSAVE follows the guest's CR4 (VMCB 0x548) first. `Err` (faulting on, CPL > 0) injects #GP(0) and leaves RIP at the CPUID | qemu-facts.md 11 (checks 3), gotcha 7 |
//! | RDMSR/WRMSR of 0xCE, 0x140, 0x10A, 0x478, 0x130-0x134, 0xC0010015, 0xC0011002-0xC0011005 | intercepted through the MSR permission map and served by the model's `rdmsr_safe`/`wrmsr_safe`, or `rdmsr_amd_safe`/`wrmsr_amd_safe` when EDI holds the passcode 0x9C5A203A; `Err` injects #GP(0) | qemu-facts.md 11 (checks 1, 2, 4); reference `xen-levelling.md` 2.1-2.2 through the model |
//! | RDMSR of VM_CR (0xC0010114) | reads LOCK and SVMDIS: the kernel above gets no SVM (nested SVM is not modelled, and its VMRUN would clobber the shim's host save area) | APM vol. 2 15.30.1 |
//! | any other MSR access in the map's ranges | not intercepted: QEMU's own (EFER, PAT, the #GP of IA32_PKRS the self-test uses) | |
//! | an MSR outside the map's three ranges | exits anyway (architectural); #GP(0) injected | qemu-facts.md 11, gotcha 6 |
//! | VMMCALL | the shim's own calls ([`l0_msr_writes`], statistics, [`fail_msr`]: one levelling MSR starts raising #GP, the model's `fail_msr`), RIP + 3 | |
//! | triple fault, HLT, anything else | reported, and QEMU leaves with a failure | |
//!
//! What the model itself models (its module documentation has the detail): which levelling
//! MSRs exist for the vendor, family and model (Intel V1 0x478 on Penryn, V2 0x130/0x131 on
//! Nehalem/Westmere, V3 0x132-0x134 on Sandy Bridge, MSR_PLATFORM_INFO from Nehalem with the
//! faulting bit and MSR_MISC_FEATURES_ENABLES from Ivy Bridge; AMD's override MSRs from family
//! 0Fh model 20h but not 11h, leaf 7 with leaf 7, leaf 6 on family 15h, HWCR with
//! CpuidUserDis where `CPUID.80000021H:EAX[17]` enumerates it); #GP on an absent MSR, a
//! reserved bit, or a K8 mask access without the passcode; Intel AND semantics after the
//! fast-forwarded OSXSAVE/APIC bits, AMD override semantics; CPUID faulting at CPL > 0; and
//! the firmware's values at power-on (all-ones Intel masks, the real CPUID in AMD overrides).
//! MSR_PLATFORM_INFO comes from the dump where it was recorded (Nehalem and later), as the
//! host tests do. Not modelled: MSR_ARCH_CAPABILITIES (the model has no value for 0x10A, so
//! reading it raises #GP, as on a CPU without it, even where the dump recorded one); nested
//! SVM; the modelled CPU's other MSRs (QEMU's own answer).
//!
//! The world switch is `svm::run`: `vmsave host; vmload guest; vmrun; vmsave guest; vmload
//! host` under CLGI (qemu-facts.md 11, gotcha 1). QEMU has no NRIPS, so the shim moves RIP
//! itself: 2 for CPUID, RDMSR and WRMSR, 3 for VMMCALL (gotcha 2). #GP is injected with
//! EVENTINJ = 0x80000B0D: valid, error code valid, type 3 (exception), vector 13, error code
//! 0 (gotcha 3).
//!
//! # Sharing one image
//!
//! The shim and the kernel above it are the same ELF in the same memory: the shim runs on the
//! boot stack, the kernel on its own stack ([`l0`]'s `L1_STACK`), both on the identity map
//! `boot.rs` built (an AP's L0 runs on a stack of its own, which `percpu::id` recognises).
//! Before entering the kernel the shim moves to its own GDT, TSS and trap stacks
//! (`gdt::SHIM_SLOT`); the kernel above rebuilds slot 0 (the boot CPU's, on which its
//! guest state was built) and the IDT with the same values, and never touches the shim's
//! statics. The IDT is the one shared table: its gates hold only the kernel's stub addresses
//! and IST indices, which the two load identically, and each side's IST stacks are its own
//! TSS's. The shim never takes a trap while the kernel runs (each exit is handled with GIF
//! clear, then the guest resumes).

mod l0;

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use xen_levelling::CpuPolicy;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::levelling::{Mechanism, generation};

use crate::cmdline::Cmdline;

mod dumps {
    include!(concat!(env!("OUT_DIR"), "/dumps.rs"));
}

pub use l0::{ap_entry, ap_host_stack_top, cpu_of_host_stack, run};

/// The shim's VMMCALLs (RAX; results in RAX..RDX). A distinct range, so that nothing else's
/// VMMCALL is mistaken for one.
pub mod call {
    /// Returns [`PONG`] in RAX.
    pub const PING: u64 = 0x5348_494d_0000_0000;
    /// RAX = the number of WRMSRs the shim has served (to the model) since boot.
    pub const MSR_WRITES: u64 = PING + 1;
    /// RAX = CPUID exits, RBX = MSR exits, RCX = #GPs injected, RDX = WRMSRs served.
    pub const STATS: u64 = PING + 2;
    /// RDI = an MSR index: the model makes it raise #GP on every access from now on (as
    /// after a microcode update that withdrew it). RAX = 1 if it took it, 0 if its table of
    /// failing MSRs is full.
    pub const FAIL_MSR: u64 = PING + 3;
    /// What [`PING`] returns.
    pub const PONG: u64 = 0x5348_494d_504f_4e47;
    /// What an unknown call returns.
    pub const UNKNOWN: u64 = u64::MAX;
}

/// Set in the kernel above the shim (by `kernel_main_l1`): the shim's calls may be made.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The kernel above the shim starts: from now on [`active`] is true.
pub fn enter_guest() {
    ACTIVE.store(true, Ordering::Relaxed);
}

/// True in the kernel that runs above the shim.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Every embedded dump: (file stem, text).
pub fn dumps() -> &'static [(&'static str, &'static str)] {
    dumps::DUMPS
}

/// Why `shim=NAME` names no dump.
#[derive(Clone, Copy, Debug)]
pub enum ProfileError<'a> {
    /// No stem matches.
    Unknown(&'a str),
    /// Several stems contain it.
    Ambiguous(&'a str),
}

impl core::fmt::Display for ProfileError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProfileError::Unknown(name) => write!(f, "no embedded dump matches `{name}`"),
            ProfileError::Ambiguous(name) => write!(f, "`{name}` is part of several dump names"),
        }
    }
}

/// The dump `name` picks: its exact file stem, or its stem before `_CPUID`, or, failing both,
/// the one stem that contains `name` (ASCII case ignored).
pub fn profile(name: &str) -> Result<(&'static str, &'static str), ProfileError<'_>> {
    if let Some(&found) = dumps()
        .iter()
        .find(|(stem, _)| *stem == name || short(stem) == name)
    {
        return Ok(found);
    }
    let lower = |b: &u8| b.to_ascii_lowercase();
    let contains = |stem: &str| {
        let (s, n) = (stem.as_bytes(), name.as_bytes());
        !n.is_empty()
            && s.windows(n.len())
                .any(|w| w.iter().map(lower).eq(n.iter().map(lower)))
    };
    let mut matches = dumps().iter().filter(|(stem, _)| contains(stem));
    match (matches.next(), matches.next()) {
        (Some(&found), None) => Ok(found),
        (Some(_), Some(_)) => Err(ProfileError::Ambiguous(name)),
        (None, _) => Err(ProfileError::Unknown(name)),
    }
}

/// In the kernel above the shim: the mechanism the modelled CPU's generation promises
/// (`data/generations.tbl`, the checks' expectation); `None` on plain QEMU, or if the profile
/// is unknown or does not parse.
pub fn expected_mechanism(cmdline: &Cmdline) -> Option<Mechanism> {
    if !active() {
        return None;
    }
    let (_, text) = profile(cmdline.value("shim")?).ok()?;
    let dump = Aida64Dump::parse(text).ok()?;
    let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
    Some(generation::expected_mechanism(&raw, dump.raw_msrs()))
}

/// A dump's stem before `_CPUID` (`GenuineIntel0010676_Penryn`).
pub fn short(stem: &str) -> &str {
    stem.find("_CPUID").map_or(stem, |end| &stem[..end])
}

/// A VMMCALL to the shim.
fn vmmcall(call: u64) -> [u64; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: only made above the shim (callers check `active`), whose VMMCALL intercept
    // answers in RAX-RDX and moves RIP past the instruction; nothing else changes. RBX is
    // saved around it because LLVM reserves it.
    unsafe {
        asm!(
            "mov {tmp}, rbx",
            "vmmcall",
            "xchg {tmp}, rbx",
            tmp = out(reg) b,
            inout("rax") call => a,
            out("rcx") c,
            out("rdx") d,
            options(nostack),
        );
    }
    [a, b, c, d]
}

/// The number of WRMSRs the shim has served since boot (0 on plain QEMU).
pub fn l0_msr_writes() -> u64 {
    if active() {
        vmmcall(call::MSR_WRITES)[0]
    } else {
        0
    }
}

/// Above the shim: makes `msr` raise #GP from now on ([`call::FAIL_MSR`]). False on plain
/// QEMU, or if the model refused.
pub fn fail_msr(msr: u32) -> bool {
    if !active() {
        return false;
    }
    let a: u64;
    // SAFETY: as `vmmcall`; the shim reads RDI and answers in RAX only (RBX-RDX are zeroed:
    // declared clobbered).
    unsafe {
        asm!(
            "mov {tmp}, rbx",
            "vmmcall",
            "mov rbx, {tmp}",
            tmp = out(reg) _,
            inout("rax") call::FAIL_MSR => a,
            in("rdi") u64::from(msr),
            out("rcx") _,
            out("rdx") _,
            options(nostack),
        );
    }
    a == 1
}

/// The shim's counters: (CPUID exits, MSR exits, #GPs injected, WRMSRs served).
pub fn l0_stats() -> Option<[u64; 4]> {
    active().then(|| vmmcall(call::STATS))
}
