//! Inputs operators have, turned into [`Host`] records through the core crate.
//!
//! | input | detected by | featuresets from |
//! |---|---|---|
//! | AIDA64/EVEREST CPUID dump ([`Aida64Dump`]) | `CPUID `, `------[` or `CPU#` lines | the system policies of one boot on the silicon model of the dump's CPUID and MSRs 0xCE/0x10A ([`crate::mechanism::boot`]) |
//! | `cpuid -r` output ([`CpuidRaw`]) | `CPU n:` headers or `0x… 0x..: eax=` lines | the system policies of one boot on the silicon model ([`crate::mechanism::boot`]) |
//! | XAPI `host.cpu_info` | `key: value` items (`;` or newline separated) with `vendor` and `features_*` | the strings, as XAPI stores them |
//! | levelctl host report ([`HostReport`], JSON) | a leading `{` | feature names |
//!
//! Featuresets alone (a XAPI string, `xen-cpuid` words or a list of names) are read by
//! [`parse_featureset`] for `decode` and for VM featuresets. Every malformed input is refused
//! with an [`InputError`] naming the file, the line and the reason.
//!
//! # XAPI `host.cpu_info`
//!
//! What `xe host-param-get uuid=… param-name=cpu_info` prints: `key: value` items separated by
//! `; ` (or one per line). Needed: `vendor`, `features_pv` and `features_hvm`. Since 2019
//! these two are Xen's max sets and `features_pv_host`/`features_hvm_host` the defaults; a
//! Dundee-era map without the `_host` keys uses one set for both. `family`, `model`,
//! `stepping` (decimal) and `modelname` are used when present; other keys are ignored. The
//! number of words in the strings is how many words the host's Xen knows.
//!
//! # The host report (JSON, format version 1)
//!
//! ```json
//! {
//!   "format": "levelctl-host-report",
//!   "version": 1,
//!   "name": "host1",
//!   "vendor": "GenuineIntel",
//!   "family": 6, "model": 85, "stepping": 4,
//!   "brand": "Intel(R) Xeon(R) Gold 6154 CPU @ 3.00GHz",
//!   "cpuid_faulting": true,
//!   "featureset_words": 19,
//!   "cpuid_option": "no-xsave",
//!   "featuresets": {
//!     "hardware":    ["fpu", "vme", "..."],
//!     "pv_default":  ["fpu", "..."],
//!     "pv_max":      ["fpu", "..."],
//!     "hvm_default": ["fpu", "..."],
//!     "hvm_max":     ["fpu", "..."]
//!   }
//! }
//! ```
//!
//! `format`, `version`, `vendor` (CPUID string or `intel`/`amd`/`hygon`/`centaur`),
//! `featuresets.pv_default` and `featuresets.hvm_default` are required; everything else is
//! optional. Features are Xen's names (`avx512-vp2intersect`), or `word:bit` for a bit the
//! table does not name. A missing `*_max` means the host accepts exactly its default;
//! `hardware` (the CPU's own features) lets refusals say "not in the CPU" rather than "not
//! offered"; `featureset_words` is how many words the host's Xen knows (features beyond are
//! an error); `cpuid_option` is the `cpuid=` the host booted with (the featuresets already
//! reflect it). Unknown fields are an error; a newer `version` is refused.

use std::path::Path;

use serde::{Deserialize, Serialize};
use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature::NR_WORDS;
use xen_levelling::featureset::FeaturesetError;
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::system::SystemPolicies;
use xen_levelling::{CpuPolicy, CpuidSource, Feature, Featureset, Vendor};

use crate::cpuid_raw::CpuidRaw;
use crate::error::InputError;
use crate::model::{CpuSignature, DomainSets, Host, Source, SourceKind, parse_vendor, valid_name};

/// How to read a host input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInputOptions {
    /// The host's name (default: the report's `name`, else derived from the file name).
    pub name: Option<String>,
    /// Xen's `cpuid=` option to boot it with (`no-xsave,no-avx512f`).
    pub cpuid: Option<String>,
}

