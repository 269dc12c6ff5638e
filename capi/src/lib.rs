//! xen-levelling as a drop-in for Xen's libx86 (`xen/arch/x86/lib/cpu-policy/`): the same C
//! functions, with Xen's names and signatures, over a [`XenCpuPolicy`] laid out field for field
//! as Xen's `struct cpu_policy` (`xen/include/xen/lib/x86/cpu-policy.h`), so that a C program
//! written against Xen's header links against this library instead of Xen's.
//!
//! Each function converts the C structure to a [`CpuPolicy`], calls the crate, and writes back
//! exactly the fields Xen's function writes. The conversion is lossless: every stored byte of
//! the structure has a home in a [`CpuPolicy`] (the basic slots of leaves 4, 7, 0xB and 0xD
//! too), except the padding and `x86_vendor`, which are left alone unless Xen writes them.
//!
//! Deliberate differences from Xen, all of them refusals Xen does not make:
//! - a rejected array leaves the policy untouched (Xen has merged the entries before the bad
//!   one);
//! - NULL pointers Xen would dereference are `-EFAULT`, and a feature number past the
//!   featureset has no dependents (Xen reads past its bitmap);
//! - [`x86_cpu_policies_are_compatible`] also refuses a guest with a feature the host lacks
//!   (Xen leaves that to a later clamp), naming the feature's leaf and subleaf, or MSR 0x10A.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_char, c_int, c_uint};
use core::mem::{offset_of, size_of};

use xen_levelling::abi::dispatch::errno;
use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
#[cfg(target_arch = "x86_64")]
use xen_levelling::cpuid::CpuidSource;
use xen_levelling::feature::{DEEP_DEPS, NR_WORDS};
#[cfg(target_arch = "x86_64")]
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::serialise::{
    MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS, PolicyArrayError,
};
use xen_levelling::policy::{NR_BASIC, NR_CACHE, NR_EXTD, NR_FEAT, NR_TOPO, NR_XSTATE, Slot};
use xen_levelling::{CpuPolicy, CpuidRegs, Featureset, Vendor};

/// `struct cpuid_leaf`: one CPUID result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidLeaf {
    /// EAX.
    pub a: u32,
    /// EBX.
    pub b: u32,
    /// ECX.
    pub c: u32,
    /// EDX.
    pub d: u32,
}

/// Xen's `struct cpu_policy` (x86-64 layout), each union as its `raw` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCpuPolicy {
    /// Leaves 0 to 0xD (`basic.raw`); the slots of 4, 7, 0xB and 0xD are unused by CPUID.
    pub basic: [CpuidLeaf; NR_BASIC],
    /// Leaf 4 subleaves (`cache.raw`).
    pub cache: [CpuidLeaf; NR_CACHE],
    /// Leaf 7 subleaves (`feat.raw`).
    pub feat: [CpuidLeaf; NR_FEAT],
    /// Leaf 0xB subleaves (`topo.raw`).
    pub topo: [CpuidLeaf; NR_TOPO],
    /// Leaf 0xD subleaves (`xstate.raw`).
    pub xstate: [CpuidLeaf; NR_XSTATE],
    /// Leaves 0x80000000 to 0x80000021 (`extd.raw`).
    pub extd: [CpuidLeaf; NR_EXTD],
    /// MSR_PLATFORM_INFO (`platform_info.raw`).
    pub platform_info: u32,
    /// Where the C compiler pads `arch_caps` to 8 bytes; never written.
    pub _pad: u32,
    /// MSR_ARCH_CAPABILITIES (`arch_caps.raw`).
    pub arch_caps: u64,
    /// The Xen leaves' limit at 0x40000000.
    pub hv_limit: u8,
    /// The Xen leaves' limit at 0x40000100.
    pub hv2_limit: u8,
    /// Xen's vendor number, derived from leaf 0 (`x86_cpu_policy_recalc_synth`).
    pub x86_vendor: u8,
    /// Where the C compiler pads the structure to 8 bytes; never written.
    pub _tail: [u8; 5],
}

/// `struct cpu_policy_errors`: where a policy was found wanting; `~0` where it was not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPolicyErrors {
    /// The leaf.
    pub leaf: u32,
    /// The subleaf.
    pub subleaf: u32,
    /// The MSR.
    pub msr: u32,
}

