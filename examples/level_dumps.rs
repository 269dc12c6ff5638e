//! Level the real processors in `data/cpuid-dumps/` into one pool per vendor.
//!
//! For each dump: the CPU, whether it enumerates CPUID faulting, and the sizes of the host, PV
//! and HVM default featuresets Xen would derive. For each vendor's pool: the PV and HVM pool
//! levels, and for each member what it has above the level (what the pool costs it), so an
//! operator sees which host holds the pool back. `cargo xtask run` runs this.
//!
//! Usage: `level_dumps [DIR]` (default: the shared dump folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::system::{DomainKind, HostOptions, SystemPolicies};
use xen_levelling::{CpuPolicy, Feature, Featureset};

struct Host {
    name: String,
    policies: SystemPolicies,
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cpuid-dumps"));
    let hosts = match load_hosts(&dir) {
        Ok(hosts) => hosts,
        Err(e) => {
            eprintln!("level_dumps: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{:<44} {:<13} {:>22}  faulting  host  pv  hvm",
        "dump", "vendor", "family/model/stepping"
    );
    for h in &hosts {
        let p = &h.policies;
        let sig = p.host.signature();
        println!(
            "{:<44} {:<13} {:>22}  {:<8}  {:>4}  {:>2}  {:>3}",
            h.name,
            p.host.vendor().to_string(),
            format!("{:#x}/{:#x}/{:#x}", sig.family, sig.model, sig.stepping),
            if p.options.cpuid_faulting {
                "yes"
            } else {
                "no"
            },
            p.host.featureset().len(),
            p.pv_default.featureset().len(),
            p.hvm_default.featureset().len(),
        );
    }
    let mut pools: BTreeMap<String, Vec<&Host>> = BTreeMap::new();
    for h in &hosts {
        pools
            .entry(h.policies.host.vendor().to_string())
            .or_default()
            .push(h);
    }
    for (vendor, members) in &pools {
        for (kind, label) in [(DomainKind::Pv, "PV"), (DomainKind::HvmHap, "HVM")] {
            let level = members
                .iter()
                .map(|h| h.policies.default_for(kind).featureset())
                .fold(Featureset::FULL, |acc, fs| acc & fs)
                .closed();
            println!(
                "\n{vendor} pool of {}, {label} level ({} features):",
                members.len(),
                level.len()
            );
            println!("  {}", level.xapi());
            for h in members {
                let above = h.policies.default_for(kind).featureset() - level;
                println!(
                    "  {:<44} gives up {:>3}: {}",
                    h.name,
                    above.len(),
                    shorten(&above)
                );
            }
        }
    }
}

/// The first few feature names of a set, and how many more.
fn shorten(fs: &Featureset) -> String {
    let names: Vec<Feature> = fs.iter().collect();
    let shown: Vec<String> = names.iter().take(8).map(|f| f.to_string()).collect();
    match names.len() {
        n if n > 8 => format!("{} … (+{})", shown.join(","), n - 8),
        _ => shown.join(","),
    }
}

fn load_hosts(dir: &Path) -> Result<Vec<Host>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "txt") && p.to_string_lossy().contains("_CPUID")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *_CPUID*.txt dumps", dir.display()));
    }
    files.iter().map(|path| load_host(path)).collect()
}

fn load_host(path: &Path) -> Result<Host, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dump = Aida64Dump::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
    // What the mechanism would find: MSR 0xCE[31] (Intel) or CPUID.80000021H:EAX[17] (AMD).
    let cpuid_faulting = raw.cpuid_faulting() || raw.featureset().contains(Feature::CPUID_USER_DIS);
    let options = HostOptions {
        cpuid_faulting,
        ..HostOptions::default()
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name.split("_CPUID").next().unwrap_or(&name).to_string();
    Ok(Host {
        name,
        policies: SystemPolicies::derive(&raw, options),
    })
}