/// CPUID facts of an input that has CPUID data (dumps, `cpuid -r`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidFacts {
    /// CPUID.00H:EAX.
    pub max_basic_leaf: u32,
    /// CPUID.80000000H:EAX.
    pub max_extd_leaf: u32,
    /// Xen's host policy featureset (what Xen itself uses).
    pub xen_host: Featureset,
    /// MSR_PLATFORM_INFO as read, when the input has it and it is that MSR (Intel Nehalem on).
    pub platform_info: Option<u64>,
    /// A line about the input (`AIDA64 dump, format B`).
    pub detail: String,
    /// What booting the levelling on the silicon model of this CPU found.
    pub model: crate::mechanism::ModelVerdict,
    /// The system policies the host's featuresets were taken from: those of the same boot
    /// as [`model`](Self::model), so CPUID faulting is decided once.
    pub policies: SystemPolicies,
}

/// A host read from an input, with its CPUID facts when it had CPUID data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The host record.
    pub host: Host,
    /// CPUID facts, for `inspect`.
    pub facts: Option<CpuidFacts>,
}

impl Loaded {
    /// The levelling mechanism for PV guests judged by generation ([`crate::mechanism::assess`])
    /// from what this input says: vendor, signature, max basic leaf, faulting enumeration,
    /// hardware and PV default featuresets.
    pub fn mechanism(&self) -> crate::mechanism::MechanismReport {
        let h = &self.host;
        crate::mechanism::assess(
            h.vendor,
            h.signature,
            self.facts.as_ref().map(|f| f.max_basic_leaf),
            h.cpuid_faulting,
            h.hardware,
            h.pv.default,
        )
    }
}

/// Which kind of host input `text` is, or `None`.
pub fn detect(text: &str) -> Option<SourceKind> {
    if text.trim_start().starts_with('{') {
        return Some(SourceKind::HostReport);
    }
    let xml = text.trim_start();
    if (xml.starts_with('<') && xml.contains("<cpu")) || xml.starts_with("<cpu") {
        return Some(SourceKind::LibvirtCpu);
    }
    if CpuidRaw::looks_like(text) {
        return Some(SourceKind::CpuidRaw);
    }
    for line in text.lines() {
        if line.starts_with("CPUID ") || line.starts_with("------[") || line.starts_with("CPU#") {
            return Some(SourceKind::Aida64);
        }
    }
    let has_key = |key: &str| {
        text.split([';', '\n'])
            .any(|item| item.split_once(':').is_some_and(|(k, _)| k.trim() == key))
    };
    if has_key("vendor") && (has_key("features_pv") || has_key("features_hvm")) {
        return Some(SourceKind::XapiCpuInfo);
    }
    None
}

/// Read a file as UTF-8 text, naming the line of the first invalid byte.
pub fn read_text(path: &Path) -> Result<String, InputError> {
    let file = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| InputError::new(&file, 0, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        InputError::new(&file, line, "not UTF-8 text")
    })
}

/// Read a host input file of any supported kind.
pub fn load_host(path: &Path, options: &HostInputOptions) -> Result<Loaded, InputError> {
    let text = read_text(path)?;
    parse_host(&text, &path.display().to_string(), options)
}

