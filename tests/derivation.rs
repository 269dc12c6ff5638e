//! The system policies Xen derives at the reference commit c447b7308b (issue 14), checked on
//! the real CPUID dumps of `data/cpuid-dumps/`. Each test names the Xen fact it follows: the
//! file and function, paraphrased; expectations come from the dumps' raw CPUID and those facts.

use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature::COMMON_1D;
use xen_levelling::policy::system::{
    DomainKind, HostOptions, SpecCtrlOptions, SystemPolicies, parse_cpuid_option,
};
use xen_levelling::{CpuPolicy, CpuidRegs, Feature, Vendor};

const BARCELONA: &str = "AuthenticAMD0100F21_K10_Barcelona_CPUID.txt";
const ISTANBUL: &str = "AuthenticAMD0100F80_K10_Istanbul_CPUID.txt";
const INTERLAGOS: &str = "AuthenticAMD0600F12_K15_Interlagos_CPUID3.txt";
const CASTLE_PEAK: &str = "AuthenticAMD0830F10_K17_CastlePeak_CPUID.txt";
const GENOA: &str = "AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt";
const HYGON: &str = "HygonGenuine0900F02_Hygon_CPUID.txt";
const AMD_LIKE: [&str; 6] = [BARCELONA, ISTANBUL, INTERLAGOS, CASTLE_PEAK, GENOA, HYGON];

const HASWELL_XEON: &str = "GenuineIntel00306C3_HaswellXeon_CPUID.txt";
const HASWELL_EP: &str = "GenuineIntel00306F2_HaswellEP_01_CPUID.txt";
const SKYLAKE_XEON: &str = "GenuineIntel0050654_SkylakeXeon_CPUID.txt";

mod common;

use common::dumps;

/// A bundled dump by name, or an extra one (`XEN_LEVELLING_EXTRA_DUMPS`) by path.
fn raw(file: &str) -> CpuPolicy {
    let text = dumps::read(file);
    let dump = Aida64Dump::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    CpuPolicy::from_source(&dump, dump.raw_msrs())
}

fn derive(file: &str, options: HostOptions) -> SystemPolicies {
    SystemPolicies::derive(&raw(file), options)
}

/// The repository's dumps by name and any extra ones by path.
fn all_dumps() -> Vec<String> {
    dumps::all()
        .into_iter()
        .map(|f| {
            if f.bundled {
                f.name
            } else {
                f.path.to_string_lossy().into_owned()
            }
        })
        .collect()
}

fn intel_dumps() -> Vec<String> {
    all_dumps()
        .into_iter()
        .filter(|f| raw(f).vendor() == Vendor::Intel)
        .collect()
}

fn leaf(p: &CpuPolicy, leaf: u32) -> CpuidRegs {
    p.leaf(leaf, 0).unwrap()
}

