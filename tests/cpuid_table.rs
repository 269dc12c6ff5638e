//! The per-domain CPUID table answers exactly what `guest_cpuid` does: for every leaf and
//! subleaf (and past every range), every dump's PV and HVM default and max policies (and
//! variants with lowered maxima and Xen leaf limits), PV guests, the PV hardware domain and
//! HVM guests, a set of vCPU states (not running included) and every entry path. Each state's
//! answers come from a vCPU overlay refreshed from the state before it, as an embedder
//! refreshes a running vCPU's, so a refresh that left anything of the old state would show.

mod common;

use common::dumps;
use proptest::prelude::*;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::guest::{
    CpuidEntry, CpuidTable, GuestContext, GuestDomain, VcpuState, guest_cpuid_entered,
};
use xen_levelling::policy::system::{DomainKind, HostOptions, SystemPolicies};
use xen_levelling::policy::{CpuPolicy, RawMsrs};
use xen_levelling::{CpuidRegs, Featureset};

/// Every query worth asking: each leaf of every range and the leaves around them, with every
/// subleaf a leaf's arrays hold and some past them.
fn queries() -> Vec<(u32, u32)> {
    let mut leaves: Vec<u32> = (0..=0x12).collect();
    for base in [0x4000_0000u32, 0x4000_0100, 0x4000_0200] {
        leaves.extend(base..=base + 8);
        leaves.extend([base + 0xff, base.wrapping_sub(1)]);
    }
    leaves.extend(0x8000_0000..=0x8000_0024);
    leaves.extend([
        0x3fff_ffff,
        0x7fff_ffff,
        0x8000_ffff,
        0x8001_0000,
        0xffff_ffff,
    ]);
    let mut out = Vec::new();
    for leaf in leaves {
        let subleaves: Vec<u32> = if matches!(leaf, 0x4 | 0x7 | 0xb | 0xd) {
            (0..=65).chain([0x100, 0x8000_0000, 0xffff_ffff]).collect()
        } else {
            vec![0, 1, 2, 0xffff_ffff]
        };
        out.extend(subleaves.into_iter().map(|s| (leaf, s)));
    }
    out
}

fn states() -> Vec<Option<VcpuState>> {
    let base = VcpuState {
        entry: CpuidEntry::VmExit,
        cr4_osxsave: false,
        cr4_pke: false,
        kernel_mode: true,
        host_cr4_osxsave: true,
        xcr0: 0x3,
        xss: 0,
        apic_enabled: true,
        long_mode: true,
    };
    vec![
        None,
        Some(base),
        Some(VcpuState {
            cr4_osxsave: true,
            cr4_pke: true,
            xcr0: 0x7,
            ..base
        }),
        Some(VcpuState {
            kernel_mode: false,
            apic_enabled: false,
            long_mode: false,
            host_cr4_osxsave: false,
            xcr0: 0x2e7,
            xss: 0x1900,
            ..base
        }),
        Some(VcpuState {
            xcr0: !0,
            xss: !0,
            ..base
        }),
    ]
}

fn domains(host: &CpuPolicy) -> Vec<GuestDomain> {
    let domain = |kind, domid, hardware_domain| GuestDomain {
        kind,
        domid,
        hardware_domain,
        host_features: host.featureset(),
        host_paddr_bits: 46,
        xen_version: (4, 17),
    };
    vec![
        domain(DomainKind::Pv, 1, false),
        domain(DomainKind::Pv, 0, true),
        domain(DomainKind::HvmHap, 7, false),
        domain(DomainKind::HvmShadow, 8, false),
        GuestDomain {
            host_features: Featureset::EMPTY,
            ..domain(DomainKind::Pv, 0, true)
        },
    ]
}

/// Policies with lowered (and raised) maxima and Xen leaf limits, besides `p` itself.
fn variants(p: &CpuPolicy) -> Vec<CpuPolicy> {
    let mut out = vec![*p];
    for (basic, feat, extd, hv) in [
        (0, 0, 0x8000_0000, (0, 0)),
        (1, 0, 0x8000_0001, (1, 3)),
        (6, 0, 0x8000_0008, (2, 0x105)),
        (7, 5, 0x8001_0021, (4, 7)),
        (0xa, 1, 0x8000_00ff, (3, 0)),
        (0xb, 2, 0x7fff_ffff, (5, 0)),
        (0x20, 0xffff_ffff, 0xffff_ffff, (0xff, 0xff)),
    ] {
        let mut v = *p;
        v.set_max_basic_leaf(basic);
        v.set_max_feat_subleaf(feat);
        v.set_max_extd_leaf(extd);
        v.set_hypervisor_limits(hv.0, hv.1);
        out.push(v);
    }
    out
}

