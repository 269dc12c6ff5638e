//! Every real processor in `data/cpuid-dumps/`: parse it, derive Xen's system policies,
//! and check facts from the vendors' public specifications (not from the code under test).
//! Then level each vendor's dumps into one pool and check the pool level.

use std::collections::BTreeMap;

use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature;
use xen_levelling::levelling::Mechanism;
use xen_levelling::levelling::generation::expected_mechanism;
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::system::{DomainKind, HostOptions, SystemPolicies};
use xen_levelling::{CpuPolicy, Feature, Featureset, Vendor};

mod common;

use common::dumps::{self, DumpFile};

struct Cpu {
    file: String,
    /// One of the repository's own dumps, which the public-spec facts below describe.
    bundled: bool,
    /// Its CPUID and recorded MSRs.
    raw: CpuPolicy,
    recorded: RawMsrs,
    policies: SystemPolicies,
}

fn load(file: &str) -> Cpu {
    load_file(&dumps::bundled_file(file))
}

fn load_file(dump_file: &DumpFile) -> Cpu {
    let file = &dump_file.name;
    let text = dump_file.text();
    let dump = Aida64Dump::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let raw = CpuPolicy::from_source(&dump, dump.raw_msrs());
    // Faulting as the hardware enumerates it: MSR 0xCE[31] (Intel) or CPUID.80000021H:EAX[17] (AMD).
    let cpuid_faulting = raw.cpuid_faulting() || raw.featureset().contains(Feature::CPUID_USER_DIS);
    let options = HostOptions {
        cpuid_faulting,
        ..HostOptions::default()
    };
    Cpu {
        file: file.to_string(),
        bundled: dump_file.bundled,
        raw,
        recorded: dump.raw_msrs(),
        policies: SystemPolicies::derive(&raw, options),
    }
}

/// The repository's CPUs and any extra ones (`XEN_LEVELLING_EXTRA_DUMPS`).
fn all_cpus() -> Vec<Cpu> {
    dumps::all().iter().map(load_file).collect()
}

fn feature(name: &str) -> Feature {
    Feature::from_name(name).unwrap_or_else(|| panic!("no feature {name}"))
}

/// The file name without `_CPUID…txt`: the key of [`FACTS`].
fn stem(file: &str) -> &str {
    &file[..file.find("_CPUID").unwrap()]
}

