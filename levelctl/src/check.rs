//! Compatibility checks that explain themselves.
//!
//! A VM may run on a host when the vendors are equal and the VM's featureset, dependency
//! closed, is a subset of the host's **max** featureset for the VM's type, dependency closed
//! (XAPI since 2019: the pool level comes from the defaults, acceptance from the max). Bits in
//! words the host's Xen does not know count as missing, never as truncated away. Features a
//! `force` override recorded as possibly lacking are reported as waived instead of blocking.
//!
//! Every missing feature comes with a [`Cause`]: the host's CPU lacks it, `cpuid=no-…` removed
//! it at boot, Xen does not offer it to this guest type, it is unknown to the host's Xen, or it
//! depends on an absent feature, with the whole chain of dependency edges (each with the
//! feature table's reason) down to the absent root and *its* cause.
//!
//! A `--force` waives the features missing on its own move only ([`VmCpu::waived`] is empty
//! for every check made from a VM's record): every later move is checked in full again.

use core::fmt;

use serde::Serialize;
use xen_levelling::feature::DEPENDENCIES;
use xen_levelling::{Feature, Featureset, Vendor};

use crate::model::{GuestType, Host, Pool, PowerState, Vm};

/// One dependency edge on a chain: `dependent` cannot be offered without `prerequisite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The feature that was needed.
    pub prerequisite: String,
    /// The feature that needed it.
    pub dependent: String,
    /// The feature table's reason for the edge.
    pub reason: String,
}

/// Why a host does not offer a feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// The feature's word is beyond the ones the host's Xen reports: it cannot even say.
    UnknownToHost {
        /// The feature's word.
        word: usize,
        /// How many words the host knows.
        known_words: usize,
    },
    /// Removed at boot with `cpuid=no-<feature>`.
    Disabled {
        /// The option item, `cpuid=no-xsave`.
        option: String,
    },
    /// The host's CPU does not have it.
    NotInHardware,
    /// The CPU has it, but Xen offers it to no guest of this type.
    NotOffered {
        /// The guest type.
        guest: GuestType,
    },
    /// Xen offers it to this guest type only on request (max, not default).
    HiddenByDefault {
        /// The guest type.
        guest: GuestType,
    },
    /// The host's report lacks it; the input says nothing more (no CPUID data).
    NotReported,
    /// A pool-OR (`|`) feature that every member's max has but no member offers by
    /// default: the level keeps such a feature only while some member offers it by default.
    NoMemberDefault {
        /// The guest type.
        guest: GuestType,
    },
    /// Absent because a feature it needs is absent.
    Dependency {
        /// The edges from the missing feature down to the absent root.
        chain: Vec<Link>,
        /// The root: the absent feature that took the others with it.
        root_feature: String,
        /// Why the root is absent.
        root: Box<Cause>,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::UnknownToHost { word, known_words } => write!(
                f,
                "word {word} is unknown to the host's Xen (it reports {known_words} words)"
            ),
            Cause::Disabled { option } => write!(f, "disabled at boot by {option}"),
            Cause::NotInHardware => f.write_str("not in the host's CPU"),
            Cause::NotOffered { guest } => write!(
                f,
                "the CPU has it, but Xen offers it to no {} guest",
                guest.label()
            ),
            Cause::HiddenByDefault { guest } => write!(
                f,
                "offered to {} guests only on request (max, not default)",
                guest.label()
            ),
            Cause::NotReported => f.write_str("the host does not offer it"),
            Cause::NoMemberDefault { .. } => f.write_str("offered by no member by default"),
            Cause::Dependency {
                chain,
                root_feature,
                root,
            } => {
                write!(f, "{root_feature} is absent ({root}); ")?;
                for (i, link) in chain.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} needs {}", link.dependent, link.prerequisite)?;
                }
                Ok(())
            }
        }
    }
}

/// A feature a VM has and a host lacks, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MissingFeature {
    /// Xen's name (`avx2`), or `word:bit` for a bit the table does not name.
    pub feature: String,
    /// Where it lives (`CPUID.07H.0:EBX[5]`).
    pub locator: String,
    /// Why the host lacks it.
    pub cause: Cause,
}

