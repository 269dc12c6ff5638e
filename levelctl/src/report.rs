//! What operations report: plain serialisable data, rendered as tables by the CLI or printed
//! as JSON with `--json`. Feature lists are Xen's names; whole featuresets also carry the XAPI
//! string. Every count is of the features listed ([`count`], [`names`]): AMD's unnamed copies
//! of the CPUID.01H:EDX bits in word 2 are in the XAPI string only.

use serde::Serialize;
use xen_levelling::Featureset;
use xen_levelling::feature::{COMMON_1D, KNOWN};

use crate::check::{Cause, HostCheck, MissingFeature};
use crate::model::{ForceRecord, GuestType, PowerState};

/// A whole featureset: its size, its XAPI string and its names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Features {
    /// How many features [`names`] lists ([`count`]): AMD's unnamed copies of the
    /// CPUID.01H:EDX bits in word 2 are not counted, though the XAPI string keeps them.
    pub count: usize,
    /// The XAPI string.
    pub xapi: String,
    /// Xen's names (`word:bit` for unnamed bits), as [`names`] lists them.
    pub names: Vec<String>,
}

impl From<&Featureset> for Features {
    fn from(fs: &Featureset) -> Features {
        let names = names(fs);
        Features {
            count: names.len(),
            xapi: fs.xapi().to_string(),
            names,
        }
    }
}

/// The features of `fs` that levelctl lists and counts: all but AMD's unnamed copies of the
/// CPUID.01H:EDX bits in word 2 ([`COMMON_1D`]), which every AMD featureset carries and which
/// say nothing leaf 1 does not (the XAPI string keeps them).
pub fn listed(fs: &Featureset) -> Featureset {
    let mut out = *fs;
    out.set_word(2, fs.word(2) & !(COMMON_1D & !KNOWN.word(2)));
    out
}

/// How many features [`names`] lists: every feature report counts this, so that a count
/// always matches its list (an AMD set's word-2 copies of leaf 1 are not counted).
pub fn count(fs: &Featureset) -> usize {
    listed(fs).len()
}

/// Xen's names of the [`listed`] features of `fs` (`word:bit` for a bit the table does not
/// name).
pub fn names(fs: &Featureset) -> Vec<String> {
    listed(fs).iter().map(|f| f.to_string()).collect()
}

/// A refused operation: what, why, the checks that refused it and what would have worked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The operation (`migrate`, `resume`, `join`, `leave`, `reboot`, `evacuate`, `start`,
    /// `import`, `copy`).
    pub operation: String,
    /// The VM or host it was about.
    pub subject: String,
    /// One line.
    pub reason: String,
    /// The destination checks that refused it (one per candidate host).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HostCheck>,
    /// Hosts (`pool/host`) that would accept the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepting: Option<Vec<String>>,
    /// Further lines (VMs in the way, what to do instead).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// A host that holds a feature out of the pool level, and why it lacks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostCause {
    /// The host.
    pub host: String,
    /// Why it lacks the feature.
    pub cause: Cause,
}

/// A feature the pool level lost, and the hosts that hold it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelFeature {
    /// Xen's name.
    pub feature: String,
    /// Where it lives.
    pub locator: String,
    /// The members that lack it.
    pub held_back_by: Vec<HostCause>,
}

/// How one guest type's pool level changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelChange {
    /// PV or HVM.
    pub guest: GuestType,
    /// The level before (none for an empty pool).
    pub before: Option<Features>,
    /// The level after.
    pub after: Option<Features>,
    /// Features the level loses, with the hosts that hold each back.
    pub lost: Vec<LevelFeature>,
    /// Features the level gains.
    pub gained: Vec<String>,
}

/// How one of a rebooted host's featuresets changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetChange {
    /// PV or HVM.
    pub guest: GuestType,
    /// `default` or `max`.
    pub set: String,
    /// Features it lost.
    pub lost: Vec<String>,
    /// Features it gained.
    pub gained: Vec<String>,
}

/// A destination a VM loses, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostDestination {
    /// The host.
    pub host: String,
    /// Why: the host leaves, or the check that now refuses.
    pub reason: String,
    /// The features it now lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingFeature>,
}

/// How a change affects one running or suspended VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmImpact {
    /// The VM.
    pub vm: String,
    /// PV or HVM.
    pub guest: GuestType,
    /// Running or suspended.
    pub power: PowerState,
    /// Where it runs (or was suspended).
    pub host: Option<String>,
    /// Hosts it could move to before and cannot after.
    pub lost_destinations: Vec<LostDestination>,
    /// Hosts it can move to after and could not before.
    pub gained_destinations: Vec<String>,
    /// Joining hosts it cannot move to (it keeps its featureset until it reboots).
    pub new_hosts_refusing: Vec<LostDestination>,
    /// Level features it has that the new level drops: it keeps them until its next reboot.
    pub loses_on_reboot: Vec<String>,
    /// Features the new level adds that it will get at its next reboot.
    pub gains_on_reboot: Vec<String>,
    /// A running VM that had somewhere to go and, after the change, has no host but its own
    /// (its host can no longer be evacuated).
    pub stranded: bool,
}

