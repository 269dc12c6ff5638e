//! CPU policy behaviour against Xen's documented semantics (reference `xen-levelling.md`
//! 4.4, 6.3, 7): serialisation order and errors, domain policies, `guest_cpuid`.

use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::cpuid::NO_SUBLEAF;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::compat::{IncompatibilityReason, check_compatible};
use xen_levelling::policy::guest::{CpuidEntry, GuestContext, GuestDomain, VcpuState, guest_cpuid};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, PolicyArrayError};
use xen_levelling::policy::system::{
    DomainKind, DomainPolicyError, HostOptions, SystemPolicies, parse_cpuid_option,
};
use xen_levelling::policy::{RawMsrs, Slot};
use xen_levelling::{CpuPolicy, CpuidRegs, Feature, Featureset, Vendor};

fn system(file: &str, options: HostOptions) -> SystemPolicies {
    let path = format!("{}/data/cpuid-dumps/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let dump = Aida64Dump::parse(&text).unwrap();
    let msrs = RawMsrs {
        platform_info: dump.msr(0xce).value(),
        arch_caps: dump.msr(0x10a).value(),
    };
    SystemPolicies::derive(&CpuPolicy::from_source(&dump, msrs), options)
}

fn skylake() -> SystemPolicies {
    system(
        "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt",
        HostOptions::default(),
    )
}

fn genoa() -> SystemPolicies {
    system(
        "AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt",
        HostOptions::default(),
    )
}

/// A serialised leaf without subleaves whose EAX is `a`, the other registers zero.
fn eax_of(leaf: u32, a: u32) -> XenCpuidLeaf {
    XenCpuidLeaf {
        leaf,
        subleaf: NO_SUBLEAF,
        a,
        ..Default::default()
    }
}

fn serialise(p: &CpuPolicy) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
    let mut leaves = vec![XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let mut msrs = vec![XenMsrEntry::default(); 2];
    let n = p.write_leaves(&mut leaves).unwrap();
    let m = p.write_msrs(&mut msrs).unwrap();
    leaves.truncate(n);
    msrs.truncate(m);
    (leaves, msrs)
}

fn leaf(leaf: u32, subleaf: u32) -> XenCpuidLeaf {
    XenCpuidLeaf {
        leaf,
        subleaf,
        ..Default::default()
    }
}

#[test]
fn serialisation_follows_xens_order() {
    let s = skylake();
    let (leaves, msrs) = serialise(&s.host);
    let keys: Vec<(u32, u32)> = leaves.iter().map(|l| (l.leaf, l.subleaf)).collect();
    // Basic leaves first, leaf 4 subleaves up to and including the type-0 terminator.
    assert_eq!(keys[0], (0, NO_SUBLEAF));
    let leaf4: Vec<u32> = keys.iter().filter(|k| k.0 == 4).map(|k| k.1).collect();
    assert_eq!(
        leaf4,
        [0, 1, 2, 3, 4],
        "Skylake-SP has 4 caches, then the terminator"
    );
    assert_eq!(
        leaves
            .iter()
            .find(|l| (l.leaf, l.subleaf) == (4, 4))
            .unwrap()
            .a
            & 0x1f,
        0
    );
    // Leaf 0xD: subleaves 0, 1, then up to the highest state component (PKRU, 9).
    let leaf_d: Vec<u32> = keys.iter().filter(|k| k.0 == 0xd).map(|k| k.1).collect();
    assert_eq!(leaf_d, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Then the Xen leaves, then the extended leaves up to 0x80000008 (Intel).
    let xen = keys.iter().position(|k| k.0 == 0x4000_0000).unwrap();
    assert_eq!(keys[xen + 1], (0x4000_0100, NO_SUBLEAF));
    assert_eq!(keys[xen + 2], (0x8000_0000, NO_SUBLEAF));
    assert_eq!(*keys.last().unwrap(), (0x8000_0008, NO_SUBLEAF));
    assert!(keys[..xen].iter().all(|k| k.0 <= 0xd));
    // MSRs: always PLATFORM_INFO then ARCH_CAPS.
    assert_eq!(
        msrs.iter().map(|m| m.idx).collect::<Vec<_>>(),
        [0xce, 0x10a]
    );
    assert_eq!(
        msrs[0].val, 0,
        "faulting was not probed (HostOptions::default)"
    );
    let (_, raw_msrs) = serialise(&s.raw);
    assert_eq!(
        raw_msrs[0].val,
        1 << 31,
        "Skylake-SP enumerates CPUID faulting in MSR 0xCE[31]"
    );
}

#[test]
fn round_trip_is_exact_for_every_system_policy() {
    for s in [skylake(), genoa()] {
        for p in [s.host, s.pv_max, s.pv_default, s.hvm_max, s.hvm_default] {
            let (leaves, msrs) = serialise(&p);
            assert_eq!(CpuPolicy::from_arrays(&leaves, &msrs).unwrap(), p);
        }
    }
}

#[test]
fn bad_arrays_are_rejected_naming_the_entry() {
    let base = skylake().pv_default;
    let cases: Vec<(XenCpuidLeaf, PolicyArrayError)> = vec![
        (
            leaf(0xe, NO_SUBLEAF),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0xe,
                subleaf: NO_SUBLEAF,
            },
        ),
        (
            leaf(1, 0),
            PolicyArrayError::LeafOutOfRange {
                leaf: 1,
                subleaf: 0,
            },
        ),
        (
            leaf(4, 6),
            PolicyArrayError::LeafOutOfRange {
                leaf: 4,
                subleaf: 6,
            },
        ),
        (
            leaf(4, NO_SUBLEAF),
            PolicyArrayError::LeafOutOfRange {
                leaf: 4,
                subleaf: NO_SUBLEAF,
            },
        ),
        (
            leaf(7, 3),
            PolicyArrayError::LeafOutOfRange {
                leaf: 7,
                subleaf: 3,
            },
        ),
        (
            leaf(0xb, 2),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0xb,
                subleaf: 2,
            },
        ),
        (
            leaf(0xd, 63),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0xd,
                subleaf: 63,
            },
        ),
        (
            leaf(0x8000_0022, NO_SUBLEAF),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0x8000_0022,
                subleaf: NO_SUBLEAF,
            },
        ),
        (
            leaf(0x4000_0001, NO_SUBLEAF),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0x4000_0001,
                subleaf: NO_SUBLEAF,
            },
        ),
        (
            leaf(0x4000_0000, 0),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0x4000_0000,
                subleaf: 0,
            },
        ),
        (
            leaf(0xc000_0000, NO_SUBLEAF),
            PolicyArrayError::LeafOutOfRange {
                leaf: 0xc000_0000,
                subleaf: NO_SUBLEAF,
            },
        ),
    ];
    for (bad, expected) in cases {
        // A good entry first: it must not survive the bad one.
        let entries = [eax_of(1, 0xdead), bad];
        assert_eq!(base.merged(&entries, &[]), Err(expected));
    }
    let too_many = vec![leaf(0, NO_SUBLEAF); MAX_SERIALISED_LEAVES + 1];
    assert_eq!(
        base.merged(&too_many, &[]),
        Err(PolicyArrayError::TooManyLeaves { count: 121 })
    );
    let msr = |idx, flags, val| XenMsrEntry { idx, flags, val };
    assert_eq!(
        base.merged(&[], &[msr(0xce, 1, 0)]),
        Err(PolicyArrayError::MsrFlags {
            msr: 0xce,
            flags: 1
        })
    );
    assert_eq!(
        base.merged(&[], &[msr(0xce, 0, 1 << 32)]),
        Err(PolicyArrayError::MsrOverflow {
            msr: 0xce,
            value: 1 << 32
        })
    );
    assert_eq!(
        base.merged(&[], &[msr(0x140, 0, 0)]),
        Err(PolicyArrayError::UnknownMsr { msr: 0x140 })
    );
    assert_eq!(
        base.merged(&[], &[msr(0xce, 0, 0); 3]),
        Err(PolicyArrayError::TooManyMsrs { count: 3 })
    );
    let mut short = [XenCpuidLeaf::default(); 4];
    let needed = base.nr_serialised_leaves();
    assert_eq!(
        base.write_leaves(&mut short),
        Err(PolicyArrayError::BufferTooSmall { needed })
    );
    // Merging good entries changes exactly them.
    let merged = base.merged(&[eax_of(0x4000_0000, 3)], &[]).unwrap();
    assert_eq!(merged.hypervisor_limits(), (3, 0));
}

