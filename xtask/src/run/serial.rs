//! What the `agent` and `at-level` boots print, read back: the host report, the check lines,
//! each guest's `level-guest` and `view` lines (`arch/x86_64/src/scenarios/pool.rs`).

use serde::{Deserialize, Serialize};
use xen_levelling::Featureset;

use crate::qemu::{Boot, BootSpec, Verdict};

/// One boot as recorded: enough to judge it and to read its lines again later (the tests
/// replay recorded boots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    /// `-cpu`.
    pub cpu: String,
    /// The kernel command line.
    pub cmdline: String,
    /// QEMU's exit status (`None`: killed at the timeout).
    pub status: Option<i32>,
    /// The boot hit its timeout.
    pub timed_out: bool,
    /// Wall time.
    pub seconds: f64,
    /// The serial log, less the per-leaf `ok` lines of the HVM guest (the closing line keeps
    /// their count).
    pub serial: String,
    /// QEMU's own messages (TCG's warnings about features it does not implement).
    #[serde(default)]
    pub stderr: String,
}

impl BootRecord {
    /// The record of a boot of `spec`, or of a boot that could not start.
    pub fn of(spec: &BootSpec, boot: Result<Boot, String>) -> BootRecord {
        match boot {
            Ok(boot) => BootRecord {
                cpu: spec.cpu.clone(),
                cmdline: spec.cmdline(),
                status: boot.status,
                timed_out: boot.timed_out,
                seconds: boot.elapsed.as_secs_f64(),
                serial: slim(&boot.serial),
                stderr: boot.stderr,
            },
            Err(error) => BootRecord {
                cpu: spec.cpu.clone(),
                cmdline: spec.cmdline(),
                status: None,
                timed_out: false,
                seconds: 0.0,
                serial: String::new(),
                stderr: error,
            },
        }
    }

    /// The verdict, as `cargo xtask qemu` judges a boot.
    pub fn verdict(&self) -> Verdict {
        if self.status.is_none() && !self.timed_out && self.serial.is_empty() {
            return Verdict::Fail(format!("QEMU did not start: {}", self.stderr.trim()));
        }
        Boot {
            status: self.status,
            timed_out: self.timed_out,
            serial: self.serial.clone(),
            stderr: String::new(),
            elapsed: std::time::Duration::from_secs_f64(self.seconds),
            timeout: crate::qemu::DEFAULT_TIMEOUT,
        }
        .verdict()
    }

    /// The kernel's closing line.
    pub fn counts(&self) -> crate::qemu::Counts {
        crate::qemu::counts(&self.serial).unwrap_or_default()
    }

    /// Every check line.
    pub fn checks(&self) -> Vec<Check> {
        self.serial.lines().filter_map(Check::parse).collect()
    }

    /// The check called `name`, if the boot printed it.
    pub fn check(&self, name: &str) -> Option<Check> {
        self.checks().into_iter().find(|c| c.name == name)
    }
}

/// Drops the lines nobody reads back: the HVM guest's per-leaf passes.
fn slim(serial: &str) -> String {
    serial
        .lines()
        .filter(|l| !(l.starts_with("check ") && l.contains("/vmexit/") && l.ends_with(": ok")))
        .map(|l| format!("{}\n", l.trim_end_matches('\r')))
        .collect()
}

/// A check line: `check NAME: ok (note)`, `check NAME: FAIL why`, `check NAME: SKIP why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `scenario/domain/what`.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Skipped.
    pub skipped: bool,
    /// The note or the reason.
    pub note: String,
}

impl Check {
    fn parse(line: &str) -> Option<Check> {
        let rest = line.strip_prefix("check ")?;
        let (name, result) = rest.split_once(": ")?;
        let (ok, skipped, note) = if let Some(r) = result.strip_prefix("ok") {
            let note = r.trim();
            let note = note
                .strip_prefix('(')
                .and_then(|n| n.strip_suffix(')'))
                .unwrap_or(note);
            (true, false, note.to_string())
        } else if let Some(r) = result.strip_prefix("FAIL") {
            (false, false, r.trim().to_string())
        } else if let Some(r) = result.strip_prefix("SKIP") {
            (false, true, r.trim().to_string())
        } else {
            return None;
        };
        Some(Check {
            name: name.to_string(),
            ok,
            skipped,
            note,
        })
    }
}

/// The agent's host report (JSON text) and its levelling line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOutput {
    /// The JSON between the markers.
    pub report: String,
    /// The `sysctl 25` caps.
    pub caps: u32,
    /// The mechanism as the kernel describes it.
    pub mechanism: String,
}

/// Reads the agent's output, or says what is missing.
pub fn agent_output(serial: &str) -> Result<AgentOutput, String> {
    let mut report = None;
    let mut inside: Option<String> = None;
    let mut caps = None;
    for line in serial.lines() {
        if line == "agent: host report begin" {
            inside = Some(String::new());
        } else if line == "agent: host report end" {
            report = inside.take();
        } else if let Some(text) = inside.as_mut() {
            text.push_str(line);
            text.push('\n');
        } else if let Some(rest) = line.strip_prefix("agent: levelling caps ") {
            let (hex, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let value = u32::from_str_radix(hex.trim_start_matches("0x"), 16)
                .map_err(|_| format!("bad caps line `{line}`"))?;
            let mechanism = rest
                .split_once("mechanism ")
                .map_or("", |(_, m)| m)
                .to_string();
            caps = Some((value, mechanism));
        }
    }
    let report = report.ok_or("no host report between the agent's markers")?;
    let (caps, mechanism) = caps.ok_or("no `agent: levelling caps` line")?;
    Ok(AgentOutput {
        report,
        caps,
        mechanism,
    })
}

/// A guest's `level-guest` line, with its `view` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestOutput {
    /// `domU1`, `domU2`, `hvm`.
    pub name: String,
    /// `pv` or `hvm`.
    pub kind: String,
    /// `native`, `forced` or `vmexit`.
    pub cpuid: String,
    /// `yes`, `best-effort` or `refused`.
    pub started: String,
    /// Its policy's featureset.
    pub policy: Featureset,
    /// Its fail-closed list.
    pub unenforceable: Featureset,
    /// What its hardware cannot show of its policy.
    pub not_shown: Featureset,
    /// Its levelling mechanism.
    pub mechanism: String,
    /// What its CPUIDs showed, and which words (bit n = word n), if it ran.
    pub view: Option<(Featureset, u32)>,
}

