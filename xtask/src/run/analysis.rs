//! From the boots to the report: the agents' host reports become levelctl hosts and pools,
//! levelctl computes each pool's level, the guest boots are judged against it, and levelctl
//! answers the operator's questions (the migration matrix, one what-if). Pure: the tests run
//! it on a recorded run.

use levelctl::check::{self, VmCpu};
use levelctl::input::{HostInputOptions, parse_host};
use levelctl::report::names;
use levelctl::{Change, GuestType, Host, Pool};
use serde::{Deserialize, Serialize};
use xen_levelling::Featureset;
use xen_levelling::Vendor;
use xen_levelling::feature::{KNOWN, NR_WORDS};

use super::hosts::{HOSTS, HostSpec};
use super::serial::{self, AgentOutput, BootRecord, GuestOutput};
use crate::qemu::{BootSpec, Verdict};

/// A whole run, as recorded: what the report is built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// `qemu-system-x86_64 --version`.
    pub qemu: String,
    /// Wall time of the agent boots and of the guest boots.
    pub phase_seconds: [f64; 2],
    /// Per host, in [`HOSTS`] order.
    pub hosts: Vec<HostRecording>,
}

/// One host's boots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecording {
    /// The host ([`HostSpec::name`]).
    pub name: String,
    /// The agent boot.
    pub agent: BootRecord,
    /// The guest boots (none if the agents failed).
    pub guests: Vec<BootRecord>,
}

/// The agent boot of `host`.
pub fn agent_boot(host: &HostSpec) -> BootSpec {
    let mut spec = BootSpec::new(&host.svm_cpu(), "agent");
    if let Some(dump) = host.dump {
        spec.append.push(format!("shim={dump}"));
    }
    spec.append.push(format!("hostname={}", host.name));
    spec
}

/// A level as a XAPI string without its trailing zero words (the kernel zero-extends it),
/// so that two levels fit the kernel's command line.
pub fn short_xapi(fs: &Featureset) -> String {
    let words = fs.words();
    let used = words.iter().rposition(|&w| w != 0).map_or(1, |i| i + 1);
    words[..used]
        .iter()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The guest boots of `host` at its pool's levels: above the shim the PV guests, then on
/// plain QEMU with SVM the HVM guest with the dump's HVM policies; on a plain host both in
/// one boot. Native PV guests that the hardware cannot level are refused first (checked),
/// then started with best effort, so that what they see is reported too.
pub fn guest_boots(host: &HostSpec, pv: &Featureset, hvm: &Featureset) -> Vec<BootSpec> {
    let with = |words: Vec<String>| {
        let mut spec = BootSpec::new(&host.svm_cpu(), "at-level");
        spec.append = words;
        spec
    };
    let name = format!("hostname={}", host.name);
    let pv = format!("level_pv={}", short_xapi(pv));
    let hvm = format!("level_hvm={}", short_xapi(hvm));
    match host.dump {
        Some(dump) => vec![
            with(vec![
                format!("shim={dump}"),
                name.clone(),
                pv,
                "best_effort".into(),
            ]),
            with(vec![name, hvm, format!("hvm_host={dump}")]),
        ],
        None => vec![with(vec![name, pv, hvm, "best_effort".into()])],
    }
}

/// One check the run itself makes (the kernel's are in the boots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunCheck {
    /// `run/<host>/<what>`.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What it found.
    pub note: String,
}

/// The pools after the agents reported: levelctl's hosts, pools and levels.
pub struct Levelled {
    /// Per host (in [`HOSTS`] order, those whose agent reported): spec, levelctl host, agent
    /// output.
    pub hosts: Vec<(HostSpec, Host, AgentOutput)>,
    /// The pools, hosts joined in order.
    pub pools: Vec<Pool>,
}

impl Levelled {
    /// The pool `host` is in.
    pub fn pool_of(&self, host: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.find_host(host).is_some())
    }

    /// A pool's level.
    pub fn level(&self, host: &str, guest: GuestType) -> Featureset {
        self.pool_of(host)
            .and_then(|p| p.level(guest))
            .unwrap_or_default()
    }
}