#[test]
fn compatibility_reports_the_first_offence_and_the_features() {
    let s = skylake();
    let max = s.pv_max;
    assert_eq!(check_compatible(&max, &s.pv_default), Ok(()));
    let mut vendor = s.pv_default;
    vendor.leaf_mut(0, 0).unwrap().b ^= 1;
    let e = check_compatible(&max, &vendor).unwrap_err();
    assert_eq!(
        (e.leaf, e.subleaf, e.msr, e.reason),
        (0, NO_SUBLEAF, !0, IncompatibilityReason::Vendor)
    );
    let mut leaf7 = s.pv_default;
    leaf7.set_max_feat_subleaf(3);
    let e = check_compatible(&max, &leaf7).unwrap_err();
    assert_eq!(
        (e.leaf, e.subleaf, e.reason),
        (7, 0, IncompatibilityReason::MaxFeatSubleaf)
    );
    let mut extd = s.pv_default;
    extd.set_max_extd_leaf(0x8000_0022);
    assert_eq!(check_compatible(&max, &extd).unwrap_err().leaf, 0x8000_0000);
    let mut faulting = s.pv_default;
    faulting.set_cpuid_faulting(true);
    let e = check_compatible(&max, &faulting).unwrap_err();
    assert_eq!(
        (e.msr, e.reason),
        (0xce, IncompatibilityReason::PlatformInfo)
    );
    // VMX is never offered to PV: the report names the leaf and the feature.
    let mut vmx = s.pv_default;
    let mut fs = vmx.featureset();
    fs.insert(Feature::VMX);
    fs.insert(Feature::SMX);
    vmx.set_featureset(&fs);
    let e = check_compatible(&max, &vmx).unwrap_err();
    assert_eq!(
        (e.leaf, e.subleaf, e.reason),
        (1, NO_SUBLEAF, IncompatibilityReason::Features)
    );
    assert_eq!(
        e.extra_features,
        Featureset::of(&[Feature::VMX, Feature::SMX])
    );
    assert!(e.to_string().contains("vmx"), "{e}");
}

