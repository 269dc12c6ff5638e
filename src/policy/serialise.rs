//! A policy to and from Xen's hypercall arrays: `xen_cpuid_leaf_t[]` and `xen_msr_entry_t[]`.
//!
//! The order is Xen's (`lib/cpu-policy/copy-to-buffer.c`): basic leaves up to the max leaf
//! (leaf 4 and 0xB up to and including their terminating subleaf, leaf 7 up to its max
//! subleaf, leaf 0xD subleaves 0, 1 and then up to the highest enumerated state component),
//! then the two Xen leaf limits, then the extended leaves from 0x80000000 up to the low 16 bits
//! of the max extended leaf (so an empty policy is 4 leaves: 0, the two limits, 0x80000000); MSRs are
//! always PLATFORM_INFO then ARCH_CAPABILITIES. Reading back follows `copy-from-buffer.c`:
//! entries merge into a base policy, and any bad entry rejects the whole array.

use core::fmt;

use super::{
    CpuPolicy, EXTD_BASE, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, NR_BASIC, NR_EXTD, NR_FEAT,
    NR_XSTATE, XEN_LEAVES, XEN_LEAVES_RELOCATED,
};
use crate::abi::{XenCpuidLeaf, XenMsrEntry};
use crate::cpuid::{CpuidRegs, NO_SUBLEAF};
use crate::nospec;

/// The most leaves a serialised policy can have (Xen's `CPUID_MAX_SERIALISED_LEAVES`).
pub const MAX_SERIALISED_LEAVES: usize = 120;
/// The most MSRs a serialised policy can have (Xen's `MSR_MAX_SERIALISED_ENTRIES`).
pub const MAX_SERIALISED_MSRS: usize = 2;

/// Why an array could not be written or read. Each names the entry at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArrayError {
    /// The output array is too short (Xen: `-ENOBUFS`).
    BufferTooSmall {
        /// Entries the policy needs.
        needed: usize,
    },
    /// More leaves than a policy can hold (Xen: `-E2BIG`).
    TooManyLeaves {
        /// Entries offered.
        count: usize,
    },
    /// More MSRs than a policy can hold (Xen: `-E2BIG`).
    TooManyMsrs {
        /// Entries offered.
        count: usize,
    },
    /// A leaf or subleaf a policy cannot hold (Xen: `-ERANGE`, err_leaf/err_subleaf).
    LeafOutOfRange {
        /// The leaf.
        leaf: u32,
        /// The subleaf.
        subleaf: u32,
    },
    /// Reserved MSR flags set (Xen: `-EINVAL`, err_msr).
    MsrFlags {
        /// The MSR.
        msr: u32,
        /// The flags given.
        flags: u32,
    },
    /// A value wider than the MSR's field (Xen: `-EOVERFLOW`, err_msr).
    MsrOverflow {
        /// The MSR.
        msr: u32,
        /// The value given.
        value: u64,
    },
    /// An MSR a policy does not hold (Xen: `-ERANGE`, err_msr).
    UnknownMsr {
        /// The MSR.
        msr: u32,
    },
}

impl fmt::Display for PolicyArrayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PolicyArrayError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the policy needs {needed} entries")
            }
            PolicyArrayError::TooManyLeaves { count } => write!(
                f,
                "{count} CPUID leaves given, at most {MAX_SERIALISED_LEAVES} fit a policy"
            ),
            PolicyArrayError::TooManyMsrs { count } => {
                write!(
                    f,
                    "{count} MSRs given, at most {MAX_SERIALISED_MSRS} fit a policy"
                )
            }
            PolicyArrayError::LeafOutOfRange { leaf, subleaf } if subleaf == NO_SUBLEAF => {
                write!(f, "CPUID leaf {leaf:#x} is outside what a policy holds")
            }
            PolicyArrayError::LeafOutOfRange { leaf, subleaf } => {
                write!(
                    f,
                    "CPUID leaf {leaf:#x} subleaf {subleaf:#x} is outside what a policy holds"
                )
            }
            PolicyArrayError::MsrFlags { msr, flags } => {
                write!(f, "MSR {msr:#x}: reserved flags {flags:#x} must be zero")
            }
            PolicyArrayError::MsrOverflow { msr, value } => {
                write!(
                    f,
                    "MSR {msr:#x}: value {value:#x} does not fit the 32-bit field"
                )
            }
            PolicyArrayError::UnknownMsr { msr } => {
                write!(f, "MSR {msr:#x} is not part of a policy")
            }
        }
    }
}