// The layout of Xen's header at c447b7308b, offset by offset (x86-64, GCC and Clang).
const _: () = {
    assert!(size_of::<CpuidLeaf>() == 16);
    assert!(offset_of!(XenCpuPolicy, basic) == 0);
    assert!(offset_of!(XenCpuPolicy, cache) == 224);
    assert!(offset_of!(XenCpuPolicy, feat) == 320);
    assert!(offset_of!(XenCpuPolicy, topo) == 368);
    assert!(offset_of!(XenCpuPolicy, xstate) == 400);
    assert!(offset_of!(XenCpuPolicy, extd) == 1408);
    assert!(offset_of!(XenCpuPolicy, platform_info) == 1952);
    assert!(offset_of!(XenCpuPolicy, arch_caps) == 1960);
    assert!(offset_of!(XenCpuPolicy, hv_limit) == 1968);
    assert!(offset_of!(XenCpuPolicy, hv2_limit) == 1969);
    assert!(offset_of!(XenCpuPolicy, x86_vendor) == 1970);
    assert!(offset_of!(XenCpuPolicy, _tail) == 1971);
    assert!(size_of::<XenCpuPolicy>() == 1976);
    assert!(size_of::<CpuPolicyErrors>() == 12);
    assert!(size_of::<XenCpuidLeaf>() == 24);
    assert!(size_of::<XenMsrEntry>() == 16);
};

/// Names one slot of a leaf array from its index.
type SlotOf = fn(usize) -> Slot;

/// The six leaf arrays of both representations, in layout order.
const ARRAYS: [(usize, SlotOf); 6] = [
    (NR_BASIC, Slot::Basic),
    (NR_CACHE, Slot::Cache),
    (NR_FEAT, Slot::Feat),
    (NR_TOPO, Slot::Topo),
    (NR_XSTATE, Slot::Xstate),
    (NR_EXTD, Slot::Extd),
];

impl XenCpuPolicy {
    /// Every byte zero (`struct cpu_policy p = {}`).
    pub const ZERO: XenCpuPolicy = XenCpuPolicy {
        basic: [CpuidLeaf::ZERO; NR_BASIC],
        cache: [CpuidLeaf::ZERO; NR_CACHE],
        feat: [CpuidLeaf::ZERO; NR_FEAT],
        topo: [CpuidLeaf::ZERO; NR_TOPO],
        xstate: [CpuidLeaf::ZERO; NR_XSTATE],
        extd: [CpuidLeaf::ZERO; NR_EXTD],
        platform_info: 0,
        _pad: 0,
        arch_caps: 0,
        hv_limit: 0,
        hv2_limit: 0,
        x86_vendor: 0,
        _tail: [0; 5],
    };

    fn array(&self, slot: Slot) -> &CpuidLeaf {
        match slot {
            Slot::Basic(i) => &self.basic[i],
            Slot::Cache(i) => &self.cache[i],
            Slot::Feat(i) => &self.feat[i],
            Slot::Topo(i) => &self.topo[i],
            Slot::Xstate(i) => &self.xstate[i],
            Slot::Extd(i) => &self.extd[i],
        }
    }

    fn array_mut(&mut self, slot: Slot) -> &mut CpuidLeaf {
        match slot {
            Slot::Basic(i) => &mut self.basic[i],
            Slot::Cache(i) => &mut self.cache[i],
            Slot::Feat(i) => &mut self.feat[i],
            Slot::Topo(i) => &mut self.topo[i],
            Slot::Xstate(i) => &mut self.xstate[i],
            Slot::Extd(i) => &mut self.extd[i],
        }
    }

    /// The policy this structure holds.
    pub fn to_policy(&self) -> CpuPolicy {
        let mut p = CpuPolicy::EMPTY;
        for (n, slot) in ARRAYS {
            for i in 0..n {
                let l = *self.array(slot(i));
                *p.slot_mut(slot(i)) = CpuidRegs::new(l.a, l.b, l.c, l.d);
            }
        }
        p.set_hypervisor_limits(self.hv_limit.into(), self.hv2_limit.into());
        p.set_platform_info(self.platform_info);
        p.set_arch_caps(self.arch_caps);
        p
    }

