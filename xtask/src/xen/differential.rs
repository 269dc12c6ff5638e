//! The derivation differential (issue 14): for each model, the crate derives its own system
//! policies from Xen's Raw policy of the same boot (`SystemPolicies::derive`, with the same
//! HAP/shadow choice as that Xen and no `cpuid=`), and every CPUID leaf register, MSR and
//! featureset word of Raw, Host, PV max/default and HVM max/default is compared with what
//! Xen printed (`xen-cpuid -p`, `xen-cpuid`). Every difference must be listed in
//! [`KNOWN_FILE`] with the Xen commit or environment fact that explains it, or it is a
//! failure.
//!
//! The known-differences file is tab-separated: `model`, `policy`, `item`, `bits`,
//! `explanation`; `#` starts a comment line. `model` and `policy` may be `*`. `item` is
//! `cpuid LLLLLLLL:SSSSSSSS reg` (`reg` one of `eax`..`edx`), `msr IIIIIIII`, or
//! `word NAME` (Xen's featureset word names: `1d`, `1c`, `e1d`, …). `bits` is a hex mask (the
//! difference, Xen's value XOR the crate's, must lie within it) or `*`. An explanation that
//! starts with `OPEN` is a question still to settle (possibly a crate bug): it does not fail
//! the run, but every run prints the differences it covers.

use std::fmt::Write as _;

use xen_levelling::CpuPolicy;
use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xen_levelling::policy::system::{HostOptions, SpecCtrlOptions, SystemPolicies};

use super::cpuid_p::{self, Leaf};
use super::{XenModel, model_dir, serial};
use crate::process::Workspace;

/// The data file of known differences, relative to the workspace root.
pub const KNOWN_FILE: &str = "data/xen-derivation-known-differences.tsv";

/// Xen's featureset word names, in order (`xen-cpuid`'s KEY line).
pub const WORD_NAMES: [&str; 19] = [
    "1d", "1c", "e1d", "e1c", "Da1", "7b0", "7c0", "e7d", "e8b", "7d0", "7a1", "e21a", "7b1",
    "7d2", "7c1", "7d1", "m10Al", "m10Ah", "e21c",
];

/// The policies compared: `xen-cpuid -p`'s name, `xen-cpuid`'s dynamic set name.
const POLICIES: [&str; 6] = [
    "Raw",
    "Host",
    "PV Max",
    "PV Default",
    "HVM Max",
    "HVM Default",
];

/// One difference between Xen's policy and the crate's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The QEMU model.
    pub model: String,
    /// Which policy.
    pub policy: String,
    /// `cpuid 00000001:ffffffff ecx`, `msr 0000010a` or `word 1c`.
    pub item: String,
    /// Xen's value.
    pub xen: u64,
    /// The crate's value.
    pub ours: u64,
}

impl Difference {
    /// The differing bits.
    pub fn bits(&self) -> u64 {
        self.xen ^ self.ours
    }

    /// As a line of the known-differences file, to be completed with an explanation.
    pub fn tsv(&self) -> String {
        format!(
            "{}\t{}\t{}\t{:#x}\t(xen {:#x}, crate {:#x}) EXPLAIN",
            self.model,
            self.policy,
            self.item,
            self.bits(),
            self.xen,
            self.ours
        )
    }
}

/// One entry of the known-differences file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Model or `*`.
    pub model: String,
    /// Policy or `*`.
    pub policy: String,
    /// The item, as [`Difference::item`].
    pub item: String,
    /// The bits it covers; `None` for `*`.
    pub bits: Option<u64>,
    /// Why.
    pub explanation: String,
    /// Line number in the file.
    pub line: usize,
}

impl Known {
    /// Whether this entry explains `d`.
    pub fn explains(&self, d: &Difference) -> bool {
        (self.model == "*" || self.model == d.model)
            && (self.policy == "*" || self.policy == d.policy)
            && self.item == d.item
            && self.bits.is_none_or(|bits| d.bits() & !bits == 0)
    }
}