impl core::error::Error for PolicyArrayError {}

impl PolicyArrayError {
    /// The errno Xen's libx86 returns for this error, positive (`x86_cpuid_copy_from_buffer`
    /// and friends return it negated).
    pub const fn errno(&self) -> i32 {
        use crate::abi::dispatch::errno;
        match self {
            PolicyArrayError::BufferTooSmall { .. } => errno::ENOBUFS,
            PolicyArrayError::TooManyLeaves { .. } | PolicyArrayError::TooManyMsrs { .. } => {
                errno::E2BIG
            }
            PolicyArrayError::LeafOutOfRange { .. } | PolicyArrayError::UnknownMsr { .. } => {
                errno::ERANGE
            }
            PolicyArrayError::MsrFlags { .. } => errno::EINVAL,
            PolicyArrayError::MsrOverflow { .. } => errno::EOVERFLOW,
        }
    }
}

/// Calls `emit(leaf, subleaf, regs)` for every leaf of `p`, in Xen's order. It walks the
/// arrays in order (no index chosen by anyone: nothing for speculation to push past an
/// array), bounded by the policy's own maxima.
#[inline(always)]
fn for_each_leaf(p: &CpuPolicy, mut emit: impl FnMut(u32, u32, CpuidRegs)) {
    let max_basic = p.max_basic_leaf().min(0xd) as usize;
    for (leaf, regs) in p.basic[..=max_basic].iter().enumerate() {
        let leaf = leaf as u32;
        match leaf {
            // CPUID.04H:EAX[4:0] cache type 0: the terminator, written too.
            0x4 => emit_until_terminator(leaf, &p.cache, &mut emit, |r| r.a & 0x1f == 0),
            // CPUID.0BH:ECX[15:8] level type 0: the terminator, written too.
            0xb => emit_until_terminator(leaf, &p.topo, &mut emit, |r| (r.c >> 8) & 0xff == 0),
            0x7 => {
                let max = p.max_feat_subleaf().min(NR_FEAT as u32 - 1) as usize;
                for (sub, r) in p.feat[..=max].iter().enumerate() {
                    emit(leaf, sub as u32, *r);
                }
            }
            0xd => {
                // Subleaves 0 and 1, then up to the highest enumerated state component.
                let components = (p.xcr0_mask() | p.xss_mask()) >> 2;
                let end = (2 + (u64::BITS - components.leading_zeros()) as usize).min(NR_XSTATE);
                for (sub, r) in p.xstate[..end].iter().enumerate() {
                    emit(leaf, sub as u32, *r);
                }
            }
            _ => emit(leaf, NO_SUBLEAF, *regs),
        }
    }
    let (hv, hv2) = p.hypervisor_limits();
    emit(XEN_LEAVES, NO_SUBLEAF, CpuidRegs::new(hv, 0, 0, 0));
    emit(
        XEN_LEAVES_RELOCATED,
        NO_SUBLEAF,
        CpuidRegs::new(hv2, 0, 0, 0),
    );
    // Like Xen, leaf 0x80000000 is always written, and the low 16 bits of its EAX bound the
    // rest whatever the top half says.
    let max = (p.max_extd_leaf() & 0xffff).min(NR_EXTD as u32 - 1) as usize;
    for (i, r) in p.extd[..=max].iter().enumerate() {
        emit(EXTD_BASE + i as u32, NO_SUBLEAF, *r);
    }
}

#[inline(always)]
fn emit_until_terminator(
    leaf: u32,
    leaves: &[CpuidRegs],
    emit: &mut impl FnMut(u32, u32, CpuidRegs),
    is_terminator: impl Fn(&CpuidRegs) -> bool,
) {
    for (sub, regs) in leaves.iter().enumerate() {
        emit(leaf, sub as u32, *regs);
        if is_terminator(regs) {
            break;
        }
    }
}

