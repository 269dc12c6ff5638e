//! The pool model: hosts, VMs and pools, as plain serialisable data.
//!
//! Featuresets are stored as XAPI strings (`178bfbff-f6f83203-…`, always the full
//! [`NR_WORDS`] words) and parsed back with [`Featureset::parse_xapi`], so the state file
//! reads like XAPI's `host.cpu_info` and a corrupt string is refused on load. Vendors are
//! stored as their CPUID strings (`GenuineIntel`).
//!
//! The behaviour (level computation, joins, VM lifecycle) lives in [`crate::ops`]; the
//! compatibility checks in [`crate::check`].

use core::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use xen_levelling::feature::NR_WORDS;
use xen_levelling::policy::system::DomainKind;
use xen_levelling::{Featureset, Vendor};

/// The two kinds of guest a pool levels for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Paravirtualised: levelled by CPUID faulting or mask MSRs.
    Pv,
    /// Hardware virtualised (on hardware-assisted paging): every CPUID exits to Xen.
    Hvm,
}

impl GuestType {
    /// Both types, PV first.
    pub const ALL: [GuestType; 2] = [GuestType::Pv, GuestType::Hvm];

    /// The core crate's domain kind for this guest type (HVM guests run on HAP).
    pub const fn domain_kind(self) -> DomainKind {
        match self {
            GuestType::Pv => DomainKind::Pv,
            GuestType::Hvm => DomainKind::HvmHap,
        }
    }

    /// `PV` or `HVM`, for headings.
    pub const fn label(self) -> &'static str {
        match self {
            GuestType::Pv => "PV",
            GuestType::Hvm => "HVM",
        }
    }
}

impl fmt::Display for GuestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestType::Pv => "pv",
            GuestType::Hvm => "hvm",
        })
    }
}

impl FromStr for GuestType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pv" => Ok(GuestType::Pv),
            "hvm" => Ok(GuestType::Hvm),
            _ => Err(format!("`{s}` is not a guest type (pv or hvm)")),
        }
    }
}

/// A VM's power state, as XAPI names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Not running; has no featureset. Starts at the pool level.
    Halted,
    /// Running on a host with its featureset fixed at start.
    Running,
    /// Suspended to disk: keeps its featureset, is checked like a running VM on resume.
    Suspended,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::Halted => "halted",
            PowerState::Running => "running",
            PowerState::Suspended => "suspended",
        })
    }
}

/// A vendor from its CPUID string (`GenuineIntel`) or a short name (`intel`, `amd`, `hygon`,
/// `centaur`), case-insensitively. `None` for anything else, including Xen's "unknown".
pub fn parse_vendor(text: &str) -> Option<Vendor> {
    match text.trim().to_ascii_lowercase().as_str() {
        "genuineintel" | "intel" => Some(Vendor::Intel),
        "authenticamd" | "amd" => Some(Vendor::Amd),
        "hygongenuine" | "hygon" => Some(Vendor::Hygon),
        "centaurhauls" | "centaur" => Some(Vendor::Centaur),
        "shanghai" | "zhaoxin" => Some(Vendor::Shanghai),
        _ => None,
    }
}

/// Family, model and stepping, as decoded from CPUID.01H:EAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CpuSignature {
    /// Family (base + extended).
    pub family: u32,
    /// Model (with the extended model for families 6 and 0xF).
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
}

impl fmt::Display for CpuSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}/{:#x}/{:#x}",
            self.family, self.model, self.stepping
        )
    }
}

/// Where a host's featuresets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// An AIDA64/EVEREST CPUID dump, derived with the core crate's `SystemPolicies::derive`.
    Aida64,
    /// The raw output of Linux's `cpuid -r`, derived the same way.
    CpuidRaw,
    /// XAPI's `host.cpu_info` map (`xe host-param-get param-name=cpu_info`).
    XapiCpuInfo,
    /// A levelctl host report (JSON, as the test kernel's dom0 agent emits).
    HostReport,
    /// A libvirt `<cpu>` element (`virsh capabilities`, a domain's custom CPU).
    LibvirtCpu,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Aida64 => "aida64",
            SourceKind::CpuidRaw => "cpuid-r",
            SourceKind::XapiCpuInfo => "xapi-cpu-info",
            SourceKind::HostReport => "host-report",
            SourceKind::LibvirtCpu => "libvirt-cpu",
        })
    }
}

/// The input a host record was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The input format.
    pub kind: SourceKind,
    /// The file, as given on the command line.
    pub file: String,
}

