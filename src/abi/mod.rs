//! The hypercall ABI: `#[repr(C)]` structures byte-compatible with Xen's public headers
//! (x86-64 layout), and a dispatcher with Xen's semantics ([`dispatch`]).
//!
//! Offsets and sizes are asserted at compile time against the numbers measured from Xen's
//! `xen/include/public/{sysctl,domctl}.h` and `arch-x86/xen.h` (reference
//! `xen-levelling.md` 6.2). Guest handles are 64-bit guest addresses (0 = NULL). Every field
//! says whether the caller fills it (IN), Xen does (OUT), or both.
//!
//! The dispatcher never casts guest bytes to these types: it decodes fields explicitly from
//! little-endian bytes ([`Wire`]), so any byte pattern is a valid input.

pub mod dispatch;
pub mod domain;

use static_assertions::{assert_eq_align, assert_eq_size, const_assert_eq};

/// `__HYPERVISOR_sysctl`.
pub const HYPERVISOR_SYSCTL: u32 = 35;
/// `__HYPERVISOR_domctl`.
pub const HYPERVISOR_DOMCTL: u32 = 36;
/// `XEN_SYSCTL_INTERFACE_VERSION` (Xen 4.21 and 4.23-dev).
pub const SYSCTL_INTERFACE_VERSION: u32 = 0x16;
/// `XEN_DOMCTL_INTERFACE_VERSION` (4.23-dev).
pub const DOMCTL_INTERFACE_VERSION: u32 = 0x18;

/// `XEN_SYSCTL_get_cpu_levelling_caps`. Xen removed it in 4.22 as unused by any toolstack;
/// ours uses it to learn the host's mechanism, so it stays, with its pre-4.22 bit values.
pub const SYSCTL_GET_CPU_LEVELLING_CAPS: u32 = 25;
/// `XEN_SYSCTL_get_cpu_featureset`.
pub const SYSCTL_GET_CPU_FEATURESET: u32 = 26;
/// `XEN_SYSCTL_get_cpu_policy`.
pub const SYSCTL_GET_CPU_POLICY: u32 = 29;
/// `XEN_DOMCTL_get_cpu_policy`.
pub const DOMCTL_GET_CPU_POLICY: u32 = 82;
/// `XEN_DOMCTL_set_cpu_policy`.
pub const DOMCTL_SET_CPU_POLICY: u32 = 83;
/// Extension (not in Xen, whose domctl numbers stay below 100): a domain's levelling
/// mechanism and the features its hardware cannot hide ([`XenDomctlLevelling`]).
pub const DOMCTL_GET_LEVELLING: u32 = 1000;

/// The pre-4.22 public `XEN_SYSCTL_CPU_LEVELCAP_*` bits.
pub mod levelcap {
    /// CPUID faulting.
    pub const FAULTING: u32 = 1 << 0;
    /// Leaf 1 ECX mask.
    pub const ECX: u32 = 1 << 1;
    /// Leaf 1 EDX mask.
    pub const EDX: u32 = 1 << 2;
    /// Leaf 0x80000001 ECX mask.
    pub const EXTD_ECX: u32 = 1 << 3;
    /// Leaf 0x80000001 EDX mask.
    pub const EXTD_EDX: u32 = 1 << 4;
    /// Leaf 0xD subleaf 1 EAX mask.
    pub const XSAVE_EAX: u32 = 1 << 5;
    /// Leaf 6 ECX mask.
    pub const THERMAL_ECX: u32 = 1 << 6;
    /// Leaf 7 subleaf 0 EAX mask.
    pub const L7S0_EAX: u32 = 1 << 7;
    /// Leaf 7 subleaf 0 EBX mask.
    pub const L7S0_EBX: u32 = 1 << 8;
}

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

/// The sysctl envelope (`struct xen_sysctl`, 136 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenSysctl {
    /// IN: the command.
    pub cmd: u32,
    /// IN: [`SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// IN/OUT: the command's payload (a union in C; 128 bytes, 8-aligned).
    pub u: [u64; 16],
}