    /// Write every field `p` holds; padding and `x86_vendor` are left as they are.
    pub fn store(&mut self, p: &CpuPolicy) {
        for (n, slot) in ARRAYS {
            for i in 0..n {
                let r = p.slot(slot(i));
                *self.array_mut(slot(i)) = CpuidLeaf {
                    a: r.a,
                    b: r.b,
                    c: r.c,
                    d: r.d,
                };
            }
        }
        let (hv, hv2) = p.hypervisor_limits();
        (self.hv_limit, self.hv2_limit) = (hv as u8, hv2 as u8);
        self.platform_info = p.platform_info();
        self.arch_caps = p.arch_caps();
    }

    /// `p` as Xen would hold it, `x86_vendor` computed and padding zero.
    pub fn from_policy(p: &CpuPolicy) -> XenCpuPolicy {
        let mut c = XenCpuPolicy::ZERO;
        c.store(p);
        c.recalc_synth();
        c
    }

    /// Xen's `x86_cpu_policy_recalc_synth`: `x86_vendor` from leaf 0.
    pub fn recalc_synth(&mut self) {
        let l = self.basic[0];
        self.x86_vendor = Vendor::from_regs(l.b, l.c, l.d).xen_id() as u8;
    }

    /// The structure's bytes, as C sees them.
    pub fn as_bytes(&self) -> &[u8; size_of::<XenCpuPolicy>()] {
        // SAFETY: XenCpuPolicy is repr(C) and made of integers only, with C's padding spelled
        // out as `_pad` and `_tail`: no byte of it is uninitialised, and any bytes are valid.
        unsafe { &*(self as *const XenCpuPolicy).cast() }
    }
}

impl CpuidLeaf {
    /// All four registers zero.
    pub const ZERO: CpuidLeaf = CpuidLeaf {
        a: 0,
        b: 0,
        c: 0,
        d: 0,
    };
}

/// Xen's initial error fields, `INIT_CPU_POLICY_ERRORS`.
const NO_ERRORS: CpuPolicyErrors = CpuPolicyErrors {
    leaf: !0,
    subleaf: !0,
    msr: !0,
};

// ---------------------------------------------------------------------------------------------
// The exported functions, in the order of Xen's header.

/// `x86_cpuid_lookup_vendor`: Xen's vendor number (`X86_VENDOR_*`) for the CPUID.00H vendor
/// string in EBX, ECX, EDX; 0 for an unknown one.
#[unsafe(no_mangle)]
pub extern "C" fn x86_cpuid_lookup_vendor(ebx: u32, ecx: u32, edx: u32) -> c_uint {
    Vendor::from_regs(ebx, ecx, edx).xen_id()
}

/// `x86_cpuid_vendor_to_str`: a printable name for Xen's vendor number.
#[unsafe(no_mangle)]
pub extern "C" fn x86_cpuid_vendor_to_str(vendor: c_uint) -> *const c_char {
    let name: &'static core::ffi::CStr = match vendor {
        1 => c"Intel",
        2 => c"AMD",
        4 => c"Centaur",
        8 => c"Shanghai",
        16 => c"Hygon",
        _ => c"Unknown",
    };
    name.as_ptr()
}

/// `x86_cpu_policy_to_featureset`: the policy's 19 feature words.
///
/// # Safety
/// `p` must point to a valid `struct cpu_policy` and `fs` to 19 writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_policy_to_featureset(p: *const XenCpuPolicy, fs: *mut u32) {
    // SAFETY: the caller passes a valid policy.
    let Some(c) = (unsafe { p.as_ref() }) else {
        return;
    };
    if fs.is_null() {
        return;
    }
    let words = c.to_policy().featureset();
    // SAFETY: the caller passes room for NR_WORDS words at `fs`.
    unsafe { fs.copy_from_nonoverlapping(words.words().as_ptr(), NR_WORDS) };
}

/// `x86_cpu_featureset_to_policy`: write 19 feature words into their leaves and MSR.
///
/// # Safety
/// `fs` must point to 19 readable `uint32_t` and `p` to a valid, writable `struct cpu_policy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_featureset_to_policy(fs: *const u32, p: *mut XenCpuPolicy) {
    // SAFETY: the caller passes a valid policy.
    let Some(c) = (unsafe { p.as_mut() }) else {
        return;
    };
    if fs.is_null() {
        return;
    }
    let mut words = [0u32; NR_WORDS];
    // SAFETY: the caller passes NR_WORDS readable words at `fs`.
    unsafe { words.as_mut_ptr().copy_from_nonoverlapping(fs, NR_WORDS) };
    let mut policy = c.to_policy();
    policy.set_featureset(&Featureset::from_words(words));
    c.store(&policy);
}