/// Parses the known-differences file.
pub fn parse_known(text: &str) -> Result<Vec<Known>, String> {
    let mut known = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [model, policy, item, bits, explanation] = fields.as_slice() else {
            return Err(format!(
                "{KNOWN_FILE} line {}: expected 5 tab-separated fields, got {}",
                index + 1,
                fields.len()
            ));
        };
        let bits = match *bits {
            "*" => None,
            hex => Some(
                u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("{KNOWN_FILE} line {}: bad bits `{hex}`", index + 1))?,
            ),
        };
        if explanation.trim().is_empty() || explanation.contains("EXPLAIN") {
            return Err(format!("{KNOWN_FILE} line {}: no explanation", index + 1));
        }
        known.push(Known {
            model: (*model).to_owned(),
            policy: (*policy).to_owned(),
            item: (*item).to_owned(),
            bits,
            explanation: (*explanation).to_owned(),
            line: index + 1,
        });
    }
    Ok(known)
}

/// What Xen printed for one boot, as the differential needs it.
pub struct XenPolicies {
    /// `xen-cpuid -p`.
    pub policies: Vec<cpuid_p::Policy>,
    /// `xen-cpuid`.
    pub featuresets: Vec<cpuid_p::Featureset>,
    /// Xen runs HVM guests here (SVM/VMX enabled).
    pub hvm: bool,
    /// ... on HAP (else shadow).
    pub hap: bool,
    /// Xen's command line (its `spec-ctrl=` shapes the guest policies).
    pub command_line: String,
}

impl XenPolicies {
    /// From a boot's serial log.
    pub fn from_log(log: &serial::XenLog) -> Result<XenPolicies, String> {
        let p = log.cpuid_p.as_deref().ok_or("no xen-cpuid -p output")?;
        let f = log.featuresets.as_deref().ok_or("no xen-cpuid output")?;
        Ok(XenPolicies {
            policies: cpuid_p::parse_policies(p)?,
            featuresets: cpuid_p::parse_featuresets(f)?,
            hvm: log.hvm,
            hap: log.hap,
            command_line: log.command_line.clone().unwrap_or_default(),
        })
    }

    fn policy(&self, name: &str) -> Result<&cpuid_p::Policy, String> {
        self.policies
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("xen-cpuid -p has no {name} policy"))
    }
}

/// The crate's `spec-ctrl=` options from Xen's command line: `spec-ctrl=no` (or `0`, `off`,
/// `false`) turns off MSR_SPEC_CTRL virtualisation for both guest types, as Xen's
/// `parse_spec_ctrl` does; `msr-sc=<bool>` inside a list sets both.
pub fn spec_ctrl(command_line: &str) -> SpecCtrlOptions {
    let mut options = SpecCtrlOptions::default();
    let is_false = |v: &str| matches!(v, "no" | "0" | "off" | "false" | "disable");
    for word in command_line.split_whitespace() {
        let Some(value) = word.strip_prefix("spec-ctrl=") else {
            continue;
        };
        for item in value.split(',') {
            if is_false(item) || item.strip_prefix("msr-sc=").is_some_and(is_false) {
                options.msr_sc_pv = false;
                options.msr_sc_hvm = false;
            }
        }
    }
    options
}

/// The crate's policy from leaf and MSR lists.
fn policy_from(leaves: &[Leaf], msrs: &[(u32, u64)]) -> Result<CpuPolicy, String> {
    let leaves: Vec<XenCpuidLeaf> = leaves
        .iter()
        .map(|l| XenCpuidLeaf {
            leaf: l.leaf,
            subleaf: l.subleaf,
            a: l.regs[0],
            b: l.regs[1],
            c: l.regs[2],
            d: l.regs[3],
        })
        .collect();
    let msrs: Vec<XenMsrEntry> = msrs
        .iter()
        .map(|&(idx, val)| XenMsrEntry { idx, flags: 0, val })
        .collect();
    CpuPolicy::from_arrays(&leaves, &msrs).map_err(|e| format!("Xen's Raw policy: {e:?}"))
}