/// The domctl envelope (`struct xen_domctl`, 144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenDomctl {
    /// IN: the command.
    pub cmd: u32,
    /// IN: [`DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// IN: the target domain.
    pub domain: u16,
    /// Padding.
    pub pad: [u16; 3],
    /// IN/OUT: the command's payload (a union in C; 128 bytes, 8-aligned).
    pub u: [u64; 16],
}

/// `xen_sysctl_cpu_levelling_caps` (sysctl 25).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlCpuLevellingCaps {
    /// OUT: [`levelcap`] bits.
    pub caps: u32,
}

/// `xen_sysctl_cpu_featureset` (sysctl 26, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlCpuFeatureset {
    /// IN: 0 raw, 1 host, 2 PV default, 3 HVM default, 4 PV max, 5 HVM max.
    pub index: u32,
    /// IN: words the buffer holds; OUT: words written (or needed, for a NULL handle).
    pub nr_features: u32,
    /// IN: guest handle of a `u32` array (0 = size query).
    pub features: u64,
}

/// `xen_sysctl_cpu_policy` (sysctl 29, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenSysctlCpuPolicy {
    /// IN: 0 raw, 1 host, 2 PV max, 3 HVM max, 4 PV default, 5 HVM default (not the
    /// featureset sysctl's order).
    pub index: u32,
    /// IN: leaves the buffer holds; OUT: leaves written (or the most there can be).
    pub nr_leaves: u32,
    /// IN: MSRs the buffer holds; OUT: MSRs written (or the most there can be).
    pub nr_msrs: u32,
    /// Reserved, must be zero.
    pub rsvd: u32,
    /// IN: guest handle of a [`XenCpuidLeaf`] array (0 = size query).
    pub leaves: u64,
    /// IN: guest handle of a [`XenMsrEntry`] array (0 = size query).
    pub msrs: u64,
}

/// `xen_domctl_cpu_policy` (domctl 82/83, 40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlCpuPolicy {
    /// IN/OUT: leaves in the buffer.
    pub nr_leaves: u32,
    /// IN/OUT: MSRs in the buffer.
    pub nr_msrs: u32,
    /// IN (set) / OUT (get): guest handle of a [`XenCpuidLeaf`] array.
    pub leaves: u64,
    /// IN (set) / OUT (get): guest handle of a [`XenMsrEntry`] array.
    pub msrs: u64,
    /// OUT (set, on failure only): the offending leaf, else `!0`.
    pub err_leaf: u32,
    /// OUT (set, on failure only): the offending subleaf, else `!0`.
    pub err_subleaf: u32,
    /// OUT (set, on failure only): the offending MSR, else `!0`.
    pub err_msr: u32,
    /// Tail padding.
    pub pad: u32,
}

/// Extension payload of [`DOMCTL_GET_LEVELLING`] (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenDomctlLevelling {
    /// OUT: 0 none, 1 CPUID faulting, 2 mask MSRs.
    pub mechanism: u32,
    /// OUT: [`levelling_flags`] bits.
    pub flags: u32,
    /// IN: words each buffer holds; OUT: words written (or needed, for NULL handles).
    pub nr_features: u32,
    /// Reserved, must be zero.
    pub rsvd: u32,
    /// IN: guest handle of a `u32` featureset: the features the hardware cannot hide.
    pub unenforceable: u64,
    /// IN: guest handle of a `u32` featureset: policy features native CPUID does not show.
    pub not_shown: u64,
}

/// [`XenDomctlLevelling::flags`] bits.
pub mod levelling_flags {
    /// The domain's CPUID is levelled.
    pub const LEVELLED: u32 = 1 << 0;
    /// Faulting is on while it runs.
    pub const FAULTING: u32 = 1 << 1;
    /// It may start although the hardware cannot hide everything.
    pub const BEST_EFFORT: u32 = 1 << 2;
    /// It has run: its policy can no longer change.
    pub const RUNNING: u32 = 1 << 3;
}