#[test]
fn domain_policies_refuse_what_the_max_lacks_and_name_it() {
    let s = skylake();
    let mut fs = s.pv_default.featureset();
    assert!(s.domain_policy(DomainKind::Pv, Vendor::Intel, &fs).is_ok());
    assert_eq!(
        s.domain_policy(DomainKind::Pv, Vendor::Amd, &fs),
        Err(DomainPolicyError::VendorMismatch {
            host: Vendor::Intel,
            requested: Vendor::Amd
        })
    );
    fs.insert(Feature::VMX);
    fs.insert(Feature::AMX_TILE); // Skylake has no AMX
    assert_eq!(
        s.domain_policy(DomainKind::Pv, Vendor::Intel, &fs),
        Err(DomainPolicyError::NotOffered {
            offenders: Featureset::of(&[Feature::VMX, Feature::AMX_TILE])
        })
    );
    let unnamed = Featureset::from_words({
        let mut w = [0; 19];
        w[5] = 1 << 22; // CPUID.07H.0:EBX[22] has no name
        w
    });
    assert_eq!(
        s.domain_policy(DomainKind::Pv, Vendor::Intel, &unnamed),
        Err(DomainPolicyError::UnknownFeatures { bits: unnamed })
    );
    // HVM HAP-only features are refused to a shadow-paging guest.
    let mut hap = s.hvm_default.featureset();
    assert!(hap.contains(Feature::PCID));
    assert!(
        s.domain_policy(DomainKind::HvmHap, Vendor::Intel, &hap)
            .is_ok()
    );
    hap.insert(Feature::VMX);
    assert!(
        s.domain_policy(DomainKind::HvmHap, Vendor::Intel, &hap)
            .is_ok(),
        "nested virt is max"
    );
    assert!(matches!(
        s.domain_policy(DomainKind::HvmShadow, Vendor::Intel, &hap),
        Err(DomainPolicyError::NotOffered { offenders }) if offenders.contains(Feature::PCID)
    ));
}

