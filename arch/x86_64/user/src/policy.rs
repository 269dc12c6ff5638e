//! A serialised CPU policy in the program's own memory: the `xen_cpuid_leaf_t` and
//! `xen_msr_entry_t` arrays the sysctl and domctl read and write, and how many of each hold
//! the policy.

use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};

/// Room for the largest policy the hypervisor serialises.
#[derive(Clone, Copy)]
pub struct PolicyBuffer {
    /// The leaves.
    pub leaves: [XenCpuidLeaf; MAX_SERIALISED_LEAVES],
    /// The MSRs.
    pub msrs: [XenMsrEntry; MAX_SERIALISED_MSRS],
    /// How many leaves hold the policy (what the hypervisor reported).
    pub nr_leaves: u32,
    /// How many MSRs hold the policy.
    pub nr_msrs: u32,
}

impl PolicyBuffer {
    /// Zeroed, with no leaves and no MSRs.
    pub const EMPTY: PolicyBuffer = PolicyBuffer {
        leaves: [XenCpuidLeaf {
            leaf: 0,
            subleaf: 0,
            a: 0,
            b: 0,
            c: 0,
            d: 0,
        }; MAX_SERIALISED_LEAVES],
        msrs: [XenMsrEntry {
            idx: 0,
            flags: 0,
            val: 0,
        }; MAX_SERIALISED_MSRS],
        nr_leaves: 0,
        nr_msrs: 0,
    };

    /// The leaves that hold the policy (at most the buffer's).
    pub fn leaves(&self) -> &[XenCpuidLeaf] {
        &self.leaves[..(self.nr_leaves as usize).min(MAX_SERIALISED_LEAVES)]
    }

    /// The MSRs that hold the policy (at most the buffer's).
    pub fn msrs(&self) -> &[XenMsrEntry] {
        &self.msrs[..(self.nr_msrs as usize).min(MAX_SERIALISED_MSRS)]
    }

    /// The entry of `leaf`, `subleaf` (`NO_SUBLEAF` for a leaf without subleaves).
    pub fn find(&self, leaf: u32, subleaf: u32) -> Option<&XenCpuidLeaf> {
        self.leaves()
            .iter()
            .find(|entry| entry.leaf == leaf && entry.subleaf == subleaf)
    }

    /// The same, to change it.
    pub fn find_mut(&mut self, leaf: u32, subleaf: u32) -> Option<&mut XenCpuidLeaf> {
        let n = self.leaves().len();
        self.leaves[..n]
            .iter_mut()
            .find(|entry| entry.leaf == leaf && entry.subleaf == subleaf)
    }

    /// The address of the leaf array, for a hypercall.
    pub fn leaves_address(&mut self) -> u64 {
        self.leaves.as_mut_ptr() as u64
    }

    /// The address of the MSR array, for a hypercall.
    pub fn msrs_address(&mut self) -> u64 {
        self.msrs.as_mut_ptr() as u64
    }

    /// The same policy: as many leaves and MSRs, byte for byte.
    pub fn same_as(&self, other: &PolicyBuffer) -> bool {
        self.nr_leaves == other.nr_leaves
            && self.nr_msrs == other.nr_msrs
            && self.leaves() == other.leaves()
            && self.msrs() == other.msrs()
    }
}