/// Reads every agent's report and joins the hosts into their pools through levelctl.
pub fn level(
    agents: &[(HostSpec, &BootRecord)],
    checks: &mut Vec<RunCheck>,
) -> Result<Levelled, String> {
    let mut hosts = Vec::new();
    for (spec, boot) in agents {
        let name = format!("run/{}/agent-report", spec.name);
        let parsed = match boot.verdict() {
            Verdict::Pass => serial::agent_output(&boot.serial).and_then(|out| {
                let options = HostInputOptions {
                    name: Some(spec.name.to_string()),
                    cpuid: None,
                };
                parse_host(&out.report, &format!("{}/agent", spec.name), &options)
                    .map(|loaded| (loaded.host, out))
                    .map_err(|e| e.to_string())
            }),
            verdict => Err(format!("the agent boot: {verdict}")),
        };
        match parsed {
            Ok((host, out)) => {
                checks.push(RunCheck {
                    name,
                    ok: true,
                    note: format!(
                        "{} {}: levelctl read the report",
                        host.vendor,
                        host.signature.map(|s| s.to_string()).unwrap_or_default()
                    ),
                });
                hosts.push((*spec, host, out));
            }
            Err(why) => checks.push(RunCheck {
                name,
                ok: false,
                note: why,
            }),
        }
    }
    let mut pools: Vec<Pool> = Vec::new();
    for (spec, host, _) in &hosts {
        if !pools.iter().any(|p| p.name == spec.pool) {
            pools.push(Pool::new(spec.pool));
        }
        let pool = pools
            .iter_mut()
            .find(|p| p.name == spec.pool)
            .expect("just added");
        pool.apply(Change::Join(Box::new(host.clone())))
            .map_err(|e| format!("{} cannot join pool {}: {e}", spec.name, spec.pool))?;
    }
    Ok(Levelled { hosts, pools })
}

/// A featureset in the report: count and names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Names {
    /// How many.
    pub count: usize,
    /// Xen's names.
    pub names: Vec<String>,
}

impl From<&Featureset> for Names {
    fn from(fs: &Featureset) -> Names {
        let names = names(fs);
        Names {
            count: names.len(),
            names,
        }
    }
}

/// One pool's level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolReport {
    /// `intel`, `amd`.
    pub name: String,
    /// Its vendor.
    pub vendor: String,
    /// Its hosts.
    pub hosts: Vec<String>,
    /// The PV level: XAPI string and names.
    pub pv_level: String,
    /// The HVM level: XAPI string.
    pub hvm_level: String,
    /// The PV level's features.
    pub pv: Names,
    /// The HVM level's features.
    pub hvm: Names,
    /// levelctl's per-member report (what each gives up, what each alone holds back).
    pub members: Vec<levelctl::report::LevelReport>,
}

/// What one guest saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuestReport {
    /// `domU1`, `domU2`, `hvm`.
    pub name: String,
    /// `pv` or `hvm`.
    pub kind: String,
    /// How its CPUID reaches Xen: `native`, `forced`, `vmexit`.
    pub cpuid: String,
    /// The levelling that applies.
    pub mechanism: String,
    /// `yes`, `best-effort` (refused first, fail closed) or `refused`.
    pub started: String,
    /// It saw exactly the pool level (live-state and topology bits aside).
    pub exactly_the_level: bool,
    /// Shown beyond the level: exactly its announced fail-closed list, or the run fails.
    pub beyond_level: Vec<String>,
    /// In the level but not shown (what masks cannot add, e.g. `hypervisor`).
    pub not_shown: Vec<String>,
    /// Its CPUID results matched what the hypervisor promised (the kernel's checks, and the
    /// view against the level here).
    pub ok: bool,
}