/// Public facts per processor: (file stem, features it has, features it lacks).
/// Sources: Intel's and AMD's product and ISA documentation for each microarchitecture.
const FACTS: &[(&str, &str, &str)] = &[
    // Core 2 (Penryn): SSE4.1 is new; SSE4.2/POPCNT came with Nehalem; no leaf 7 at all.
    (
        "GenuineIntel0010676_Penryn",
        "sse4-1 ssse3 lm nx cx16",
        "sse4-2 popcnt avx aesni rdtscp",
    ),
    // Nehalem: SSE4.2, POPCNT, RDTSCP; AES-NI came with Westmere, AVX with Sandy Bridge.
    (
        "GenuineIntel00106A2_Nehalem-EP",
        "sse4-2 popcnt rdtscp ssse3 lm",
        "aesni pclmulqdq avx xsave f16c",
    ),
    // Sandy Bridge: AVX, XSAVE, AES-NI; F16C/RDRAND with Ivy Bridge, AVX2 with Haswell.
    (
        "GenuineIntel00206A7_SandyBridge2",
        "avx xsave aesni pclmulqdq popcnt",
        "avx2 f16c rdrand fsgsbase bmi1",
    ),
    (
        "GenuineIntel00206D7_SandyBridgeE_00",
        "avx xsave aesni pclmulqdq pcid",
        "avx2 f16c rdrand fsgsbase fma",
    ),
    // Ivy Bridge: F16C, RDRAND, FSGSBASE, SMEP, ERMS; still no AVX2.
    (
        "GenuineIntel00306A9_IvyBridge",
        "f16c rdrand fsgsbase smep erms",
        "avx2 bmi1 bmi2 fma adx",
    ),
    // Haswell: AVX2, BMI1/2, FMA, MOVBE, INVPCID; ADX/RDSEED came with Broadwell.
    (
        "GenuineIntel00306C3_HaswellXeon",
        "avx2 bmi1 bmi2 fma movbe invpcid",
        "adx rdseed avx512f smap",
    ),
    (
        "GenuineIntel00306C3_Haswell",
        "avx2 bmi1 bmi2 fma movbe invpcid",
        "adx rdseed avx512f smap",
    ),
    (
        "GenuineIntel00306F2_HaswellEP_01",
        "avx2 bmi1 bmi2 fma movbe",
        "adx rdseed avx512f clflushopt",
    ),
    // Broadwell: ADX, RDSEED, SMAP; CLFLUSHOPT and AVX-512 came with Skylake(-SP).
    (
        "GenuineIntel00306D4_Broadwell2",
        "adx rdseed smap avx2 fma",
        "clflushopt avx512f sha xsavec",
    ),
    (
        "GenuineIntel0040671_BroadwellH",
        "adx rdseed smap avx2 fma",
        "clflushopt avx512f sha xsavec",
    ),
    // Skylake-SP: AVX-512 F/CD/BW/DQ/VL, CLWB, CLFLUSHOPT; VNNI came with Cascade Lake. (Xen
    // hides CLWB from its host policy on this model: tests/derivation.rs.)
    (
        "GenuineIntel0050654_SkylakeXeon_20",
        "avx512f avx512cd avx512bw avx512dq avx512vl clflushopt",
        "avx512-vnni avx512-vbmi sha gfni avx512-ifma",
    ),
    (
        "GenuineIntel0050654_SkylakeXeon",
        "avx512f avx512cd avx512bw avx512dq avx512vl clflushopt",
        "avx512-vnni avx512-vbmi sha gfni avx512-ifma",
    ),
    // Ice Lake-SP: VNNI, VBMI/VBMI2, GFNI, VAES, VPCLMULQDQ, SHA, IFMA; no AMX or FP16.
    (
        "GenuineIntel00606A6_ICX_04",
        "avx512-vnni avx512-vbmi avx512-vbmi2 gfni vaes vpclmulqdq sha avx512-ifma",
        "amx-tile avx512-fp16 3dnow",
    ),
    // Sapphire Rapids: AMX, AVX512-FP16, AVX512-BF16, SERIALIZE, TSXLDTRK, AVX-VNNI.
    (
        "GenuineIntel00806F8_SapphireRapids_05",
        "amx-tile amx-bf16 amx-int8 avx512-fp16 avx512-bf16 serialize avx-vnni",
        "3dnow sse4a xop",
    ),
    // Alder/Raptor Lake (hybrid): AVX-VNNI, SERIALIZE, GFNI, HYBRID; AVX-512 and AMX fused off.
    (
        "GenuineIntel0090672_AlderLake_03",
        "avx-vnni serialize gfni hybrid movdiri",
        "avx512f amx-tile 3dnow",
    ),
    (
        "GenuineIntel00B0671_RaptorLake_04",
        "avx-vnni serialize gfni hybrid movdiri",
        "avx512f amx-tile 3dnow",
    ),
    // K10: SSE4a, 3DNow!, ABM, misaligned SSE, SVM; no SSSE3/SSE4.1 on AMD before Bulldozer.
    (
        "AuthenticAMD0100F21_K10_Barcelona",
        "sse4a 3dnow 3dnowext abm misalignsse svm",
        "ssse3 sse4-1 avx xop",
    ),
    (
        "AuthenticAMD0100F80_K10_Istanbul",
        "sse4a 3dnow 3dnowext abm svm",
        "ssse3 sse4-1 avx xop",
    ),
    // Bulldozer: XOP, FMA4, AVX, AES, LWP; FMA3/F16C/BMI1 came with Piledriver; 3DNow! dropped.
    (
        "AuthenticAMD0600F12_K15_Interlagos_CPUID3",
        "xop fma4 avx aesni lwp sse4-2",
        "fma f16c bmi1 avx2 3dnow",
    ),
    // Zen 2: CLZERO, AVX2, SHA, WBNOINVD-era; no AVX-512; XOP/FMA4 gone since Zen.
    (
        "AuthenticAMD0830F10_K17_CastlePeak",
        "clzero avx2 sha adx rdseed",
        "avx512f xop fma4 3dnow",
    ),
    // Zen 4: AVX-512 (F, BF16, VNNI), VAES, CLZERO, CpuidUserDis (CPUID faulting).
    (
        "AuthenticAMD0A10F11_K19_Genoa_02",
        "avx512f avx512-bf16 avx512-vnni vaes clzero cpuid-user-dis",
        "amx-tile xop fma4",
    ),
    // Hygon Dhyana (Zen 1): CLZERO, AVX2, ADX, RDSEED, SSE4a; no AVX-512.
    (
        "HygonGenuine0900F02_Hygon",
        "clzero avx2 adx rdseed sse4a",
        "avx512f xop",
    ),
];

