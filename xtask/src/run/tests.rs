//! The report, built from a recorded run (no QEMU needed): `testdata/recorded-run.json` is a
//! real `cargo xtask run` (its `target/levelling-run.json`), with the serial logs cut to the
//! lines the report reads (the agents' reports, the guests' `level-guest` and `view` lines,
//! the dom0/Xen checks and the closing lines) and QEMU's stderr dropped. Re-record it after
//! changing [`super::hosts::HOSTS`] or the scenarios' output.

use std::process::Command;

use levelctl::GuestType;
use xen_levelling::Featureset;

use super::analysis::{self, Recording, Report, guest_boots, short_xapi};
use super::hosts::HOSTS;
use super::{html, text};

const RECORDED: &str = include_str!("testdata/recorded-run.json");

fn recording() -> Recording {
    serde_json::from_str(RECORDED).expect("the recorded run parses")
}

fn report() -> Report {
    analysis::build(&recording()).expect("the report builds")
}

#[test]
fn the_recorded_run_makes_a_passing_report() {
    let r = report();
    let failed: Vec<_> = r.run_checks.iter().filter(|c| !c.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(r.ok);
    assert_eq!(r.kernel_checks[1], 0);
    assert_eq!(r.boots, 9 + 7 * 2 + 2);
    assert_eq!(r.hosts.len(), HOSTS.len());
    // Two pools, one vendor each; the weakest host's defaults are the level (it hides
    // nothing), the strongest gives up the most.
    assert_eq!(
        r.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["intel", "amd"]
    );
    let intel = &r.pools[0];
    assert_eq!(intel.vendor, "GenuineIntel");
    assert!(intel.pv.count < intel.hvm.count);
    let nehalem = &r.hosts[0];
    assert!(nehalem.hvm_hidden.is_empty() && nehalem.pv_hidden.is_empty());
    let icelake = r.hosts.iter().find(|h| h.name == "icelake-server").unwrap();
    assert!(icelake.hvm_hidden.contains(&"avx512f".to_string()));
    assert!(icelake.mechanism.starts_with("CPUID faulting"));
    // Every guest ran and saw exactly the level, except the native PV guests on hosts that
    // cannot hide everything: refused first, then run with best effort, seeing exactly their
    // announced fail-closed list beyond the level.
    for h in &r.hosts {
        assert_eq!(h.guests.len(), 3, "{}", h.name);
        assert!(h.dom0_and_xen_see_host, "{}", h.name);
        for g in &h.guests {
            assert!(g.ok, "{}/{}", h.name, g.name);
            let faulting = h.mechanism.starts_with("CPUID faulting");
            if g.cpuid == "native" && !faulting {
                assert_eq!(g.started, "best-effort", "{}/{}", h.name, g.name);
                assert!(!g.beyond_level.is_empty());
            } else {
                assert!(g.exactly_the_level, "{}/{}", h.name, g.name);
            }
        }
    }
    // The migration matrix: every VM against every host; a VM at its pool's level goes
    // anywhere in its pool and never to the other vendor.
    assert_eq!(r.migration.len(), r.vms.len() * r.hosts.len());
    for cell in &r.migration {
        let vm = r.vms.iter().find(|v| v.name == cell.vm).unwrap();
        let host_pool = &r.hosts.iter().find(|h| h.name == cell.host).unwrap().pool;
        if *host_pool != vm.pool {
            assert_eq!(cell.verdict, "vendor", "{cell:?}");
        } else if vm.booted {
            assert_eq!(cell.verdict, "accepted", "{cell:?}");
        }
    }
    let icelake_solo_to_nehalem = r
        .migration
        .iter()
        .find(|c| c.vm == "icelake-server-solo" && c.host == "nehalem")
        .unwrap();
    assert_eq!(icelake_solo_to_nehalem.verdict, "refused");
    assert!(
        icelake_solo_to_nehalem
            .missing
            .contains(&"avx512f".to_string())
    );
    // The what-if: the weakest host leaves and the level rises.
    assert_eq!(r.what_if.len(), 2);
    assert_eq!(r.what_if[0].leaves, "nehalem");
    assert!(r.what_if[0].change.blockers.is_empty());
    assert!(
        r.what_if[0]
            .change
            .levels
            .iter()
            .all(|l| !l.gained.is_empty())
    );
}

#[test]
fn the_text_report_answers_the_operators_questions() {
    let out = text::render(&report());
    for needle in [
        "== Pools",
        "PV level",
        "HVM guests do not see: ",
        "exactly the pool level",
        "the full host CPUID, in every boot",
        "== Migration matrix",
        "icelake-server-solo",
        "== What-if (levelctl): the weakest host of each pool leaves",
        "pool intel: nehalem leaves",
        "kernel: ",
        "run: ",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
}

/// Rows (`<tr>`) and cells of class `class` in the table with id `id`.
fn table(html: &str, id: &str) -> (usize, usize, String) {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = start + html[start..].find("</table>").expect("closed");
    let body = &html[start..end];
    (body.matches("<tr>").count(), body.len(), body.to_string())
}

#[test]
fn the_page_has_both_matrices_in_colour() {
    let r = report();
    let page = html::render(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
    let (rows, _, body) = table(&page, "feature-matrix");
    // Rows the same on every host are folded, one row per kind.
    let uniform: Vec<_> = r
        .feature_matrix
        .iter()
        .filter(|row| row.cells.iter().all(|c| *c == row.cells[0]))
        .collect();
    let mut kinds: Vec<&str> = uniform.iter().map(|row| row.cells[0]).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert!(!uniform.is_empty() && uniform.len() < r.feature_matrix.len());
    // `<tr>` counts the header and the rows that differ; the folded rows have a class.
    assert_eq!(rows, r.feature_matrix.len() - uniform.len() + 1);
    assert_eq!(body.matches("<tr class=\"folded\">").count(), kinds.len());
    for row in &uniform {
        assert!(
            body.contains(&row.feature),
            "{} folded, not lost",
            row.feature
        );
    }
    for class in ["level", "hidden", "xen", "absent"] {
        assert!(body.contains(&format!("<td class=\"{class}\"")), "{class}");
    }
    let (rows, _, body) = table(&page, "migration-matrix");
    assert_eq!(rows, r.vms.len() + 1);
    assert_eq!(
        body.matches("<td class=\"accepted\"").count()
            + body.matches("<td class=\"refused\"").count()
            + body.matches("<td class=\"vendor\"").count(),
        r.migration.len()
    );
    assert!(page.contains("td.accepted { background: #4caf50"));
    // A refused cell names the missing features in the page, not only on hover.
    for c in r.migration.iter().filter(|c| c.verdict == "refused") {
        let cell = format!(
            "&#10007; {}<small class=\"missing\">{}</small>",
            c.missing.len(),
            html::escape(&c.missing.join(", "))
        );
        assert!(body.contains(&cell), "{} to {}", c.vm, c.host);
    }
    // Best-effort PV guests have their own colour.
    let best_effort = r
        .hosts
        .iter()
        .flat_map(|h| &h.guests)
        .filter(|g| g.started == "best-effort")
        .count();
    assert!(best_effort > 0);
    assert_eq!(
        page.matches("<tr class=\"best-effort\">").count(),
        best_effort
    );
    assert!(page.contains("td.best-effort, span.best-effort { background: #7e57c2"));
    assert_eq!(html::escape("<a&\"b'>"), "&lt;a&amp;&quot;b&#39;&gt;");
}

#[test]
fn a_failed_kernel_check_fails_the_report() {
    let mut rec = recording();
    let boot = &mut rec.hosts[2].guests[0];
    boot.status = Some(35);
    boot.serial = boot
        .serial
        .replace(
            "check at-level/dom0/native-cpuid: ok",
            "check at-level/dom0/native-cpuid: FAIL 1 of 40 results wrong",
        )
        .replace(" passed, 0 failed", " passed, 1 failed");
    let r = analysis::build(&rec).unwrap();
    assert!(!r.ok);
    assert_eq!(r.kernel_checks[1], 1);
    assert!(!r.hosts[2].dom0_and_xen_see_host);
    assert!(text::render(&r).contains("FAIL"));
}

#[test]
fn a_guest_that_sees_more_than_the_level_fails_the_report() {
    let mut rec = recording();
    // haswell's forced-emulation guest "sees" AVX2, which the Intel level lacks.
    let boot = &mut rec.hosts[2].guests[0];
    let line = boot
        .serial
        .lines()
        .find(|l| l.starts_with("view at-level/domU2: "))
        .unwrap()
        .to_string();
    let (words, mask) = line["view at-level/domU2: ".len()..]
        .split_once("; ")
        .unwrap();
    let mut fs = Featureset::parse_xen_words(words).unwrap();
    fs.insert(xen_levelling::Feature::AVX2);
    boot.serial = boot.serial.replace(
        &line,
        &format!("view at-level/domU2: {}; {mask}", fs.xen_words()),
    );
    let r = analysis::build(&rec).unwrap();
    assert!(!r.ok);
    let bad: Vec<_> = r.run_checks.iter().filter(|c| !c.ok).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].name == "run/haswell/view-of-domU2" && bad[0].note.contains("avx2"));
}

#[test]
fn guest_boots_carry_the_levels_and_fit_the_command_line() {
    let r = report();
    for host in HOSTS {
        let pool = r.pools.iter().find(|p| p.name == host.pool).unwrap();
        let pv = Featureset::parse_xapi(&pool.pv_level).unwrap();
        let hvm = Featureset::parse_xapi(&pool.hvm_level).unwrap();
        let boots = guest_boots(host, &pv, &hvm);
        assert_eq!(boots.len(), if host.dump.is_some() { 2 } else { 1 });
        for b in &boots {
            // The kernel keeps 512 bytes of command line.
            assert!(b.cmdline().len() < 512, "{}", b.cmdline());
            assert!(b.cpu.contains("svm") || !b.cpu.contains(','));
        }
        let all: String = boots.iter().map(|b| b.cmdline() + " ").collect();
        assert!(all.contains(&format!("level_pv={}", short_xapi(&pv))));
        assert!(all.contains(&format!("level_hvm={}", short_xapi(&hvm))));
        if let Some(dump) = host.dump {
            assert!(all.contains(&format!("shim={dump}")));
            assert!(all.contains(&format!("hvm_host={dump}")));
        }
    }
    let fs = Featureset::parse_xapi("1-2").unwrap();
    assert_eq!(short_xapi(&fs), "00000001-00000002");
    assert_eq!(Featureset::parse_xapi(&short_xapi(&fs)).unwrap(), fs);
    assert_eq!(short_xapi(&Featureset::EMPTY), "00000000");
    let _ = GuestType::Pv;
}

/// Opens the page in headless Chromium (Debian's `chromium`, which `cargo xtask provision`
/// installs) and checks what it built: both matrices, the folded rows, the missing features
/// in the refused cells and the best-effort guests. Without a browser the test fails, saying
/// how to get one.
#[test]
fn chromium_renders_the_report() {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "no chromium on PATH: run `cargo xtask provision` (as root it installs Debian's \
             chromium with apt-get), or install it yourself",
        );
    let r = report();
    let dir = std::env::temp_dir().join(format!("levelling-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("levelling-report.html");
    std::fs::write(&page, html::render(&r)).unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in ["feature-matrix", "migration-matrix"] {
        let (rows, _, _) = table(&dom, id);
        assert!(rows > 5, "{id}: {rows} rows");
    }
    let (_, _, migration) = table(&dom, "migration-matrix");
    assert_eq!(
        migration.matches("class=\"accepted\"").count()
            + migration.matches("class=\"refused\"").count()
            + migration.matches("class=\"vendor\"").count(),
        r.migration.len()
    );
    // What the browser shows: the missing features as text in the refused cells.
    let refused = r.migration.iter().find(|c| c.verdict == "refused").unwrap();
    assert!(
        migration.contains(&format!(
            "<small class=\"missing\">{}</small>",
            html::escape(&refused.missing.join(", "))
        )),
        "{migration}"
    );
    let (_, _, features) = table(&dom, "feature-matrix");
    assert!(features.contains("<tr class=\"folded\">"));
    assert!(dom.contains("<tr class=\"best-effort\">"));
}

#[test]
fn real_xens_caps_show_beside_the_crates_probe() {
    let mut r = report();
    assert!(
        r.hosts.iter().all(|h| h.xen_caps.is_none()),
        "analysis reads no cache"
    );
    let caps = crate::xen::serial::parse(include_str!("../xen/testdata/epyc-serial.log"));
    let host = r.hosts.iter_mut().find(|h| h.qemu_model == "EPYC").unwrap();
    host.xen_caps = Some(caps.caps_text());
    let line = format!("real Xen 4.17 on EPYC: {}", caps.caps_text());
    assert!(line.contains("Levelling caps: 0x19e"), "{line}");
    assert!(text::render(&r).contains(&line));
    assert!(html::render(&r).contains(&line));
}
