//! Human-readable tables for every report; `--json` bypasses this module.

use std::fmt::Write;

use levelctl::GuestType;
use levelctl::check::{HostCheck, MissingFeature};
use levelctl::input::{CpuidFacts, Loaded, ParsedFeatureset};
use levelctl::mechanism::{self as levelling, MechanismReport, ModelVerdict};
use levelctl::model::{Host, Pool, PowerState};
use levelctl::report::{
    self, ChangeReport, EvacuationReport, Explanation, LevelReport, Refusal, VmImpact, VmReport,
};
use xen_levelling::Featureset;
use xen_levelling::feature::WORDS;

/// A plain text table: left-aligned columns separated by two blanks.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    /// Add a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Render with `indent` blanks before each line.
    pub fn render(&self, indent: usize) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = " ".repeat(indent);
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    // The last cell wraps under itself to fit the width.
                    let start = line.chars().count();
                    if start + cell.chars().count() > WIDTH && start < WIDTH / 2 {
                        line.push_str(&wrap_words(cell, start, WIDTH - start));
                    } else {
                        line.push_str(cell);
                    }
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Names joined by `,`, wrapped at 78 columns with `indent` blanks on continuation lines
/// ([`fit`] folds a first line that a long prefix pushed further).
pub fn wrap(names: &[String], indent: usize) -> String {
    if names.is_empty() {
        return "-".to_string();
    }
    let mut out = String::new();
    let mut col = indent;
    for (i, n) in names.iter().enumerate() {
        let piece = if i + 1 < names.len() {
            format!("{n},")
        } else {
            n.clone()
        };
        if col + piece.len() > 78 && col > indent {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        }
        out.push_str(&piece);
        col += piece.len();
    }
    out
}

/// `1 feature`, `2 features`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn missing_lines(out: &mut String, missing: &[MissingFeature], indent: usize) {
    let mut t = Table::new(&["FEATURE", "WHERE", "WHY THE HOST LACKS IT"]);
    for m in missing {
        let why = match &m.cause {
            levelctl::check::Cause::Dependency { .. } => format!("missing because {}", m.cause),
            c => c.to_string(),
        };
        t.row(vec![m.feature.clone(), m.locator.clone(), why]);
    }
    out.push_str(&t.render(indent));
}

fn check_block(out: &mut String, c: &HostCheck, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}{} ({}): {}", c.host, c.pool, c.summary());
    if !c.missing.is_empty() {
        missing_lines(out, &c.missing, indent + 2);
    }
    if !c.waived.is_empty() {
        let _ = writeln!(out, "{pad}  waived by an earlier force:");
        missing_lines(out, &c.waived, indent + 4);
    }
}

/// A refusal: per refusing host a few lines (what it lacks, grouped by root cause); with
/// `verbose`, the full table of every missing feature and why.
pub fn refusal(r: &Refusal, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "REFUSED: {} {}: {}", r.operation, r.subject, r.reason);
    for d in &r.details {
        let _ = writeln!(out, "  {d}");
    }
    for c in &r.checks {
        if verbose {
            check_block(&mut out, c, 2);
        } else {
            check_summary(&mut out, c);
        }
    }
    match &r.accepting {
        Some(a) if a.is_empty() => {
            let _ = writeln!(out, "  no host would accept it");
        }
        Some(a) => {
            let _ = writeln!(out, "  hosts that would accept it:\n    {}", wrap(a, 4));
        }
        None => {}
    }
    if !verbose && r.checks.iter().any(|c| !c.missing.is_empty()) {
        let _ = writeln!(
            out,
            "  (--verbose: every missing feature, where it lives and why the host lacks it)"
        );
    }
    out
}

/// One refusing host in a few lines: what it lacks, and the root causes with their counts.
fn check_summary(out: &mut String, c: &HostCheck) {
    if c.accepted || c.missing.is_empty() {
        let _ = writeln!(out, "  {} ({}): {}", c.host, c.pool, c.summary());
        return;
    }
    let names: Vec<String> = c.missing.iter().map(|m| m.feature.clone()).collect();
    let _ = writeln!(
        out,
        "  {} ({}) lacks {}:\n    {}",
        c.host,
        c.pool,
        count(names.len(), "feature"),
        wrap(&names, 4)
    );
    cause_summary(out, &c.missing, 4);
}