/// One boot, summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BootReport {
    /// `agent`, `guests (PV, above the shim)`, ...
    pub what: String,
    /// `-cpu`.
    pub cpu: String,
    /// The kernel command line.
    pub cmdline: String,
    /// `pass` or `FAIL (...)`.
    pub verdict: String,
    /// Kernel checks passed.
    pub passed: u32,
    /// Kernel checks failed.
    pub failed: u32,
    /// Wall time.
    pub seconds: f64,
    /// The failed check lines.
    pub failures: Vec<String>,
}

/// One host.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostReport {
    /// Its name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// The QEMU model.
    pub qemu_model: String,
    /// How its CPU is modelled.
    pub modelled_as: String,
    /// The dump, above the shim.
    pub dump: Option<String>,
    /// Vendor.
    pub vendor: String,
    /// Family/model/stepping.
    pub signature: String,
    /// Brand string.
    pub brand: String,
    /// The PV levelling mechanism, as the kernel probed it.
    pub mechanism: String,
    /// sysctl 25's caps.
    pub levelling_caps: u32,
    /// Real Xen 4.17's `Levelling caps:` line on the same QEMU model, where `cargo xtask
    /// bench` (or `xen-boot`) left a capture in `target/xen/` (filled in by `run`, not here).
    pub xen_caps: Option<String>,
    /// Feature counts: the CPU's, and Xen's PV/HVM default and max.
    pub features: FeatureCounts,
    /// PV default features PV guests at the level do not see.
    pub pv_hidden: Vec<String>,
    /// HVM default features HVM guests at the level do not see.
    pub hvm_hidden: Vec<String>,
    /// The guests it ran.
    pub guests: Vec<GuestReport>,
    /// dom0 and Xen saw the full host CPUID in every boot.
    pub dom0_and_xen_see_host: bool,
    /// Its boots.
    pub boots: Vec<BootReport>,
}

/// How many features a host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureCounts {
    /// In the CPU (Xen's raw policy).
    pub hardware: usize,
    /// PV default.
    pub pv_default: usize,
    /// HVM default.
    pub hvm_default: usize,
    /// PV max.
    pub pv_max: usize,
    /// HVM max.
    pub hvm_max: usize,
}

/// One row of the host × feature matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureRow {
    /// Xen's name.
    pub feature: String,
    /// Featureset word.
    pub word: usize,
    /// Per host (in the report's host order): `level` (guests at the HVM pool level see it),
    /// `hidden` (the host offers it to HVM guests by default; levelled away), `xen` (in the
    /// CPU, offered to no guest by default: Xen and dom0 only), `absent`.
    pub cells: Vec<&'static str>,
}

/// A VM of the migration matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmReport {
    /// Its name.
    pub name: String,
    /// `pv` or `hvm`.
    pub guest: String,
    /// Its pool.
    pub pool: String,
    /// How its featureset was fixed.
    pub origin: String,
    /// Its guest booted on every host of its pool in this run.
    pub booted: bool,
    /// How many features it has.
    pub features: usize,
}

/// One cell of the migration matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// The VM.
    pub vm: String,
    /// The destination host.
    pub host: String,
    /// `accepted`, `refused` or `vendor` (another vendor: never).
    pub verdict: &'static str,
    /// What the host lacks.
    pub missing: Vec<String>,
    /// levelctl's one-line summary.
    pub summary: String,
}

/// The what-if.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WhatIf {
    /// The pool.
    pub pool: String,
    /// The host that would leave (the one with the fewest HVM default features).
    pub leaves: String,
    /// One line per guest type: before → after.
    pub lines: Vec<String>,
    /// levelctl's report.
    pub change: levelctl::report::ChangeReport,
}

/// The whole report (`target/levelling-report.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `levelling-report`.
    pub format: &'static str,
    /// 1.
    pub version: u32,
    /// QEMU's version.
    pub qemu: String,
    /// How many boots, and their wall time per phase.
    pub boots: usize,
    /// Wall time of the agent boots and the guest boots.
    pub phase_seconds: [f64; 2],
    /// The pools.
    pub pools: Vec<PoolReport>,
    /// The hosts.
    pub hosts: Vec<HostReport>,
    /// The host × feature matrix.
    pub feature_matrix: Vec<FeatureRow>,
    /// The VMs.
    pub vms: Vec<VmReport>,
    /// The migration matrix (VM × host).
    pub migration: Vec<Cell>,
    /// One what-if per pool.
    pub what_if: Vec<WhatIf>,
    /// The run's own checks.
    pub run_checks: Vec<RunCheck>,
    /// Kernel checks passed and failed, over every boot.
    pub kernel_checks: [u32; 2],
    /// Everything passed.
    pub ok: bool,
}

