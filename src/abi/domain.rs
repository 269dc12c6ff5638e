//! The domains the hypercalls act on: each with its policy and precomputed levelling, which
//! change together or not at all.
//!
//! A [`Domain`] record's fields are private: its levelling is always the one computed from its
//! policy ([`Domain::create`], [`Domain::with_policy`], [`Domain::apply`]), and only
//! [`Domain::start`] makes it run. The embedder keeps the records where its domains live and
//! lends them to the dispatcher through [`Domains`].

use core::fmt;

pub use crate::host::Host;
use crate::levelling::{DomainLevelling, DomainRole, Levelling, Unenforceable};

use crate::policy::CpuPolicy;
use crate::policy::system::DomainKind;

/// One domain, as the hypercalls see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    domid: u16,
    kind: DomainKind,
    role: DomainRole,
    policy: CpuPolicy,
    levelling: DomainLevelling,
    best_effort: bool,
    running: bool,
}

impl Domain {
    /// A new domain with the default policy of its kind, recalculated as any set policy is
    /// (Xen's `init_domain_cpu_policy`), so that getting and setting it back changes nothing.
    /// Its levelling is computed at once (the fail-closed list included); whether it may start
    /// is decided by [`Domain::start`].
    pub fn create(
        host: &Host,
        domid: u16,
        kind: DomainKind,
        role: DomainRole,
        best_effort: bool,
    ) -> Result<Domain, DomainError> {
        let default = host.system().default_for(kind);
        let policy = host
            .system()
            .recalculate(kind, &default)
            .ok_or(DomainError::NoPolicy)?;
        Ok(Domain::with_policy(
            host.levelling(),
            domid,
            kind,
            role,
            policy,
            best_effort,
        ))
    }

    /// A domain the embedder gave `policy` itself (dom0 with the host policy, a guest whose
    /// policy it derived), with the levelling `levelling` computes for it.
    pub fn with_policy(
        levelling: &Levelling,
        domid: u16,
        kind: DomainKind,
        role: DomainRole,
        policy: CpuPolicy,
        best_effort: bool,
    ) -> Domain {
        Domain {
            domid,
            kind,
            role,
            levelling: levelling.assess(kind, role, &policy),
            policy,
            best_effort,
            running: false,
        }
    }

    /// Its id.
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// PV or HVM.
    pub fn kind(&self) -> DomainKind {
        self.kind
    }

    /// Control domain or guest.
    pub fn role(&self) -> DomainRole {
        self.role
    }

    /// Its CPU policy.
    pub fn policy(&self) -> &CpuPolicy {
        &self.policy
    }

    /// Its levelling, computed from its policy (with the fail-closed list).
    pub fn levelling(&self) -> &DomainLevelling {
        &self.levelling
    }

    /// The toolstack accepted best effort: it may start although the hardware cannot hide
    /// everything.
    pub fn best_effort(&self) -> bool {
        self.best_effort
    }

    /// It has run: its policy can no longer change.
    pub fn running(&self) -> bool {
        self.running
    }

    /// The start rule: refused (fail closed, nothing changes) if its hardware cannot hide what
    /// its policy lacks and best effort was not asked for. From here on its policy is fixed.
    pub fn start(&mut self) -> Result<(), Unenforceable> {
        if let Some(refusal) = self.levelling.refusal()
            && !self.best_effort
        {
            return Err(refusal);
        }
        self.running = true;
        Ok(())
    }

    /// Takes the policy and levelling of an accepted `set_cpu_policy`, both at once.
    pub fn apply(&mut self, update: PolicyUpdate) {
        self.policy = update.policy;
        self.levelling = update.levelling;
    }
}

/// A policy the dispatcher accepted for a domain, with the levelling computed from it: only
/// the dispatcher makes one, so a domain's policy and levelling cannot come apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyUpdate {
    policy: CpuPolicy,
    levelling: DomainLevelling,
}

impl PolicyUpdate {
    pub(crate) fn new(policy: CpuPolicy, levelling: DomainLevelling) -> PolicyUpdate {
        PolicyUpdate { policy, levelling }
    }

    /// The new policy.
    pub fn policy(&self) -> &CpuPolicy {
        &self.policy
    }

    /// Its levelling.
    pub fn levelling(&self) -> &DomainLevelling {
        &self.levelling
    }
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
/// table) with a [`Domain`] record in each, and lends the dispatcher each record by id.
/// [`DomainTable`] is a ready-made registry for embedders without one.
///
/// A changed policy comes through [`Domains::set_policy`] rather than a mutable record because
/// a real embedder derives state from a domain's policy and levelling (a table of CPUID
/// answers for its trap handlers, a copy of the levelling per vCPU) that must change with
/// them: Xen's `domain_cpu_policy_changed` hook.
pub trait Domains {
    /// The domain `domid`, if it exists.
    fn domain(&self, domid: u16) -> Option<&Domain>;
    /// Gives `domid` the policy and levelling of an accepted `set_cpu_policy`
    /// ([`Domain::apply`]), and whatever the embedder derives from them.
    fn set_policy(&mut self, domid: u16, update: PolicyUpdate) -> Result<(), DomainError>;
}

impl<const N: usize> Domains for DomainTable<N> {
    fn domain(&self, domid: u16) -> Option<&Domain> {
        self.get(domid)
    }

    fn set_policy(&mut self, domid: u16, update: PolicyUpdate) -> Result<(), DomainError> {
        self.get_mut(domid)
            .ok_or(DomainError::NoSuchDomain(domid))?
            .apply(update);
        Ok(())
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
        let domain = Domain::create(host, domid, kind, role, best_effort)?;
        Ok(self.slots[slot].insert(domain))
    }

    /// The domain `domid`.
    pub fn get(&self, domid: u16) -> Option<&Domain> {
        self.slots.iter().flatten().find(|d| d.domid == domid)
    }

    /// The domain `domid`, for changing.
    fn get_mut(&mut self, domid: u16) -> Option<&mut Domain> {
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
                && l.levelled()
                && d.kind == DomainKind::Pv
                && l.mechanism() != crate::levelling::Mechanism::None
        })
    }

    /// Start `domid` ([`Domain::start`]): refused (fail closed) if its hardware cannot hide
    /// what its policy lacks and best effort was not asked for.
    pub fn start(&mut self, domid: u16) -> Result<(), DomainError> {
        self.get_mut(domid)
            .ok_or(DomainError::NoSuchDomain(domid))?
            .start()
            .map_err(DomainError::Unenforceable)
    }
}

/// A domain's levelling for `policy`, with the fail-closed list kept rather than refused;
/// [`Domain::start`] enforces it.
pub fn levelling_of(
    host: &Host,
    kind: DomainKind,
    role: DomainRole,
    policy: &CpuPolicy,
) -> DomainLevelling {
    host.levelling().assess(kind, role, policy)
}