/// Missing features grouped by root cause, one line per cause with its count; or, with
/// `--verbose`, the full table.
fn missing_summary(out: &mut String, missing: &[MissingFeature], indent: usize) {
    if VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
        missing_lines(out, missing, indent);
    } else {
        cause_summary(out, missing, indent);
    }
}

fn cause_summary(out: &mut String, missing: &[MissingFeature], indent: usize) {
    let pad = " ".repeat(indent);
    let mut causes: Vec<(String, usize)> = Vec::new();
    for m in missing {
        let root = match &m.cause {
            levelctl::check::Cause::Dependency {
                root, root_feature, ..
            } => format!("need {root_feature}, which is absent: {root}"),
            cause => cause.to_string(),
        };
        match causes.iter_mut().find(|(r, _)| *r == root) {
            Some((_, n)) => *n += 1,
            None => causes.push((root, 1)),
        }
    }
    for (cause, n) in causes {
        let _ = writeln!(out, "{pad}{n} {cause}");
    }
}

/// `--verbose`: full feature tables in refusals and change reports.
pub static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A VM operation's result.
pub fn vm_report(r: &VmReport) -> String {
    let mut out = String::new();
    let place = match (&r.host, r.power) {
        (Some(h), PowerState::Running) => format!("running on {h}"),
        (Some(h), PowerState::Suspended) => format!("suspended (last on {h})"),
        (_, p) => p.to_string(),
    };
    let _ = writeln!(
        out,
        "{} done: VM {} ({}) in pool {} is {place}",
        r.operation, r.vm, r.guest, r.pool
    );
    if let Some(fs) = &r.featureset {
        let _ = writeln!(
            out,
            "  featureset: {} features, {}",
            fs.count,
            r.vendor.as_deref().unwrap_or("?")
        );
        let _ = writeln!(out, "    {}", fs.xapi);
    }
    if let Some(c) = &r.check {
        if r.forced.is_empty() {
            let _ = writeln!(out, "  check on {}: {}", c.host, c.summary());
        } else {
            let _ = writeln!(out, "  check on {}: refused, forced through", c.host);
        }
    }
    if !r.forced.is_empty() {
        let _ = writeln!(
            out,
            "  FORCED: the VM may now lack {}: {}",
            count(r.forced.len(), "feature"),
            wrap(&r.forced, 4)
        );
    }
    if !r.lost.is_empty() {
        let _ = writeln!(out, "  lost:   {}", wrap(&r.lost, 10));
    }
    if !r.gained.is_empty() {
        let _ = writeln!(out, "  gained: {}", wrap(&r.gained, 10));
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    out
}

fn impact(out: &mut String, v: &VmImpact) {
    let place = v
        .host
        .as_deref()
        .map(|h| format!(" on {h}"))
        .unwrap_or_default();
    let _ = writeln!(out, "  {} ({}, {}{place})", v.vm, v.guest, v.power);
    if v.stranded {
        let _ = writeln!(
            out,
            "    STRANDED: no other host accepts it; its host cannot be evacuated"
        );
    }
    for d in &v.lost_destinations {
        let _ = writeln!(out, "    loses destination {}: {}", d.host, d.reason);
        if !d.missing.is_empty() {
            missing_summary(out, &d.missing, 6);
        }
    }
    for d in &v.new_hosts_refusing {
        let _ = writeln!(out, "    cannot move to new host {}: {}", d.host, d.reason);
        if !d.missing.is_empty() {
            missing_summary(out, &d.missing, 6);
        }
    }
    if !v.gained_destinations.is_empty() {
        let _ = writeln!(
            out,
            "    gains destinations: {}",
            v.gained_destinations.join(", ")
        );
    }
    if !v.loses_on_reboot.is_empty() {
        let _ = writeln!(
            out,
            "    keeps until its next reboot, then loses: {}",
            wrap(&v.loses_on_reboot, 6)
        );
    }
    if !v.gains_on_reboot.is_empty() {
        let _ = writeln!(
            out,
            "    gains at its next reboot: {}",
            wrap(&v.gains_on_reboot, 6)
        );
    }
}

/// A join, leave or reboot (done or what-if).
pub fn change_report(r: &ChangeReport) -> String {
    let mut out = String::new();
    let verb = match (r.change.as_str(), r.applied) {
        ("join", true) => "joined",
        ("join", false) => "would join",
        ("leave", true) => "left",
        ("leave", false) => "would leave",
        ("reboot", true) => "rebooted in",
        (_, _) => "would reboot in",
    };
    let _ = writeln!(out, "{} {verb} pool {}", r.host, r.pool);
    if !r.blockers.is_empty() {
        let _ = writeln!(out, "BLOCKED:");
        for b in &r.blockers {
            let _ = writeln!(out, "  {b}");
        }
    }
    if !r.host_sets.is_empty() {
        let _ = writeln!(out, "\n{}'s own featuresets:", r.host);
        for s in &r.host_sets {
            let _ = writeln!(
                out,
                "  {} {:<7} lost {}: {}",
                s.guest.label(),
                s.set,
                s.lost.len(),
                wrap(&s.lost, 20)
            );
            if !s.gained.is_empty() {
                let _ = writeln!(
                    out,
                    "  {} {:<7} gained {}: {}",
                    s.guest.label(),
                    s.set,
                    s.gained.len(),
                    wrap(&s.gained, 20)
                );
            }
        }
    }
    for l in &r.levels {
        let before = l.before.as_ref().map(|f| f.count);
        let after = l.after.as_ref().map(|f| f.count);
        let show = |n: Option<usize>| n.map_or("none".to_string(), |n| n.to_string());
        if l.lost.is_empty() && l.gained.is_empty() {
            let _ = writeln!(
                out,
                "\n{} level: unchanged ({} features)",
                l.guest.label(),
                show(after)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "\n{} level: {} -> {} features",
            l.guest.label(),
            show(before),
            show(after)
        );
        if !l.lost.is_empty() {
            let _ = writeln!(out, "  lost {}:", l.lost.len());
            let mut t = Table::new(&["FEATURE", "WHERE", "HELD BACK BY"]);
            for f in &l.lost {
                let by: Vec<String> = f
                    .held_back_by
                    .iter()
                    .map(|h| format!("{} ({})", h.host, h.cause))
                    .collect();
                t.row(vec![f.feature.clone(), f.locator.clone(), by.join("; ")]);
            }
            out.push_str(&t.render(4));
        }
        if !l.gained.is_empty() && before.is_some() {
            let _ = writeln!(out, "  gained {}: {}", l.gained.len(), wrap(&l.gained, 4));
        }
        if let Some(a) = &l.after {
            let _ = writeln!(out, "  new level: {}", a.xapi);
        }
    }
    if r.vms.is_empty() {
        let _ = writeln!(out, "\nno running or suspended VM is affected");
    } else {
        let _ = writeln!(out, "\nVMs affected:");
        for v in &r.vms {
            impact(&mut out, v);
        }
    }
    out
}

/// An evacuation plan.
pub fn evacuation(r: &EvacuationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} of pool {}: {}",
        if r.applied {
            "evacuated"
        } else {
            "would evacuate"
        },
        r.host,
        r.pool,
        count(r.moves.len(), "VM")
    );
    let mut t = Table::new(&["VM", "TO"]);
    for m in &r.moves {
        t.row(vec![m.vm.clone(), m.to.clone()]);
    }
    if !r.moves.is_empty() {
        out.push_str(&t.render(2));
    }
    out
}