#[test]
fn domain_policies_are_dependency_closed_and_derive_leaf_d() {
    let s = skylake();
    let mut fs = s.pv_default.featureset();
    fs.remove(Feature::XSAVE);
    let p = s.domain_policy(DomainKind::Pv, Vendor::Intel, &fs).unwrap();
    let got = p.featureset();
    for gone in [
        Feature::AVX,
        Feature::AVX2,
        Feature::AVX512F,
        Feature::FMA,
        Feature::XSAVEOPT,
    ] {
        assert!(!got.contains(gone), "{gone} survived without XSAVE");
    }
    assert_eq!(
        p.leaf(0xd, 0).unwrap(),
        CpuidRegs::ZERO,
        "no XSAVE, no leaf 0xD"
    );
    let mut fs = s.pv_default.featureset();
    fs.remove(Feature::AVX512F);
    let p = s.domain_policy(DomainKind::Pv, Vendor::Intel, &fs).unwrap();
    assert!(!p.featureset().contains(Feature::AVX512BW));
    // XCR0 offers x87, SSE, AVX but not the AVX-512 components 5-7 (Intel SDM 13.1).
    let xcr0 = p.xcr0_mask();
    assert_eq!(xcr0 & 0b1110_0111, 0b0000_0111, "{xcr0:#x}");
    assert_eq!(p.leaf(0xd, 6).unwrap(), CpuidRegs::ZERO);
}

#[test]
fn cpuid_option_disables_with_dependencies() {
    let disabled = parse_cpuid_option("no-avx,no-rdrand").unwrap();
    assert_eq!(disabled, Featureset::of(&[Feature::AVX, Feature::RDRAND]));
    let s = system(
        "GenuineIntel0050654_SkylakeXeon_20_CPUID.txt",
        HostOptions {
            disabled,
            ..HostOptions::default()
        },
    );
    let host = s.host.featureset();
    assert!(
        !host.contains(Feature::AVX)
            && !host.contains(Feature::AVX2)
            && !host.contains(Feature::AVX512F)
    );
    assert!(host.contains(Feature::XSAVE) && host.contains(Feature::SSE4_2));
    assert!(
        s.raw.featureset().contains(Feature::AVX),
        "raw is the hardware's"
    );
    let e = parse_cpuid_option("no-avx,avx2").unwrap_err();
    assert_eq!(e.column, 8);
    assert!(e.to_string().contains("avx2"));
    assert!(parse_cpuid_option("no-bogus").is_err());
}

fn context(kind: DomainKind, state: Option<VcpuState>) -> GuestContext {
    GuestContext {
        domain: GuestDomain {
            kind,
            domid: 7,
            hardware_domain: false,
            host_features: Featureset::EMPTY,
            host_paddr_bits: 46,
            xen_version: (4, 23),
        },
        vcpu_id: 3,
        state,
    }
}

fn running(entry: CpuidEntry) -> VcpuState {
    VcpuState {
        entry,
        cr4_osxsave: false,
        cr4_pke: false,
        kernel_mode: true,
        host_cr4_osxsave: true,
        xcr0: 0b111,
        xss: 0,
        apic_enabled: true,
        long_mode: true,
    }
}

