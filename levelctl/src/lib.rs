//! levelctl: the toolstack side of CPU levelling.
//!
//! Pools of hosts with different CPUs, the pool level every new VM starts at, and the checks
//! that keep a running VM on hosts that have every feature it was started with, with refusals
//! that say which features are missing, why the host lacks each (down to the dependency chain
//! and the `cpuid=` option or CPU that caused it), and which hosts would accept the VM.
//!
//! Every featureset and policy operation is the `xen-levelling` core crate's: parsing and
//! printing, set algebra, dependency closure ([`xen_levelling::Featureset::closed`],
//! [`xen_levelling::Featureset::removed_by`]), and deriving a host's PV/HVM default and max
//! featuresets from real CPUID data (`SystemPolicies::derive`). The toolstack and the
//! hypervisor therefore cannot disagree about what a featureset means.
//!
//! | module | holds |
//! |---|---|
//! | [`model`] | hosts, VMs, pools: plain serialisable data |
//! | [`ops`] | the pool level; join, leave, host reboot and their what-ifs; the VM lifecycle |
//! | [`check`] | VM-against-host checks, with a [`check::Cause`] for every missing feature |
//! | [`input`] | AIDA64 dumps, `cpuid -r` output, XAPI `cpu_info`, the JSON host report, featureset text |
//! | [`cpuid_raw`] | the `cpuid -r` parser |
//! | [`interop`] | `xl.cfg`, XAPI and libvirt forms of a VM's featureset; hosts from libvirt `<cpu>` |
//! | [`mechanism`] | which levelling mechanism a CPU would use: by generation, and probed on the core's silicon model |
//! | [`store`] | the pool database (SQLite): one transaction per command, the audit trail |
//! | [`state`] | the JSON state files of earlier versions, imported into the database |
//! | [`report`] | what operations report (tables or `--json`) |
//! | [`error`] | errors and their exit codes (1 refused, 2 bad input) |
//!
//! # Rules where XAPI left room (decisions)
//!
//! - **Pool level** = intersection of the members' *default* sets per guest type, plus the
//!   pool-OR (`|`) features any member offers, as far as every member's *max* set allows,
//!   dependency-closed ([`ops`]).
//! - **Acceptance** (migrate, resume, evacuate, import, cross-pool) = same vendor and the VM's
//!   closed featureset ⊆ the destination host's closed *max* set. Cross-pool moves are checked
//!   against the destination *host* (what enforcement will check), and report how many of the
//!   destination pool's hosts the VM can reach afterwards and whether it is above that pool's
//!   level.
//! - **Lengths**: featuresets shorter than this build's are zero-extended; a host's Xen knows
//!   only as many words as it reported, and a VM bit in a later word always blocks (cause
//!   "unknown to the host"); text with a set bit past this build's words is refused, never
//!   truncated.
//! - **Legacy VMs** without a featureset get the landing host's *max* set for their type
//!   (Dundee's "everything this host offers").
//! - **force** waives missing features for one named destination and that move only, never a
//!   vendor mismatch; the VM's record keeps each forced move (what the host lacked, what the
//!   VM uses beyond its pool's level) until it restarts at the pool level, and every later
//!   move is checked in full again.
//! - **State**: every pool in one SQLite database ([`store`]), one transaction per command,
//!   each change in the audit trail.

pub mod check;
pub mod cpuid_raw;
pub mod error;
pub mod input;
pub mod interop;
pub mod mechanism;
pub mod model;
pub mod ops;
pub mod report;
pub mod state;
pub mod store;

pub use error::{Error, InputError};
pub use model::{GuestType, Host, Pool, PowerState, Vm};
pub use ops::Change;
