//! Host-side costs of the core (criterion): `guest_cpuid`, policy (de)serialisation, the
//! per-CPU context switch against the silicon model, and featureset algebra at pool scale.
//! `cargo xtask bench` runs this and records the results in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::dump::Aida64Dump;
use xen_levelling::host::{Host, HostConfig};
use xen_levelling::levelling::{DomainRole, Levelling, LevellingState, SwitchTo};
use xen_levelling::policy::CpuPolicy;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::guest::{
    CpuidEntry, CpuidTable, GuestContext, GuestDomain, VcpuState, guest_cpuid,
};
use xen_levelling::policy::serialise::MAX_SERIALISED_LEAVES;
use xen_levelling::policy::system::{DomainKind, SystemPolicies};
use xen_levelling::silicon::SiliconModel;
use xen_levelling::{Feature, Featureset};

const DUMPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cpuid-dumps/");

fn model(file: &str) -> (SiliconModel, SystemPolicies, Levelling) {
    let text = std::fs::read_to_string(format!("{DUMPS}{file}")).unwrap();
    let dump = Aida64Dump::parse(&text).unwrap();
    let mut model = SiliconModel::new(&dump, dump.raw_msrs());
    let host = Host::boot(&mut model, HostConfig::default());
    (model, *host.system(), *host.levelling())
}

fn context() -> GuestContext {
    GuestContext {
        domain: GuestDomain {
            kind: DomainKind::Pv,
            domid: 1,
            hardware_domain: false,
            host_features: Featureset::EMPTY,
            host_paddr_bits: 46,
            xen_version: (4, 23),
        },
        vcpu_id: 0,
        state: Some(VcpuState {
            entry: CpuidEntry::Fault,
            cr4_osxsave: true,
            cr4_pke: false,
            kernel_mode: true,
            host_cr4_osxsave: true,
            xcr0: 0b111,
            xss: 0,
            apic_enabled: true,
            long_mode: true,
        }),
    }
}

fn bench_guest_cpuid(c: &mut Criterion) {
    let (_, system, _) = model("GenuineIntel00806F8_SapphireRapids_05_CPUID.txt");
    let ctx = context();
    let p = system.pv_default;
    // Baseline: the bare table read guest_cpuid starts from.
    c.bench_function("guest_cpuid/baseline_table_read", |b| {
        b.iter(|| black_box(&p).leaf(black_box(1), 0))
    });
    c.bench_function("guest_cpuid/leaf1", |b| {
        b.iter(|| guest_cpuid(black_box(&p), black_box(1), 0, &ctx))
    });
    c.bench_function("guest_cpuid/leaf7.0", |b| {
        b.iter(|| guest_cpuid(black_box(&p), black_box(7), 0, &ctx))
    });
    c.bench_function("guest_cpuid/leafD.0_dynamic", |b| {
        b.iter(|| guest_cpuid(black_box(&p), black_box(0xd), 0, &ctx))
    });
    // The domain's table, as the trap handlers answer (built once, when the policy is set).
    let table = CpuidTable::new(&p, &ctx.domain);
    let overlay = table.overlay(&ctx);
    for (name, leaf) in [
        ("leaf0", 0),
        ("leaf1", 1),
        ("leaf7.0", 7),
        ("leafD.0_dynamic", 0xd),
        ("out_of_range", 0x3fff_ffff),
    ] {
        c.bench_function(&format!("cpuid_table/{name}"), |b| {
            b.iter(|| {
                black_box(&table).cpuid(&overlay, black_box(leaf), 0, CpuidEntry::ForcedEmulation)
            })
        });
    }
}

fn bench_serialisation(c: &mut Criterion) {
    let (_, system, _) = model("GenuineIntel00806F8_SapphireRapids_05_CPUID.txt");
    let p = system.hvm_max;
    let mut leaves = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let mut msrs = [XenMsrEntry::default(); 2];
    let n = p.write_leaves(&mut leaves).unwrap();
    p.write_msrs(&mut msrs).unwrap();
    c.bench_function("policy/serialise", |b| {
        b.iter(|| black_box(&p).write_leaves(black_box(&mut leaves)).unwrap())
    });
    c.bench_function("policy/deserialise", |b| {
        b.iter(|| CpuPolicy::from_arrays(black_box(&leaves[..n]), black_box(&msrs)).unwrap())
    });
    let guest = system.hvm_default;
    c.bench_function("policy/compatible", |b| {
        b.iter(|| check_compatible(black_box(&p), black_box(&guest)).is_ok())
    });
}

fn bench_switch(c: &mut Criterion) {
    for (label, file) in [
        (
            "switch/masking_sandybridge",
            "GenuineIntel00206D7_SandyBridgeE_00_CPUID.txt",
        ),
        (
            "switch/faulting_skylake",
            "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt",
        ),
    ] {
        let (mut hw, system, levelling) = model(file);
        let a = levelling.assess(DomainKind::Pv, DomainRole::Guest, &system.pv_default);
        let mut cpu = LevellingState::init(&levelling, &mut hw).unwrap();
        let next = SwitchTo::Vcpu {
            domain: &a,
            cr4_osxsave: true,
            virtual_faulting: false,
        };
        cpu.switch_to(&levelling, &mut hw, next).unwrap();
        c.bench_function(&format!("{label}/same_policy"), |b| {
            b.iter(|| cpu.switch_to(&levelling, &mut hw, black_box(next)).unwrap())
        });
    }
}

fn bench_featuresets(c: &mut Criterion) {
    // 10,000 hosts with varied featuresets: the pool level is their closed intersection.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let hosts: Vec<Featureset> = (0..10_000)
        .map(|_| {
            let mut fs = Featureset::FULL;
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if let Some(f) = Feature::from_index((seed % 19) as usize, (seed >> 8) as u32 % 32)
                {
                    fs.remove(f);
                }
            }
            fs
        })
        .collect();
    c.bench_function("featureset/pool_level_10000_hosts", |b| {
        b.iter(|| {
            black_box(&hosts)
                .iter()
                .fold(Featureset::FULL, |acc, fs| acc & *fs)
                .closed()
        })
    });
    let vms = &hosts[..1000];
    let dests = &hosts[1000..2000];
    c.bench_function("featureset/subset_1000_vms_x_1000_hosts", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for vm in black_box(vms) {
                for host in black_box(dests) {
                    ok += vm.is_subset(host) as u32;
                }
            }
            ok
        })
    });
}

criterion_group!(
    benches,
    bench_guest_cpuid,
    bench_serialisation,
    bench_switch,
    bench_featuresets
);
criterion_main!(benches);
