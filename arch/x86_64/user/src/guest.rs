//! A guest dom0 started: does it see the policy dom0 gave it? For every register its boot
//! data lists it runs the forced-emulation CPUID and reports `sees-policy` tagged with the
//! register, then that it checked at least one.

use crate::boot_data::BootData;
use crate::hypercall::{check_tagged, exit, forced_cpuid};

/// The guest's program; `data` is its data page, holding the boot data.
pub extern "C" fn run(data: u64) -> ! {
    // SAFETY: `data` is this domain's data page (the kernel's entry contract): mapped
    // readable, page aligned and a page long, which holds a `BootData`; it is only read.
    let boot = unsafe { &*(data as *const BootData) };
    for expect in boot.expectations() {
        let register = expect.register & 3;
        let got = forced_cpuid(expect.leaf, expect.subleaf)[register as usize] & expect.mask;
        let tag =
            u64::from(expect.leaf) << 32 | u64::from(expect.subleaf << 8) | u64::from(register);
        check_tagged(
            c"sees-policy",
            got == expect.value,
            u64::from(got),
            u64::from(expect.value),
            tag,
        );
    }
    let count = u64::from(boot.count);
    check_tagged(c"sees-policy-registers-checked", count > 0, count, 0, 0);
    exit(0)
}