impl fmt::Display for MissingFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Dependency { .. } => {
                write!(f, "{}: missing because {}", self.feature, self.cause)
            }
            cause => write!(f, "{}: {cause}", self.feature),
        }
    }
}

/// The vendors of a refused cross-vendor move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VendorMismatch {
    /// The VM's vendor (fixed at start).
    pub vm: String,
    /// The host's vendor.
    pub host: String,
}

/// The result of checking one VM against one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostCheck {
    /// The VM.
    pub vm: String,
    /// The host's pool.
    pub pool: String,
    /// The host.
    pub host: String,
    /// True if the host accepts the VM.
    pub accepted: bool,
    /// Set when the vendors differ (then no feature comparison is made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_mismatch: Option<VendorMismatch>,
    /// Features the host lacks that block the VM, the ones [`crate::report::names`] lists
    /// (the whole set, AMD's unnamed word-2 copies included, is `missing_set`).
    pub missing: Vec<MissingFeature>,
    /// Features the host lacks that a `force` override already waived.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<MissingFeature>,
    /// The blocking features as a set (for force records).
    #[serde(skip)]
    pub missing_set: Featureset,
}

impl HostCheck {
    /// `pool/host`.
    pub fn destination(&self) -> String {
        format!("{}/{}", self.pool, self.host)
    }

    /// One line: `accepted`, or what blocks.
    pub fn summary(&self) -> String {
        if let Some(m) = &self.vendor_mismatch {
            return format!("refused: VM is {} but the host is {}", m.vm, m.host);
        }
        if self.accepted {
            return match self.waived.len() {
                0 => "accepted".to_string(),
                1 => "accepted (1 feature waived by --force)".to_string(),
                n => format!("accepted ({n} features waived by --force)"),
            };
        }
        let names: Vec<&str> = self.missing.iter().map(|m| m.feature.as_str()).collect();
        format!("refused: lacks {}", names.join(","))
    }
}

/// What a check needs to know about a VM: its type, and what was fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmCpu {
    /// PV or HVM.
    pub guest: GuestType,
    /// The vendor fixed at start.
    pub vendor: Vendor,
    /// The featureset fixed at start.
    pub featureset: Featureset,
    /// Features force overrides waived.
    pub waived: Featureset,
}

impl VmCpu {
    /// A VM about to start (or be imported) with `featureset`: nothing waived yet.
    pub fn starting(guest: GuestType, vendor: Vendor, featureset: Featureset) -> VmCpu {
        VmCpu {
            guest,
            vendor,
            featureset,
            waived: Featureset::EMPTY,
        }
    }

    /// The CPU facts of a running or suspended VM; `None` for a halted VM (no CPU check).
    /// Nothing is waived: a `--force` waives the check of its own move only, and every later
    /// move is checked in full again (as XAPI does).
    pub fn of(vm: &Vm) -> Option<VmCpu> {
        if vm.power == PowerState::Halted {
            return None;
        }
        Some(VmCpu {
            guest: vm.guest,
            vendor: vm.vendor?,
            featureset: vm.featureset?,
            waived: Featureset::EMPTY,
        })
    }
}

/// Which of a host's two featuresets a comparison is against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The default set (pool levelling).
    Default,
    /// The max set (acceptance).
    Max,
}

/// Check `vm` (called `vm_name`) against `host` of `pool`.
pub fn check(pool: &str, vm_name: &str, vm: &VmCpu, host: &Host) -> HostCheck {
    let mut result = HostCheck {
        vm: vm_name.to_string(),
        pool: pool.to_string(),
        host: host.name.clone(),
        accepted: false,
        vendor_mismatch: None,
        missing: Vec::new(),
        waived: Vec::new(),
        missing_set: Featureset::EMPTY,
    };
    if vm.vendor != host.vendor {
        result.vendor_mismatch = Some(VendorMismatch {
            vm: vm.vendor.to_string(),
            host: host.vendor.to_string(),
        });
        return result;
    }
    let required = vm.featureset.closed();
    let offered = host.max_for(vm.guest).closed();
    let lacking = required - offered;
    let waived = lacking & vm.waived;
    let missing = lacking - waived;
    result.missing = explain_all(host, vm.guest, Which::Max, &missing);
    result.waived = explain_all(host, vm.guest, Which::Max, &waived);
    result.missing_set = missing;
    result.accepted = missing.is_empty();
    result
}