/// Read a host input of any supported kind from `text` (`file` names it in errors).
pub fn parse_host(
    text: &str,
    file: &str,
    options: &HostInputOptions,
) -> Result<Loaded, InputError> {
    let disabled = match &options.cpuid {
        None => Featureset::EMPTY,
        Some(opt) => parse_cpuid_option(opt).map_err(|e| InputError::new("--cpuid", 1, e))?,
    };
    if let Some(name) = &options.name
        && !valid_name(name)
    {
        return Err(InputError::new(
            "--name",
            1,
            format!("`{name}` is not a valid host name (letters, digits, `.`, `_`, `-`)"),
        ));
    }
    let name = options.name.clone();
    match detect(text) {
        Some(SourceKind::HostReport) => parse_report(text, file, name, disabled),
        Some(SourceKind::CpuidRaw) => {
            let raw = CpuidRaw::parse(text)
                .map_err(|e| InputError::new(file, e.line, e.kind.to_string()))?;
            let leaf0_line = raw
                .entries()
                .iter()
                .find(|e| e.leaf == 0)
                .map_or(1, |e| e.line);
            let detail = format!("cpuid -r output, {} CPU blocks", raw.cpus());
            derive_host(
                &raw,
                Derive {
                    msrs: RawMsrs::default(),
                    disabled,
                    name,
                    source: Source {
                        kind: SourceKind::CpuidRaw,
                        file: file.to_string(),
                    },
                    leaf0_line,
                    detail,
                },
            )
        }
        Some(SourceKind::Aida64) => {
            let dump = Aida64Dump::parse(text)
                .map_err(|e| InputError::new(file, e.line(), e.kind().to_string()))?;
            let leaf0_line = dump.entries().find(|e| e.leaf == 0).map_or(1, |e| e.line);
            let detail = format!("AIDA64 dump, format {:?}", dump.format());
            derive_host(
                &dump,
                Derive {
                    msrs: dump.raw_msrs(),
                    disabled,
                    name,
                    source: Source {
                        kind: SourceKind::Aida64,
                        file: file.to_string(),
                    },
                    leaf0_line,
                    detail,
                },
            )
        }
        Some(SourceKind::XapiCpuInfo) => parse_cpu_info(text, file, name, disabled),
        Some(SourceKind::LibvirtCpu) => {
            let mut host = crate::interop::parse_libvirt_cpu(text, file, name)?;
            apply_disabled(&mut host, disabled);
            Ok(Loaded { host, facts: None })
        }
        None => Err(InputError::new(
            file,
            1,
            "not a host input levelctl knows (an AIDA64 CPUID dump, `cpuid -r` output, XAPI \
             cpu_info `key: value` items, a libvirt <cpu> element, or a levelctl host report \
             in JSON)",
        )),
    }
}

/// A name from a file name: the stem, cut before `_CPUID`, without an InstLatx64
/// `GenuineIntel00306C3_` prefix, with characters outside `[A-Za-z0-9._-]` made `-`.
pub fn default_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "host".to_string());
    let mut stem = stem.split("_CPUID").next().unwrap_or(&stem).to_string();
    for vendor in [
        "GenuineIntel",
        "AuthenticAMD",
        "HygonGenuine",
        "CentaurHauls",
    ] {
        if let Some(rest) = stem.strip_prefix(vendor) {
            let b = rest.as_bytes();
            if b.len() > 8 && b[..7].iter().all(u8::is_ascii_hexdigit) && b[7] == b'_' {
                stem = rest[8..].to_string();
            }
        }
    }
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_start_matches(['.', '-'])
        .chars()
        .take(64)
        .collect();
    if name.is_empty() {
        "host".to_string()
    } else {
        name
    }
}

struct Derive {
    /// The MSRs the input recorded, MSR 0xCE only where it is MSR_PLATFORM_INFO (as
    /// [`Aida64Dump::raw_msrs`] gives them).
    msrs: RawMsrs,
    disabled: Featureset,
    name: Option<String>,
    source: Source,
    leaf0_line: usize,
    detail: String,
}