/// `vm explain`.
pub fn explanation(e: &Explanation) -> String {
    let mut out = String::new();
    let place = match (&e.host, e.power) {
        (Some(h), PowerState::Running) => format!("running on {h}"),
        (Some(h), PowerState::Suspended) => format!("suspended (last on {h})"),
        (_, p) => p.to_string(),
    };
    let _ = writeln!(out, "VM {} ({}) in pool {}: {place}", e.vm, e.guest, e.pool);
    if let Some(fs) = &e.featureset {
        let _ = writeln!(
            out,
            "  featureset: {} features, {} ({})",
            fs.count,
            e.vendor.as_deref().unwrap_or("?"),
            e.origin.as_deref().unwrap_or("?")
        );
        let _ = writeln!(out, "    {}", fs.xapi);
    }
    match &e.level {
        Some(l) => {
            let _ = writeln!(out, "  pool level now: {} features", l.count);
        }
        None => {
            let _ = writeln!(out, "  pool level now: none (no hosts)");
        }
    }
    if !e.above_level.is_empty() {
        let _ = writeln!(out, "  above the level: {}", wrap(&e.above_level, 4));
    }
    if !e.below_level.is_empty() {
        let _ = writeln!(out, "  below the level: {}", wrap(&e.below_level, 4));
    }
    for f in &e.forced {
        let _ = writeln!(
            out,
            "  forced {} to {}, waived for that move only: {}",
            f.operation,
            f.host,
            wrap(&f.features, 4)
        );
    }
    for n in &e.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if !e.destinations.is_empty() {
        let n = e.destinations.iter().filter(|c| c.accepted).count();
        let _ = writeln!(
            out,
            "\ndestinations: {n} of {} accept it",
            count(e.destinations.len(), "host")
        );
        for c in &e.destinations {
            check_block(&mut out, c, 2);
        }
    }
    out
}