/// `x86_cpu_policy_recalc_synth`: recompute `x86_vendor` from leaf 0.
///
/// # Safety
/// `p` must point to a valid, writable `struct cpu_policy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_policy_recalc_synth(p: *mut XenCpuPolicy) {
    // SAFETY: the caller passes a valid policy.
    if let Some(c) = unsafe { p.as_mut() } {
        c.recalc_synth();
    }
}

/// The CPU this code runs on, through the CPUID instruction.
#[cfg(target_arch = "x86_64")]
struct NativeCpuid;

#[cfg(target_arch = "x86_64")]
impl CpuidSource for NativeCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidRegs::new(r.eax, r.ebx, r.ecx, r.edx)
    }
}

/// `x86_cpu_policy_fill_native`: the raw policy of the CPU this runs on. Every field is
/// written (Xen leaves those it does not read as they were); the MSRs read as 0, as in Xen's
/// user-space build.
///
/// # Safety
/// `p` must point to a writable `struct cpu_policy`.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_policy_fill_native(p: *mut XenCpuPolicy) {
    // SAFETY: the caller passes a writable policy.
    if let Some(c) = unsafe { p.as_mut() } {
        c.store(&CpuPolicy::from_source(&NativeCpuid, RawMsrs::default()));
        c.recalc_synth();
    }
}

/// `x86_cpu_policy_clear_out_of_range_leaves`: zero what the max leaves put out of range.
///
/// # Safety
/// `p` must point to a valid, writable `struct cpu_policy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_policy_clear_out_of_range_leaves(p: *mut XenCpuPolicy) {
    // SAFETY: the caller passes a valid policy.
    if let Some(c) = unsafe { p.as_mut() } {
        let mut policy = c.to_policy();
        policy.clear_out_of_range_leaves();
        c.store(&policy);
    }
}

/// `x86_cpu_policy_lookup_deep_deps`: every feature that depends, directly or not, on
/// `feature` (a featureset of 19 words that lives for ever), or NULL if none does.
#[unsafe(no_mangle)]
pub extern "C" fn x86_cpu_policy_lookup_deep_deps(feature: u32) -> *const u32 {
    match DEEP_DEPS.binary_search_by_key(&(feature as usize), |(f, _)| f.number()) {
        Ok(i) => DEEP_DEPS[i].1.words().as_ptr(),
        Err(_) => core::ptr::null(),
    }
}

/// Copies what fits of `entries` to `out[..room]`: Xen writes entries until the buffer runs
/// out, then fails with -ENOBUFS leaving the count alone.
///
/// # Safety
/// `out` must have room for `room` entries of `T`.
unsafe fn copy_out<T: Copy>(entries: &[T], out: *mut T, nr: *mut u32) -> c_int {
    // SAFETY: the caller passes a readable count.
    let room = unsafe { nr.read() } as usize;
    let n = entries.len().min(room);
    if n > 0 && out.is_null() {
        return -errno::EFAULT;
    }
    // SAFETY: `n <= room`, and the caller passes room for `room` entries at `out`.
    unsafe { out.copy_from_nonoverlapping(entries.as_ptr(), n) };
    if n < entries.len() {
        return -errno::ENOBUFS;
    }
    // SAFETY: as above.
    unsafe { nr.write(n as u32) };
    0
}

/// Serialises `p` with `write` into the caller's `out` (room for `*nr` entries), as both
/// `*_copy_to_buffer` functions do.
///
/// # Safety
/// As [`x86_cpuid_copy_to_buffer`].
unsafe fn serialise_out<T: Copy + Default, E, const MAX: usize>(
    p: *const XenCpuPolicy,
    out: *mut T,
    nr: *mut u32,
    write: impl FnOnce(&CpuPolicy, &mut [T]) -> Result<usize, E>,
) -> c_int {
    // SAFETY: the caller passes a valid policy or NULL.
    let Some(c) = (unsafe { p.as_ref() }) else {
        return -errno::EFAULT;
    };
    if nr.is_null() {
        return -errno::EFAULT;
    }
    let mut all = [T::default(); MAX];
    let Ok(n) = write(&c.to_policy(), &mut all) else {
        unreachable!("a policy always fits the ABI's maximum number of entries");
    };
    // SAFETY: the caller's buffer and count, as documented.
    unsafe { copy_out(&all[..n], out, nr) }
}