/// The brand string from CPUID.80000002H-80000004H, blanks collapsed.
pub fn brand_string(src: &impl CpuidSource) -> Option<String> {
    if src.cpuid(0x8000_0000, 0).a < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::new();
    for leaf in 0x8000_0002..=0x8000_0004 {
        let r = src.cpuid(leaf, 0);
        for v in [r.a, r.b, r.c, r.d] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    let text: String = bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

/// Derive a host from CPUID data: boot the core once on the silicon model of the CPU
/// ([`crate::mechanism::boot`], with the recorded MSRs: 0xCE only where it is
/// MSR_PLATFORM_INFO, [`RawMsrs::platform_info_exists`]) and take the system policies and the
/// model verdict from that one boot, so CPUID faulting is decided once, by the probe. The
/// host record's `cpuid_faulting` is what the CPU enumerates (`0xCE[31]` or
/// CPUID.80000021H:EAX[17]), where the input tells; it must agree with the probe.
fn derive_host(src: &impl CpuidSource, d: Derive) -> Result<Loaded, InputError> {
    let probe = CpuPolicy::from_source(src, RawMsrs::default());
    let vendor = probe.vendor();
    if vendor == Vendor::Unknown {
        let r = src.cpuid(0, 0);
        let bytes: Vec<u8> = [r.b, r.d, r.c]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        return Err(InputError::new(
            &d.source.file,
            d.leaf0_line,
            format!(
                "CPUID leaf 0 names vendor {:?}, which Xen does not level",
                String::from_utf8_lossy(&bytes)
            ),
        ));
    }
    let sig = probe.signature();
    let has_platform_info = RawMsrs::platform_info_exists(vendor, sig);
    let platform_info = d.msrs.platform_info;
    let enumerated = CpuPolicy::from_source(src, d.msrs);
    let faulting = match vendor {
        Vendor::Amd | Vendor::Hygon => {
            Some(enumerated.featureset().contains(Feature::CPUID_USER_DIS))
        }
        Vendor::Intel if has_platform_info => platform_info.map(|_| enumerated.cpuid_faulting()),
        // Before Nehalem, 0xCE is not MSR_PLATFORM_INFO and there is no faulting.
        Vendor::Intel if sig.family == 6 => Some(false),
        _ => None,
    };
    let booted = crate::mechanism::boot(src, d.msrs, d.disabled);
    let p = *booted.system();
    let probed = booted.levelling().faulting();
    if let Some(enumerated) = faulting
        && enumerated != probed
    {
        let said = |on: bool| if on { "available" } else { "not available" };
        return Err(InputError::new(
            &d.source.file,
            d.leaf0_line,
            format!(
                "the CPU enumerates CPUID faulting as {}, but booting on its silicon model \
                 probed it {}; levelctl will not guess which Xen would use",
                said(enumerated),
                said(probed)
            ),
        ));
    }
    let model = crate::mechanism::on_model(&booted);
    let name = d.name.unwrap_or_else(|| default_name(&d.source.file));
    let host = Host {
        name,
        vendor,
        signature: Some(CpuSignature {
            family: sig.family,
            model: sig.model,
            stepping: sig.stepping,
        }),
        brand: brand_string(src),
        source: d.source,
        known_words: NR_WORDS,
        hardware: Some(p.raw.featureset()),
        disabled: d.disabled,
        cpuid_faulting: faulting,
        pv: DomainSets {
            default: p.pv_default.featureset(),
            max: p.pv_max.featureset(),
        },
        hvm: DomainSets {
            default: p.hvm_default.featureset(),
            max: p.hvm_max.featureset(),
        },
    };
    Ok(Loaded {
        host,
        facts: Some(CpuidFacts {
            max_basic_leaf: p.raw.max_basic_leaf(),
            max_extd_leaf: p.raw.max_extd_leaf(),
            xen_host: p.host.featureset(),
            platform_info,
            detail: d.detail,
            model,
            policies: p,
        }),
    })
}

/// Remove `disabled` (and its dependents) from featuresets that were reported, not derived.
fn apply_disabled(host: &mut Host, disabled: Featureset) {
    if disabled.is_empty() {
        return;
    }
    for sets in [&mut host.pv, &mut host.hvm] {
        sets.default = (sets.default - disabled).closed();
        sets.max = (sets.max - disabled).closed();
    }
    host.disabled |= disabled;
}

/// The `key: value` items of a XAPI `cpu_info` text (`;` or newlines between them), each with
/// its line.
struct CpuInfoItems<'a> {
    file: &'a str,
    /// Where an item that is missing is reported: the last line.
    last_line: usize,
    items: Vec<(usize, String, String)>,
}

impl<'a> CpuInfoItems<'a> {
    fn parse(text: &str, file: &'a str) -> Result<CpuInfoItems<'a>, InputError> {
        let mut items: Vec<(usize, String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            for piece in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((key, value)) = piece.split_once(':') else {
                    return Err(InputError::new(
                        file,
                        number,
                        format!("`{piece}` is not a `key: value` item"),
                    ));
                };
                let key = key.trim().to_string();
                if items.iter().any(|(_, k, _)| *k == key) {
                    return Err(InputError::new(
                        file,
                        number,
                        format!("key `{key}` given twice"),
                    ));
                }
                items.push((number, key, value.trim().to_string()));
            }
        }
        Ok(CpuInfoItems {
            file,
            last_line: text.lines().count().max(1),
            items,
        })
    }

    /// The item `key`: (line, key, value).
    fn get(&self, key: &str) -> Option<&(usize, String, String)> {
        self.items.iter().find(|(_, k, _)| k == key)
    }

    fn error(&self, line: usize, message: String) -> InputError {
        InputError::new(self.file, line, message)
    }

    /// The item `key`, which must be there (`what` says what it is).
    fn required(&self, key: &str, what: &str) -> Result<&(usize, String, String), InputError> {
        self.get(key)
            .ok_or_else(|| self.error(self.last_line, format!("no `{key}` ({what})")))
    }

    /// The XAPI featureset `key`, if given, with the number of words it was written with.
    fn featureset(&self, key: &str) -> Result<Option<(Featureset, usize)>, InputError> {
        let Some((line, _, value)) = self.get(key) else {
            return Ok(None);
        };
        if value.is_empty() {
            return Err(self.error(*line, format!("`{key}` is empty")));
        }
        let fs = Featureset::parse_xapi(value)
            .map_err(|e| self.error(*line, format!("`{key}` value: {e}")))?;
        Ok(Some((fs, value.split('-').count())))
    }

    /// The default (`default_key`, else the max) and max (`max_key`, required) featuresets of a
    /// guest type; a default with features the max lacks is an error.
    fn domain_sets(
        &self,
        max_key: &str,
        default_key: &str,
        known_words: &mut usize,
    ) -> Result<DomainSets, InputError> {
        let Some((max, words)) = self.featureset(max_key)? else {
            return Err(self.error(
                self.last_line,
                format!("no `{max_key}` (XAPI's featureset for that guest type)"),
            ));
        };
        *known_words = (*known_words).max(words);
        let default = match self.featureset(default_key)? {
            Some((default, words)) => {
                *known_words = (*known_words).max(words);
                default
            }
            None => max,
        };
        let extra = default - max;
        if !extra.is_empty() {
            let line = self.get(default_key).map_or(1, |(l, _, _)| *l);
            return Err(self.error(
                line,
                format!(
                    "`{default_key}` (default) has features its max set lacks: {}",
                    extra.names()
                ),
            ));
        }
        Ok(DomainSets { default, max })
    }

    /// The decimal number `key`, if given.
    fn number(&self, key: &str) -> Result<Option<u32>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some((line, _, v)) => v
                .parse()
                .map(Some)
                .map_err(|_| self.error(*line, format!("`{key}` is not a decimal number: `{v}`"))),
        }
    }
}