/// Bits a guest's CPUID shows whatever the level says: the crate's definition, shared with
/// the kernel's checks.
pub fn not_levelled() -> Featureset {
    xen_levelling::levelling::domain::not_levelled()
}

/// Every bit of the words in `mask` (bit n = word n).
fn words_of(mask: u32) -> Featureset {
    let mut fs = Featureset::EMPTY;
    for word in 0..NR_WORDS.min(32) {
        if mask & 1 << word != 0 {
            fs.set_word(word, !0);
        }
    }
    fs
}

/// Judges one guest's view against the pool level.
fn judge(guest: &GuestOutput, level: &Featureset) -> (GuestReport, RunCheck) {
    let aside = not_levelled();
    let mut report = GuestReport {
        name: guest.name.clone(),
        kind: guest.kind.clone(),
        cpuid: guest.cpuid.clone(),
        mechanism: guest.mechanism.clone(),
        started: guest.started.clone(),
        exactly_the_level: false,
        beyond_level: Vec::new(),
        not_shown: Vec::new(),
        ok: false,
    };
    let check_name = format!("view-of-{}", guest.name);
    let Some((view, mask)) = guest.view else {
        let ok = guest.started == "refused";
        let note = if ok {
            "refused (fail closed), as it must be without best effort".to_string()
        } else {
            "the guest reported no view".to_string()
        };
        report.ok = ok;
        return (
            report,
            RunCheck {
                name: check_name,
                ok,
                note,
            },
        );
    };
    let scope = words_of(mask) & KNOWN;
    let got = (view & scope) - aside;
    let level = (*level & scope) - aside;
    let expected = (((level | guest.unenforceable) - guest.not_shown) & scope) - aside;
    let beyond = got - level;
    let missing = level - got;
    report.beyond_level = names(&beyond);
    report.not_shown = names(&missing);
    report.exactly_the_level = got == level;
    report.ok = got == expected;
    let note = if report.exactly_the_level {
        format!("saw exactly the pool level ({} features)", got.len())
    } else {
        format!(
            "saw the pool level{}{}; announced: fail-closed list [{}], not shown [{}]",
            if beyond.is_empty() {
                String::new()
            } else {
                format!(" plus [{}]", beyond.names())
            },
            if missing.is_empty() {
                String::new()
            } else {
                format!(" less [{}]", missing.names())
            },
            guest.unenforceable.names(),
            guest.not_shown.names()
        )
    };
    (
        report.clone(),
        RunCheck {
            name: check_name,
            ok: report.ok,
            note,
        },
    )
}

/// What each boot of a host is, for the report.
fn boot_label(record: &BootRecord) -> String {
    let words: Vec<&str> = record.cmdline.split_whitespace().collect();
    let has = |prefix: &str| words.iter().any(|w| w.starts_with(prefix));
    if has("scenario=agent") {
        "agent".into()
    } else if has("hvm_host=") {
        "HVM guest (plain QEMU with SVM; the dump's HVM policies)".into()
    } else if has("shim=") {
        "PV guests (above the shim)".into()
    } else {
        "PV and HVM guests".into()
    }
}

fn boot_report(record: &BootRecord) -> BootReport {
    let counts = record.counts();
    BootReport {
        what: boot_label(record),
        cpu: record.cpu.clone(),
        cmdline: record.cmdline.clone(),
        verdict: record.verdict().to_string(),
        passed: counts.passed,
        failed: counts.failed,
        seconds: record.seconds,
        failures: record
            .serial
            .lines()
            .filter(|l| l.starts_with("check ") && l.contains(": FAIL"))
            .map(str::to_string)
            .collect(),
    }
}