/// The four guest system policies, with names for messages.
fn guest_policies(s: &SystemPolicies) -> [(&'static str, &CpuPolicy); 4] {
    [
        ("pv max", &s.pv_max),
        ("pv default", &s.pv_default),
        ("hvm max", &s.hvm_max),
        ("hvm default", &s.hvm_default),
    ]
}

/// `cpu-policy.c`: `calculate_{pv,hvm}_{max,def}_policy` mask the featureset with the guest
/// masks and write it back, and AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX are no
/// named feature, so no system policy has them (the host neither: `identify_cpu` clamps Xen's
/// capabilities to the named features, and since f6894fdfa8 the host skips
/// `recalculate_misc`). `recalculate_cpuid_policy` runs `recalculate_misc`, which makes the
/// copies, for every domain.
#[test]
fn copies_of_leaf1_edx_are_made_per_domain_not_in_system_policies() {
    for file in AMD_LIKE {
        let s = derive(file, HostOptions::default());
        let raw_e1d = leaf(&s.raw, 0x8000_0001).d;
        assert_ne!(
            raw_e1d & COMMON_1D,
            0,
            "{file}: the hardware has the copies"
        );
        for (name, p) in [("host", &s.host)].into_iter().chain(guest_policies(&s)) {
            assert_eq!(
                leaf(p, 0x8000_0001).d & COMMON_1D,
                0,
                "{file}: {name} carries copies of CPUID.01H:EDX"
            );
        }
        for kind in [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow] {
            let default = s.default_for(kind);
            let fresh = s
                .domain_policy(kind, s.host.vendor(), &default.featureset())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let recalculated = s.recalculate(kind, &default).unwrap();
            for d in [fresh, recalculated] {
                let copies = leaf(&d, 0x8000_0001).d & COMMON_1D;
                assert_ne!(copies, 0, "{file} {kind:?}");
                assert_eq!(copies, leaf(&d, 1).d & COMMON_1D, "{file} {kind:?}");
            }
        }
    }
    // Intel has no copies anywhere, domains included.
    for file in intel_dumps() {
        let s = derive(&file, HostOptions::default());
        let d = s
            .domain_policy(DomainKind::Pv, Vendor::Intel, &s.pv_default.featureset())
            .unwrap();
        assert_eq!(leaf(&d, 0x8000_0001).d & COMMON_1D, 0, "{file}");
    }
}

/// `cpu/amd.c` `init_amd` and `cpu/hygon.c` `init_hygon` clear SEP (no SYSENTER outside legacy
/// mode, and Xen runs in long mode); `calculate_hvm_max_policy` sets it again on AMD/Hygon when
/// the hardware has it, since an HVM guest may run in legacy mode.
#[test]
fn amd_hosts_drop_sep_and_only_hvm_gets_it_back() {
    for file in AMD_LIKE {
        let s = derive(file, HostOptions::default());
        assert!(s.raw.featureset().contains(Feature::SEP), "{file}");
        for (name, p) in [
            ("host", &s.host),
            ("pv max", &s.pv_max),
            ("pv default", &s.pv_default),
        ] {
            assert!(!p.featureset().contains(Feature::SEP), "{file}: {name}");
        }
        for (name, p) in [("hvm max", &s.hvm_max), ("hvm default", &s.hvm_default)] {
            assert!(p.featureset().contains(Feature::SEP), "{file}: {name}");
        }
        // What a PV guest's CPUID.01H:EDX[11] reads.
        let pv = s
            .domain_policy(DomainKind::Pv, s.host.vendor(), &s.pv_default.featureset())
            .unwrap();
        assert_eq!(leaf(&pv, 1).d & Feature::SEP.mask(), 0, "{file}");
        // Asking for it is refused: PV max does not offer it.
        let mut with_sep = s.pv_default.featureset();
        with_sep.insert(Feature::SEP);
        assert!(
            s.domain_policy(DomainKind::Pv, s.host.vendor(), &with_sep)
                .is_err()
        );
    }
    for file in intel_dumps() {
        let s = derive(&file, HostOptions::default());
        assert!(s.pv_default.featureset().contains(Feature::SEP), "{file}");
    }
}

/// `cpu/amd.c` `init_amd`: on family 10h Xen clears MONITOR ("pointless to use MWAIT", it does
/// not reach deep sleep there); other families keep it.
#[test]
fn family_10h_hosts_drop_monitor() {
    for file in [BARCELONA, ISTANBUL] {
        let s = derive(file, HostOptions::default());
        assert_eq!(s.raw.signature().family, 0x10);
        assert!(s.raw.featureset().contains(Feature::MONITOR), "{file}");
        assert!(!s.host.featureset().contains(Feature::MONITOR), "{file}");
    }
    for file in [INTERLAGOS, CASTLE_PEAK, GENOA] {
        let s = derive(file, HostOptions::default());
        assert!(s.host.featureset().contains(Feature::MONITOR), "{file}");
    }
}

/// `cpu-policy.c` `recalculate_misc`, AMD/Hygon half, as run on the max policies (and so in
/// the defaults), but not on the host (f6894fdfa8): CPUID.80000001H:EBX[23:16], 0x80000009,
/// basic leaf 0xA and CPUID.80000021H:EBX/EDX cleared, CPUID.80000007H:EAX/EBX/ECX cleared,
/// leaf 4 and leaves 2/3/9 cleared, the vendor string and signature repeated.
#[test]
fn misc_recalculation_on_amd() {
    for file in AMD_LIKE {
        let s = derive(file, HostOptions::default());
        for (name, p) in guest_policies(&s) {
            let l0 = leaf(p, 0);
            let e0 = leaf(p, 0x8000_0000);
            assert_eq!((e0.b, e0.c, e0.d), (l0.b, l0.c, l0.d), "{file}: {name}");
            let e1 = leaf(p, 0x8000_0001);
            assert_eq!(e1.a, leaf(p, 1).a, "{file}: {name}");
            assert_eq!(e1.a, leaf(&s.raw, 1).a & 0x0fff_0fff, "{file}: {name}");
            assert_eq!(e1.b & 0x00ff_0000, 0, "{file}: {name}");
            let e7 = leaf(p, 0x8000_0007);
            assert_eq!((e7.a, e7.b, e7.c), (0, 0, 0), "{file}: {name}");
            assert_eq!(leaf(p, 0x8000_0009), CpuidRegs::ZERO, "{file}: {name}");
            let e21 = leaf(p, 0x8000_0021);
            assert_eq!((e21.b, e21.d), (0, 0), "{file}: {name}");
            for l in [2, 3, 9, 0xa] {
                assert_eq!(leaf(p, l), CpuidRegs::ZERO, "{file}: {name} leaf {l:#x}");
            }
            assert_eq!(p.leaf(4, 0).unwrap(), CpuidRegs::ZERO, "{file}: {name}");
        }
    }
    // Where the hardware has something there, the host keeps it and the guests lose it.
    let s = derive(GENOA, HostOptions::default());
    assert_eq!(leaf(&s.raw, 0x8000_0021).b, 0x15c);
    assert_eq!(leaf(&s.host, 0x8000_0021).b, 0x15c);
    assert_eq!(leaf(&s.hvm_max, 0x8000_0021).b, 0);
    // CPUID.80000021H:EAX is featureset word 11: not touched by the misc recalculation.
    assert_ne!(leaf(&s.pv_default, 0x8000_0021).a, 0);
    for file in [CASTLE_PEAK, GENOA, HYGON] {
        let s = derive(file, HostOptions::default());
        assert_ne!(leaf(&s.raw, 0x8000_0007).b, 0, "{file}");
        assert_eq!(leaf(&s.host, 0x8000_0007).b, leaf(&s.raw, 0x8000_0007).b);
        assert_eq!(leaf(&s.pv_default, 0x8000_0007).b, 0, "{file}");
    }
}

/// `cpu-policy.c` `recalculate_misc`, Intel half: no vendor string in CPUID.80000000H
/// EBX/ECX/EDX, all of 0x80000005 and CPUID.80000006H:EAX/EBX/EDX cleared, CPUID.80000007H
/// EAX/EBX/ECX cleared, leaf 2's query count (CPUID.02H:EAX[7:0]) 1.
#[test]
fn misc_recalculation_on_intel() {
    for file in intel_dumps() {
        let s = derive(&file, HostOptions::default());
        for (name, p) in guest_policies(&s) {
            assert_eq!(leaf(p, 2).a & 0xff, 1, "{file}: {name}");
            let e0 = leaf(p, 0x8000_0000);
            assert_eq!((e0.b, e0.c, e0.d), (0, 0, 0), "{file}: {name}");
            assert_eq!(leaf(p, 0x8000_0005), CpuidRegs::ZERO, "{file}: {name}");
            let e6 = leaf(p, 0x8000_0006);
            assert_eq!((e6.a, e6.b, e6.d), (0, 0, 0), "{file}: {name}");
            assert_eq!(e6.c, leaf(&s.raw, 0x8000_0006).c, "{file}: L2 kept");
            let e7 = leaf(p, 0x8000_0007);
            assert_eq!((e7.a, e7.b, e7.c), (0, 0, 0), "{file}: {name}");
        }
    }
    // Real Intel parts report zeros in most of those; QEMU's Intel models do not (they repeat
    // the vendor string at 0x80000000 and fill 0x80000005/6 with AMD-style cache data). The
    // Haswell dump as such a model presents it:
    let mut hw = raw(HASWELL_XEON);
    let l0 = leaf(&hw, 0);
    {
        let mut e0 = hw.leaf_mut(0x8000_0000, 0).unwrap();
        (e0.b, e0.c, e0.d) = (l0.b, l0.c, l0.d);
    }
    *hw.leaf_mut(0x8000_0005, 0).unwrap() =
        CpuidRegs::new(0x01ff_01ff, 0x01ff_01ff, 0x4002_0140, 0x4002_0140);
    {
        let mut e6 = hw.leaf_mut(0x8000_0006, 0).unwrap();
        (e6.a, e6.b, e6.d) = (0, 0x4200_4200, 0x0070_0140);
    }
    let mut e7 = hw.leaf_mut(0x8000_0007, 0).unwrap();
    (e7.a, e7.b, e7.c) = (0, 0x1b, 0);
    drop(e7);
    let s = SystemPolicies::derive(&hw, HostOptions::default());
    let host_e0 = leaf(&s.host, 0x8000_0000);
    assert_eq!((host_e0.b, host_e0.c, host_e0.d), (l0.b, l0.c, l0.d));
    assert_ne!(leaf(&s.host, 0x8000_0005), CpuidRegs::ZERO);
    for (name, p) in guest_policies(&s) {
        let e0 = leaf(p, 0x8000_0000);
        assert_eq!((e0.b, e0.c, e0.d), (0, 0, 0), "{name}");
        assert_eq!(leaf(p, 0x8000_0005), CpuidRegs::ZERO, "{name}");
        let e6 = leaf(p, 0x8000_0006);
        assert_eq!((e6.a, e6.b, e6.d), (0, 0, 0), "{name}");
        assert_eq!(leaf(p, 0x8000_0007).b, 0, "{name}");
    }
}

/// `cpu-policy.c` `calculate_hvm_max_policy`: with SVM on the host, CPUID.8000000AH:EDX keeps
/// only NPT (bit 0), LBRV (1), NRIPS (3), DECODEASSISTS (7) and PAUSEFILTER (10) as the
/// hardware has them, and gains VMCBCLEAN (5), which nested SVM always emulates. PV max
/// zeroes the leaf; a domain without SVM has it zeroed.
#[test]
fn nested_svm_leaf_is_what_nested_svm_implements() {
    const FROM_HARDWARE: u32 = 1 << 0 | 1 << 1 | 1 << 3 | 1 << 7 | 1 << 10;
    const VMCBCLEAN: u32 = 1 << 5;
    for file in AMD_LIKE {
        let s = derive(file, HostOptions::default());
        assert!(s.host.featureset().contains(Feature::SVM), "{file}");
        let hw = leaf(&s.raw, 0x8000_000a);
        assert_ne!(
            hw.d & !(FROM_HARDWARE | VMCBCLEAN),
            0,
            "{file}: more than nested SVM"
        );
        for p in [&s.hvm_max, &s.hvm_default] {
            let l = leaf(p, 0x8000_000a);
            assert_eq!(l.d, hw.d & FROM_HARDWARE | VMCBCLEAN, "{file}");
            assert_eq!((l.a, l.b), (hw.a, hw.b), "{file}: revision and ASIDs pass");
        }
        assert_eq!(leaf(&s.pv_max, 0x8000_000a), CpuidRegs::ZERO, "{file}");
        // SVM is max-only (`h`): an HVM guest at default has no SVM and no SVM leaf.
        let d = s
            .domain_policy(
                DomainKind::HvmHap,
                s.host.vendor(),
                &s.hvm_default.featureset(),
            )
            .unwrap();
        assert_eq!(leaf(&d, 0x8000_000a), CpuidRegs::ZERO, "{file}");
    }
    // Barcelona: NPT, LBRV, SVML (bit 2, not implemented for guests) in hardware.
    let s = derive(BARCELONA, HostOptions::default());
    assert_eq!(leaf(&s.raw, 0x8000_000a).d, 0x7);
    assert_eq!(leaf(&s.hvm_max, 0x8000_000a).d, 0x23);
}

fn hvm_only(spec_ctrl: SpecCtrlOptions) -> HostOptions {
    HostOptions {
        spec_ctrl,
        ..HostOptions::default()
    }
}

/// `spec_ctrl.c` `init_speculation_mitigations` and `cpu/amd.c` `amd_init_ssbd`: with
/// `spec-ctrl=msr-sc=hvm` (the default), no AMD_SSBD, and either a hypervisor's VIRT_SSBD or
/// the LS_CFG path (families 15h-18h), `amd_virt_spec_ctrl` puts VIRT_SSBD in HVM max and
/// default. `calculate_hvm_max_policy` adds it to max only where AMD_SSBD exists and
/// MSR_SPEC_CTRL is virtualised for HVM (AMD: IBRS and CPUID.8000000AH:EDX[20]).
#[test]
fn virt_ssbd_follows_xens_rules() {
    let on = HostOptions::default();
    let off = hvm_only(SpecCtrlOptions {
        msr_sc_hvm: false,
        ..SpecCtrlOptions::default()
    });
    let has = |s: &SystemPolicies| {
        (
            s.hvm_max.featureset().contains(Feature::VIRT_SSBD),
            s.hvm_default.featureset().contains(Feature::VIRT_SSBD),
        )
    };
    // Bulldozer (family 15h): SSBD through LS_CFG, so VIRT_SPEC_CTRL by default.
    let s = derive(INTERLAGOS, on);
    assert!(!s.raw.featureset().contains(Feature::AMD_SSBD));
    assert_eq!(has(&s), (true, true));
    assert_eq!(has(&derive(INTERLAGOS, off)), (false, false));
    // Zen 4: AMD_SSBD and SVM's SPEC_CTRL: max only (guests should use SPEC_CTRL.SSBD).
    let s = derive(GENOA, on);
    assert_ne!(leaf(&s.raw, 0x8000_000a).d & 1 << 20, 0);
    assert_eq!(has(&s), (true, false));
    assert!(s.hvm_max.featureset().contains(Feature::IBRS));
    let s = derive(GENOA, off);
    assert_eq!(has(&s), (false, false));
    assert!(!s.hvm_max.featureset().contains(Feature::IBRS));
    // Zen 2 dump: AMD_SSBD without IBRS: Xen's SSBD is SPEC_CTRL's, but SPEC_CTRL is not
    // virtualised without IBRS: nothing.
    let s = derive(CASTLE_PEAK, on);
    assert!(s.raw.featureset().contains(Feature::AMD_SSBD));
    assert!(!s.raw.featureset().contains(Feature::IBRS));
    assert_eq!(has(&s), (false, false));
    // Family 10h has no SSBD control at all.
    assert_eq!(has(&derive(BARCELONA, on)), (false, false));
    // Never for PV.
    for file in AMD_LIKE {
        let s = derive(file, on);
        assert!(
            !s.pv_max.featureset().contains(Feature::VIRT_SSBD),
            "{file}"
        );
    }
}

/// `spec_ctrl.c`: MSR_SPEC_CTRL is virtualised for PV guests only on Intel's enumeration
/// (IBRSB) and with `spec-ctrl=msr-sc=pv` (the default); `calculate_pv_max_policy` hides
/// IBRSB/IBRS otherwise. So AMD PV guests never see IBRS.
#[test]
fn msr_spec_ctrl_for_pv_needs_intels_enumeration() {
    let s = derive(GENOA, HostOptions::default());
    assert!(s.host.featureset().contains(Feature::IBRS));
    assert!(!s.pv_max.featureset().contains(Feature::IBRS));
    assert!(s.hvm_max.featureset().contains(Feature::IBRS));

    let s = derive(HASWELL_EP, HostOptions::default());
    assert!(s.pv_max.featureset().contains(Feature::IBRSB));
    let no_pv = hvm_only(SpecCtrlOptions {
        msr_sc_pv: false,
        ..SpecCtrlOptions::default()
    });
    let s = derive(HASWELL_EP, no_pv);
    assert!(!s.pv_max.featureset().contains(Feature::IBRSB));
    assert!(s.hvm_max.featureset().contains(Feature::IBRSB));
}

/// `cpu-policy.c` `guest_common_max_feature_adjustments` (Intel): RTM_ALWAYS_ABORT now means
/// "XBEGIN does not fault", so max offers it wherever RTM is in the max featureset. Defaults
/// offer it only when TSX is forced to abort.
#[test]
fn rtm_always_abort_in_max_wherever_rtm_is() {
    let mut with_rtm = 0;
    for file in intel_dumps() {
        let s = derive(&file, HostOptions::default());
        for p in [&s.pv_max, &s.hvm_max] {
            let fs = p.featureset();
            assert_eq!(
                fs.contains(Feature::RTM_ALWAYS_ABORT),
                fs.contains(Feature::RTM),
                "{file}"
            );
            with_rtm += fs.contains(Feature::RTM) as usize;
        }
        for p in [&s.pv_default, &s.hvm_default] {
            assert!(
                !p.featureset().contains(Feature::RTM_ALWAYS_ABORT),
                "{file}"
            );
        }
    }
    assert!(with_rtm >= 8, "several dumps have RTM");
    // Without RTM (`cpuid=no-rtm`), no RTM_ALWAYS_ABORT either.
    let options = HostOptions {
        disabled: parse_cpuid_option("no-rtm").unwrap(),
        ..HostOptions::default()
    };
    let s = derive(HASWELL_XEON, options);
    assert!(!s.pv_max.featureset().contains(Feature::RTM_ALWAYS_ABORT));
}

/// `cpu/intel.c` `init_intel`: on Skylake-SP (family 6 model 0x55) Xen hides CLWB from itself
/// (GDS microcode makes it slow); `guest_common_max_feature_adjustments` puts it back in max
/// and `guest_common_default_feature_adjustments` leaves it out of the defaults.
#[test]
fn skylake_sp_hides_clwb_from_the_host_and_defaults() {
    let s = derive(SKYLAKE_XEON, HostOptions::default());
    assert!(s.raw.featureset().contains(Feature::CLWB));
    assert!(!s.host.featureset().contains(Feature::CLWB));
    for p in [&s.pv_max, &s.hvm_max] {
        assert!(p.featureset().contains(Feature::CLWB));
    }
    for p in [&s.pv_default, &s.hvm_default] {
        assert!(!p.featureset().contains(Feature::CLWB));
    }
}

/// `cpu-policy.c` `calculate_host_policy`: with the vPMU off (Xen's default) the host policy
/// has no CPUID.0AH, and so neither have the guests'.
#[test]
fn without_a_vpmu_leaf_0xa_is_gone_from_the_host() {
    for file in intel_dumps() {
        let s = derive(&file, HostOptions::default());
        if s.raw.max_basic_leaf() >= 0xa {
            assert_ne!(leaf(&s.raw, 0xa), CpuidRegs::ZERO, "{file}");
        }
        for p in [&s.host, &s.pv_max, &s.hvm_default] {
            assert_eq!(leaf(p, 0xa), CpuidRegs::ZERO, "{file}");
        }
    }
}

/// `cpu/amd.c` `init_amd`: LFENCE is always dispatch serialising on families 0Fh and 11h, so
/// Xen sets LFENCE_DISPATCH there, and `calculate_host_policy` then extends the extended leaf
/// range to 0x80000021 to show it. No dump is of those families: the Barcelona dump is made
/// to say family 11h (base family 0xF, extended family 2).
#[test]
fn lfence_dispatch_on_family_11h_extends_the_extended_leaves() {
    let mut hw = raw(BARCELONA);
    assert_eq!(hw.max_extd_leaf(), 0x8000_001a);
    let mut l1 = hw.leaf_mut(1, 0).unwrap();
    l1.a = (l1.a & !(0xff << 20 | 0xf << 8)) | 2 << 20 | 0xf << 8;
    drop(l1);
    assert_eq!(hw.signature().family, 0x11);
    let s = SystemPolicies::derive(&hw, HostOptions::default());
    assert!(s.host.featureset().contains(Feature::LFENCE_DISPATCH));
    assert_eq!(s.host.max_extd_leaf(), 0x8000_0021);
    assert_eq!(s.pv_default.max_extd_leaf(), 0x8000_0021);
    assert!(s.pv_default.featureset().contains(Feature::LFENCE_DISPATCH));
    // Family 10h as it is: LFENCE_DISPATCH comes through DE_CFG, not modelled.
    let s = derive(BARCELONA, HostOptions::default());
    assert_eq!(s.host.max_extd_leaf(), 0x8000_001a);
}