fn parse_cpu_info(
    text: &str,
    file: &str,
    name: Option<String>,
    disabled: Featureset,
) -> Result<Loaded, InputError> {
    let items = CpuInfoItems::parse(text, file)?;
    let (vline, _, vtext) = items.required("vendor", "the CPU vendor string")?;
    let vendor = parse_vendor(vtext)
        .ok_or_else(|| items.error(*vline, format!("vendor `{vtext}` is not one Xen levels")))?;
    let mut known_words = 0;
    let pv = items.domain_sets("features_pv", "features_pv_host", &mut known_words)?;
    let hvm = items.domain_sets("features_hvm", "features_hvm_host", &mut known_words)?;
    let signature = match (
        items.number("family")?,
        items.number("model")?,
        items.number("stepping")?,
    ) {
        (Some(family), Some(model), Some(stepping)) => Some(CpuSignature {
            family,
            model,
            stepping,
        }),
        _ => None,
    };
    let mut host = Host {
        name: name.unwrap_or_else(|| default_name(file)),
        vendor,
        signature,
        brand: items.get("modelname").map(|(_, _, v)| v.clone()),
        source: Source {
            kind: SourceKind::XapiCpuInfo,
            file: file.to_string(),
        },
        known_words: known_words.min(NR_WORDS),
        hardware: None,
        disabled: Featureset::EMPTY,
        cpuid_faulting: None,
        pv,
        hvm,
    };
    apply_disabled(&mut host, disabled);
    Ok(Loaded { host, facts: None })
}