/// `pool level`.
pub fn levels(pool: &Pool, reports: &[LevelReport], only: Option<GuestType>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pool {} ({}, {})",
        pool.name,
        pool.vendor()
            .map_or("no vendor yet".to_string(), |v| v.to_string()),
        count(pool.hosts.len(), "host")
    );
    for r in reports.iter().filter(|r| only.is_none_or(|g| g == r.guest)) {
        let Some(level) = &r.level else {
            let _ = writeln!(out, "\n{} level: none (no hosts)", r.guest.label());
            continue;
        };
        let _ = writeln!(out, "\n{} level: {} features", r.guest.label(), level.count);
        let _ = writeln!(out, "  {}", level.xapi);
        let _ = writeln!(out, "  {}", wrap(&level.names, 2));
        if !r.accumulated.is_empty() {
            let _ = writeln!(
                out,
                "  pool-OR features (any member has them): {}",
                r.accumulated.join(",")
            );
        }
        let mut t = Table::new(&["HOST", "GIVES UP", "ALONE HOLDS BACK"]);
        for m in &r.members {
            t.row(vec![
                m.host.clone(),
                m.gives_up.len().to_string(),
                if m.holds_back.is_empty() {
                    "-".to_string()
                } else {
                    format!("{}: {}", m.holds_back.len(), m.holds_back.join(","))
                },
            ]);
        }
        out.push_str(&t.render(2));
    }
    out
}

fn sig(h: &Host) -> String {
    h.signature.map_or("-".to_string(), |s| s.to_string())
}

