//! Instructions of one `LevellingState::switch_to` that changes nothing, on the silicon model
//! of a masking CPU (Sandy Bridge-E) and a faulting one (Skylake-SP). Run under
//! `valgrind --tool=callgrind` to count them; prints the calls it made.

use std::hint::black_box;

use xen_levelling::dump::Aida64Dump;
use xen_levelling::host::{Host, HostConfig};
use xen_levelling::levelling::{DomainRole, LevellingState, SwitchTo};
use xen_levelling::policy::system::DomainKind;
use xen_levelling::silicon::SiliconModel;

const CALLS: u32 = 100_000;

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let files = if files.is_empty() {
        vec![
            "GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt".into(),
            "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt".into(),
        ]
    } else {
        files
    };
    for file in &files {
        let path = format!("{}/data/cpuid-dumps/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let dump = Aida64Dump::parse(&text).unwrap();
        let mut hw = SiliconModel::new(&dump, dump.raw_msrs());
        let host = Host::boot(&mut hw, HostConfig::default());
        let guest =
            host.levelling()
                .assess(DomainKind::Pv, DomainRole::Guest, &host.system().pv_default);
        let mut cpu = LevellingState::init(host.levelling(), &mut hw).unwrap();
        let next = SwitchTo::Vcpu {
            domain: &guest,
            cr4_osxsave: true,
            virtual_faulting: false,
        };
        cpu.switch_to(host.levelling(), &mut hw, next).unwrap();
        for _ in 0..CALLS {
            black_box(
                cpu.switch_to(host.levelling(), &mut hw, black_box(next))
                    .unwrap(),
            );
        }
        println!("{file}: {CALLS} no-change switches");
    }
}