/// The JSON host report (see the [module documentation](self) for the schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    /// Always `levelctl-host-report`.
    pub format: String,
    /// The schema version, [`HostReport::VERSION`].
    pub version: u32,
    /// The host's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The vendor: `GenuineIntel` (or `intel`), `AuthenticAMD`, `HygonGenuine`, `CentaurHauls`.
    pub vendor: String,
    /// CPU family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<u32>,
    /// CPU model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<u32>,
    /// CPU stepping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepping: Option<u32>,
    /// The brand string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// CPUID faulting as enumerated by the hardware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuid_faulting: Option<bool>,
    /// How many featureset words the host's Xen knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub featureset_words: Option<usize>,
    /// The `cpuid=` option the host booted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuid_option: Option<String>,
    /// The featuresets, by feature name.
    pub featuresets: ReportFeaturesets,
}

/// The featuresets of a [`HostReport`], as lists of Xen feature names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFeaturesets {
    /// The CPU's own features (Xen's raw policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Vec<String>>,
    /// Xen's PV default policy.
    pub pv_default: Vec<String>,
    /// Xen's PV max policy (default: `pv_default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_max: Option<Vec<String>>,
    /// Xen's HVM default policy.
    pub hvm_default: Vec<String>,
    /// Xen's HVM max policy (default: `hvm_default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hvm_max: Option<Vec<String>>,
}

impl HostReport {
    /// The `format` value.
    pub const FORMAT: &'static str = "levelctl-host-report";
    /// The schema version this build writes and reads.
    pub const VERSION: u32 = 1;

    /// The report a host record would produce (what the dom0 agent emits).
    pub fn from_host(host: &Host) -> HostReport {
        let list = |fs: &Featureset| fs.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let option = host.cpuid_option();
        HostReport {
            format: Self::FORMAT.to_string(),
            version: Self::VERSION,
            name: Some(host.name.clone()),
            vendor: host.vendor.to_string(),
            family: host.signature.map(|s| s.family),
            model: host.signature.map(|s| s.model),
            stepping: host.signature.map(|s| s.stepping),
            brand: host.brand.clone(),
            cpuid_faulting: host.cpuid_faulting,
            featureset_words: Some(host.known_words),
            cpuid_option: (!option.is_empty()).then_some(option),
            featuresets: ReportFeaturesets {
                hardware: host.hardware.as_ref().map(list),
                pv_default: list(&host.pv.default),
                pv_max: Some(list(&host.pv.max)),
                hvm_default: list(&host.hvm.default),
                hvm_max: Some(list(&host.hvm.max)),
            },
        }
    }
}

/// 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The line of the first `"needle"` at or after the line of `"after"` (as JSON strings).
fn json_line(text: &str, after: &str, needle: &str) -> usize {
    let start = text.find(&format!("\"{after}\"")).unwrap_or(0);
    match text[start..].find(&format!("\"{needle}\"")) {
        Some(at) => line_at(text, start + at),
        None => line_at(text, start),
    }
}

fn json_error(file: &str, e: serde_json::Error) -> InputError {
    InputError::new(file, e.line().max(1), format!("JSON: {e}"))
}

/// A host report's `format` and `version`, checked before anything else, so that a newer
/// report is refused for its version and not for fields this build does not know.
fn check_report_header(text: &str, file: &str) -> Result<(), InputError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(file, e))?;
    let format = value.get("format").and_then(|v| v.as_str());
    if format != Some(HostReport::FORMAT) {
        return Err(InputError::new(
            file,
            json_line(text, "format", "format"),
            format!("`format` must be \"{}\"", HostReport::FORMAT),
        ));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(HostReport::VERSION) => {}
        Some(v) => {
            return Err(InputError::new(
                file,
                json_line(text, "version", "version"),
                format!(
                    "host report version {v}, but this levelctl reads version {}",
                    HostReport::VERSION
                ),
            ));
        }
        None => {
            return Err(InputError::new(
                file,
                json_line(text, "version", "version"),
                "`version` must be a number",
            ));
        }
    }
    Ok(())
}