/// A domain type's two featuresets on one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSets {
    /// What a new guest gets (Xen's default policy; XAPI's `features_*_host`): the pool level
    /// is the intersection of these.
    #[serde(with = "fs_xapi")]
    pub default: Featureset,
    /// The most a guest may have (Xen's max policy; XAPI's `features_*`): what the host
    /// accepts on migration and resume.
    #[serde(with = "fs_xapi")]
    pub max: Featureset,
}

/// One host, as its last boot reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// A mistyped field in a state file is refused, not dropped and then lost on the next save.
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Unique within its pool.
    pub name: String,
    /// The CPU vendor.
    #[serde(with = "vendor_str")]
    pub vendor: Vendor,
    /// Family/model/stepping, when the input has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<CpuSignature>,
    /// The brand string, when the input has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// Where the featuresets came from.
    pub source: Source,
    /// How many featureset words the host's Xen knows (the length of the featuresets it
    /// reported). Features in later words are unknown to it: a VM with such a bit set can
    /// never move here.
    #[serde(default = "all_words")]
    pub known_words: usize,
    /// The CPU's own featureset (Xen's raw policy), when the input has CPUID data; used to
    /// tell "the CPU lacks it" from "Xen does not offer it".
    #[serde(default, with = "fs_xapi_opt", skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Featureset>,
    /// Features removed at boot with Xen's `cpuid=no-…` option.
    #[serde(default, with = "fs_xapi")]
    pub disabled: Featureset,
    /// CPUID faulting as the hardware enumerates it (`MSR 0xCE[31]` on Intel,
    /// `CPUID.80000021H:EAX[17]` on AMD); `None` when the input cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuid_faulting: Option<bool>,
    /// PV guests' featuresets.
    pub pv: DomainSets,
    /// HVM guests' featuresets.
    pub hvm: DomainSets,
}

fn all_words() -> usize {
    NR_WORDS
}

impl Host {
    /// The featuresets for a guest type.
    pub fn sets(&self, guest: GuestType) -> &DomainSets {
        match guest {
            GuestType::Pv => &self.pv,
            GuestType::Hvm => &self.hvm,
        }
    }

    /// The default featureset for a guest type.
    pub fn default_for(&self, guest: GuestType) -> Featureset {
        self.sets(guest).default
    }

    /// The max featureset for a guest type.
    pub fn max_for(&self, guest: GuestType) -> Featureset {
        self.sets(guest).max
    }

    /// The `cpuid=` option the host booted with, or an empty string.
    pub fn cpuid_option(&self) -> String {
        self.disabled
            .iter()
            .map(|f| format!("no-{f}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A `--force`d move: features the VM uses that the host it was forced onto lacks. The force
/// waived the check of that move only; every later move is checked in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceRecord {
    /// The features the destination lacked (waived for that move).
    #[serde(with = "fs_xapi")]
    pub features: Featureset,
    /// The operation that was forced (`migrate`, `resume`, `import`).
    pub operation: String,
    /// The host it was forced onto (`pool/host`).
    pub host: String,
    /// The features the VM uses that the level of the pool it landed in lacked at the time.
    #[serde(default, with = "fs_xapi")]
    pub above_level: Featureset,
}

/// How a VM's featureset was decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// The pool level at the VM's last start or reboot.
    PoolLevel {
        /// The pool it started in.
        pool: String,
    },
    /// A VM that arrived from an older toolstack without a featureset: the max featureset of
    /// the host it landed on (XenServer Dundee's rule).
    LandingHost {
        /// That host.
        host: String,
    },
    /// A featureset recorded by another toolstack, zero-extended from its length.
    Recorded {
        /// How many words it had.
        words: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::PoolLevel { pool } => write!(f, "level of pool {pool} at start"),
            Origin::LandingHost { host } => {
                write!(
                    f,
                    "legacy VM: the max featureset of {host}, where it landed"
                )
            }
            Origin::Recorded { words } => {
                write!(
                    f,
                    "recorded by another toolstack ({words} words, zero-extended)"
                )
            }
        }
    }
}

/// One VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// A mistyped field in a state file is refused, not dropped and then lost on the next save.
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Unique within its pool.
    pub name: String,
    /// PV or HVM.
    pub guest: GuestType,
    /// Power state.
    pub power: PowerState,
    /// A template: never started, moved and copied without a CPU check.
    #[serde(default)]
    pub template: bool,
    /// The host it runs on (running) or was suspended on / checked against (suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The vendor fixed at start.
    #[serde(
        default,
        with = "vendor_str_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub vendor: Option<Vendor>,
    /// The featureset fixed at start: kept across migrate, suspend and resume.
    #[serde(default, with = "fs_xapi_opt", skip_serializing_if = "Option::is_none")]
    pub featureset: Option<Featureset>,
    /// How the featureset was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Every forced move since the last start: what each waived, and what the VM uses beyond
    /// its pool's level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<ForceRecord>,
}

