//! `target/levelling-report.html`: one self-contained page (inline CSS, no script, nothing
//! fetched) with the pools, the hosts, the guests (best-effort PV guests in their own colour),
//! the host × feature matrix (`#feature-matrix`; rows the same on every host folded into one
//! row per kind, `tr.folded`) and the migration matrix (`#migration-matrix`; a refused cell
//! lists the missing features in the page, `small.missing`) in colour.

use std::fmt::Write as _;

use super::analysis::Report;
use super::text::{lost, path, saw};

/// `text` with HTML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
code, .mono { font-family: ui-monospace, monospace; font-size: 12px; }
.ok { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.matrix td { text-align: center; min-width: 2.2em; padding: 1px 3px; font-size: 12px; }
.matrix th.rot { height: 7em; white-space: nowrap; vertical-align: bottom; }
.matrix th.rot div { writing-mode: vertical-rl; transform: rotate(180deg); }
.matrix td.name { text-align: left; font-family: ui-monospace, monospace; }
td.level { background: #4caf50; color: #fff; }
td.hidden { background: #ffb300; }
td.xen { background: #90a4ae; color: #fff; }
td.absent { background: #fafafa; color: #bbb; }
td.accepted { background: #4caf50; color: #fff; }
td.refused { background: #e53935; color: #fff; }
td.vendor { background: #eeeeee; color: #999; }
td.refused small.missing { display: block; font-size: 10px; max-width: 9em; white-space: normal; }
tr.folded td { text-align: left; white-space: normal; }
tr.best-effort td { background: #ede7f6; }
td.best-effort, span.best-effort { background: #7e57c2; color: #fff; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; }
";

/// The page.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>CPUID levelling report</title>\n<style>{STYLE}</style>\n</head>\n<body>"
    );
    let _ = writeln!(
        o,
        "<h1>CPUID levelling: a heterogeneous pool of QEMU hosts</h1>"
    );
    let verdict = if r.ok {
        "<span class=\"ok\">every check passed</span>"
    } else {
        "<span class=\"fail\">SOME CHECKS FAILED</span>"
    };
    let _ = writeln!(
        o,
        "<p>{verdict}: {} kernel checks passed, {} failed, over {} boots ({:.1}s of agents, \
         {:.1}s of guests) on {}; {} run checks.</p>",
        r.kernel_checks[0],
        r.kernel_checks[1],
        r.boots,
        r.phase_seconds[0],
        r.phase_seconds[1],
        escape(&r.qemu),
        r.run_checks.len()
    );

    let _ = writeln!(
        o,
        "<h2>Pools</h2>\n<table>\n<tr><th>pool</th><th>vendor</th><th>hosts</th><th>PV level</th><th>HVM level</th></tr>"
    );
    for p in &r.pools {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} features<br><code>{}</code></td>\
             <td>{} features<br><code>{}</code></td></tr>",
            escape(&p.name),
            escape(&p.vendor),
            escape(&p.hosts.join(", ")),
            p.pv.count,
            escape(&p.pv_level),
            p.hvm.count,
            escape(&p.hvm_level)
        );
    }
    let _ = writeln!(o, "</table>");

    let _ = writeln!(
        o,
        "<h2>Hosts</h2>\n<table>\n<tr><th>host</th><th>pool</th><th>CPU (how modelled)</th>\
         <th>PV levelling</th><th>in CPU</th><th>PV default</th><th>HVM default</th>\
         <th>guests at the level do not see (HVM; PV additionally)</th></tr>"
    );
    for h in &r.hosts {
        let pv_only: Vec<&String> = h
            .pv_hidden
            .iter()
            .filter(|f| !h.hvm_hidden.contains(f))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}<br><small>{} {}</small></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{} ({}){}</td></tr>",
            escape(&h.name),
            escape(&h.pool),
            escape(&h.modelled_as),
            escape(&h.brand),
            escape(&h.signature),
            match &h.xen_caps {
                Some(xen) => format!(
                    "{}<br><small>real Xen 4.17 on {}: {}</small>",
                    escape(&h.mechanism),
                    escape(&h.qemu_model),
                    escape(xen)
                ),
                None => escape(&h.mechanism),
            },
            h.features.hardware,
            h.features.pv_default,
            h.features.hvm_default,
            escape(&h.hvm_hidden.join(", ")),
            h.hvm_hidden.len(),
            if pv_only.is_empty() {
                String::new()
            } else {
                format!(
                    "; PV: {}",
                    escape(
                        &pv_only
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                )
            }
        );
    }
    let _ = writeln!(o, "</table>");

    let _ = writeln!(
        o,
        "<h2>Guests at the pool level</h2>\n<p class=\"legend\"><span class=\"best-effort\">\
         best-effort</span>a PV guest the hardware cannot level: refused first (fail closed), \
         then started on request; it sees what the hardware cannot hide</p>\n\
         <table id=\"guests\">\n<tr><th>host</th><th>guest</th>\
         <th>CPUID path</th><th>started</th><th>saw</th></tr>"
    );
    for h in &r.hosts {
        for g in &h.guests {
            let best_effort = g.started == "best-effort";
            let _ = writeln!(
                o,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td class=\"{}\">{}</td></tr>",
                if best_effort {
                    " class=\"best-effort\""
                } else {
                    ""
                },
                escape(&h.name),
                escape(&g.name),
                escape(&path(g)),
                if best_effort {
                    " class=\"best-effort\""
                } else {
                    ""
                },
                escape(&g.started),
                if g.ok { "ok" } else { "fail" },
                escape(&saw(g))
            );
        }
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>dom0, Xen</td><td>native, not levelled</td><td></td>\
             <td class=\"{}\">{}</td></tr>",
            escape(&h.name),
            if h.dom0_and_xen_see_host {
                "ok"
            } else {
                "fail"
            },
            if h.dom0_and_xen_see_host {
                "the full host CPUID"
            } else {
                "NOT the full host CPUID"
            }
        );
    }
    let _ = writeln!(o, "</table>");

    // The host × feature matrix.
    let _ = writeln!(
        o,
        "<h2>Host &times; feature matrix</h2>\n<p class=\"legend\">\
         <span class=\"level\" style=\"background:#4caf50;color:#fff\">L</span>in the pool's HVM level: every guest at the level sees it \
         <span style=\"background:#ffb300\">H</span>offered by the host, hidden by the level \
         <span style=\"background:#90a4ae;color:#fff\">X</span>in the CPU, for Xen and dom0 only \
         <span style=\"background:#fafafa;color:#bbb\">&middot;</span>not in the CPU</p>"
    );
    let _ = writeln!(o, "<table class=\"matrix\" id=\"feature-matrix\">");
    let _ = write!(o, "<tr><th>feature</th><th>word</th>");
    for h in &r.hosts {
        let _ = write!(
            o,
            "<th class=\"rot\" title=\"{}\"><div>{}</div></th>",
            escape(&h.modelled_as),
            escape(&h.name)
        );
    }
    let _ = writeln!(o, "</tr>");
    // Rows the same on every host: one folded row per kind, after the rows that differ.
    let uniform = |row: &&super::analysis::FeatureRow| {
        row.cells.len() > 1 && row.cells.iter().all(|c| *c == row.cells[0])
    };
    let mut folded: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for row in r.feature_matrix.iter().filter(uniform) {
        match folded.iter_mut().find(|(kind, _)| *kind == row.cells[0]) {
            Some((_, names)) => names.push(&row.feature),
            None => folded.push((row.cells[0], vec![&row.feature])),
        }
    }
    for row in r.feature_matrix.iter().filter(|row| !uniform(row)) {
        let _ = write!(
            o,
            "<tr><td class=\"name\">{}</td><td>{}</td>",
            escape(&row.feature),
            row.word
        );
        for (cell, h) in row.cells.iter().zip(&r.hosts) {
            let mark = match *cell {
                "level" => "L",
                "hidden" => "H",
                "xen" => "X",
                _ => "&middot;",
            };
            let _ = write!(
                o,
                "<td class=\"{cell}\" title=\"{} on {}: {cell}\">{mark}</td>",
                escape(&row.feature),
                escape(&h.name)
            );
        }
        let _ = writeln!(o, "</tr>");
    }
    for (kind, names) in &folded {
        let what = match *kind {
            "level" => "in the level on every host",
            "hidden" => "hidden by the level on every host",
            "xen" => "for Xen and dom0 only on every host",
            _ => "in no host's CPU",
        };
        let _ = writeln!(
            o,
            "<tr class=\"folded\"><td class=\"name\" colspan=\"2\">{} {}</td>\
             <td class=\"{kind}\" colspan=\"{}\"><span class=\"mono\">{}</span></td></tr>",
            names.len(),
            what,
            r.hosts.len(),
            escape(&names.join(", "))
        );
    }
    let _ = writeln!(o, "</table>");
    let _ = writeln!(
        o,
        "<p>Left out: {}, which follow the guest's live state, the toolstack's topology rules \
         or the host's FPU behaviour; a guest sees those whatever the level.</p>",
        escape(&levelctl::report::names(&super::analysis::not_levelled()).join(", "))
    );

    // The migration matrix.
    let _ = writeln!(
        o,
        "<h2>Migration matrix</h2>\n<p class=\"legend\">levelctl's check of each VM against \
         each host: <span style=\"background:#4caf50;color:#fff\">&#10003;</span>accepted \
         <span style=\"background:#e53935;color:#fff\">&#10007; N</span>refused, N features missing \
         (named in the cell) <span style=\"background:#eee;color:#999\">&ndash;</span>another vendor</p>"
    );
    let _ = writeln!(o, "<table class=\"matrix\" id=\"migration-matrix\">");
    let _ = write!(o, "<tr><th>VM</th><th>how its featureset was fixed</th>");
    for h in &r.hosts {
        let _ = write!(o, "<th class=\"rot\"><div>{}</div></th>", escape(&h.name));
    }
    let _ = writeln!(o, "</tr>");
    for vm in &r.vms {
        let _ = write!(
            o,
            "<tr><td class=\"name\">{}</td><td style=\"text-align:left\">{} ({} features){}</td>",
            escape(&vm.name),
            escape(&vm.origin),
            vm.features,
            if vm.booted {
                "; booted on every host of its pool"
            } else {
                ""
            }
        );
        for h in &r.hosts {
            let Some(c) = r
                .migration
                .iter()
                .find(|c| c.vm == vm.name && c.host == h.name)
            else {
                let _ = write!(o, "<td></td>");
                continue;
            };
            let mark = match c.verdict {
                "accepted" => "&#10003;".to_string(),
                "refused" => format!(
                    "&#10007; {}<small class=\"missing\">{}</small>",
                    c.missing.len(),
                    escape(&c.missing.join(", "))
                ),
                _ => "&ndash;".to_string(),
            };
            let _ = write!(
                o,
                "<td class=\"{}\" title=\"{}\">{mark}</td>",
                c.verdict,
                escape(&format!("{} to {}: {}", c.vm, c.host, c.summary))
            );
        }
        let _ = writeln!(o, "</tr>");
    }
    let _ = writeln!(o, "</table>");

    let _ = writeln!(
        o,
        "<h2>What-if: the weakest host of each pool leaves</h2>\n<ul>"
    );
    for w in &r.what_if {
        let _ = write!(
            o,
            "<li>pool <b>{}</b>: <b>{}</b> leaves: {}",
            escape(&w.pool),
            escape(&w.leaves),
            escape(&w.lines.join("; "))
        );
        for vm in &w.change.vms {
            let _ = write!(
                o,
                "<br>{} (on {}): {}",
                escape(&vm.vm),
                escape(vm.host.as_deref().unwrap_or("-")),
                escape(&lost(vm))
            );
            if !vm.gains_on_reboot.is_empty() {
                let _ = write!(
                    o,
                    "; keeps its featureset, and at its next reboot gains <code>{}</code>",
                    escape(&vm.gains_on_reboot.join(", "))
                );
            }
        }
        let _ = writeln!(o, "</li>");
    }
    let _ = writeln!(o, "</ul>");

    let _ = writeln!(
        o,
        "<h2>Boots</h2>\n<table>\n<tr><th>host</th><th>boot</th><th>-cpu</th><th>command line</th>\
         <th>result</th><th>checks</th><th>time</th></tr>"
    );
    for h in &r.hosts {
        for b in &h.boots {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
                 <td class=\"{}\">{}</td><td>{} passed, {} failed</td><td>{:.2}s</td></tr>",
                escape(&h.name),
                escape(&b.what),
                escape(&b.cpu),
                escape(&b.cmdline),
                if b.verdict == "pass" { "ok" } else { "fail" },
                escape(&b.verdict),
                b.passed,
                b.failed,
                b.seconds
            );
        }
    }
    let _ = writeln!(o, "</table>");
    let failed: Vec<_> = r.run_checks.iter().filter(|c| !c.ok).collect();
    if !failed.is_empty() {
        let _ = writeln!(o, "<h2>Failed checks</h2>\n<ul>");
        for c in failed {
            let _ = writeln!(
                o,
                "<li class=\"fail\">{}: {}</li>",
                escape(&c.name),
                escape(&c.note)
            );
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(o, "</body>\n</html>");
    o
}