/// The effect of a join, leave or host reboot: done, or only asked about (what-if).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeReport {
    /// The pool.
    pub pool: String,
    /// `join`, `leave` or `reboot`.
    pub change: String,
    /// The host.
    pub host: String,
    /// False for a what-if or a refused change.
    pub applied: bool,
    /// What would refuse the change (vendor, VMs in the way); empty if it is allowed.
    pub blockers: Vec<String>,
    /// For a reboot: how the host's own featuresets changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_sets: Vec<SetChange>,
    /// The pool level per guest type.
    pub levels: Vec<LevelChange>,
    /// Running and suspended VMs the change affects.
    pub vms: Vec<VmImpact>,
}

/// A force override, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForceOut {
    /// The forced operation.
    pub operation: String,
    /// Where to.
    pub host: String,
    /// The features the host lacked, waived for that move only.
    pub features: Vec<String>,
    /// The features the VM used beyond its pool's level at the time.
    pub above_level: Vec<String>,
}

impl From<&ForceRecord> for ForceOut {
    fn from(r: &ForceRecord) -> ForceOut {
        ForceOut {
            operation: r.operation.clone(),
            host: r.host.clone(),
            features: names(&r.features),
            above_level: names(&r.above_level),
        }
    }
}

/// The result of a VM operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmReport {
    /// The pool the VM is in afterwards.
    pub pool: String,
    /// The VM.
    pub vm: String,
    /// `create`, `start`, `shutdown`, `reboot`, `suspend`, `resume`, `migrate`, `copy`,
    /// `import`.
    pub operation: String,
    /// PV or HVM.
    pub guest: GuestType,
    /// Power state afterwards.
    pub power: PowerState,
    /// Host afterwards.
    pub host: Option<String>,
    /// The vendor fixed at start.
    pub vendor: Option<String>,
    /// The featureset afterwards.
    pub featureset: Option<Features>,
    /// The destination check that let it through (moves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<HostCheck>,
    /// Features this operation's `force` waived.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<String>,
    /// Features the VM lost (reboot at a lower level).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<String>,
    /// Features the VM gained (reboot at a higher level).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gained: Vec<String>,
    /// Anything else worth knowing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One VM's move in an evacuation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The VM.
    pub vm: String,
    /// Its destination.
    pub to: String,
}

/// An evacuation plan, carried out or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvacuationReport {
    /// The pool.
    pub pool: String,
    /// The host being emptied.
    pub host: String,
    /// False for a dry run.
    pub applied: bool,
    /// Where each running VM goes.
    pub moves: Vec<Move>,
}

/// Everything about one VM's CPU: its featureset against the pool level, its overrides, and
/// every host it could or could not move to, with reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The pool.
    pub pool: String,
    /// The VM.
    pub vm: String,
    /// PV or HVM.
    pub guest: GuestType,
    /// Power state.
    pub power: PowerState,
    /// Host (running) or last host (suspended).
    pub host: Option<String>,
    /// Vendor fixed at start.
    pub vendor: Option<String>,
    /// Featureset fixed at start.
    pub featureset: Option<Features>,
    /// How it was decided.
    pub origin: Option<String>,
    /// The pool's current level for the VM's type.
    pub level: Option<Features>,
    /// Features the VM has above the current level (dropped at its next reboot).
    pub above_level: Vec<String>,
    /// Level features the VM lacks (gained at its next reboot).
    pub below_level: Vec<String>,
    /// Force overrides since its last start.
    pub forced: Vec<ForceOut>,
    /// Every host checked (this pool's, then any other pools asked about).
    pub destinations: Vec<HostCheck>,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

/// One host's line in a pool level report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberLevel {
    /// The host.
    pub host: String,
    /// Default features it has above the level: what the pool costs it.
    pub gives_up: Vec<String>,
    /// Features every other member offers and this one lacks: what it alone holds back.
    pub holds_back: Vec<String>,
}

/// One guest type's pool level and who shapes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LevelReport {
    /// PV or HVM.
    pub guest: GuestType,
    /// The level.
    pub level: Option<Features>,
    /// Pool-OR (`|`) features in the level that not every member has by default.
    pub accumulated: Vec<String>,
    /// Per member.
    pub members: Vec<MemberLevel>,
}