/// The caller's `nr` entries at `entries`: more than `MAX` is -E2BIG, a NULL array with
/// entries -EFAULT.
///
/// # Safety
/// `entries` must point to `nr` readable entries (or be NULL).
unsafe fn entries_in<'a, T, const MAX: usize>(
    entries: *const T,
    nr: u32,
) -> Result<&'a [T], c_int> {
    let nr = nr as usize;
    if nr > MAX {
        return Err(-errno::E2BIG);
    }
    if nr == 0 {
        return Ok(&[]);
    }
    if entries.is_null() {
        return Err(-errno::EFAULT);
    }
    // SAFETY: the caller passes `nr` readable entries.
    Ok(unsafe { core::slice::from_raw_parts(entries, nr) })
}

/// Merges `leaves` and `msrs` into `*p`, all or nothing (`-EFAULT` after validating, for a
/// NULL `p`); `recalc_synth` as Xen's CPUID merge does.
///
/// # Safety
/// `p` must point to a valid, writable policy or be NULL.
unsafe fn merge_into(
    p: *mut XenCpuPolicy,
    leaves: &[XenCpuidLeaf],
    msrs: &[XenMsrEntry],
    recalc_synth: bool,
) -> Result<c_int, PolicyArrayError> {
    // SAFETY: the caller passes a valid policy or NULL.
    let c = unsafe { p.as_mut() };
    let merged = c
        .as_ref()
        .map_or(CpuPolicy::EMPTY, |c| c.to_policy())
        .merged(leaves, msrs)?;
    let Some(c) = c else {
        return Ok(-errno::EFAULT);
    };
    c.store(&merged);
    if recalc_synth {
        c.recalc_synth();
    }
    Ok(0)
}

/// `x86_cpuid_copy_to_buffer`: serialise the policy's CPUID leaves in Xen's order. On
/// success `*nr_entries_p` becomes the number written; a short buffer is -ENOBUFS.
///
/// # Safety
/// `p` must point to a valid policy, `nr_entries_p` to the buffer's length, and `leaves` to
/// that many writable entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpuid_copy_to_buffer(
    p: *const XenCpuPolicy,
    leaves: *mut XenCpuidLeaf,
    nr_entries_p: *mut u32,
) -> c_int {
    // SAFETY: as documented, passed on.
    unsafe {
        serialise_out::<_, _, MAX_SERIALISED_LEAVES>(p, leaves, nr_entries_p, |c, all| {
            c.write_leaves(all)
        })
    }
}

/// `x86_cpuid_copy_from_buffer`: merge serialised leaves into the policy and recompute
/// `x86_vendor`. More than 120 entries is -E2BIG; an entry no policy holds is -ERANGE, named
/// in `*err_leaf`/`*err_subleaf` (both `~0` otherwise) with the policy left untouched.
///
/// # Safety
/// `p` must point to a valid, writable policy (or be NULL to only validate), `leaves` to
/// `nr_entries` readable entries, and each `err_*` be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpuid_copy_from_buffer(
    p: *mut XenCpuPolicy,
    leaves: *const XenCpuidLeaf,
    nr_entries: u32,
    err_leaf: *mut u32,
    err_subleaf: *mut u32,
) -> c_int {
    let set_err = |leaf: u32, subleaf: u32| {
        // SAFETY: each pointer is NULL or writable, as documented.
        unsafe {
            if let Some(e) = err_leaf.as_mut() {
                *e = leaf;
            }
            if let Some(e) = err_subleaf.as_mut() {
                *e = subleaf;
            }
        }
    };
    set_err(!0, !0);
    // SAFETY: the caller's array, as documented.
    let entries = match unsafe { entries_in::<_, MAX_SERIALISED_LEAVES>(leaves, nr_entries) } {
        Ok(entries) => entries,
        Err(ret) => return ret,
    };
    // SAFETY: the caller's policy, as documented.
    match unsafe { merge_into(p, entries, &[], true) } {
        Ok(ret) => ret,
        Err(e) => {
            if let PolicyArrayError::LeafOutOfRange { leaf, subleaf } = e {
                set_err(leaf, subleaf);
            }
            -e.errno()
        }
    }
}