/// The crate's policy as leaf and MSR lists (Xen's serialised order).
fn lists_of(p: &CpuPolicy) -> (Vec<Leaf>, Vec<(u32, u64)>) {
    let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let n = p.write_leaves(&mut leaves).unwrap_or(0);
    let mut msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
    let m = p.write_msrs(&mut msrs).unwrap_or(0);
    (
        leaves[..n]
            .iter()
            .map(|l| Leaf {
                leaf: l.leaf,
                subleaf: l.subleaf,
                regs: [l.a, l.b, l.c, l.d],
            })
            .collect(),
        msrs[..m].iter().map(|e| (e.idx, e.val)).collect(),
    )
}

/// Every difference between Xen's policies and the crate's derived from Xen's Raw.
pub fn compare(model: &str, xen: &XenPolicies) -> Result<Vec<Difference>, String> {
    let raw = xen.policy("Raw")?;
    let raw = policy_from(&raw.leaves, &raw.msrs)?;
    let options = HostOptions {
        hap: xen.hap,
        spec_ctrl: spec_ctrl(&xen.command_line),
        ..HostOptions::default()
    };
    let ours = SystemPolicies::derive(&raw, options);
    let mut diffs = Vec::new();
    for name in POLICIES {
        if name.starts_with("HVM") && !xen.hvm {
            continue; // Xen offers no HVM here: its HVM policies are empty.
        }
        let derived = match name {
            "Raw" => &ours.raw,
            "Host" => &ours.host,
            "PV Max" => &ours.pv_max,
            "PV Default" => &ours.pv_default,
            "HVM Max" => &ours.hvm_max,
            _ => &ours.hvm_default,
        };
        let theirs = xen.policy(name)?;
        let (leaves, msrs) = lists_of(derived);
        let mut keys: Vec<(u32, u32)> = theirs
            .leaves
            .iter()
            .chain(&leaves)
            .map(|l| (l.leaf, l.subleaf))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let regs_of = |list: &[Leaf], key: (u32, u32)| {
            list.iter()
                .find(|l| (l.leaf, l.subleaf) == key)
                .map_or([0; 4], |l| l.regs)
        };
        for key in keys {
            let (x, o) = (regs_of(&theirs.leaves, key), regs_of(&leaves, key));
            for (i, reg) in ["eax", "ebx", "ecx", "edx"].iter().enumerate() {
                if x[i] != o[i] {
                    diffs.push(Difference {
                        model: model.to_owned(),
                        policy: name.to_owned(),
                        item: format!("cpuid {:08x}:{:08x} {reg}", key.0, key.1),
                        xen: x[i].into(),
                        ours: o[i].into(),
                    });
                }
            }
        }
        let mut indexes: Vec<u32> = theirs.msrs.iter().chain(&msrs).map(|m| m.0).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let value = |list: &[(u32, u64)], idx| list.iter().find(|m| m.0 == idx).map_or(0, |m| m.1);
        for idx in indexes {
            let (x, o) = (value(&theirs.msrs, idx), value(&msrs, idx));
            if x != o {
                diffs.push(Difference {
                    model: model.to_owned(),
                    policy: name.to_owned(),
                    item: format!("msr {idx:08x}"),
                    xen: x,
                    ours: o,
                });
            }
        }
        let set = xen
            .featuresets
            .iter()
            .find(|s| s.kind == "Dynamic" && s.name == name)
            .ok_or_else(|| format!("xen-cpuid has no dynamic {name} featureset"))?;
        let words = derived.featureset();
        for (i, word) in WORD_NAMES.iter().enumerate() {
            let x = set.words.get(i).copied().unwrap_or(0);
            let o = words.word(i);
            if x != o {
                diffs.push(Difference {
                    model: model.to_owned(),
                    policy: name.to_owned(),
                    item: format!("word {word}"),
                    xen: x.into(),
                    ours: o.into(),
                });
            }
        }
    }
    Ok(diffs)
}

