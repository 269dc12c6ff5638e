//! The report on the terminal: what a pool operator reads.

use std::fmt::Write as _;

use levelctl::report::VmImpact;

use super::analysis::{GuestReport, Report};

/// `items` joined with `, ` and wrapped at `width` columns, each line after the first
/// indented by `indent`.
pub fn wrap(items: &[String], indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut col = indent;
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        if col + piece.len() + 1 > width && col > indent {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if i > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(&piece);
        col += piece.len();
    }
    out
}

/// What a guest saw, in a few words.
pub fn saw(g: &GuestReport) -> String {
    if g.started == "refused" {
        return "refused (fail closed)".into();
    }
    if g.exactly_the_level {
        return "exactly the pool level".into();
    }
    let mut s = "the pool level".to_string();
    if !g.beyond_level.is_empty() {
        let _ = write!(s, " plus {}", g.beyond_level.join(","));
    }
    if !g.not_shown.is_empty() {
        let _ = write!(s, " less {}", g.not_shown.join(","));
    }
    s.push_str(if g.ok {
        " (as announced: the hardware cannot do better)"
    } else {
        " (NOT as announced)"
    });
    s
}

/// Where a VM can no longer move in a what-if, the leaving host itself not counted:
/// `loses no destination` or `can no longer move to A, B`.
pub fn lost(vm: &VmImpact) -> String {
    let lost: Vec<&str> = vm
        .lost_destinations
        .iter()
        .filter(|d| d.reason != "leaves the pool")
        .map(|d| d.host.as_str())
        .collect();
    if lost.is_empty() {
        "loses no destination".to_string()
    } else {
        format!("can no longer move to {}", lost.join(", "))
    }
}