/// `featuresets.<key>`: feature names (or `word:bit`), each in the `known_words` the report
/// claims.
fn read_report_featureset(
    text: &str,
    file: &str,
    key: &str,
    list: &[String],
    known_words: usize,
) -> Result<Featureset, InputError> {
    let mut fs = Featureset::EMPTY;
    for item in list {
        let single = !item.is_empty() && !item.contains([',', ' ', '\t', '\n']);
        let feature = single
            .then(|| Featureset::parse_names(item).ok())
            .flatten()
            .and_then(|f| f.first());
        let Some(feature) = feature else {
            return Err(InputError::new(
                file,
                json_line(text, key, item),
                format!("featuresets.{key}: `{item}` is not a feature name (or `word:bit`)"),
            ));
        };
        if feature.word() >= known_words {
            return Err(InputError::new(
                file,
                json_line(text, key, item),
                format!(
                    "featuresets.{key}: `{item}` is in word {}, but the report says the host \
                     knows {known_words} words",
                    feature.word()
                ),
            ));
        }
        fs.insert(feature);
    }
    Ok(fs)
}

/// A host report's PV and HVM featuresets (a missing max is the default) and its hardware
/// set; a default with features its max lacks is an error.
fn report_featuresets(
    text: &str,
    file: &str,
    sets: &ReportFeaturesets,
    known_words: usize,
) -> Result<(DomainSets, DomainSets, Option<Featureset>), InputError> {
    let read =
        |key: &str, list: &[String]| read_report_featureset(text, file, key, list, known_words);
    let pv_default = read("pv_default", &sets.pv_default)?;
    let hvm_default = read("hvm_default", &sets.hvm_default)?;
    let pv_max = match &sets.pv_max {
        Some(list) => read("pv_max", list)?,
        None => pv_default,
    };
    let hvm_max = match &sets.hvm_max {
        Some(list) => read("hvm_max", list)?,
        None => hvm_default,
    };
    let hardware = match &sets.hardware {
        Some(list) => Some(read("hardware", list)?),
        None => None,
    };
    for (key, default, max) in [
        ("pv_default", pv_default, pv_max),
        ("hvm_default", hvm_default, hvm_max),
    ] {
        let extra = default - max;
        if !extra.is_empty() {
            return Err(InputError::new(
                file,
                json_line(text, key, key),
                format!(
                    "featuresets.{key} has features the max set lacks: {}",
                    extra.names()
                ),
            ));
        }
    }
    Ok((
        DomainSets {
            default: pv_default,
            max: pv_max,
        },
        DomainSets {
            default: hvm_default,
            max: hvm_max,
        },
        hardware,
    ))
}

fn parse_report(
    text: &str,
    file: &str,
    name: Option<String>,
    disabled: Featureset,
) -> Result<Loaded, InputError> {
    check_report_header(text, file)?;
    let report: HostReport = serde_json::from_str(text).map_err(|e| json_error(file, e))?;
    let vendor = parse_vendor(&report.vendor).ok_or_else(|| {
        InputError::new(
            file,
            json_line(text, "vendor", "vendor"),
            format!("vendor `{}` is not one Xen levels", report.vendor),
        )
    })?;
    let known_words = report.featureset_words.unwrap_or(NR_WORDS);
    if known_words == 0 {
        return Err(InputError::new(
            file,
            json_line(text, "featureset_words", "featureset_words"),
            "`featureset_words` must be at least 1",
        ));
    }
    let (pv, hvm, hardware) = report_featuresets(text, file, &report.featuresets, known_words)?;
    let reported_disabled = match &report.cpuid_option {
        None => Featureset::EMPTY,
        Some(opt) => parse_cpuid_option(opt).map_err(|e| {
            InputError::new(file, json_line(text, "cpuid_option", "cpuid_option"), e)
        })?,
    };
    let signature = match (report.family, report.model, report.stepping) {
        (Some(family), Some(model), Some(stepping)) => Some(CpuSignature {
            family,
            model,
            stepping,
        }),
        _ => None,
    };
    let name = match name.or(report.name.clone()) {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            return Err(InputError::new(
                file,
                json_line(text, "name", "name"),
                format!("`{n}` is not a valid host name (letters, digits, `.`, `_`, `-`)"),
            ));
        }
        None => default_name(file),
    };
    let mut host = Host {
        name,
        vendor,
        signature,
        brand: report.brand.clone(),
        source: Source {
            kind: SourceKind::HostReport,
            file: file.to_string(),
        },
        known_words: known_words.min(NR_WORDS),
        hardware,
        disabled: reported_disabled,
        cpuid_faulting: report.cpuid_faulting,
        pv,
        hvm,
    };
    apply_disabled(&mut host, disabled);
    Ok(Loaded { host, facts: None })
}

