//! `cargo xtask run`: the main job. A heterogeneous pool of QEMU hosts levelled end to end.
//!
//! 1. **Agents.** Every host of [`hosts::HOSTS`] (an Intel pool: Nehalem, SandyBridge,
//!    Haswell, Skylake-Server, Icelake-Server; an AMD pool: Opteron_G3, EPYC, EPYC-Rome,
//!    EPYC-Milan) boots the test hypervisor with the `agent` scenario: dom0's ring-3 agent
//!    reads the host's featuresets and levelling caps through the hypercall ABI (sysctls 26
//!    and 25) and the kernel prints its host report (levelctl's JSON schema v1). Where a real
//!    CPU of the model's generation is among the dumps, the host runs above the silicon shim
//!    with it, so that its levelling mechanism (masks or faulting) is the real one; see
//!    [`hosts`] for each choice.
//! 2. **Levels.** levelctl's library reads the reports, joins the hosts into their pools and
//!    computes each pool's PV and HVM level ([`analysis::level`]).
//! 3. **Guests.** Every host boots again with the `at-level` scenario: a PV guest running
//!    native CPUID (levelled by the host's mechanism, held to the fail-closed rule), a PV guest
//!    using the forced-emulation prefix, and an HVM guest, all started at the pool level
//!    passed on the command line; each reports what its CPUIDs showed, which the kernel checks
//!    against its policy and the run checks against the level ([`analysis::build`]).
//! 4. **Report.** Per host its features and what guests do not see, every guest's view, the
//!    migration matrix (VM × host, by levelctl) and a what-if (the weakest host of each pool
//!    leaving), printed ([`text`]) and written to `target/levelling-report.html` ([`html`])
//!    and `target/levelling-report.json`; the recorded boots go to
//!    `target/levelling-run.json` (what the tests replay).
//!
//! Any failed boot, kernel check or run check makes the command fail.

pub mod analysis;
pub mod hosts;
pub mod html;
pub mod serial;
pub mod text;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::thread;
use std::time::Instant;

use levelctl::GuestType;
use levelctl::report::names;

use self::analysis::{HostRecording, Recording};
use self::hosts::HOSTS;
use self::serial::BootRecord;
use crate::process::Workspace;
use crate::provision;
use crate::qemu;

/// Where the report goes, relative to the workspace root.
pub const HTML_PATH: &str = "target/levelling-report.html";
/// The report as data.
pub const JSON_PATH: &str = "target/levelling-report.json";
/// The recorded boots.
pub const RECORDING_PATH: &str = "target/levelling-run.json";

/// `cargo xtask run`.
pub fn run(workspace: &Workspace, args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!(
            "`run` takes no arguments (got `{arg}`); it boots its embedded pools"
        ));
    }
    let started = Instant::now();
    provision::run(workspace)?;
    let kernel = qemu::build_kernel(workspace)?;
    let qemu_version = provision::qemu_version().unwrap_or_default();
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let mut pools: Vec<&str> = HOSTS.iter().map(|h| h.pool).collect();
    pools.sort_unstable();
    pools.dedup();
    println!(
        "run: {} hosts in {} pools; agents first, then the guests at each pool's level \
         ({workers} boots at a time, {qemu_version})",
        HOSTS.len(),
        pools.len()
    );

    // 1. The agents.
    let phase = Instant::now();
    let agents = qemu::boot_all(&kernel, &analysis::agent_boots(), workers, BootRecord::of);
    let agent_seconds = phase.elapsed().as_secs_f64();

    // 2. The levels.
    let mut checks = Vec::new();
    let pairs: Vec<_> = HOSTS.iter().copied().zip(agents.iter()).collect();
    let levelled = analysis::level(&pairs, &mut checks)?;
    for pool in &levelled.pools {
        println!(
            "run: pool {}: PV level {} features, HVM level {} (levelctl, from {} host reports)",
            pool.name,
            names(&pool.level(GuestType::Pv).unwrap_or_default()).len(),
            names(&pool.level(GuestType::Hvm).unwrap_or_default()).len(),
            pool.hosts.len()
        );
    }

    // 3. The guests at the level.
    let phase = Instant::now();
    let mut owners = Vec::new();
    let mut specs = Vec::new();
    for (i, host) in HOSTS.iter().enumerate() {
        if levelled.pool_of(host.name).is_none() {
            continue;
        }
        let pv = levelled.level(host.name, GuestType::Pv);
        let hvm = levelled.level(host.name, GuestType::Hvm);
        for spec in analysis::guest_boots(host, &pv, &hvm) {
            owners.push(i);
            specs.push(spec);
        }
    }
    let guests = qemu::boot_all(&kernel, &specs, workers, BootRecord::of);
    let guest_seconds = phase.elapsed().as_secs_f64();
    let mut recording = Recording {
        qemu: qemu_version,
        phase_seconds: [agent_seconds, guest_seconds],
        hosts: HOSTS
            .iter()
            .zip(agents)
            .map(|(h, agent)| HostRecording {
                name: h.name.to_string(),
                agent,
                guests: Vec::new(),
            })
            .collect(),
    };
    for (owner, boot) in owners.into_iter().zip(guests) {
        recording.hosts[owner].guests.push(boot);
    }

    // 4. The report.
    let root = workspace.root();
    write(
        root,
        RECORDING_PATH,
        &serde_json::to_string_pretty(&recording).map_err(|e| e.to_string())?,
    )?;
    let mut report = analysis::build(&recording)?;
    for host in &mut report.hosts {
        host.xen_caps = crate::xen::cached_caps(workspace, &host.qemu_model);
    }
    print!("{}", text::render(&report));
    write(
        root,
        JSON_PATH,
        &serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )?;
    write(root, HTML_PATH, &html::render(&report))?;
    println!(
        "run: {} boots in {:.1}s (agents {:.1}s, guests {:.1}s); {} in {:.1}s; wrote {HTML_PATH}, \
         {JSON_PATH}, {RECORDING_PATH}",
        report.boots,
        agent_seconds + guest_seconds,
        agent_seconds,
        guest_seconds,
        if report.ok {
            "every check passed"
        } else {
            "SOME CHECKS FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    if report.ok {
        Ok(())
    } else {
        Err("the levelling run failed (see the checks above)".into())
    }
}

fn write(root: &Path, path: &str, text: &str) -> Result<(), String> {
    let full = root.join(path);
    std::fs::write(&full, text).map_err(|e| format!("writing {}: {e}", full.display()))
}
