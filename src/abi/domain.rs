//! The domains the hypercalls act on: each with its policy and precomputed levelling, which
//! change together or not at all.

use core::fmt;

pub use crate::host::Host;
use crate::levelling::{DomainLevelling, DomainRole, Levelling, Unenforceable};

use crate::policy::CpuPolicy;
use crate::policy::system::DomainKind;

/// One domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Its id.
    pub domid: u16,
    /// PV or HVM.
    pub kind: DomainKind,
    /// Control domain or guest.
    pub role: DomainRole,
    /// Its CPU policy.
    pub policy: CpuPolicy,
    /// Its levelling, computed from `policy` (with the fail-closed list).
    pub levelling: DomainLevelling,
    /// The toolstack accepted best effort: it may start although the hardware cannot hide
    /// everything.
    pub best_effort: bool,
    /// It has run: its policy can no longer change.
    pub running: bool,
}

/// Why a domain could not be created or started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// No free slot.
    TableFull,
    /// The id is taken.
    Exists(u16),
    /// No such domain.
    NoSuchDomain(u16),
    /// A HAP guest on a host without HAP.
    NoPolicy,
    /// The hardware cannot hide these features and best effort was not asked for.
    Unenforceable(Unenforceable),
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::TableFull => f.write_str("no free domain slot"),
            DomainError::Exists(d) => write!(f, "domain {d} exists"),
            DomainError::NoSuchDomain(d) => write!(f, "no domain {d}"),
            DomainError::NoPolicy => f.write_str("no policy for this domain kind on this host"),
            DomainError::Unenforceable(u) => write!(f, "refused (fail closed): {u}"),
        }
    }
}

impl core::error::Error for DomainError {}

/// The domains of a hypervisor, as the dispatcher reaches them ([`super::dispatch::do_domctl`]):
/// the embedder keeps its domains where it likes (its own domain structures, a scheduler's
/// table) and lends the dispatcher each one's [`Domain`] record by id. [`DomainTable`] is a
/// ready-made registry for embedders without one.
pub trait Domains {
    /// The domain `domid`, if it exists.
    fn domain(&self, domid: u16) -> Option<&Domain>;
    /// The domain `domid`, for changing its policy and levelling together.
    fn domain_mut(&mut self, domid: u16) -> Option<&mut Domain>;
}

impl<const N: usize> Domains for DomainTable<N> {
    fn domain(&self, domid: u16) -> Option<&Domain> {
        self.get(domid)
    }

    fn domain_mut(&mut self, domid: u16) -> Option<&mut Domain> {
        self.get_mut(domid)
    }
}

/// Up to `N` domains, without allocation.
#[derive(Clone, Debug)]
pub struct DomainTable<const N: usize> {
    slots: [Option<Domain>; N],
}

impl<const N: usize> Default for DomainTable<N> {
    fn default() -> Self {
        DomainTable { slots: [None; N] }
    }
}

impl<const N: usize> DomainTable<N> {
    /// Create a domain with the default policy of its kind. Its levelling is computed at once
    /// (the fail-closed list included); whether it may start is decided by
    /// [`DomainTable::start`].
    pub fn create(
        &mut self,
        host: &Host,
        domid: u16,
        kind: DomainKind,
        role: DomainRole,
        best_effort: bool,
    ) -> Result<&Domain, DomainError> {
        if self.get(domid).is_some() {
            return Err(DomainError::Exists(domid));
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(DomainError::TableFull)?;
        // A new domain's policy is the default for its kind, recalculated as any set policy
        // is (Xen's init_domain_cpu_policy), so that getting and setting it back changes nothing.
        let default = host.system.default_for(kind);
        let policy = host
            .system
            .recalculate(kind, &default)
            .ok_or(DomainError::NoPolicy)?;
        let levelling = levelling_of(host, kind, role, &policy);
        let domain = Domain {
            domid,
            kind,
            role,
            policy,
            levelling,
            best_effort,
            running: false,
        };
        Ok(self.slots[slot].insert(domain))
    }

    /// The domain `domid`.
    pub fn get(&self, domid: u16) -> Option<&Domain> {
        self.slots.iter().flatten().find(|d| d.domid == domid)
    }

    /// The domain `domid`, for changing.
    pub fn get_mut(&mut self, domid: u16) -> Option<&mut Domain> {
        self.slots.iter_mut().flatten().find(|d| d.domid == domid)
    }

    /// Every domain.
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.slots.iter().flatten()
    }

    /// Running levelled PV domains whose levelling can no longer be guaranteed, because a
    /// levelling MSR faulted after they started ([`Levelling::mark_failed`]).
    pub fn unguaranteed<'a>(
        &'a self,
        levelling: &'a Levelling,
    ) -> impl Iterator<Item = &'a Domain> + 'a {
        let failed = levelling.failure().is_some();
        self.iter().filter(move |d| {
            let l = &d.levelling;
            failed
                && d.running
                && l.levelled
                && d.kind == DomainKind::Pv
                && l.mechanism != crate::levelling::Mechanism::None
        })
    }

    /// Start `domid`: refused (fail closed) if its hardware cannot hide what its policy lacks
    /// and best effort was not asked for. From here on its policy is fixed.
    pub fn start(&mut self, domid: u16) -> Result<(), DomainError> {
        let d = self
            .get_mut(domid)
            .ok_or(DomainError::NoSuchDomain(domid))?;
        let l = &d.levelling;
        if !l.unenforceable.is_empty() && !d.best_effort {
            return Err(DomainError::Unenforceable(Unenforceable {
                features: l.unenforceable,
                mechanism: l.mechanism,
            }));
        }
        d.running = true;
        Ok(())
    }
}

/// A domain's levelling for `policy`, with the fail-closed list kept rather than refused;
/// [`DomainTable::start`] enforces it.
pub fn levelling_of(
    host: &Host,
    kind: DomainKind,
    role: DomainRole,
    policy: &CpuPolicy,
) -> DomainLevelling {
    host.levelling.assess(kind, role, policy)
}