/// Explain every listed feature of `absent` against one of `host`'s sets: the features
/// [`crate::report::names`] lists, so AMD's unnamed word-2 copies of the CPUID.01H:EDX bits
/// are not explained (the caller keeps the whole set for decisions and force records).
pub fn explain_all(
    host: &Host,
    guest: GuestType,
    which: Which,
    absent: &Featureset,
) -> Vec<MissingFeature> {
    crate::report::listed(absent)
        .iter()
        .map(|f| MissingFeature {
            feature: f.to_string(),
            locator: f.locator().to_string(),
            cause: explain_absence(host, guest, which, f),
        })
        .collect()
}

/// Why `host`'s `which` set for `guest` lacks `feature`.
pub fn explain_absence(host: &Host, guest: GuestType, which: Which, feature: Feature) -> Cause {
    let set = match which {
        Which::Default => host.default_for(guest),
        Which::Max => host.max_for(guest),
    }
    .closed();
    cause_in(host, guest, which, &set, feature, 0)
}

fn cause_in(
    host: &Host,
    guest: GuestType,
    which: Which,
    set: &Featureset,
    feature: Feature,
    depth: usize,
) -> Cause {
    if feature.word() >= host.known_words {
        return Cause::UnknownToHost {
            word: feature.word(),
            known_words: host.known_words,
        };
    }
    if host.disabled.contains(feature) {
        return Cause::Disabled {
            option: format!("cpuid=no-{feature}"),
        };
    }
    let in_hardware = host.hardware.map(|hw| hw.contains(feature));
    if in_hardware == Some(false) {
        return Cause::NotInHardware;
    }
    // The table is acyclic and its chains are short; the bound only guards against surprises.
    if depth < 32
        && let Some(prerequisite) = set.removed_by(feature)
    {
        let link = Link {
            prerequisite: prerequisite.to_string(),
            dependent: feature.to_string(),
            reason: edge_reason(prerequisite, feature).to_string(),
        };
        return match cause_in(host, guest, which, set, prerequisite, depth + 1) {
            Cause::Dependency {
                mut chain,
                root_feature,
                root,
            } => {
                chain.insert(0, link);
                Cause::Dependency {
                    chain,
                    root_feature,
                    root,
                }
            }
            root => Cause::Dependency {
                chain: vec![link],
                root_feature: prerequisite.to_string(),
                root: Box::new(root),
            },
        };
    }
    if which == Which::Default && host.max_for(guest).closed().contains(feature) {
        return Cause::HiddenByDefault { guest };
    }
    if in_hardware == Some(true) {
        return Cause::NotOffered { guest };
    }
    Cause::NotReported
}

/// The feature table's reason for the direct edge `prerequisite` → `dependent`.
pub fn edge_reason(prerequisite: Feature, dependent: Feature) -> &'static str {
    DEPENDENCIES
        .iter()
        .find(|d| d.prerequisite == prerequisite && d.dependents.contains(dependent))
        .map_or("", |d| d.reason)
}

/// Check `vm` against every host of `pool` except `exclude`.
pub fn check_pool(pool: &Pool, vm_name: &str, vm: &VmCpu, exclude: Option<&str>) -> Vec<HostCheck> {
    pool.hosts
        .iter()
        .filter(|h| Some(h.name.as_str()) != exclude)
        .map(|h| check(&pool.name, vm_name, vm, h))
        .collect()
}

/// The hosts (as `pool/host`) among `checks` that accept the VM.
pub fn accepting(checks: &[HostCheck]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.accepted)
        .map(HostCheck::destination)
        .collect()
}