fn check(policy: &CpuPolicy, domain: &GuestDomain, queries: &[(u32, u32)], what: &str) {
    let table = CpuidTable::new(policy, domain);
    for vcpu_id in [0, 3, 0x80] {
        let mut overlay = None;
        // Every state after every other one, and back.
        let states = states();
        for state in states.iter().chain(states.iter().rev()).copied() {
            let ctx = GuestContext {
                domain: *domain,
                vcpu_id,
                state,
            };
            let overlay = overlay.get_or_insert_with(|| table.overlay(&ctx));
            table.refresh(overlay, &ctx);
            for entry in [
                CpuidEntry::VmExit,
                CpuidEntry::Fault,
                CpuidEntry::ForcedEmulation,
            ] {
                for &(leaf, subleaf) in queries {
                    let expected = guest_cpuid_entered(policy, leaf, subleaf, &ctx, entry);
                    let got = table.cpuid(overlay, leaf, subleaf, entry);
                    assert_eq!(
                        got, expected,
                        "{what}: leaf {leaf:#x} subleaf {subleaf:#x}, {domain:?}, vCPU {vcpu_id} \
                         {state:?}, {entry:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_table_answers_what_guest_cpuid_does_on_every_dump() {
    let queries = queries();
    let files = dumps::all();
    assert!(files.len() >= 22, "{} dumps", files.len());
    for file in files {
        let text = file.text();
        let dump = Aida64Dump::parse(&text).unwrap();
        let msrs = RawMsrs {
            platform_info: dump.msr(0xce).value(),
            arch_caps: dump.msr(0x10a).value(),
        };
        let raw = CpuPolicy::from_source(&dump, msrs);
        let s = SystemPolicies::derive(&raw, HostOptions::default());
        for (name, policy) in [
            ("pv_default", &s.pv_default),
            ("pv_max", &s.pv_max),
            ("hvm_default", &s.hvm_default),
            ("hvm_max", &s.hvm_max),
        ] {
            for domain in domains(&s.host) {
                check(policy, &domain, &queries, &format!("{} {name}", file.name));
            }
        }
        // Lowered maxima and Xen leaf limits, on one policy per dump.
        for (i, v) in variants(&s.hvm_max).iter().enumerate() {
            for domain in domains(&s.host) {
                check(v, &domain, &queries, &format!("{} variant {i}", file.name));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary leaf contents (every register of every slot), arbitrary queries.
    #[test]
    fn the_table_answers_what_guest_cpuid_does_on_arbitrary_policies(
        words in proptest::collection::vec(any::<u32>(), 136 * 4),
        max in (0u32..0x20, 0u32..4, 0x7fff_fff0u32..0x8000_0030, any::<u8>(), any::<u8>()),
        pv in any::<bool>(),
        extra in proptest::collection::vec((any::<u32>(), any::<u32>()), 64),
        state in (any::<[bool; 6]>(), any::<u64>(), any::<u64>()),
    ) {
        let mut p = CpuPolicy::EMPTY;
        let mut w = words.iter().copied();
        let mut next = || w.next().unwrap_or(0);
        for &(leaf, subleaf) in &queries() {
            if let Some(mut r) = p.leaf_mut(leaf, subleaf) {
                *r = CpuidRegs::new(next(), next(), next(), next());
            }
        }
        p.set_max_basic_leaf(max.0);
        p.set_max_feat_subleaf(max.1);
        p.set_max_extd_leaf(max.2);
        p.set_hypervisor_limits(max.3.into(), max.4.into());
        let kind = if pv { DomainKind::Pv } else { DomainKind::HvmHap };
        let domain = GuestDomain {
            kind,
            domid: 5,
            hardware_domain: pv,
            host_features: Featureset::FULL,
            host_paddr_bits: 40,
            xen_version: (4, 17),
        };
        let (b, xcr0, xss) = state;
        let ctx = GuestContext {
            domain,
            vcpu_id: xcr0 as u32,
            state: Some(VcpuState {
                entry: CpuidEntry::VmExit,
                cr4_osxsave: b[0],
                cr4_pke: b[1],
                kernel_mode: b[2],
                host_cr4_osxsave: b[3],
                xcr0,
                xss,
                apic_enabled: b[4],
                long_mode: b[5],
            }),
        };
        let table = CpuidTable::new(&p, &domain);
        // Refreshed from a vCPU that is not running, then from the state itself.
        let mut overlay = table.overlay(&GuestContext { state: None, vcpu_id: 1, ..ctx });
        table.refresh(&mut overlay, &ctx);
        let mut all = queries();
        all.extend(extra);
        for (leaf, subleaf) in all {
            for entry in [CpuidEntry::VmExit, CpuidEntry::Fault, CpuidEntry::ForcedEmulation] {
                prop_assert_eq!(
                    table.cpuid(&overlay, leaf, subleaf, entry),
                    guest_cpuid_entered(&p, leaf, subleaf, &ctx, entry),
                    "leaf {:#x} subleaf {:#x} {:?}", leaf, subleaf, entry
                );
            }
        }
    }
}