fn words(text: &str) -> Result<Featureset, String> {
    Featureset::parse_xen_words(text).map_err(|e| format!("`{text}`: {e}"))
}

/// Every guest of an `at-level` boot.
pub fn guests(serial: &str) -> Result<Vec<GuestOutput>, String> {
    let mut views = Vec::new();
    for line in serial.lines() {
        if let Some(rest) = line.strip_prefix("view at-level/") {
            let (name, rest) = rest.split_once(": ").ok_or("bad view line")?;
            let (fs, mask) = rest.split_once("; words ").ok_or("bad view line")?;
            let mask = u32::from_str_radix(mask.trim().trim_start_matches("0x"), 16)
                .map_err(|_| format!("bad view mask in `{line}`"))?;
            views.push((name.to_string(), (words(fs)?, mask)));
        }
    }
    let mut out = Vec::new();
    for line in serial.lines() {
        let Some(rest) = line.strip_prefix("level-guest ") else {
            continue;
        };
        let (head, mechanism) = rest.split_once(" mechanism=").ok_or("no mechanism=")?;
        let mut parts = head.split(' ');
        let name = parts.next().ok_or("no guest name")?.to_string();
        let mut field = |key: &str| -> Result<String, String> {
            let part = parts.next().ok_or(format!("no {key}= in `{line}`"))?;
            part.strip_prefix(key)
                .and_then(|p| p.strip_prefix('='))
                .map(str::to_string)
                .ok_or(format!("expected {key}= in `{line}`"))
        };
        let kind = field("kind")?;
        let cpuid = field("cpuid")?;
        let started = field("started")?;
        let policy = words(&field("policy")?)?;
        let unenforceable = words(&field("unenforceable")?)?;
        let not_shown = words(&field("not_shown")?)?;
        let view = views.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        out.push(GuestOutput {
            name,
            kind,
            cpuid,
            started,
            policy,
            unenforceable,
            not_shown,
            mechanism: mechanism.to_string(),
            view,
        });
    }
    Ok(out)
}

/// The HVM host policies a `hvm_host=` boot derived: (HVM default, HVM max).
pub fn hvm_host_policies(serial: &str) -> Option<Result<(Featureset, Featureset), String>> {
    let line = serial
        .lines()
        .find(|l| l.starts_with("at-level: HVM host policies from "))?;
    let parse = || -> Result<(Featureset, Featureset), String> {
        let (_, rest) = line.split_once("hvm-default ").ok_or("no hvm-default")?;
        let (default, max) = rest.split_once(" hvm-max ").ok_or("no hvm-max")?;
        Ok((words(default)?, words(max.trim())?))
    };
    Some(parse())
}

#[cfg(test)]
mod tests {
    use super::{Check, agent_output, guests, slim};

    #[test]
    fn check_lines_parse() {
        let c = Check::parse("check a/b/c: ok (12 results, all as expected)").unwrap();
        assert!(c.ok && c.note == "12 results, all as expected" && c.name == "a/b/c");
        let c = Check::parse("check a/b: FAIL expected 1 got 2").unwrap();
        assert!(!c.ok && !c.skipped && c.note == "expected 1 got 2");
        assert!(Check::parse("check x: SKIP no SVM").unwrap().skipped);
        assert_eq!(Check::parse("xen: host"), None);
    }

    #[test]
    fn the_agent_report_is_found_between_its_markers() {
        let log = "x\nagent: levelling caps 0x1f (sysctl 25); mechanism mask MSRs 1cd=0x130\n\
                   agent: host report begin\n{\n}\nagent: host report end\n3 passed, 0 failed\n";
        let out = agent_output(log).unwrap();
        assert_eq!(out.report, "{\n}\n");
        assert_eq!(out.caps, 0x1f);
        assert_eq!(out.mechanism, "mask MSRs 1cd=0x130");
        assert!(agent_output("agent: host report begin\n{").is_err());
    }

    #[test]
    fn guest_lines_pair_with_their_views() {
        let zero = ["00000000"; 19].join(":");
        let log = format!(
            "view at-level/domU1: {zero}; words 0x3\n\
             level-guest domU1 kind=pv cpuid=native started=best-effort policy={zero} \
             unenforceable={zero} not_shown={zero} mechanism=mask MSRs 1cd=0x130\n"
        );
        let g = guests(&log).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].started, "best-effort");
        assert_eq!(g[0].mechanism, "mask MSRs 1cd=0x130");
        assert_eq!(g[0].view.unwrap().1, 3);
    }

    #[test]
    fn per_leaf_passes_are_dropped_from_records() {
        let log = "check at-level/hvm/vmexit/00000001.0: ok\ncheck at-level/hvm/vmexit/1: FAIL x\n";
        assert_eq!(slim(log), "check at-level/hvm/vmexit/1: FAIL x\n");
    }
}