macro_rules! offsets {
    ($t:ty { $($field:ident: $offset:expr),* $(,)? }) => {
        $(const_assert_eq!(core::mem::offset_of!($t, $field), $offset);)*
    };
}

assert_eq_size!(XenCpuidLeaf, [u8; 24]);
assert_eq_align!(XenCpuidLeaf, u32);
offsets!(XenCpuidLeaf {
    leaf: 0,
    subleaf: 4,
    a: 8,
    b: 12,
    c: 16,
    d: 20
});
assert_eq_size!(XenMsrEntry, [u8; 16]);
assert_eq_align!(XenMsrEntry, u64);
offsets!(XenMsrEntry {
    idx: 0,
    flags: 4,
    val: 8
});
assert_eq_size!(XenSysctl, [u8; 136]);
assert_eq_align!(XenSysctl, u64);
offsets!(XenSysctl {
    cmd: 0,
    interface_version: 4,
    u: 8
});
assert_eq_size!(XenDomctl, [u8; 144]);
offsets!(XenDomctl {
    cmd: 0,
    interface_version: 4,
    domain: 8,
    pad: 10,
    u: 16
});
assert_eq_size!(XenSysctlCpuLevellingCaps, [u8; 4]);
assert_eq_size!(XenSysctlCpuFeatureset, [u8; 16]);
offsets!(XenSysctlCpuFeatureset {
    index: 0,
    nr_features: 4,
    features: 8
});
assert_eq_size!(XenSysctlCpuPolicy, [u8; 32]);
offsets!(XenSysctlCpuPolicy {
    index: 0,
    nr_leaves: 4,
    nr_msrs: 8,
    rsvd: 12,
    leaves: 16,
    msrs: 24
});
assert_eq_size!(XenDomctlCpuPolicy, [u8; 40]);
offsets!(XenDomctlCpuPolicy {
    nr_leaves: 0,
    nr_msrs: 4,
    leaves: 8,
    msrs: 16,
    err_leaf: 24,
    err_subleaf: 28,
    err_msr: 32,
    pad: 36
});
assert_eq_size!(XenDomctlLevelling, [u8; 32]);
offsets!(XenDomctlLevelling {
    mechanism: 0,
    flags: 4,
    nr_features: 8,
    rsvd: 12,
    unenforceable: 16,
    not_shown: 24
});

