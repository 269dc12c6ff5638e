//! Per-domain memory: the bytes a domain's policy and levelling state take, and the per-CPU
//! and per-host state. Printed as `name bytes` lines for `cargo xtask bench`.

use std::mem::size_of;

use xen_levelling::CpuPolicy;
use xen_levelling::abi::domain::Domain;
use xen_levelling::levelling::{DomainLevelling, Levelling, LevellingState};
use xen_levelling::policy::guest::{CpuidOverlay, CpuidTable};

fn main() {
    for (name, bytes) in [
        ("CpuPolicy (per domain)", size_of::<CpuPolicy>()),
        (
            "CpuidTable (per domain: its CPUID answers, for the trap handlers)",
            size_of::<CpuidTable>(),
        ),
        (
            "CpuidOverlay (per vCPU: its answers to the rows that follow its state)",
            size_of::<CpuidOverlay>(),
        ),
        ("DomainLevelling (per domain)", size_of::<DomainLevelling>()),
        ("Domain (policy + levelling + flags)", size_of::<Domain>()),
        ("LevellingState (per CPU)", size_of::<LevellingState>()),
        ("Levelling (per host)", size_of::<Levelling>()),
    ] {
        println!("{name}\t{bytes}");
    }
}