/// The host with the fewest HVM default features: the one holding its pool back most.
fn weakest(pool: &Pool) -> Option<&Host> {
    pool.hosts
        .iter()
        .min_by_key(|h| (h.hvm.default.len(), h.pv.default.len()))
}

/// The host with the most HVM default features.
fn strongest(pool: &Pool) -> Option<&Host> {
    pool.hosts
        .iter()
        .max_by_key(|h| (h.hvm.default.len(), h.pv.default.len()))
}

/// Builds the report from a recorded run: the pools levelled from the agents' reports, VMs
/// started at each level, the migration matrix and a what-if, the guest boots judged, and the
/// host × feature matrix.
pub fn build(recording: &Recording) -> Result<Report, String> {
    let mut run_checks = Vec::new();
    let specs: Vec<(HostSpec, &HostRecording)> = recording
        .hosts
        .iter()
        .map(|r| {
            HOSTS
                .iter()
                .find(|h| h.name == r.name)
                .map(|h| (*h, r))
                .ok_or_else(|| format!("recorded host `{}` is not one of HOSTS", r.name))
        })
        .collect::<Result<_, _>>()?;
    let agents: Vec<(HostSpec, &BootRecord)> =
        specs.iter().map(|(spec, r)| (*spec, &r.agent)).collect();
    let mut levelled = level(&agents, &mut run_checks)?;

    start_pool_vms(&mut levelled, &mut run_checks);
    let vms = report_vms(&levelled, &mut run_checks);
    let migration = migration_matrix(&levelled, &vms, &mut run_checks);
    let what_if = what_if(&levelled);
    let mut kernel = [0u32; 2];
    let hosts: Vec<HostReport> = specs
        .iter()
        .filter_map(|(spec, rec)| judge_host(&levelled, spec, rec, &mut kernel, &mut run_checks))
        .collect();
    let feature_matrix = feature_matrix(&levelled, &hosts);
    let pools = pool_reports(&levelled);
    let boots = specs.iter().map(|(_, r)| 1 + r.guests.len()).sum();
    let ok = run_checks.iter().all(|c| c.ok) && kernel[1] == 0;
    Ok(Report {
        format: "levelling-report",
        version: 1,
        qemu: recording.qemu.clone(),
        boots,
        phase_seconds: recording.phase_seconds,
        pools,
        hosts,
        feature_matrix,
        vms: vms.into_iter().map(|v| v.report).collect(),
        migration,
        what_if,
        run_checks,
        kernel_checks: kernel,
        ok,
    })
}

/// Each pool's PV and HVM VM, started at its level on its strongest host (so that the
/// weakest can leave in the what-if).
fn start_pool_vms(levelled: &mut Levelled, run_checks: &mut Vec<RunCheck>) {
    for pool in &mut levelled.pools {
        let Some(on) = strongest(pool).map(|h| h.name.clone()) else {
            continue;
        };
        for guest in GuestType::ALL {
            let name = format!("{}-{guest}", pool.name);
            let started = pool
                .create_vm(&name, guest, false)
                .and_then(|_| pool.start_vm(&name, Some(&on)));
            run_checks.push(RunCheck {
                name: format!("run/{}/start-{name}", pool.name),
                ok: started.is_ok(),
                note: match &started {
                    Ok(r) => format!(
                        "started at the {} level on {on} ({} features)",
                        guest.label(),
                        r.featureset.as_ref().map_or(0, |f| f.names.len())
                    ),
                    Err(e) => e.to_string(),
                },
            });
        }
    }
}

/// A VM of the report with the CPU it was started with.
struct Vm {
    report: VmReport,
    cpu: VmCpu,
}