impl CpuPolicy {
    /// How many leaves [`CpuPolicy::write_leaves`] writes.
    pub fn nr_serialised_leaves(&self) -> usize {
        let mut n = 0;
        for_each_leaf(self, |_, _, _| n += 1);
        n
    }

    /// Write the CPUID leaves into `out` in Xen's order; returns how many were written.
    /// On a short buffer nothing is promised about `out` and the error says how many are needed.
    /// One pass over the policy: the leaves are written as they are found, and counted past
    /// the end of a short buffer.
    pub fn write_leaves(&self, out: &mut [XenCpuidLeaf]) -> Result<usize, PolicyArrayError> {
        let mut n = 0;
        for_each_leaf(self, |leaf, subleaf, r| {
            if let Some(slot) = out.get_mut(n) {
                *slot = XenCpuidLeaf {
                    leaf,
                    subleaf,
                    a: r.a,
                    b: r.b,
                    c: r.c,
                    d: r.d,
                };
            }
            n += 1;
        });
        if n > out.len() {
            return Err(PolicyArrayError::BufferTooSmall { needed: n });
        }
        Ok(n)
    }

    /// Write the MSRs (PLATFORM_INFO, then ARCH_CAPABILITIES) into `out`; returns 2.
    pub fn write_msrs(&self, out: &mut [XenMsrEntry]) -> Result<usize, PolicyArrayError> {
        let entries = [
            XenMsrEntry {
                idx: MSR_PLATFORM_INFO,
                flags: 0,
                val: self.platform_info() as u64,
            },
            XenMsrEntry {
                idx: MSR_ARCH_CAPABILITIES,
                flags: 0,
                val: self.arch_caps(),
            },
        ];
        let dst = out
            .get_mut(..entries.len())
            .ok_or(PolicyArrayError::BufferTooSmall {
                needed: entries.len(),
            })?;
        dst.copy_from_slice(&entries);
        Ok(entries.len())
    }