#[test]
fn every_dump_matches_its_public_facts() {
    let cpus = all_cpus();
    let mut checked = 0;
    // The facts are about the repository's own processors; an extra dump has none.
    for cpu in cpus.iter().filter(|cpu| cpu.bundled) {
        let matching: Vec<_> = FACTS
            .iter()
            .filter(|(stem_, _, _)| {
                stem(&cpu.file) == *stem_ || cpu.file.starts_with(&format!("{stem_}."))
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{}: needs exactly one fact row",
            cpu.file
        );
        let (_, has, lacks) = matching[0];
        let host = cpu.policies.host.featureset();
        let facts: Vec<_> = has
            .split(' ')
            .map(|n| (n, true))
            .chain(lacks.split(' ').map(|n| (n, false)))
            .collect();
        assert!(facts.len() >= 5, "{}: at least five facts", cpu.file);
        for (name, expected) in facts {
            assert_eq!(
                host.contains(feature(name)),
                expected,
                "{}: {name}",
                cpu.file
            );
        }
        checked += 1;
    }
    assert_eq!(checked, dumps::bundled().len());
}

#[test]
fn penryn_has_no_leaf_7_and_guests_see_only_xens_arch_caps_there() {
    let cpu = load("GenuineIntel0010676_Penryn_CPUID.txt");
    let s = &cpu.policies;
    for p in [&s.raw, &s.host] {
        assert_eq!(p.leaf(7, 0).unwrap(), Default::default());
    }
    // Xen virtualises MSR_ARCH_CAPS for every Intel guest: CPUID.07H.0:EDX[29] is the only
    // leaf 7 bit a Penryn guest sees.
    for p in [&s.pv_default, &s.hvm_default] {
        let leaf7: Featureset = p
            .featureset()
            .iter()
            .filter(|f| [5, 6, 9, 10, 12, 13, 14, 15].contains(&f.word()))
            .collect();
        assert_eq!(leaf7, Featureset::of(&[Feature::ARCH_CAPS]));
    }
}

#[test]
fn guest_policies_follow_xens_rules_on_every_cpu() {
    for cpu in all_cpus() {
        let s = &cpu.policies;
        let host = s.host.featureset();
        let name = &cpu.file;
        // Defaults within max; max within the table's guest masks; everything dependency-closed.
        assert!(
            s.pv_default.featureset().is_subset(&s.pv_max.featureset()),
            "{name}"
        );
        assert!(
            s.hvm_default
                .featureset()
                .is_subset(&s.hvm_max.featureset()),
            "{name}"
        );
        for p in [
            &s.host,
            &s.pv_max,
            &s.pv_default,
            &s.hvm_max,
            &s.hvm_default,
        ] {
            assert_eq!(
                p.featureset(),
                p.featureset().closed(),
                "{name}: not closed"
            );
            assert!(p.featureset().unknown().is_empty(), "{name}: unknown bits");
        }
        // No guest of any kind sees what the host does not have, except what Xen emulates.
        let emulated = Featureset::of(&[
            Feature::HYPERVISOR,
            Feature::X2APIC,
            Feature::HTT,
            Feature::CMP_LEGACY,
            Feature::ERMS,
            Feature::ARCH_CAPS,
            Feature::RSBA,
            Feature::RRSBA,
            Feature::MD_CLEAR,
            Feature::FB_CLEAR,
            Feature::RFDS_CLEAR,
            Feature::VERW_CLEAR,
            Feature::STIBP,
            Feature::AMD_STIBP,
            Feature::IBPB,
            Feature::APIC,
            Feature::NO_LMSL,
            Feature::SEP,
            Feature::RTM_ALWAYS_ABORT,
            Feature::VIRT_SSBD, // MSR_VIRT_SPEC_CTRL, emulated on AMD_SSBD or LS_CFG
            Feature::CLWB,      // Skylake-SP: hidden from the host, offered in max
        ]);
        for p in [&s.pv_max, &s.hvm_max] {
            let extra = p.featureset() - host - emulated;
            assert!(extra.is_empty(), "{name}: guest max has {}", extra.names());
        }
        // PV guests: no hardware virtualisation, no SVM leaf; HVM guests: HYPERVISOR set.
        let pv = s.pv_max.featureset();
        assert!(
            !pv.contains(Feature::VMX) && !pv.contains(Feature::SVM),
            "{name}"
        );
        assert_eq!(
            s.pv_max.leaf(0x8000_000a, 0).unwrap(),
            Default::default(),
            "{name}"
        );
        assert!(
            s.hvm_default.featureset().contains(Feature::HYPERVISOR),
            "{name}"
        );
        // Nested virtualisation is max-only (`h`): present in HVM max iff the host has it.
        let nested = if s.host.vendor() == Vendor::Intel {
            Feature::VMX
        } else {
            Feature::SVM
        };
        assert_eq!(
            s.hvm_max.featureset().contains(nested),
            host.contains(nested),
            "{name}"
        );
        assert!(!s.hvm_default.featureset().contains(nested), "{name}");
        // Faulting: the host as probed, never offered to PV via the policy, always to HVM.
        assert!(
            s.hvm_max.cpuid_faulting() && !s.pv_max.cpuid_faulting(),
            "{name}"
        );
        // The max leaves Xen clamps to.
        assert!(
            s.host.max_basic_leaf() <= 0xd && s.pv_max.max_basic_leaf() == 0xd,
            "{name}"
        );
        // Domain policies at default are valid against max.
        for kind in [DomainKind::Pv, DomainKind::HvmHap] {
            let default = s.default_for(kind).featureset();
            let p = s
                .domain_policy(kind, s.host.vendor(), &default)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_compatible(&s.max_for(kind).unwrap(), &p)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn cpuid_faulting_is_enumerated_from_ivy_bridge_and_zen4() {
    // The repository's CPUs: MSR_PLATFORM_INFO[31] from the dumps (their README's table), and
    // CpuidUserDis on Genoa. Extra CPUs: where the generations table promises faulting.
    for cpu in all_cpus() {
        let expected = if cpu.bundled {
            [
                "IvyBridge",
                "Haswell",
                "Broadwell",
                "SkylakeXeon_20",
                "SapphireRapids",
                "AlderLake",
                "RaptorLake",
                "Genoa",
            ]
            .iter()
            .any(|m| cpu.file.contains(m))
        } else {
            matches!(
                expected_mechanism(&cpu.raw, cpu.recorded),
                Mechanism::Faulting { .. }
            )
        };
        assert_eq!(cpu.policies.host.cpuid_faulting(), expected, "{}", cpu.file);
    }
}

#[test]
fn pool_levels_are_closed_and_within_every_member() {
    let cpus = all_cpus();
    let mut pools: BTreeMap<String, Vec<&Cpu>> = BTreeMap::new();
    for cpu in &cpus {
        pools
            .entry(cpu.policies.host.vendor().to_string())
            .or_default()
            .push(cpu);
    }
    // The repository's dumps are named after the vendor their CPUID reports.
    for cpu in cpus.iter().filter(|cpu| cpu.bundled) {
        assert!(
            cpu.file
                .starts_with(&cpu.policies.host.vendor().to_string()),
            "{}",
            cpu.file
        );
    }
    for (vendor, members) in &pools {
        // The anchors below are facts about the repository's oldest CPUs; an extra, older
        // CPU may lower a pool further.
        let only_bundled = members.iter().all(|cpu| cpu.bundled);
        for kind in [DomainKind::Pv, DomainKind::HvmHap] {
            let level = members
                .iter()
                .map(|c| c.policies.default_for(kind).featureset())
                .fold(Featureset::FULL, |acc, fs| acc & fs)
                .closed();
            assert_eq!(level, level.closed(), "{vendor}");
            for member in members {
                assert!(
                    level.is_subset(&member.policies.default_for(kind).featureset()),
                    "{vendor}"
                );
                // Every member can start a VM at the pool level.
                let host_vendor = member.policies.host.vendor();
                member
                    .policies
                    .domain_policy(kind, host_vendor, &level)
                    .unwrap_or_else(|e| panic!("{}: {e}", member.file));
            }
            if vendor == "GenuineIntel" && only_bundled {
                // Penryn holds the Intel pool back to SSE4.1, no SSE4.2, no AVX.
                assert!(level.contains(Feature::SSE4_1) && !level.contains(Feature::SSE4_2));
                assert!(!level.contains(Feature::AVX) && level.contains(Feature::LM));
            }
            if vendor == "AuthenticAMD" && only_bundled {
                // K10 holds the AMD pool to SSE4a, without SSSE3.
                assert!(level.contains(Feature::SSE4A) && !level.contains(Feature::SSSE3));
                assert!(!level.contains(Feature::AVX));
            }
        }
    }
    let _ = feature::KNOWN;
}