/// The pools' VMs, and per host an HVM VM started while that host stood alone (what it had
/// before it joined the pool).
fn report_vms(levelled: &Levelled, run_checks: &mut Vec<RunCheck>) -> Vec<Vm> {
    let mut vms = Vec::new();
    for pool in &levelled.pools {
        for vm in &pool.vms {
            let Some(cpu) = VmCpu::of(vm) else { continue };
            vms.push(Vm {
                report: VmReport {
                    name: vm.name.clone(),
                    guest: vm.guest.to_string(),
                    pool: pool.name.clone(),
                    origin: format!(
                        "started at the pool's {} level (on {})",
                        vm.guest.label(),
                        vm.host.clone().unwrap_or_default()
                    ),
                    booted: true,
                    features: names(&cpu.featureset).len(),
                },
                cpu,
            });
        }
    }
    for pool in &levelled.pools {
        for host in &pool.hosts {
            let mut solo = Pool::new(&host.name);
            let name = format!("{}-solo", host.name);
            let started = solo
                .apply(Change::Join(Box::new(host.clone())))
                .and_then(|_| solo.create_vm(&name, GuestType::Hvm, false))
                .and_then(|_| solo.start_vm(&name, None));
            let Some(cpu) = started
                .ok()
                .and_then(|_| solo.find_vm(&name).and_then(VmCpu::of))
            else {
                run_checks.push(RunCheck {
                    name: format!("run/{}/start-{name}", pool.name),
                    ok: false,
                    note: "levelctl refused to start it on its own host".into(),
                });
                continue;
            };
            vms.push(Vm {
                report: VmReport {
                    name,
                    guest: "hvm".into(),
                    pool: pool.name.clone(),
                    origin: format!(
                        "started on {} alone, before it joined pool {}",
                        host.name, pool.name
                    ),
                    booted: false,
                    features: names(&cpu.featureset).len(),
                },
                cpu,
            });
        }
    }
    vms
}

/// Every VM against every host, and the check that a VM at its pool's level may go to every
/// member.
fn migration_matrix(levelled: &Levelled, vms: &[Vm], run_checks: &mut Vec<RunCheck>) -> Vec<Cell> {
    let all_hosts: Vec<&Host> = levelled.pools.iter().flat_map(|p| &p.hosts).collect();
    let mut migration = Vec::new();
    for vm in vms {
        for host in &all_hosts {
            let pool = levelled
                .pool_of(&host.name)
                .map_or(String::new(), |p| p.name.clone());
            let c = check::check(&pool, &vm.report.name, &vm.cpu, host);
            migration.push(Cell {
                vm: vm.report.name.clone(),
                host: host.name.clone(),
                verdict: if c.vendor_mismatch.is_some() {
                    "vendor"
                } else if c.accepted {
                    "accepted"
                } else {
                    "refused"
                },
                missing: c.missing.iter().map(|m| m.feature.clone()).collect(),
                summary: c.summary(),
            });
        }
        if vm.report.booted {
            let everywhere = migration
                .iter()
                .filter(|c| c.vm == vm.report.name)
                .all(|c| {
                    c.verdict == "accepted"
                        || levelled.pool_of(&c.host).map(|p| p.name.as_str())
                            != Some(vm.report.pool.as_str())
                });
            run_checks.push(RunCheck {
                name: format!(
                    "run/{}/{}-may-go-anywhere-in-its-pool",
                    vm.report.pool, vm.report.name
                ),
                ok: everywhere,
                note: "a VM at the pool level is accepted by every member".into(),
            });
        }
    }
    migration
}

/// Per pool: what its levels become if its weakest host leaves.
fn what_if(levelled: &Levelled) -> Vec<WhatIf> {
    levelled
        .pools
        .iter()
        .filter_map(|pool| {
            let leaving = weakest(pool)?.name.clone();
            let change = pool.plan(&Change::Leave(leaving.clone())).ok()?;
            let lines = change
                .levels
                .iter()
                .map(|l| {
                    let before = l.before.as_ref().map_or(0, |f| f.names.len());
                    let after = l.after.as_ref().map_or(0, |f| f.names.len());
                    format!(
                        "{} level {before} -> {after} features{}",
                        l.guest.label(),
                        if l.gained.is_empty() {
                            String::new()
                        } else {
                            format!(" (gains {})", l.gained.join(","))
                        }
                    )
                })
                .collect();
            Some(WhatIf {
                pool: pool.name.clone(),
                leaves: leaving,
                lines,
                change,
            })
        })
        .collect()
}

