//! The guests' side: the walk page they read ([`WalkPage`]), the list of CPUID queries in it
//! ([`WalkList`]), and the programs themselves ([`programs`]; the toolstack and its guests in
//! [`toolstack`], the benchmark loops in [`bench`]).
//!
//! A guest program walks the queries of its walk page, runs CPUID on each (natively or
//! through the forced-emulation prefix, as the page's flags say), and reports every result
//! through a hypercall; the kernel compares each with what the domain should see. The page
//! is the guest ABI, so its layout is fixed (`#[repr(C)]`) and the assembly takes its
//! offsets from this definition.

pub mod bench;
pub mod programs;
pub mod toolstack;

use xen_levelling::CpuPolicy;
use xen_levelling::abi::XenCpuidLeaf;
use xen_levelling::cpuid::NO_SUBLEAF;
use xen_levelling::policy::serialise::MAX_SERIALISED_LEAVES;
use xen_levelling::policy::{EXTD_BASE, WORD_HOMES, WordHome, XEN_LEAVES};

/// One CPUID query: EAX and ECX inputs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafQuery {
    /// EAX input.
    pub leaf: u32,
    /// ECX input (0 for leaves without subleaves).
    pub subleaf: u32,
}

/// How many queries fit in a walk page.
pub const MAX_WALK: usize = (4096 - 32) / 8;

/// [`WalkPage::flags`]: use the forced-emulation prefix instead of a native CPUID.
pub const WALK_FORCED: u32 = 1 << 0;
/// [`WalkPage::flags`]: yield after each reported result (the `switch` scenario).
pub const WALK_YIELD: u32 = 1 << 1;

/// The page a guest program reads its work from (user page [`crate::paging::USER_DATA`] for
/// PV domains, a kernel page for the HVM guest).
#[repr(C)]
pub struct WalkPage {
    /// Number of valid entries in `leaves`.
    pub count: u32,
    /// How many times to walk the list.
    pub rounds: u32,
    /// A value the program keeps on its stack and reports back at the end (the kernel checks
    /// that the domain's stack survived every switch).
    pub tag: u32,
    /// [`WALK_FORCED`], [`WALK_YIELD`].
    pub flags: u32,
    /// For the isolation probe: the kernel address it tries to read.
    pub probe: u64,
    _reserved: u64,
    /// The queries.
    pub leaves: [LeafQuery; MAX_WALK],
}

const _: () = assert!(core::mem::size_of::<WalkPage>() == 4096);

impl WalkPage {
    /// An empty page.
    pub const EMPTY: WalkPage = WalkPage {
        count: 0,
        rounds: 0,
        tag: 0,
        flags: 0,
        probe: 0,
        _reserved: 0,
        leaves: [LeafQuery {
            leaf: 0,
            subleaf: 0,
        }; MAX_WALK],
    };

    /// Fills the page: `list`, walked `rounds` times, with `flags` and stack tag `tag`.
    pub fn fill(&mut self, list: &WalkList, rounds: u32, flags: u32, tag: u32) {
        self.count = list.len as u32;
        self.rounds = rounds;
        self.tag = tag;
        self.flags = flags;
        self.probe = 0;
        self.leaves[..list.len].copy_from_slice(list.as_slice());
    }
}

/// A list of CPUID queries.
#[derive(Clone, Debug)]
pub struct WalkList {
    len: usize,
    leaves: [LeafQuery; MAX_WALK],
}

impl WalkList {
    /// Every query of `policy`, plus the home leaf of every CPUID featureset word (so that the
    /// native view of every word is seen).
    pub fn with_word_homes(policy: &CpuPolicy) -> WalkList {
        let mut list = WalkList::for_policy(policy);
        for home in WORD_HOMES {
            if let WordHome::Cpuid { leaf, subleaf, .. } = home {
                list.push(leaf, subleaf);
            }
        }
        list
    }

    /// An empty list.
    pub const fn new() -> Self {
        WalkList {
            len: 0,
            leaves: [LeafQuery {
                leaf: 0,
                subleaf: 0,
            }; MAX_WALK],
        }
    }

    /// A list of the given queries.
    pub fn of(queries: &[(u32, u32)]) -> Self {
        let mut list = WalkList::new();
        for &(leaf, subleaf) in queries {
            list.push(leaf, subleaf);
        }
        list
    }

    /// Adds a query, unless it is already there or the list is full.
    pub fn push(&mut self, leaf: u32, subleaf: u32) {
        let query = LeafQuery { leaf, subleaf };
        if self.len < MAX_WALK && !self.as_slice().contains(&query) {
            self.leaves[self.len] = query;
            self.len += 1;
        }
    }

    /// The queries.
    pub fn as_slice(&self) -> &[LeafQuery] {
        &self.leaves[..self.len]
    }

    /// Every query `policy` covers: each leaf and subleaf it serialises (Xen's order, with
    /// `NO_SUBLEAF` asked as subleaf 0), the Xen leaves 0x40000000-0x40000005, and the first
    /// leaf past the basic and the extended range (which must read as zeros).
    pub fn for_policy(policy: &CpuPolicy) -> Self {
        let mut list = WalkList::new();
        let mut buf = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
        // The buffer has room for the most leaves any policy serialises.
        let n = policy.write_leaves(&mut buf).unwrap_or(0);
        for entry in &buf[..n] {
            let subleaf = if entry.subleaf == NO_SUBLEAF {
                0
            } else {
                entry.subleaf
            };
            list.push(entry.leaf, subleaf);
        }
        for leaf in XEN_LEAVES..=XEN_LEAVES + 5 {
            list.push(leaf, 0);
        }
        list.push(policy.max_basic_leaf() + 1, 0);
        if policy.max_extd_leaf() >> 16 == EXTD_BASE >> 16 {
            list.push(policy.max_extd_leaf() + 1, 0);
        }
        list
    }
}