#[test]
fn guest_cpuid_static_pass() {
    let s = skylake();
    let p = &s.pv_default;
    let ctx = context(DomainKind::Pv, None);
    // Out of range: all zeros, on Intel too (Xen follows the AMD model).
    assert_eq!(guest_cpuid(p, 0xe, 0, &ctx), CpuidRegs::ZERO);
    assert_eq!(guest_cpuid(p, 0x14, 0, &ctx), CpuidRegs::ZERO);
    assert_eq!(guest_cpuid(p, 7, 3, &ctx), CpuidRegs::ZERO);
    assert_eq!(
        guest_cpuid(p, 0x8000_0009, 0, &ctx),
        CpuidRegs::ZERO,
        "Intel extd ends at 8"
    );
    assert_eq!(guest_cpuid(p, 0xffff_ffff, 0, &ctx), CpuidRegs::ZERO);
    // Leaves without subleaves ignore the subleaf.
    assert_eq!(guest_cpuid(p, 1, 0, &ctx), guest_cpuid(p, 1, 0x55, &ctx));
    // The Xen leaves: signature, version, hypercall page, PV address width.
    let l0 = guest_cpuid(p, 0x4000_0000, 0, &ctx);
    assert_eq!(
        (l0.a, l0.b, l0.c, l0.d),
        (0x4000_0005, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e)
    );
    assert_eq!(guest_cpuid(p, 0x4000_0001, 0, &ctx).a, 4 << 16 | 23);
    assert_eq!(
        guest_cpuid(p, 0x4000_0002, 0, &ctx),
        CpuidRegs::new(1, 0x4000_0000, 1, 0)
    );
    assert_eq!(
        guest_cpuid(p, 0x4000_0004, 0, &ctx),
        CpuidRegs::ZERO,
        "leaf 4 is HVM only"
    );
    assert_eq!(guest_cpuid(p, 0x4000_0005, 0, &ctx).b, 46);
    assert_eq!(guest_cpuid(p, 0x4000_0006, 0, &ctx), CpuidRegs::ZERO);
    let hvm = context(DomainKind::HvmHap, None);
    assert_eq!(
        guest_cpuid(&s.hvm_default, 0x4000_0004, 0, &hvm),
        CpuidRegs::new(0x18, 3, 7, 0)
    );
    let mut limited = *p;
    limited.set_hypervisor_limits(2, 0);
    assert_eq!(guest_cpuid(&limited, 0x4000_0000, 0, &ctx).a, 0x4000_0002);
    assert_eq!(guest_cpuid(&limited, 0x4000_0003, 0, &ctx), CpuidRegs::ZERO);
}

#[test]
fn guest_cpuid_dynamic_pass() {
    let s = skylake();
    let osxsave = Feature::OSXSAVE.mask();
    // PV native CPUID (faulted): OSXSAVE follows the virtual CR4 only.
    let pv = s.pv_default;
    let faulted = context(DomainKind::Pv, Some(running(CpuidEntry::Fault)));
    assert_eq!(guest_cpuid(&pv, 1, 0, &faulted).c & osxsave, 0);
    // The forced-emulation prefix in kernel mode leaks Xen's CR4.OSXSAVE (de-facto PV ABI).
    let forced = context(DomainKind::Pv, Some(running(CpuidEntry::ForcedEmulation)));
    assert_ne!(guest_cpuid(&pv, 1, 0, &forced).c & osxsave, 0);
    let mut user = running(CpuidEntry::ForcedEmulation);
    user.kernel_mode = false;
    assert_eq!(
        guest_cpuid(&pv, 1, 0, &context(DomainKind::Pv, Some(user))).c & osxsave,
        0
    );
    // HVM: OSXSAVE and OSPKE from CR4, APIC ID = 2 * vCPU, APIC bit follows APIC_BASE.EN.
    let hvm = s.hvm_default;
    let mut state = running(CpuidEntry::VmExit);
    state.cr4_osxsave = true;
    state.cr4_pke = true;
    let l1 = guest_cpuid(&hvm, 1, 0, &context(DomainKind::HvmHap, Some(state)));
    assert_ne!(l1.c & osxsave, 0);
    assert_eq!(l1.b >> 24, 6);
    assert_ne!(
        guest_cpuid(&hvm, 7, 0, &context(DomainKind::HvmHap, Some(state))).c
            & Feature::OSPKE.mask(),
        0
    );
    state.apic_enabled = false;
    assert_eq!(
        guest_cpuid(&hvm, 1, 0, &context(DomainKind::HvmHap, Some(state))).d & Feature::APIC.mask(),
        0
    );
    // Leaf 0xB: x2APIC ID and the level asked for.
    let topo = guest_cpuid(&hvm, 0xb, 1, &context(DomainKind::HvmHap, Some(state)));
    assert_eq!((topo.c & 0xff, topo.d), (1, 6));
    // Leaf 0xD: XSAVE size for the current XCR0: x87+SSE+AVX = 576 + 256 bytes.
    let d0 = guest_cpuid(&hvm, 0xd, 0, &context(DomainKind::HvmHap, Some(state)));
    assert_eq!(d0.b, 832);
    // Intel: SYSCALL only in long mode.
    state.long_mode = false;
    let e1 = guest_cpuid(
        &hvm,
        0x8000_0001,
        0,
        &context(DomainKind::HvmHap, Some(state)),
    );
    assert_eq!(e1.d & Feature::SYSCALL.mask(), 0);
    // dom0's kernel sees MONITOR on the faulting path when the host has it.
    let mut dom0 = context(DomainKind::Pv, Some(running(CpuidEntry::Fault)));
    dom0.domain.hardware_domain = true;
    dom0.domain.host_features = s.host.featureset();
    assert!(s.host.featureset().contains(Feature::MONITOR));
    assert_ne!(guest_cpuid(&pv, 1, 0, &dom0).c & Feature::MONITOR.mask(), 0);
    assert_eq!(
        guest_cpuid(&pv, 1, 0, &faulted).c & Feature::MONITOR.mask(),
        0
    );
}