/// Parse Xen's `cpuid=` option: the features to disable, each as `no-<feature>` (Xen's
/// command line) or `<feature>=0` (`xl.cfg`'s syntax; `false`, `off` and `no` too), separated
/// by commas. Turning a feature on (`avx2=1`) is refused: a boot option only hides features.
pub fn parse_cpuid_option(text: &str) -> Result<Featureset, String> {
    let mut disabled = Featureset::EMPTY;
    let mut column = 1;
    for raw in text.split(',') {
        let item = raw.trim();
        let at = column + (raw.len() - raw.trim_start().len());
        column += raw.chars().count() + 1;
        if item.is_empty() {
            continue;
        }
        let (name, off) = match item.split_once('=') {
            Some((name, value)) => match value.trim().to_ascii_lowercase().as_str() {
                "0" | "false" | "off" | "no" => (name.trim(), true),
                "1" | "true" | "on" | "yes" => (name.trim(), false),
                _ => (item, true),
            },
            None => match item.strip_prefix("no-") {
                Some(name) => (name, true),
                None => (item, false),
            },
        };
        let Some(feature) = Feature::from_name(name) else {
            return Err(format!(
                "cpuid= column {at}: `{item}` is not a known feature (give `no-<feature>` or \
                 `<feature>=0`)"
            ));
        };
        if !off {
            return Err(format!(
                "cpuid= column {at}: `{item}` turns {feature} on; a boot option can only hide \
                 features (`no-{feature}` or `{feature}=0`)"
            ));
        }
        disabled.insert(feature);
    }
    Ok(disabled)
}

/// The text form a featureset was given in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeaturesetForm {
    /// XAPI's `-`-separated hex words.
    Xapi,
    /// `xen-cpuid`'s `:`-separated hex words.
    XenWords,
    /// Feature names.
    Names,
}

/// A featureset read from text, and how it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFeatureset {
    /// The set, zero-extended to this build's length.
    pub featureset: Featureset,
    /// The form.
    pub form: FeaturesetForm,
    /// How many words the text had (hex forms only).
    pub words: Option<usize>,
}

/// Read a featureset in any of the three text forms.
///
/// One token (no blanks or commas) that starts with a hex digit run and is not itself a
/// feature name (`de`, `f16c`, `fb-clear`) is hex words: `xen-cpuid`'s form if it has a `:`,
/// else XAPI's, and a bad digit in it is reported as such. Anything else is a list of names. Shorter hex texts are zero-extended; a set bit
/// past this build's words is an error ([`FeaturesetError::UnknownWord`]), never dropped.
pub fn parse_featureset(text: &str) -> Result<ParsedFeatureset, FeaturesetError> {
    let t = text.trim();
    let one_token = !t.contains(|c: char| c.is_whitespace() || c == ',');
    let first = t.split(['-', ':']).next().unwrap_or_default();
    let hex_start = !first.is_empty() && first.chars().all(|c| c.is_ascii_hexdigit());
    if one_token && hex_start && Feature::from_name(t).is_none() {
        let words = Some(t.split(['-', ':']).count());
        if t.contains(':') {
            Ok(ParsedFeatureset {
                featureset: Featureset::parse_xen_words(t)?,
                form: FeaturesetForm::XenWords,
                words,
            })
        } else {
            Ok(ParsedFeatureset {
                featureset: Featureset::parse_xapi(t)?,
                form: FeaturesetForm::Xapi,
                words,
            })
        }
    } else {
        Ok(ParsedFeatureset {
            featureset: Featureset::parse_names(t)?,
            form: FeaturesetForm::Names,
            words: None,
        })
    }
}

/// Read a file of featuresets, one per line (blank lines and `#` comments skipped): each with
/// its line number.
pub fn parse_featureset_lines(
    text: &str,
    file: &str,
) -> Result<Vec<(usize, ParsedFeatureset)>, InputError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let parsed =
            parse_featureset(t).map_err(|e| InputError::new(file, i + 1, e.to_string()))?;
        out.push((i + 1, parsed));
    }
    if out.is_empty() {
        return Err(InputError::new(file, 1, "no featureset in the file"));
    }
    Ok(out)
}