/// `x86_msr_copy_to_buffer`: serialise MSR_PLATFORM_INFO and MSR_ARCH_CAPABILITIES. On
/// success `*nr_entries_p` becomes 2; a short buffer is -ENOBUFS.
///
/// # Safety
/// As [`x86_cpuid_copy_to_buffer`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_msr_copy_to_buffer(
    p: *const XenCpuPolicy,
    msrs: *mut XenMsrEntry,
    nr_entries_p: *mut u32,
) -> c_int {
    // SAFETY: as documented, passed on.
    unsafe {
        serialise_out::<_, _, MAX_SERIALISED_MSRS>(p, msrs, nr_entries_p, |c, all| {
            c.write_msrs(all)
        })
    }
}

/// `x86_msr_copy_from_buffer`: merge serialised MSRs into the policy. More than 2 entries is
/// -E2BIG; non-zero flags -EINVAL, a PLATFORM_INFO value past 32 bits -EOVERFLOW, an MSR no
/// policy holds -ERANGE, each named in `*err_msr` (`~0` otherwise), the policy untouched.
///
/// # Safety
/// As [`x86_cpuid_copy_from_buffer`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_msr_copy_from_buffer(
    p: *mut XenCpuPolicy,
    msrs: *const XenMsrEntry,
    nr_entries: u32,
    err_msr: *mut u32,
) -> c_int {
    use PolicyArrayError as E;
    let set_err = |msr: u32| {
        // SAFETY: `err_msr` is NULL or writable, as documented.
        if let Some(e) = unsafe { err_msr.as_mut() } {
            *e = msr;
        }
    };
    set_err(!0);
    // SAFETY: the caller's array, as documented.
    let entries = match unsafe { entries_in::<_, MAX_SERIALISED_MSRS>(msrs, nr_entries) } {
        Ok(entries) => entries,
        Err(ret) => return ret,
    };
    // SAFETY: the caller's policy, as documented.
    match unsafe { merge_into(p, &[], entries, false) } {
        Ok(ret) => ret,
        Err(e) => {
            if let E::MsrFlags { msr, .. } | E::MsrOverflow { msr, .. } | E::UnknownMsr { msr } = e
            {
                set_err(msr);
            }
            -e.errno()
        }
    }
}

/// `x86_cpu_policies_are_compatible`: can a guest with policy `guest` run where `host` is
/// the limit? 0, or -EINVAL with `*err` naming the first offending leaf/subleaf or MSR. Beyond
/// Xen, a feature `host` lacks is refused too.
///
/// # Safety
/// `host` and `guest` must point to valid policies; `err` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn x86_cpu_policies_are_compatible(
    host: *const XenCpuPolicy,
    guest: *const XenCpuPolicy,
    err: *mut CpuPolicyErrors,
) -> c_int {
    // SAFETY: the caller passes valid policies.
    let (Some(host), Some(guest)) = (unsafe { host.as_ref() }, unsafe { guest.as_ref() }) else {
        return -errno::EFAULT;
    };
    let (ret, e) = match check_compatible(&host.to_policy(), &guest.to_policy()) {
        Ok(()) => (0, NO_ERRORS),
        Err(e) => (
            -errno::EINVAL,
            CpuPolicyErrors {
                leaf: e.leaf,
                subleaf: e.subleaf,
                msr: e.msr,
            },
        ),
    };
    // SAFETY: `err` is NULL or writable, as documented.
    if let Some(out) = unsafe { err.as_mut() } {
        *out = e;
    }
    ret
}

// ---------------------------------------------------------------------------------------------
// What only the static library needs, linked into a C program.

#[cfg(all(feature = "staticlib", not(test)))]
mod staticlib {
    unsafe extern "C" {
        /// The C library's `abort()`: the C program this library is linked into provides it.
        fn abort() -> !;
    }

    /// A panic (a bug: every input is validated) ends the program, as a failed assertion in
    /// Xen's C would.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        // SAFETY: abort() takes no arguments and never returns.
        unsafe { abort() }
    }

    /// The library is built with panic=abort, so nothing unwinds; libcore, prebuilt for
    /// unwinding, still names this symbol.
    #[unsafe(no_mangle)]
    extern "C" fn rust_eh_personality() {}
}