/// `pool show`.
pub fn pool_show(pool: &Pool) -> String {
    let mut out = String::new();
    let lv = |g| {
        pool.level(g).map_or("none".to_string(), |l: Featureset| {
            report::count(&l).to_string()
        })
    };
    let _ = writeln!(
        out,
        "pool {}: {}, {}, {}; level PV {} / HVM {} features",
        pool.name,
        pool.vendor()
            .map_or("no vendor yet".to_string(), |v| v.to_string()),
        count(pool.hosts.len(), "host"),
        count(pool.vms.len(), "VM"),
        lv(GuestType::Pv),
        lv(GuestType::Hvm)
    );
    if !pool.hosts.is_empty() {
        let mut t = Table::new(&[
            "HOST", "CPU", "SOURCE", "WORDS", "PV", "HVM", "VMS", "CPUID=",
        ]);
        for h in &pool.hosts {
            let opt = h.cpuid_option();
            t.row(vec![
                h.name.clone(),
                sig(h),
                h.source.kind.to_string(),
                h.known_words.to_string(),
                format!(
                    "{}/{}",
                    report::count(&h.pv.default),
                    report::count(&h.pv.max)
                ),
                format!(
                    "{}/{}",
                    report::count(&h.hvm.default),
                    report::count(&h.hvm.max)
                ),
                pool.resident(&h.name).count().to_string(),
                if opt.is_empty() { "-".to_string() } else { opt },
            ]);
        }
        out.push('\n');
        out.push_str(&t.render(0));
        out.push_str(
            "(PV, HVM: features by default/at most; WORDS: featureset words its Xen knows)\n",
        );
    }
    if !pool.vms.is_empty() {
        let mut t = Table::new(&["VM", "TYPE", "STATE", "HOST", "FEATURESET"]);
        for v in &pool.vms {
            let fs = match (v.featureset, pool.level(v.guest)) {
                _ if v.template => "template".to_string(),
                (None, _) => "- (gets the level at start)".to_string(),
                (Some(fs), Some(level)) if fs == level => {
                    format!("pool level ({})", report::count(&fs))
                }
                (Some(fs), Some(level)) => format!(
                    "{} features: {} above, {} below the level",
                    report::count(&fs),
                    report::count(&(fs - level)),
                    report::count(&(level - fs))
                ),
                (Some(fs), None) => format!("{} features", report::count(&fs)),
            };
            let fs = match v.forced.len() {
                0 => fs,
                n => format!("{fs}; {} forced", count(n, "move")),
            };
            t.row(vec![
                v.name.clone(),
                v.guest.to_string(),
                v.power.to_string(),
                v.host.clone().unwrap_or_else(|| "-".to_string()),
                fs,
            ]);
        }
        out.push('\n');
        out.push_str(&t.render(0));
    }
    out
}

/// `decode`.
pub fn decode(items: &[(String, ParsedFeatureset)]) -> String {
    let mut out = String::new();
    for (i, (label, p)) in items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let fs = &p.featureset;
        let words = p
            .words
            .map(|w| format!(", {w} words given"))
            .unwrap_or_default();
        let form = match p.form {
            levelctl::input::FeaturesetForm::Xapi => "a XAPI featureset string",
            levelctl::input::FeaturesetForm::XenWords => "xen-cpuid words",
            levelctl::input::FeaturesetForm::Names => "feature names",
        };
        let _ = writeln!(
            out,
            "{label}: {form}{words}, {}",
            count(report::count(fs), "feature")
        );
        let _ = writeln!(out, "  xapi:      {}", fs.xapi());
        let _ = writeln!(out, "  xen-cpuid: {}", fs.xen_words());
        let mut t = Table::new(&["WORD", "NAME", "REGISTER", "VALUE", "FEATURES"]);
        for (w, info) in WORDS.iter().enumerate() {
            let value = fs.word(w);
            if value == 0 {
                continue;
            }
            let mut only = Featureset::EMPTY;
            only.set_word(w, value);
            t.row(vec![
                w.to_string(),
                info.name.to_string(),
                info.locator.to_string(),
                format!("{value:08x}"),
                only.names().to_string(),
            ]);
        }
        out.push_str(&t.render(2));
        let unknown = fs.unknown();
        if !unknown.is_empty() {
            let _ = writeln!(
                out,
                "  bits the feature table does not name: {}",
                unknown.names()
            );
        }
        let dropped = *fs - fs.closed();
        if !dropped.is_empty() {
            let _ = writeln!(
                out,
                "  not dependency-closed: Xen would drop {}",
                dropped.names()
            );
            for f in dropped.iter() {
                if let Some(p) = fs.closed().removed_by(f) {
                    let _ = writeln!(out, "    {f} needs {p}");
                }
            }
        }
    }
    out
}