/// Explicit little-endian encoding of an ABI structure, the only way the dispatcher reads or
/// writes guest bytes.
pub trait Wire: Sized {
    /// Size in bytes (the C `sizeof`).
    const SIZE: usize;
    /// Decode from exactly [`Wire::SIZE`] bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// Encode into exactly [`Wire::SIZE`] bytes.
    fn encode(&self, out: &mut [u8]);
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `Wire` for a struct of fixed-width little-endian fields at the given offsets.
macro_rules! wire {
    ($t:ty, $size:expr, { $($field:ident: $kind:ident @ $offset:expr),* $(,)? }) => {
        impl Wire for $t {
            const SIZE: usize = $size;
            fn decode(b: &[u8]) -> Self {
                Self { $($field: wire!(@get $kind, b, $offset),)* }
            }
            fn encode(&self, out: &mut [u8]) {
                out[..$size].fill(0);
                $(wire!(@put $kind, out, $offset, self.$field);)*
            }
        }
        const_assert_eq!(core::mem::size_of::<$t>(), $size);
    };
    (@get u32, $b:expr, $o:expr) => { u32_at($b, $o) };
    (@get u64, $b:expr, $o:expr) => { u64_at($b, $o) };
    (@put u32, $b:expr, $o:expr, $v:expr) => { put_u32($b, $o, $v) };
    (@put u64, $b:expr, $o:expr, $v:expr) => { put_u64($b, $o, $v) };
}

wire!(XenCpuidLeaf, 24, { leaf: u32 @ 0, subleaf: u32 @ 4, a: u32 @ 8, b: u32 @ 12, c: u32 @ 16, d: u32 @ 20 });
wire!(XenMsrEntry, 16, { idx: u32 @ 0, flags: u32 @ 4, val: u64 @ 8 });
wire!(XenSysctlCpuLevellingCaps, 4, { caps: u32 @ 0 });
wire!(XenSysctlCpuFeatureset, 16, { index: u32 @ 0, nr_features: u32 @ 4, features: u64 @ 8 });
wire!(XenSysctlCpuPolicy, 32, {
    index: u32 @ 0, nr_leaves: u32 @ 4, nr_msrs: u32 @ 8, rsvd: u32 @ 12, leaves: u64 @ 16, msrs: u64 @ 24,
});
wire!(XenDomctlCpuPolicy, 40, {
    nr_leaves: u32 @ 0, nr_msrs: u32 @ 4, leaves: u64 @ 8, msrs: u64 @ 16,
    err_leaf: u32 @ 24, err_subleaf: u32 @ 28, err_msr: u32 @ 32, pad: u32 @ 36,
});
wire!(XenDomctlLevelling, 32, {
    mechanism: u32 @ 0, flags: u32 @ 4, nr_features: u32 @ 8, rsvd: u32 @ 12, unenforceable: u64 @ 16, not_shown: u64 @ 24,
});

impl Wire for XenSysctl {
    const SIZE: usize = 136;
    fn decode(b: &[u8]) -> Self {
        let mut u = [0; 16];
        for (i, w) in u.iter_mut().enumerate() {
            *w = u64_at(b, 8 + 8 * i);
        }
        XenSysctl {
            cmd: u32_at(b, 0),
            interface_version: u32_at(b, 4),
            u,
        }
    }
    fn encode(&self, out: &mut [u8]) {
        put_u32(out, 0, self.cmd);
        put_u32(out, 4, self.interface_version);
        for (i, w) in self.u.iter().enumerate() {
            put_u64(out, 8 + 8 * i, *w);
        }
    }
}

impl Wire for XenDomctl {
    const SIZE: usize = 144;
    fn decode(b: &[u8]) -> Self {
        let mut u = [0; 16];
        for (i, w) in u.iter_mut().enumerate() {
            *w = u64_at(b, 16 + 8 * i);
        }
        let pad = [u16_at(b, 10), u16_at(b, 12), u16_at(b, 14)];
        XenDomctl {
            cmd: u32_at(b, 0),
            interface_version: u32_at(b, 4),
            domain: u16_at(b, 8),
            pad,
            u,
        }
    }
    fn encode(&self, out: &mut [u8]) {
        put_u32(out, 0, self.cmd);
        put_u32(out, 4, self.interface_version);
        put_u16(out, 8, self.domain);
        for (i, p) in self.pad.iter().enumerate() {
            put_u16(out, 10 + 2 * i, *p);
        }
        for (i, w) in self.u.iter().enumerate() {
            put_u64(out, 16 + 8 * i, *w);
        }
    }
}

/// A payload out of an envelope's 128-byte union, and back.
pub trait Payload: Wire {
    /// Decode from the union's words.
    fn from_union(u: &[u64; 16]) -> Self {
        let mut bytes = [0u8; 128];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(u) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        Self::decode(&bytes[..Self::SIZE])
    }
    /// Encode into the union's words, leaving the bytes past it as they were.
    fn store_in_union(&self, u: &mut [u64; 16]) {
        let mut bytes = [0u8; 128];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(u.iter()) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        self.encode(&mut bytes[..Self::SIZE]);
        for (chunk, w) in bytes.chunks_exact(8).zip(u.iter_mut()) {
            *w = u64_at(chunk, 0);
        }
    }
}

impl Payload for XenSysctlCpuLevellingCaps {}
impl Payload for XenSysctlCpuFeatureset {}
impl Payload for XenSysctlCpuPolicy {}
impl Payload for XenDomctlCpuPolicy {}
impl Payload for XenDomctlLevelling {}