impl Vm {
    /// A new halted VM.
    pub fn new(name: &str, guest: GuestType, template: bool) -> Vm {
        Vm {
            name: name.to_string(),
            guest,
            power: PowerState::Halted,
            template,
            host: None,
            vendor: None,
            featureset: None,
            origin: None,
            forced: Vec::new(),
        }
    }

    /// Every feature a `--force` since the last start waived (for reports: later moves are
    /// checked in full).
    pub fn waived(&self) -> Featureset {
        self.forced
            .iter()
            .fold(Featureset::EMPTY, |acc, r| acc | r.features)
    }

    /// True when the VM has a CPU featureset that moves must respect (running or suspended).
    pub fn is_live(&self) -> bool {
        matches!(self.power, PowerState::Running | PowerState::Suspended)
    }

    /// Forget everything fixed at start (shutdown).
    pub(crate) fn clear_cpu(&mut self) {
        self.vendor = None;
        self.featureset = None;
        self.origin = None;
        self.forced.clear();
    }
}

/// A pool: hosts of one vendor and the VMs that belong to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// A mistyped field in a state file is refused, not dropped and then lost on the next save.
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool's name (also its state file's name).
    pub name: String,
    /// Member hosts, in join order.
    pub hosts: Vec<Host>,
    /// VMs, in creation order.
    pub vms: Vec<Vm>,
}

impl Pool {
    /// An empty pool.
    pub fn new(name: &str) -> Pool {
        Pool {
            name: name.to_string(),
            hosts: Vec::new(),
            vms: Vec::new(),
        }
    }

    /// The pool's vendor: its first host's (all members share it). `None` while empty.
    pub fn vendor(&self) -> Option<Vendor> {
        self.hosts.first().map(|h| h.vendor)
    }

    /// The host called `name`.
    pub fn find_host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The VM called `name`.
    pub fn find_vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The VM called `name`, for changing.
    pub fn find_vm_mut(&mut self, name: &str) -> Option<&mut Vm> {
        self.vms.iter_mut().find(|v| v.name == name)
    }

    /// Running VMs resident on `host`.
    pub fn resident(&self, host: &str) -> impl Iterator<Item = &Vm> {
        self.vms
            .iter()
            .filter(move |v| v.power == PowerState::Running && v.host.as_deref() == Some(host))
    }
}

/// Names usable for pools, hosts and VMs: ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.` or `-`, at most 64 characters (pool names become file names).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Serialise a featureset as a XAPI string; parse it back strictly.
pub(crate) mod fs_xapi {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use xen_levelling::Featureset;

    pub fn serialize<S: Serializer>(fs: &Featureset, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&fs.xapi())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Featureset, D::Error> {
        let text = String::deserialize(d)?;
        Featureset::parse_xapi(&text)
            .map_err(|e| D::Error::custom(format!("featureset `{text}`: {e}")))
    }
}

/// [`fs_xapi`] for an optional featureset.
pub(crate) mod fs_xapi_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use xen_levelling::Featureset;

    pub fn serialize<S: Serializer>(fs: &Option<Featureset>, s: S) -> Result<S::Ok, S::Error> {
        match fs {
            Some(fs) => s.collect_str(&fs.xapi()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Featureset>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Featureset::parse_xapi(&text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("featureset `{text}`: {e}"))),
        }
    }
}

/// Serialise a vendor as its CPUID string.
pub(crate) mod vendor_str {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use xen_levelling::Vendor;

    pub fn serialize<S: Serializer>(v: &Vendor, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vendor, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_vendor(&text)
            .ok_or_else(|| D::Error::custom(format!("unknown vendor `{text}`")))
    }
}

/// [`vendor_str`] for an optional vendor.
pub(crate) mod vendor_str_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use xen_levelling::Vendor;

    pub fn serialize<S: Serializer>(v: &Option<Vendor>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vendor>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_vendor(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("unknown vendor `{text}`"))),
        }
    }
}