/// `inspect`.
pub fn inspect(loaded: &Loaded, mechanism: &MechanismReport) -> String {
    let h = &loaded.host;
    let mut out = String::new();
    let _ = writeln!(out, "{} ({}, {})", h.name, h.source.kind, h.source.file);
    let _ = writeln!(out, "  vendor:    {}", h.vendor);
    if let Some(s) = h.signature {
        let _ = writeln!(
            out,
            "  cpu:       family {:#x} model {:#x} stepping {:#x}",
            s.family, s.model, s.stepping
        );
    }
    if let Some(b) = &h.brand {
        let _ = writeln!(out, "  brand:     {b}");
    }
    if let Some(CpuidFacts {
        max_basic_leaf,
        max_extd_leaf,
        detail,
        ..
    }) = &loaded.facts
    {
        let _ = writeln!(
            out,
            "  input:     {detail}; max leaves {max_basic_leaf:#x} / {max_extd_leaf:#x}"
        );
    }
    let _ = writeln!(out, "  words:     {} featureset words known", h.known_words);
    let opt = h.cpuid_option();
    if !opt.is_empty() {
        let _ = writeln!(out, "  booted with cpuid={opt}");
    }
    inspect_featuresets(&mut out, loaded);
    inspect_mechanism(&mut out, h.hardware.is_some(), mechanism);
    match &loaded.facts {
        Some(f) => inspect_model(&mut out, &f.model, mechanism),
        None => {
            let _ = writeln!(
                out,
                "  (no CPUID data in this input: the silicon model cannot be run)"
            );
        }
    }
    let _ = writeln!(
        out,
        "HVM guests: exact on every CPU (CPUID always exits to Xen)"
    );
    out
}

/// `inspect`'s table of featuresets.
fn inspect_featuresets(out: &mut String, loaded: &Loaded) {
    let h = &loaded.host;
    let _ = writeln!(out, "\nfeaturesets:");
    let mut t = Table::new(&["SET", "COUNT", "XAPI STRING"]);
    if let Some(hw) = &h.hardware {
        t.row(vec![
            "hardware".into(),
            report::count(hw).to_string(),
            hw.xapi().to_string(),
        ]);
    }
    if let Some(f) = &loaded.facts {
        t.row(vec![
            "xen host".into(),
            report::count(&f.xen_host).to_string(),
            f.xen_host.xapi().to_string(),
        ]);
    }
    for (label, fs) in [
        ("pv default", h.pv.default),
        ("pv max", h.pv.max),
        ("hvm default", h.hvm.default),
        ("hvm max", h.hvm.max),
    ] {
        t.row(vec![
            label.into(),
            report::count(&fs).to_string(),
            fs.xapi().to_string(),
        ]);
    }
    out.push_str(&t.render(2));
}

/// `v` joined by spaces, or `empty`.
fn joined(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(" ")
    }
}

/// `N: a, b, c` (continued lines indented by `indent`), or `empty`.
fn counted(v: &[String], indent: usize, empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        format!("{}: {}", v.len(), wrap(v, indent))
    }
}

