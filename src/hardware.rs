//! The instructions the levelling code needs, behind a trait: [`Hardware`].
//!
//! The crate's logic never executes `cpuid`, `rdmsr` or `wrmsr` itself. The test hypervisor's
//! `arch/x86_64` implements [`Hardware`] with the real instructions; the silicon model
//! implements it for a modelled CPU; tests use either.
//!
//! # The `_safe` contract
//!
//! `rdmsr_safe`/`wrmsr_safe` must return [`MsrFault`] where the instruction raises #GP (an
//! absent MSR, a reserved bit, a write the CPU refuses) instead of faulting. On real hardware
//! that needs help from the embedding hypervisor: its #GP handler must look the faulting RIP
//! up in an exception table, and if the RIP is one of the `_safe` instruction sites, resume at
//! the site's fixup address with the fault recorded (the test kernel returns an error flag in
//! a register), exactly like Linux's `_ASM_EXTABLE` or Xen's `_ASM_EXTABLE`. A #GP at any
//! other RIP is a real fault. The fixup must not re-enable interrupts or change the stack.

use crate::cpuid::{CpuidRegs, CpuidSource};

/// The passcode AMD K8 and later want in EDI for the levelling MSRs (`0x9C5A203A`).
pub const AMD_MSR_PASSCODE: u32 = 0x9c5a_203a;

/// An MSR access that raised #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsrFault {
    /// The MSR that was accessed.
    pub msr: u32,
}

impl core::fmt::Display for MsrFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#GP accessing MSR {:#x}", self.msr)
    }
}

impl core::error::Error for MsrFault {}

/// CPUID and MSR access on the CPU the caller runs on.
pub trait Hardware {
    /// CPUID at the caller's privilege level (subject to faulting and masks like any CPUID).
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs;

    /// RDMSR; `Err` where the instruction raises #GP.
    fn rdmsr_safe(&self, msr: u32) -> Result<u64, MsrFault>;

    /// WRMSR; `Err` where the instruction raises #GP.
    fn wrmsr_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault>;

    /// RDMSR with EDI = [`AMD_MSR_PASSCODE`], as AMD's levelling MSRs need on some families.
    fn rdmsr_amd_safe(&self, msr: u32) -> Result<u64, MsrFault>;

    /// WRMSR with EDI = [`AMD_MSR_PASSCODE`].
    fn wrmsr_amd_safe(&mut self, msr: u32, value: u64) -> Result<(), MsrFault>;

    /// CPUID executed at CPL 3, to verify CPUID faulting by its effect. The default says it
    /// cannot be done here; an implementation that can drop to user mode briefly (or a model)
    /// overrides it.
    fn cpuid_user(&mut self, leaf: u32, subleaf: u32) -> UserCpuid {
        let _ = (leaf, subleaf);
        UserCpuid::Unavailable
    }
}

/// What CPUID at CPL 3 did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserCpuid {
    /// It returned these registers.
    Returned(CpuidRegs),
    /// It raised #GP(0): CPUID faulting is on.
    Faulted,
    /// This `Hardware` cannot run code at CPL 3.
    Unavailable,
}

/// Reads CPUID through a [`Hardware`], so that a policy can be built from it.
#[derive(Clone, Copy, Debug)]
pub struct HardwareCpuid<'a, H: ?Sized>(pub &'a H);

impl<H: Hardware + ?Sized> CpuidSource for HardwareCpuid<'_, H> {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.0.cpuid(leaf, subleaf)
    }
}