#[test]
fn amd_guests_see_the_common_1d_copies_and_amd_leaves() {
    let s = genoa();
    // System policies carry no copies of CPUID.01H:EDX in CPUID.80000001H:EDX (Xen writes
    // their featuresets back masked); a domain's policy gets them when it is recalculated.
    let p = s.pv_default;
    assert_eq!(p.leaf(0x8000_0001, 0).unwrap().d & 0x0183_f3ff, 0);
    let d = s
        .domain_policy(DomainKind::Pv, Vendor::Amd, &p.featureset())
        .unwrap();
    let leaf1 = d.leaf(1, 0).unwrap().d;
    let e1 = d.leaf(0x8000_0001, 0).unwrap().d;
    assert_ne!(leaf1 & 0x0183_f3ff, 0);
    assert_eq!(e1 & 0x0183_f3ff, leaf1 & 0x0183_f3ff);
    assert_ne!(e1 & Feature::LM.mask(), 0);
    // Featuresets carrying the copies are accepted, not refused as unknown bits.
    assert!(
        s.domain_policy(DomainKind::Pv, Vendor::Amd, &d.featureset())
            .is_ok()
    );
    assert!(
        p.slot(Slot::Extd(0x21)).a & Feature::CPUID_USER_DIS.mask() == 0,
        "not offered to guests"
    );
    assert_eq!(p.max_extd_leaf(), 0x8000_0021);
}

// ---------------------------------------------------------------------------------------------
// Where the crate once differed from Xen's libx86 (issue 10): one regression test each.

fn keys(p: &CpuPolicy) -> Vec<(u32, u32)> {
    serialise(p).0.iter().map(|l| (l.leaf, l.subleaf)).collect()
}

/// A processor answering from a table; every query it has no row for returns zeros.
struct TableCpu(Vec<((u32, u32), CpuidRegs)>);

impl xen_levelling::CpuidSource for TableCpu {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        let subleaf = if Slot::leaf_has_subleaves(leaf) {
            subleaf
        } else {
            0
        };
        self.0
            .iter()
            .find(|(k, _)| *k == (leaf, subleaf))
            .map_or(CpuidRegs::ZERO, |(_, r)| *r)
    }
}

#[test]
fn extended_leaf_0x80000000_is_always_serialised_and_kept() {
    // Xen: an empty policy is leaf 0, the two Xen limits and leaf 0x80000000.
    assert_eq!(
        keys(&CpuPolicy::EMPTY),
        [
            (0, NO_SUBLEAF),
            (0x4000_0000, NO_SUBLEAF),
            (0x4000_0100, NO_SUBLEAF),
            (0x8000_0000, NO_SUBLEAF)
        ]
    );
    // The low 16 bits of CPUID.80000000H:EAX bound the range, whatever the top half says.
    let mut p = CpuPolicy::EMPTY;
    p.set_max_extd_leaf(0x0000_0002);
    p.leaf_mut(0x8000_0000, 0).unwrap().b = 0xc2;
    p.leaf_mut(0x8000_0002, 0).unwrap().c = 0xc2;
    p.leaf_mut(0x8000_0003, 0).unwrap().c = 0xc2;
    p.clear_out_of_range_leaves();
    assert_eq!(
        p.leaf(0x8000_0000, 0).unwrap().b,
        0xc2,
        "leaf 0x80000000 kept"
    );
    assert_eq!(
        p.leaf(0x8000_0002, 0).unwrap().c,
        0xc2,
        "in range by the low half"
    );
    assert_eq!(p.leaf(0x8000_0003, 0), Some(CpuidRegs::ZERO));
    assert_eq!(
        keys(&p)[3..],
        [0x8000_0000, 0x8000_0001, 0x8000_0002].map(|l| (l, NO_SUBLEAF))
    );
    // A max of 0 still keeps leaf 0x80000000 itself.
    let mut p = CpuPolicy::EMPTY;
    p.leaf_mut(0x8000_0000, 0).unwrap().b = 0xc2;
    p.leaf_mut(0x8000_0001, 0).unwrap().a = 0xc2;
    p.clear_out_of_range_leaves();
    assert_eq!(p.leaf(0x8000_0000, 0), Some(CpuidRegs::new(0, 0xc2, 0, 0)));
    assert_eq!(p.leaf(0x8000_0001, 0), Some(CpuidRegs::ZERO));
}