/// The guests of one host's guest boots judged against its levels: their reports, and
/// whether dom0's and Xen's CPUID were the host's in every boot.
fn judge_guest_boots(
    spec: &HostSpec,
    rec: &HostRecording,
    host: &Host,
    pv_level: &Featureset,
    hvm_level: &Featureset,
    run_checks: &mut Vec<RunCheck>,
) -> (Vec<GuestReport>, bool) {
    let mut guests = Vec::new();
    let mut dom0_and_xen = true;
    for boot in &rec.guests {
        for what in [
            "at-level/dom0/native-cpuid",
            "at-level/xen/cpl0-cpuid-is-host",
        ] {
            dom0_and_xen &= boot.check(what).is_some_and(|c| c.ok);
        }
        match serial::guests(&boot.serial) {
            Ok(outputs) => {
                for g in &outputs {
                    let level = if g.kind == "hvm" { hvm_level } else { pv_level };
                    let (report, mut check) = judge(g, level);
                    check.name = format!("run/{}/{}", spec.name, check.name);
                    run_checks.push(check);
                    guests.push(report);
                }
            }
            Err(why) => run_checks.push(RunCheck {
                name: format!("run/{}/guest-lines", spec.name),
                ok: false,
                note: why,
            }),
        }
        if let Some(policies) = serial::hvm_host_policies(&boot.serial) {
            let ok = policies
                .as_ref()
                .is_ok_and(|(d, m)| *d == host.hvm.default && *m == host.hvm.max);
            run_checks.push(RunCheck {
                name: format!("run/{}/hvm-host-policies-are-the-agents", spec.name),
                ok,
                note: if ok {
                    "the HVM boot derived the HVM default and max the agent reported".into()
                } else {
                    format!("{policies:?}")
                },
            });
        }
    }
    (guests, dom0_and_xen)
}

