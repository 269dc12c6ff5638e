//! `#[repr(C)]` structures byte-compatible with Xen's public headers (x86-64 layout).
//!
//! Offsets and sizes are asserted at compile time against the numbers measured from Xen's
//! `xen/include/public/arch-x86/xen.h` (reference `xen-levelling.md` 6.2).

use static_assertions::{assert_eq_align, assert_eq_size, const_assert_eq};

/// One CPUID leaf of a serialised policy (`xen_cpuid_leaf_t`, 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct XenCpuidLeaf {
    /// IN/OUT: the leaf (EAX input).
    pub leaf: u32,
    /// IN/OUT: the subleaf (ECX input), or [`crate::cpuid::NO_SUBLEAF`].
    pub subleaf: u32,
    /// IN/OUT: EAX.
    pub a: u32,
    /// IN/OUT: EBX.
    pub b: u32,
    /// IN/OUT: ECX.
    pub c: u32,
    /// IN/OUT: EDX.
    pub d: u32,
}

/// One MSR of a serialised policy (`xen_msr_entry_t`, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct XenMsrEntry {
    /// IN/OUT: the MSR index.
    pub idx: u32,
    /// IN: reserved, must be zero.
    pub flags: u32,
    /// IN/OUT: the value.
    pub val: u64,
}

assert_eq_size!(XenCpuidLeaf, [u8; 24]);
assert_eq_align!(XenCpuidLeaf, u32);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, leaf), 0);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, subleaf), 4);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, a), 8);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, b), 12);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, c), 16);
const_assert_eq!(core::mem::offset_of!(XenCpuidLeaf, d), 20);

assert_eq_size!(XenMsrEntry, [u8; 16]);
assert_eq_align!(XenMsrEntry, u64);
const_assert_eq!(core::mem::offset_of!(XenMsrEntry, idx), 0);
const_assert_eq!(core::mem::offset_of!(XenMsrEntry, flags), 4);
const_assert_eq!(core::mem::offset_of!(XenMsrEntry, val), 8);