#[test]
fn clearing_zeroes_leaf_4_and_0xb_from_the_terminator_inclusive() {
    let mut p = CpuPolicy::EMPTY;
    p.set_max_basic_leaf(0xb);
    // Leaf 4: one cache (type 1), then a terminator with junk in its other registers.
    *p.leaf_mut(4, 0).unwrap() = CpuidRegs::new(0x121, 1, 2, 3);
    *p.leaf_mut(4, 1).unwrap() = CpuidRegs::new(0x100, 0xc2, 0xc2, 0xc2);
    *p.leaf_mut(4, 2).unwrap() = CpuidRegs::new(0x122, 0xc2, 0, 0);
    // Leaf 0xB: the first level is already invalid, and carries ECX = 0 and an x2APIC ID.
    *p.leaf_mut(0xb, 0).unwrap() = CpuidRegs::new(1, 0xc2, 0, 0x2a);
    *p.leaf_mut(0xb, 1).unwrap() = CpuidRegs::new(4, 0xc2, 0x201, 0x2a);
    p.clear_out_of_range_leaves();
    assert_eq!(p.leaf(4, 0), Some(CpuidRegs::new(0x121, 1, 2, 3)));
    for (leaf, sub) in [(4, 1), (4, 2), (0xb, 0), (0xb, 1)] {
        assert_eq!(p.leaf(leaf, sub), Some(CpuidRegs::ZERO), "{leaf:#x}:{sub}");
    }
    // The terminators are still serialised, now empty.
    let (leaves, _) = serialise(&p);
    let terminators: Vec<_> = leaves
        .iter()
        .filter(|l| (l.leaf, l.subleaf) == (4, 1) || (l.leaf, l.subleaf) == (0xb, 0))
        .map(|l| (l.a, l.b, l.c, l.d))
        .collect();
    assert_eq!(terminators, [(0, 0, 0, 0), (0, 0, 0, 0)]);
}

#[test]
fn raw_fill_does_not_store_the_leaf_4_and_0xb_terminators() {
    // A CPU with one cache and one topology level. Its terminators carry what real CPUs put
    // there: leaf 0xB ECX[7:0] = the subleaf and EDX = the x2APIC ID (0x2a) of this CPU.
    let cpu = TableCpu(vec![
        ((0, 0), CpuidRegs::new(0xb, 1, 2, 3)),
        ((4, 0), CpuidRegs::new(0x121, 0x1c0_003f, 0x3f, 0)),
        ((4, 1), CpuidRegs::new(0, 0, 0x1, 0x2a)),
        ((0xb, 0), CpuidRegs::new(1, 2, 0x100, 0x2a)),
        ((0xb, 1), CpuidRegs::new(0, 0, 0x1, 0x2a)),
        ((0x8000_0000, 0), CpuidRegs::new(0x8000_0001, 0, 0, 0)),
    ]);
    let p = CpuPolicy::from_source(&cpu, RawMsrs::default());
    assert_eq!(
        p.leaf(4, 0),
        Some(CpuidRegs::new(0x121, 0x1c0_003f, 0x3f, 0))
    );
    assert_eq!(p.leaf(4, 1), Some(CpuidRegs::ZERO));
    assert_eq!(p.leaf(0xb, 0), Some(CpuidRegs::new(1, 2, 0x100, 0x2a)));
    assert_eq!(p.leaf(0xb, 1), Some(CpuidRegs::ZERO), "x2APIC ID leaked");
}

