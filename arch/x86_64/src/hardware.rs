//! [`NativeHardware`]: the crate's [`Hardware`] trait on the real instructions. The only real
//! implementation; the crate itself never executes `cpuid`, `rdmsr` or `wrmsr`.
//!
//! `rdmsr_safe`/`wrmsr_safe` keep the trait's `_safe` contract with the exception table
//! (`extable.rs`, through its [`extable_site!`](crate::extable::extable_site) macro): each site clears a fault flag, registers `(instruction, fixup)` in
//! `__ex_table`, and the fixup sets the flag and jumps back. On #GP the trap handler resumes
//! at the fixup, so the method returns `Err(MsrFault)` with registers and stack untouched.
//! The AMD variants load EDI with the passcode [`AMD_MSR_PASSCODE`] (`0x9C5A203A`) that K8 and
//! later want for the levelling MSRs C001_1004h/C001_1005h.

use core::arch::x86_64::__cpuid_count;

use xen_levelling::CpuidRegs;
use xen_levelling::hardware::{AMD_MSR_PASSCODE, Hardware, MsrFault, UserCpuid};

use crate::extable::extable_site;

/// CPUID, RDMSR and WRMSR on the CPU this code runs on, at its current privilege level.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeHardware;

/// CPUID at the current privilege level (CPL0 in the kernel).
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidRegs {
    let r = __cpuid_count(leaf, subleaf);
    CpuidRegs::new(r.eax, r.ebx, r.ecx, r.edx)
}

/// RDMSR of `msr` with EDI = `edi`; `Err` if it raised #GP.
fn rdmsr_edi(msr: u32, edi: u32) -> Result<u64, MsrFault> {
    let (low, high, fault): (u32, u32, u32);
    // SAFETY: the `extable_site!` contract (extable.rs): RDMSR is one instruction that
    // either reads the MSR (no side effects for the MSRs the levelling code reads) or raises
    // #GP, which the table turns into the flag with registers and stack untouched. EDI is
    // only an input (the AMD passcode), as the CPU ignores it otherwise.
    unsafe {
        extable_site!(
            fault = fault,
            before = [],
            site = "rdmsr",
            after = [],
            in("ecx") msr,
            in("edi") edi,
            out("eax") low,
            out("edx") high,
            options(nostack),
        );
    }
    if fault != 0 {
        Err(MsrFault { msr })
    } else {
        Ok(u64::from(high) << 32 | u64::from(low))
    }
}

/// WRMSR of `value` to `msr` with EDI = `edi`; `Err` if it raised #GP (nothing was written).
fn wrmsr_edi(msr: u32, value: u64, edi: u32) -> Result<(), MsrFault> {
    let fault: u32;
    // SAFETY: the `extable_site!` contract, as `rdmsr_edi` (a faulting WRMSR writes
    // nothing); the callers are the levelling code, which writes only the levelling MSRs
    // (masks, faulting enables), whose effect is limited to what CPUID returns.
    unsafe {
        extable_site!(
            fault = fault,
            before = [],
            site = "wrmsr",
            after = [],
            in("ecx") msr,
            in("edi") edi,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack),
        );
    }
    if fault != 0 {
        Err(MsrFault { msr })
    } else {
        Ok(())
    }
}

impl Hardware for NativeHardware {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        cpuid(leaf, subleaf)
    }

    fn rdmsr_safe(&self, msr: u32) -> Result<u64, MsrFault> {
        rdmsr_edi(msr, 0)
    }

    fn wrmsr_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault> {
        wrmsr_edi(msr, value, 0)
    }

    fn rdmsr_amd_safe(&self, msr: u32) -> Result<u64, MsrFault> {
        rdmsr_edi(msr, AMD_MSR_PASSCODE)
    }

    fn wrmsr_amd_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault> {
        wrmsr_edi(msr, value, AMD_MSR_PASSCODE)
    }

    /// A real excursion to ring 3 (`userprobe.rs`), so that the probe verifies faulting by
    /// its effect.
    fn cpuid_user(&mut self, leaf: u32, subleaf: u32) -> UserCpuid {
        crate::userprobe::cpuid_user(leaf, subleaf)
    }
}