/// The outcome over every model.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Models compared.
    pub models: Vec<String>,
    /// Models without captures (cached-only runs).
    pub skipped: Vec<String>,
    /// Differences explained by the file.
    pub explained: usize,
    /// Of those, the ones whose entry is an open question (explanation starting `OPEN`),
    /// printed on every run until settled.
    pub open: Vec<Difference>,
    /// Differences the file does not explain.
    pub unexplained: Vec<Difference>,
    /// Entries of the file that matched nothing (fixed since, or a model not run).
    pub unused: Vec<Known>,
}

/// Runs the differential on `models`: from their captures under `target/xen/<model>/`, booting
/// Xen for those without one unless `cached_only`. Prints the summary; an unexplained
/// difference is an error.
pub fn run(ws: &Workspace, models: &[XenModel], cached_only: bool) -> Result<Outcome, String> {
    let known_path = ws.root().join(KNOWN_FILE);
    let known = parse_known(
        &std::fs::read_to_string(&known_path)
            .map_err(|e| format!("{}: {e}", known_path.display()))?,
    )?;
    let mut outcome = Outcome::default();
    let mut used = vec![false; known.len()];
    let mut observed = String::new();
    for model in models {
        let log_path = model_dir(ws, model.cpu).join("serial.log");
        let log = match std::fs::read_to_string(&log_path) {
            Ok(text) => serial::parse(&text),
            Err(_) if cached_only => {
                outcome.skipped.push(model.cpu.to_owned());
                continue;
            }
            Err(_) => {
                let (mut boots, failed) = super::boot_models(ws, &[*model])?;
                match boots.pop() {
                    Some(boot) => boot.log,
                    None => return Err(failed.join("; ")),
                }
            }
        };
        let xen = XenPolicies::from_log(&log)
            .map_err(|e| format!("{}: {e} ({})", model.cpu, log_path.display()))?;
        let diffs = compare(model.cpu, &xen)?;
        let mut unexplained = 0;
        for d in diffs {
            let _ = writeln!(observed, "{}", d.tsv());
            match known.iter().position(|k| k.explains(&d)) {
                Some(i) => {
                    used[i] = true;
                    outcome.explained += 1;
                    if known[i].explanation.starts_with("OPEN") {
                        outcome.open.push(d);
                    }
                }
                None => {
                    unexplained += 1;
                    outcome.unexplained.push(d);
                }
            }
        }
        println!(
            "xen-policies: {}: Xen {} (HVM {}), every leaf, MSR and featureset word of {}: {} unexplained",
            model.cpu,
            log.version.as_deref().unwrap_or("?"),
            match (xen.hvm, xen.hap) {
                (false, _) => "unavailable: HVM policies not compared",
                (true, true) => "on HAP",
                (true, false) => "on shadow",
            },
            if xen.hvm {
                "Raw, Host, PV/HVM Max/Default"
            } else {
                "Raw, Host, PV Max/Default"
            },
            unexplained
        );
        outcome.models.push(model.cpu.to_owned());
    }
    let observed_path = super::provision::dir(ws).join("differences.tsv");
    if !outcome.models.is_empty() {
        let _ = std::fs::write(&observed_path, &observed);
    }
    let compared: Vec<&str> = outcome.models.iter().map(String::as_str).collect();
    outcome.unused = known
        .iter()
        .zip(&used)
        .filter(|(k, used)| !**used && (k.model == "*" || compared.contains(&k.model.as_str())))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &outcome.unused {
        println!(
            "xen-policies: note: {KNOWN_FILE} line {} ({} {} {}) matched no difference: fixed since?",
            k.line, k.model, k.policy, k.item
        );
    }
    for d in &outcome.open {
        println!(
            "xen-policies: open question (listed as OPEN in {KNOWN_FILE}): {} {} {} xen {:#x} crate {:#x}",
            d.model, d.policy, d.item, d.xen, d.ours
        );
    }
    if !outcome.skipped.is_empty() {
        println!(
            "xen-policies: no capture for {} (run `cargo xtask xen-boot`)",
            outcome.skipped.join(", ")
        );
    }
    println!(
        "xen-policies: {} model(s), {} differences explained by {KNOWN_FILE}, {} unexplained (all observed: {})",
        outcome.models.len(),
        outcome.explained,
        outcome.unexplained.len(),
        observed_path.display()
    );
    if outcome.unexplained.is_empty() {
        return Ok(outcome);
    }
    let mut text = String::new();
    for d in &outcome.unexplained {
        let _ = writeln!(text, "  {}", d.tsv());
    }
    Err(format!(
        "{} difference(s) from real Xen not in {KNOWN_FILE}:\n{text}",
        outcome.unexplained.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::{Difference, XenPolicies, compare, parse_known};
    use crate::xen::serial;

    const EPYC: &str = include_str!("../xen/testdata/epyc-serial.log");

    #[test]
    fn the_committed_known_differences_parse_and_each_has_a_reason() {
        let text = include_str!("../../../data/xen-derivation-known-differences.tsv");
        let known = parse_known(text).unwrap();
        assert!(known.len() > 10);
        for k in &known {
            assert!(
                k.explanation.len() > 40,
                "line {}: too short a reason",
                k.line
            );
            assert!(
                k.item.starts_with("cpuid ")
                    || k.item.starts_with("msr ")
                    || k.item.starts_with("word "),
                "line {}: {}",
                k.line,
                k.item
            );
        }
    }

    #[test]
    fn spec_ctrl_no_turns_msr_spec_ctrl_virtualisation_off() {
        let off = super::spec_ctrl("console=com1 spec-ctrl=no xpti=0");
        assert!(!off.msr_sc_pv && !off.msr_sc_hvm);
        let default = super::spec_ctrl("console=com1");
        assert!(default.msr_sc_pv && default.msr_sc_hvm);
        let list = super::spec_ctrl("spec-ctrl=ssbd=1,msr-sc=0");
        assert!(!list.msr_sc_pv && !list.msr_sc_hvm);
    }

    #[test]
    fn known_entries_explain_only_their_bits() {
        let known = parse_known(
            "# comment\n\
             EPYC\tPV Max\tword 1d\t0x800\tSEP: AMD clears it (amd.c)\n\
             *\tRaw\tcpuid 00000001:ffffffff ecx\t*\tOSXSAVE is dynamic\n",
        )
        .unwrap();
        let d = |model: &str, policy: &str, item: &str, xen, ours| Difference {
            model: model.into(),
            policy: policy.into(),
            item: item.into(),
            xen,
            ours,
        };
        assert!(known[0].explains(&d("EPYC", "PV Max", "word 1d", 0, 0x800)));
        assert!(!known[0].explains(&d("EPYC", "PV Max", "word 1d", 0, 0x801)));
        assert!(!known[0].explains(&d("EPYC", "PV Default", "word 1d", 0, 0x800)));
        assert!(!known[0].explains(&d("Nehalem", "PV Max", "word 1d", 0, 0x800)));
        assert!(known[1].explains(&d("Nehalem", "Raw", "cpuid 00000001:ffffffff ecx", 1, 2)));
        assert!(parse_known("a\tb\tc\n").is_err());
        assert!(parse_known("a\tb\tc\tzz\twhy\n").is_err());
        assert!(parse_known("a\tb\tc\t*\t(xen 0x1, crate 0x0) EXPLAIN\n").is_err());
    }

    #[test]
    fn the_recorded_epyc_boot_compares_and_raw_matches_but_for_dynamic_bits() {
        let log = serial::parse(EPYC);
        let xen = XenPolicies::from_log(&log).unwrap();
        assert!(xen.hvm && xen.hap);
        let diffs = compare("EPYC", &xen).unwrap();
        // The crate's raw policy is Xen's with the dynamic bits cleared: nothing else differs.
        for d in diffs.iter().filter(|d| d.policy == "Raw") {
            assert!(
                d.item.starts_with("cpuid 00000001:ffffffff ecx")
                    || d.item.starts_with("cpuid 0000000d")
                    || d.item == "word 1c",
                "{d:?}"
            );
        }
        assert!(diffs.iter().all(|d| d.bits() != 0));
        for d in &diffs {
            println!("{}", d.tsv());
        }
    }
}