#[test]
fn hypervisor_limits_are_8_bits() {
    let entries = [eax_of(0x4000_0000, 0x105), eax_of(0x4000_0100, 0xffff_ff02)];
    let p = CpuPolicy::from_arrays(&entries, &[]).unwrap();
    assert_eq!(p.hypervisor_limits(), (5, 2));
    let (leaves, _) = serialise(&p);
    let limits: Vec<_> = leaves
        .iter()
        .filter(|l| l.leaf >> 16 == 0x4000)
        .map(|l| l.a)
        .collect();
    assert_eq!(limits, [5, 2]);
}

#[test]
fn xsave_subleaves_follow_the_highest_component() {
    // Components 0, 1 and 5 (x87, SSE, opmask) with 2-4 absent: subleaves up to 5 all stay.
    let mut p = CpuPolicy::EMPTY;
    p.set_max_basic_leaf(0xd);
    for sub in 0..8 {
        p.leaf_mut(0xd, sub).unwrap().b = 0xc2;
    }
    p.leaf_mut(0xd, 0).unwrap().a = 0b10_0011;
    p.clear_out_of_range_leaves();
    for sub in 0..8 {
        let kept = p.leaf(0xd, sub).unwrap().b == 0xc2;
        assert_eq!(kept, sub <= 5, "subleaf {sub}");
    }
    let leaf_d: Vec<u32> = keys(&p)
        .iter()
        .filter(|k| k.0 == 0xd)
        .map(|k| k.1)
        .collect();
    assert_eq!(leaf_d, [0, 1, 2, 3, 4, 5]);
    // No components at all: subleaves 0 and 1 go too.
    let mut p = CpuPolicy::EMPTY;
    p.set_max_basic_leaf(0xd);
    p.leaf_mut(0xd, 0).unwrap().b = 0xc2;
    p.leaf_mut(0xd, 1).unwrap().a = 0xc2; // XSAVEOPT etc. (CPUID.0DH.1:EAX) but no state
    p.clear_out_of_range_leaves();
    assert_eq!(p.leaf(0xd, 0), Some(CpuidRegs::ZERO));
    assert_eq!(p.leaf(0xd, 1), Some(CpuidRegs::ZERO));
}

#[test]
fn shanghai_is_a_vendor_of_its_own() {
    let (b, c, d) = Vendor::SHANGHAI_REGS;
    assert_eq!(Vendor::from_regs(b, c, d), Vendor::Shanghai);
    assert_ne!(Vendor::Shanghai, Vendor::Centaur);
    // Xen's X86_VENDOR_SHANGHAI is bit 3; Centaur is bit 2.
    assert_eq!(
        (Vendor::Shanghai.xen_id(), Vendor::Centaur.xen_id()),
        (8, 4)
    );
    // The twelve bytes, in EBX, EDX, ECX order, spell the vendor string.
    let bytes: Vec<u8> = [b, d, c].iter().flat_map(|r| r.to_le_bytes()).collect();
    assert_eq!(&bytes, b"  Shanghai  ");
}

#[test]
fn a_max_of_0xffffffff_wraps_as_in_xen() {
    // Xen clears from max + 1 in 32 bits: 0xffffffff wraps to 0 and the whole array goes,
    // leaf 0 (and leaf 7 subleaf 0) included.
    let mut p = CpuPolicy::EMPTY;
    p.set_max_basic_leaf(u32::MAX);
    p.leaf_mut(0, 0).unwrap().b = 0xc2;
    p.leaf_mut(1, 0).unwrap().a = 0xc2;
    p.leaf_mut(4, 0).unwrap().a = 1;
    p.clear_out_of_range_leaves();
    assert_eq!(p.leaf(0, 0), Some(CpuidRegs::ZERO));
    assert_eq!(p.leaf(1, 0), Some(CpuidRegs::ZERO));
    assert_eq!(
        p.leaf(4, 0),
        Some(CpuidRegs::ZERO),
        "leaf 4 follows the cleared max"
    );
    let mut p = CpuPolicy::EMPTY;
    p.set_max_basic_leaf(7);
    p.set_max_feat_subleaf(u32::MAX);
    p.leaf_mut(7, 1).unwrap().b = 0xc2;
    p.clear_out_of_range_leaves();
    assert_eq!(
        (p.leaf(7, 0), p.leaf(7, 1)),
        (Some(CpuidRegs::ZERO), Some(CpuidRegs::ZERO))
    );
}
