//! Checks of the kernel's own `Hardware` implementation, run at the start of every scenario:
//! the exception-table fixups really turn a #GP into `Err(MsrFault)`, and a readable MSR
//! reads.

use xen_levelling::hardware::{Hardware, MsrFault};

use crate::checks;
use crate::hardware::NativeHardware;

/// IA32_PKRS (Intel SDM vol. 4): bits 63:32 are reserved, so setting bit 32 #GPs; the one
/// CPL0 MSR #GP QEMU 7.2 TCG raises on every model (qemu-facts.md section 5).
const MSR_PKRS: u32 = 0x6e1;
/// IA32_EFER.
const MSR_EFER: u32 = 0xc000_0080;
/// EFER.LME (bit 8) | EFER.LMA (bit 10): set in long mode.
const EFER_LME_LMA: u64 = 1 << 8 | 1 << 10;

/// Runs the self-checks.
pub fn run() {
    let mut hw = NativeHardware;
    let result = hw.wrmsr_safe(MSR_PKRS, 1 << 32);
    checks::check(
        format_args!("selftest/wrmsr-safe-gp-is-err"),
        result == Err(MsrFault { msr: MSR_PKRS }),
        format_args!("wrmsr_safe({MSR_PKRS:#x}, 1 << 32) = {result:?}"),
    );
    let efer = hw.rdmsr_safe(MSR_EFER);
    checks::check(
        format_args!("selftest/rdmsr-safe-reads"),
        matches!(efer, Ok(v) if v & EFER_LME_LMA == EFER_LME_LMA),
        format_args!("rdmsr_safe(EFER) = {efer:x?}"),
    );
}