/// `inspect`'s judgement by generation.
fn inspect_mechanism(out: &mut String, has_hardware: bool, mechanism: &MechanismReport) {
    let _ = writeln!(
        out,
        "\nlevelling mechanism for PV guests: {} ({})",
        levelling::describe(mechanism.mechanism.as_ref()),
        mechanism.basis
    );
    let _ = writeln!(out, "  enumeration: {}", mechanism.enumeration);
    let _ = writeln!(out, "  generation:  {}", mechanism.generation);
    if !mechanism.msrs.is_empty() {
        let _ = writeln!(out, "  MSRs:        {}", mechanism.msrs.join("; "));
    }
    let _ = writeln!(
        out,
        "  can hide:    words {}",
        joined(&mechanism.hideable_words, "none")
    );
    if has_hardware {
        let _ = writeln!(
            out,
            "  cannot hide: {}",
            counted(&mechanism.cannot_hide, 15, "nothing the PV default hides")
        );
    }
    for n in &mechanism.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

/// `inspect`'s verdict of the silicon model, and whether it agrees with `mechanism`.
fn inspect_model(out: &mut String, m: &ModelVerdict, mechanism: &MechanismReport) {
    let _ = writeln!(
        out,
        "\non the silicon model: {} ({})",
        levelling::describe(Some(&m.mechanism)),
        m.basis
    );
    if let Some(c) = &m.faulting_check {
        let _ = writeln!(out, "  faulting:    {c}");
    }
    let list = |v: &[String]| joined(v, "-");
    let _ = writeln!(out, "  expected:    {}", list(&m.expected));
    let _ = writeln!(out, "  present:     {}", list(&m.present));
    let _ = writeln!(out, "  effective:   {}", list(&m.effective));
    if !m.untested.is_empty() {
        let _ = writeln!(
            out,
            "  untested:    {} (nothing on this CPU to hide with it)",
            list(&m.untested)
        );
    }
    if !m.ineffective.is_empty() {
        let _ = writeln!(out, "  INEFFECTIVE: {}", list(&m.ineffective));
    }
    if !m.missing.is_empty() {
        let _ = writeln!(out, "  missing:     {}", list(&m.missing));
    }
    if !m.msrs.is_empty() {
        let _ = writeln!(out, "  MSRs:        {}", m.msrs.join("; "));
    }
    let _ = writeln!(
        out,
        "  cannot hide from a PV guest at the PV default: {}",
        counted(&m.cannot_hide, 4, "nothing")
    );
    if !m.not_shown.is_empty() {
        let _ = writeln!(
            out,
            "  not shown natively (safe): {}",
            wrap(&m.not_shown, 4)
        );
    }
    if levelling::name(Some(&m.mechanism)) != levelling::name(mechanism.mechanism.as_ref()) {
        let _ = writeln!(
            out,
            "  note: the model disagrees with the judgement by generation ({})",
            levelling::describe(mechanism.mechanism.as_ref())
        );
    }
}

/// `pool list`.
pub fn pool_list(pools: &[Pool]) -> String {
    if pools.is_empty() {
        return "no pools (create one with `levelctl pool init NAME [FILE...]`)\n".to_string();
    }
    let mut t = Table::new(&["POOL", "VENDOR", "HOSTS", "VMS", "RUNNING", "SUSPENDED"]);
    for p in pools {
        let n = |s: PowerState| p.vms.iter().filter(|v| v.power == s).count().to_string();
        t.row(vec![
            p.name.clone(),
            p.vendor()
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
            p.hosts.len().to_string(),
            p.vms.len().to_string(),
            n(PowerState::Running),
            n(PowerState::Suspended),
        ]);
    }
    t.render(0)
}

/// `vm list`.
pub fn vm_list(pools: &[Pool]) -> String {
    let mut t = Table::new(&["POOL", "VM", "TYPE", "STATE", "HOST", "CPU"]);
    let mut any = false;
    for p in pools {
        for v in &p.vms {
            any = true;
            let cpu = if v.template {
                "template".to_string()
            } else {
                match (v.featureset, p.level(v.guest)) {
                    (None, _) => "-".to_string(),
                    (Some(fs), Some(level)) if fs.closed() - level == Featureset::EMPTY => {
                        "at the level".to_string()
                    }
                    (Some(fs), Some(level)) => {
                        format!(
                            "{} above the level",
                            count(report::count(&(fs - level)), "feature")
                        )
                    }
                    (Some(fs), None) => count(report::count(&fs), "feature"),
                }
            };
            let cpu = match v.forced.len() {
                0 => cpu,
                n => format!("{cpu}, {} forced", count(n, "move")),
            };
            t.row(vec![
                p.name.clone(),
                v.name.clone(),
                v.guest.to_string(),
                v.power.to_string(),
                v.host.clone().unwrap_or_else(|| "-".to_string()),
                cpu,
            ]);
        }
    }
    if !any {
        return "no VMs\n".to_string();
    }
    t.render(0)
}

/// `history`: one block per entry, the command on a line of its own, waived features wrapped.
pub fn history(events: &[levelctl::store::Event]) -> String {
    if events.is_empty() {
        return "no history yet\n".to_string();
    }
    let mut out = String::new();
    for e in events {
        let what = match (&e.vm, &e.other_pool) {
            (Some(vm), Some(other)) => format!("{}/{vm} -> {other}", e.pool),
            (Some(vm), None) => format!("{}/{vm}", e.pool),
            (None, _) => e.pool.clone(),
        };
        let _ = writeln!(
            out,
            "#{} {} {} {}: {} {what}",
            e.id,
            e.time,
            e.user,
            e.outcome.to_uppercase(),
            e.operation
        );
        let _ = writeln!(out, "    $ {}", e.command);
        let _ = writeln!(out, "    {}", wrap_text(&e.message, 4));
        if !e.waived.is_empty() {
            let _ = writeln!(
                out,
                "    forced, waived {}:\n      {}",
                count(e.waived.len(), "feature"),
                wrap(&e.waived, 6)
            );
        }
    }
    out
}

/// Free text wrapped at 78 columns, later lines indented by `indent`.
pub fn wrap_text(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut column = indent;
    for word in text.split(' ') {
        if column > indent && column + 1 + word.chars().count() > 78 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            column = indent;
        } else if column > indent {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.chars().count();
    }
    out
}

/// The width text output fits in.
pub const WIDTH: usize = 80;

/// Fold every line longer than [`WIDTH`] columns at its last `,` or blank that fits,
/// continuing with the line's indentation plus two blanks. A line that is one token (a XAPI
/// string on its own line) is left whole, so it can be copied.
pub fn fit(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let indent = body.len() - body.trim_start().len();
        let pad = " ".repeat((indent + 2).min(40));
        let mut rest = body;
        let mut first = true;
        loop {
            let width = if first { WIDTH } else { WIDTH - pad.len() };
            if rest.chars().count() <= width || !rest.trim().contains([' ', ',']) {
                if !first {
                    out.push_str(&pad);
                }
                out.push_str(rest);
                break;
            }
            // The last break that fits: after a `,`, or at a blank (dropped).
            let limit = rest
                .char_indices()
                .nth(width)
                .map_or(rest.len(), |(i, _)| i);
            let head = &rest[..limit];
            // A blank well into the line, else after the last comma, else any blank.
            let blank = head.rfind(' ').filter(|&i| i > indent + 20);
            let cut = blank
                .map(|i| (i, i + 1))
                .or_else(|| head.rfind(',').map(|i| (i + 1, i + 1)))
                .or_else(|| head.rfind(' ').map(|i| (i, i + 1)))
                .filter(|&(end, _)| end > indent);
            let Some((end, next)) = cut else {
                if !first {
                    out.push_str(&pad);
                }
                out.push_str(rest);
                break;
            };
            if !first {
                out.push_str(&pad);
            }
            out.push_str(rest[..end].trim_end());
            out.push('\n');
            rest = rest[next..].trim_start();
            first = false;
        }
        out.push_str(nl);
    }
    out
}

/// `text` wrapped at blanks (or after commas) into lines of at most `width` columns, each
/// continuation line indented by `indent` blanks.
fn wrap_words(text: &str, indent: usize, width: usize) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let pieces: Vec<String> = if word.chars().count() > width && word.contains(',') {
            let parts: Vec<&str> = word.split(',').collect();
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i + 1 < parts.len() {
                        format!("{p},")
                    } else {
                        p.to_string()
                    }
                })
                .collect()
        } else {
            vec![word.to_string()]
        };
        for (i, piece) in pieces.iter().enumerate() {
            let last = lines.last_mut().expect("a line");
            let sep = if last.is_empty() || i > 0 { "" } else { " " };
            if !last.is_empty() && last.chars().count() + sep.len() + piece.chars().count() > width
            {
                lines.push(piece.clone());
            } else {
                last.push_str(sep);
                last.push_str(piece);
            }
        }
    }
    lines.join(&format!("\n{}", " ".repeat(indent)))
}