/// How a guest's CPUID reaches Xen, in a few words.
pub fn path(g: &GuestReport) -> String {
    match g.cpuid.as_str() {
        "native" if g.mechanism.starts_with("CPUID faulting") => "native, CPUID faulting".into(),
        "native" if g.mechanism.starts_with("mask MSRs") => "native, mask MSRs".into(),
        "native" if g.mechanism == "none" => "native, no mechanism".into(),
        "native" => format!("native, {}", g.mechanism),
        "forced" => "forced emulation (#UD)".into(),
        "vmexit" => "VM exit (SVM)".into(),
        other => other.into(),
    }
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "== Pools: levels computed by levelctl from the agents' host reports"
    );
    for p in &r.pools {
        let _ = writeln!(
            o,
            "  {} ({}, {} hosts: {})",
            p.name,
            p.vendor,
            p.hosts.len(),
            p.hosts.join(", ")
        );
        let _ = writeln!(
            o,
            "    PV level  {:>3} features  {}",
            p.pv.count, p.pv_level
        );
        let _ = writeln!(
            o,
            "    HVM level {:>3} features  {}",
            p.hvm.count, p.hvm_level
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "== Hosts: how each is modelled, its features, what guests at the pool level do not see"
    );
    let _ = writeln!(
        o,
        "  {:<15} {:<5} {:<55} {:>4} {:>4} {:>4} {:>7} {:>7}",
        "HOST", "POOL", "CPU", "HW", "PV", "HVM", "PV-HID", "HVM-HID"
    );
    for h in &r.hosts {
        let _ = writeln!(
            o,
            "  {:<15} {:<5} {:<55} {:>4} {:>4} {:>4} {:>7} {:>7}",
            h.name,
            h.pool,
            h.modelled_as,
            h.features.hardware,
            h.features.pv_default,
            h.features.hvm_default,
            h.pv_hidden.len(),
            h.hvm_hidden.len()
        );
    }
    let _ = writeln!(
        o,
        "  (HW: in the CPU; PV/HVM: Xen's default sets; *-HID: default features the level hides)"
    );
    for h in &r.hosts {
        let _ = writeln!(
            o,
            "  {}: {} {}; PV levelling: {}",
            h.name, h.brand, h.signature, h.mechanism
        );
        if let Some(xen) = &h.xen_caps {
            let _ = writeln!(o, "    real Xen 4.17 on {}: {xen}", h.qemu_model);
        }
        if h.hvm_hidden.is_empty() && h.pv_hidden.is_empty() {
            let _ = writeln!(o, "    guests see every default feature it has");
            continue;
        }
        if !h.hvm_hidden.is_empty() {
            let _ = writeln!(
                o,
                "    HVM guests do not see: {}",
                wrap(&h.hvm_hidden, 28, 100)
            );
        }
        let pv_only: Vec<String> = h
            .pv_hidden
            .iter()
            .filter(|f| !h.hvm_hidden.contains(f))
            .cloned()
            .collect();
        if !pv_only.is_empty() {
            let _ = writeln!(
                o,
                "    PV guests also do not see: {}",
                wrap(&pv_only, 32, 100)
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "== Guests started at the pool level, and what each saw");
    let _ = writeln!(
        o,
        "  {:<15} {:<8} {:<26} {:<12} SAW",
        "HOST", "GUEST", "CPUID PATH", "STARTED"
    );
    let mut exact = 0;
    let mut total = 0;
    for h in &r.hosts {
        for (i, g) in h.guests.iter().enumerate() {
            total += 1;
            exact += usize::from(g.exactly_the_level);
            let _ = writeln!(
                o,
                "  {:<15} {:<8} {:<26} {:<12} {}",
                if i == 0 { h.name.as_str() } else { "" },
                g.name,
                path(g),
                match g.started.as_str() {
                    "best-effort" => "best effort",
                    s => s,
                },
                saw(g)
            );
        }
        let _ = writeln!(
            o,
            "  {:<15} {:<8} {:<26} {:<12} {}",
            "",
            "dom0+Xen",
            "native, not levelled",
            "",
            if h.dom0_and_xen_see_host {
                "the full host CPUID, in every boot"
            } else {
                "NOT the full host CPUID"
            }
        );
    }
    let best_effort: Vec<String> = r
        .hosts
        .iter()
        .flat_map(|h| {
            h.guests
                .iter()
                .filter(|g| g.started == "best-effort")
                .map(move |g| format!("{}/{}", h.name, g.name))
        })
        .collect();
    let _ = writeln!(
        o,
        "  {exact} of {total} guests saw exactly the pool level; Xen and dom0 saw the full host \
         CPUID on {} of {} hosts.",
        r.hosts.iter().filter(|h| h.dom0_and_xen_see_host).count(),
        r.hosts.len()
    );
    if !best_effort.is_empty() {
        let _ = writeln!(
            o,
            "  Refused first (fail closed), then run with best effort, seeing exactly what their \
             hardware could not hide:\n    {}",
            wrap(&best_effort, 4, 100)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "== Migration matrix (levelctl; +: accepted, x: refused with N features missing, .: other vendor)"
    );
    let hosts: Vec<&str> = r.hosts.iter().map(|h| h.name.as_str()).collect();
    let _ = write!(o, "  {:<22}", "VM \\ host");
    for h in &hosts {
        let _ = write!(o, " {:>9}", abbreviate(h));
    }
    let _ = writeln!(o);
    for vm in &r.vms {
        let _ = write!(o, "  {:<22}", vm.name);
        for h in &hosts {
            let cell = r.migration.iter().find(|c| c.vm == vm.name && c.host == *h);
            let text = match cell {
                Some(c) if c.verdict == "accepted" => "+".to_string(),
                Some(c) if c.verdict == "refused" => format!("x{}", c.missing.len()),
                _ => ".".to_string(),
            };
            let _ = write!(o, " {text:>9}");
        }
        let _ = writeln!(o, "  {}", vm.origin);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "== What-if (levelctl): the weakest host of each pool leaves"
    );
    for w in &r.what_if {
        let _ = writeln!(o, "  pool {}: {} leaves", w.pool, w.leaves);
        for line in &w.lines {
            let _ = writeln!(o, "    {line}");
        }
        if !w.change.blockers.is_empty() {
            let _ = writeln!(o, "    blocked: {}", w.change.blockers.join("; "));
        }
        for vm in &w.change.vms {
            let _ = writeln!(
                o,
                "    {} ({}, on {}): {}",
                vm.vm,
                vm.power,
                vm.host.as_deref().unwrap_or("-"),
                lost(vm)
            );
            if !vm.gains_on_reboot.is_empty() {
                let _ = writeln!(
                    o,
                    "      keeps its featureset; at its next reboot it gains:\n        {}",
                    wrap(&vm.gains_on_reboot, 8, 100)
                );
            }
        }
    }
    let _ = writeln!(o);
    let run_failed: Vec<_> = r.run_checks.iter().filter(|c| !c.ok).collect();
    let _ = writeln!(o, "== Checks");
    let _ = writeln!(
        o,
        "  kernel: {} passed, {} failed over {} boots; run: {} passed, {} failed",
        r.kernel_checks[0],
        r.kernel_checks[1],
        r.boots,
        r.run_checks.len() - run_failed.len(),
        run_failed.len()
    );
    for c in run_failed {
        let _ = writeln!(o, "  FAIL {}: {}", c.name, c.note);
    }
    for h in &r.hosts {
        for b in &h.boots {
            if b.verdict != "pass" {
                let _ = writeln!(
                    o,
                    "  FAIL {} boot {} ({}): {}",
                    h.name, b.what, b.cpu, b.verdict
                );
                for f in &b.failures {
                    let _ = writeln!(o, "    {f}");
                }
            }
        }
    }
    o
}

/// A host name cut to fit a matrix column.
fn abbreviate(name: &str) -> String {
    name.chars().take(9).collect()
}