/// One host's boots judged against its pool's levels (the kernel's check counts added to
/// `kernel`); `None` if its agent did not report.
fn judge_host(
    levelled: &Levelled,
    spec: &HostSpec,
    rec: &HostRecording,
    kernel: &mut [u32; 2],
    run_checks: &mut Vec<RunCheck>,
) -> Option<HostReport> {
    let mut boots = vec![boot_report(&rec.agent)];
    boots.extend(rec.guests.iter().map(boot_report));
    for b in &boots {
        kernel[0] += b.passed;
        kernel[1] += b.failed;
        run_checks.push(RunCheck {
            name: format!("run/{}/boot: {}", spec.name, b.what),
            ok: b.verdict == "pass",
            note: b.verdict.clone(),
        });
    }
    let (_, host, agent) = levelled
        .hosts
        .iter()
        .find(|(s, _, _)| s.name == spec.name)?;
    let pv_level = levelled.level(spec.name, GuestType::Pv);
    let hvm_level = levelled.level(spec.name, GuestType::Hvm);
    let expected_boots: Vec<String> = guest_boots(spec, &pv_level, &hvm_level)
        .iter()
        .map(BootSpec::cmdline)
        .collect();
    let recorded: Vec<String> = rec.guests.iter().map(|g| g.cmdline.clone()).collect();
    run_checks.push(RunCheck {
        name: format!("run/{}/guests-booted-at-the-pool-level", spec.name),
        ok: expected_boots == recorded,
        note: if expected_boots == recorded {
            format!("{} boots with the levels levelctl computed", recorded.len())
        } else {
            format!("expected boots {expected_boots:?}, recorded {recorded:?}")
        },
    });
    let (guests, mut dom0_and_xen) =
        judge_guest_boots(spec, rec, host, &pv_level, &hvm_level, run_checks);
    dom0_and_xen &= rec
        .agent
        .check("agent/dom0/native-cpuid-is-host")
        .is_some_and(|c| c.ok);
    let expected_guests = ["domU1", "domU2", "hvm"];
    let present = expected_guests
        .iter()
        .all(|n| guests.iter().any(|g| g.name == *n));
    run_checks.push(RunCheck {
        name: format!("run/{}/every-guest-reported", spec.name),
        ok: present,
        note: format!(
            "guests: {}",
            guests
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    run_checks.push(RunCheck {
        name: format!("run/{}/dom0-and-xen-see-the-host", spec.name),
        ok: dom0_and_xen,
        note: "dom0's native CPUID and Xen's own were the CPU's in every boot".into(),
    });
    let hardware = host.hardware.unwrap_or_default();
    Some(HostReport {
        name: spec.name.to_string(),
        pool: spec.pool.to_string(),
        qemu_model: spec.model.to_string(),
        modelled_as: spec.modelled_as(),
        dump: spec.dump.map(str::to_string),
        vendor: host.vendor.to_string(),
        signature: host.signature.map(|s| s.to_string()).unwrap_or_default(),
        brand: host.brand.clone().unwrap_or_default(),
        mechanism: agent.mechanism.clone(),
        levelling_caps: agent.caps,
        xen_caps: None,
        features: FeatureCounts {
            hardware: names(&hardware).len(),
            pv_default: names(&host.pv.default).len(),
            hvm_default: names(&host.hvm.default).len(),
            pv_max: names(&host.pv.max).len(),
            hvm_max: names(&host.hvm.max).len(),
        },
        pv_hidden: names(&(host.pv.default - pv_level - not_levelled())),
        hvm_hidden: names(&(host.hvm.default - hvm_level - not_levelled())),
        guests,
        dom0_and_xen_see_host: dom0_and_xen,
        boots,
    })
}

/// The host × feature matrix: for each levellable feature any host has, where each host
/// stands (in its pool's level, hidden by it, only Xen's, absent).
fn feature_matrix(levelled: &Levelled, hosts: &[HostReport]) -> Vec<FeatureRow> {
    let ordered: Vec<&Host> = hosts
        .iter()
        .filter_map(|h| levelled.hosts.iter().find(|(s, _, _)| s.name == h.name))
        .map(|(_, host, _)| host)
        .collect();
    // Bits that follow live state, topology or the host's FPU are not levelled: left out.
    let union = ordered.iter().fold(Featureset::EMPTY, |acc, h| {
        acc | h.hardware.unwrap_or_default() | h.hvm.default | h.pv.default
    }) - not_levelled();
    union
        .iter()
        .filter(|f| names(&Featureset::of(&[*f])).len() == 1)
        .map(|f| FeatureRow {
            feature: f.to_string(),
            word: f.word(),
            cells: ordered
                .iter()
                .map(|h| {
                    let level = levelled.level(&h.name, GuestType::Hvm);
                    if level.contains(f) {
                        "level"
                    } else if h.hvm.default.contains(f) || h.pv.default.contains(f) {
                        "hidden"
                    } else if h.hardware.unwrap_or_default().contains(f) {
                        "xen"
                    } else {
                        "absent"
                    }
                })
                .collect(),
        })
        .collect()
}

/// Each pool with its levels.
fn pool_reports(levelled: &Levelled) -> Vec<PoolReport> {
    levelled
        .pools
        .iter()
        .map(|p| {
            let pv = p.level(GuestType::Pv).unwrap_or_default();
            let hvm = p.level(GuestType::Hvm).unwrap_or_default();
            PoolReport {
                name: p.name.clone(),
                vendor: p.vendor().unwrap_or(Vendor::Unknown).to_string(),
                hosts: p.hosts.iter().map(|h| h.name.clone()).collect(),
                pv_level: pv.xapi().to_string(),
                hvm_level: hvm.xapi().to_string(),
                pv: Names::from(&pv),
                hvm: Names::from(&hvm),
                members: p.level_report(),
            }
        })
        .collect()
}

/// The agents' boots in [`HOSTS`] order, for the first phase.
pub fn agent_boots() -> Vec<BootSpec> {
    HOSTS.iter().map(agent_boot).collect()
}