    /// A copy of `self` with `leaves` and `msrs` merged in, as Xen's set_cpu_policy merges a
    /// toolstack's arrays into a domain's policy. Any bad entry rejects everything and names
    /// the entry; `self` is never changed.
    pub fn merged(
        &self,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> Result<CpuPolicy, PolicyArrayError> {
        let mut p = *self;
        p.merge_leaves(leaves)?;
        p.merge_msrs(msrs)?;
        p.reseal();
        Ok(p)
    }

    /// Merge `leaves` and `msrs` into `self` in place, as Xen's `x86_cpuid_copy_from_buffer`
    /// and `x86_msr_copy_from_buffer` do: no copy of the policy. On an error (the same as
    /// [`CpuPolicy::merged`]'s) the entries before the bad one are merged, as in Xen; use
    /// [`CpuPolicy::merged`] for all or nothing.
    pub fn merge_arrays(
        &mut self,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> Result<(), PolicyArrayError> {
        // The entries merged before a bad one stay, and so the kept words follow them.
        let merged = self
            .merge_leaves(leaves)
            .and_then(|()| self.merge_msrs(msrs));
        self.reseal();
        merged
    }

    /// A policy read from arrays alone (merged into [`CpuPolicy::EMPTY`]). Returned by value,
    /// so the policy is copied once into the caller's `Result`;
    /// [`CpuPolicy::set_from_arrays`] builds it in a policy the caller already has.
    pub fn from_arrays(
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> Result<CpuPolicy, PolicyArrayError> {
        let mut p = CpuPolicy::EMPTY;
        p.merge_arrays(leaves, msrs)?;
        Ok(p)
    }

    /// Make `self` the policy the arrays alone describe, in place: [`CpuPolicy::from_arrays`]
    /// without the copy of the result (Xen's `memset` of a policy, then its two
    /// `copy_from_buffer` calls). On an error `self` is [`CpuPolicy::EMPTY`], never half
    /// built.
    pub fn set_from_arrays(
        &mut self,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> Result<(), PolicyArrayError> {
        *self = CpuPolicy::EMPTY;
        let merged = self.merge_arrays(leaves, msrs);
        if merged.is_err() {
            *self = CpuPolicy::EMPTY;
        }
        merged
    }

    #[inline]
    fn merge_leaves(&mut self, leaves: &[XenCpuidLeaf]) -> Result<(), PolicyArrayError> {
        if leaves.len() > MAX_SERIALISED_LEAVES {
            return Err(PolicyArrayError::TooManyLeaves {
                count: leaves.len(),
            });
        }
        for l in leaves {
            // The array the entry's leaf lives in and the index in it: leaves without
            // subleaves must say so with NO_SUBLEAF, nothing else; the others must name a
            // subleaf their array holds. Each arm stores into its own array, whose length the
            // clamp then knows as a constant.
            let (leaf, subleaf) = (l.leaf, l.subleaf);
            // A subleaf's and an extended leaf's range test is also the clamp of the index it
            // admits (`nospec::checked`: no check has bounded them before); a basic leaf is
            // clamped after its test, by `nospec::at_mut`.
            let stored = if leaf < NR_BASIC as u32 {
                match leaf {
                    0x4 => store(&mut self.cache, subleaf, l),
                    0x7 => store(&mut self.feat, subleaf, l),
                    0xb => store(&mut self.topo, subleaf, l),
                    0xd => store(&mut self.xstate, subleaf, l),
                    _ if subleaf == NO_SUBLEAF => {
                        *nospec::at_mut(&mut self.basic, leaf as usize) = regs_of(l);
                        true
                    }
                    _ => false,
                }
            } else if subleaf != NO_SUBLEAF {
                false
            } else if let Some(i) = nospec::checked(leaf.wrapping_sub(EXTD_BASE) as usize, NR_EXTD)
            {
                put(&mut self.extd, Some(i), l)
            } else if leaf == XEN_LEAVES {
                self.hv_limit = l.a as u8;
                true
            } else if leaf == XEN_LEAVES_RELOCATED {
                self.hv2_limit = l.a as u8;
                true
            } else {
                false
            };
            if !stored {
                return Err(PolicyArrayError::LeafOutOfRange {
                    leaf: l.leaf,
                    subleaf: l.subleaf,
                });
            }
        }
        Ok(())
    }

    #[inline]
    fn merge_msrs(&mut self, msrs: &[XenMsrEntry]) -> Result<(), PolicyArrayError> {
        if msrs.len() > MAX_SERIALISED_MSRS {
            return Err(PolicyArrayError::TooManyMsrs { count: msrs.len() });
        }
        for m in msrs {
            if m.flags != 0 {
                return Err(PolicyArrayError::MsrFlags {
                    msr: m.idx,
                    flags: m.flags,
                });
            }
            match m.idx {
                MSR_PLATFORM_INFO => {
                    let value =
                        u32::try_from(m.val).map_err(|_| PolicyArrayError::MsrOverflow {
                            msr: m.idx,
                            value: m.val,
                        })?;
                    self.set_platform_info(value);
                }
                MSR_ARCH_CAPABILITIES => self.set_arch_caps(m.val),
                msr => return Err(PolicyArrayError::UnknownMsr { msr }),
            }
        }
        Ok(())
    }
}

/// `table[subleaf]` = the registers of `entry` if the subleaf is in the table (false if
/// not), the subleaf clamped under speculation: it comes from the caller's array.
#[inline(always)]
fn store(table: &mut [CpuidRegs], subleaf: u32, entry: &XenCpuidLeaf) -> bool {
    let len = table.len();
    put(table, nospec::checked(subleaf as usize, len), entry)
}

/// `table[index]` = the registers of `entry`, for an index `nospec::checked` admitted; false
/// for `None`. The registers are read here, where they are stored: one 16-byte copy rather
/// than four values kept in registers across the dispatch on the leaf.
#[inline(always)]
fn put(table: &mut [CpuidRegs], index: Option<usize>, entry: &XenCpuidLeaf) -> bool {
    match index.and_then(|i| table.get_mut(i)) {
        Some(slot) => {
            *slot = regs_of(entry);
            true
        }
        None => false,
    }
}

#[inline(always)]
fn regs_of(entry: &XenCpuidLeaf) -> CpuidRegs {
    CpuidRegs::new(entry.a, entry.b, entry.c, entry.d)
}
