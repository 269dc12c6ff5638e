//! Every MSR the crate names, defined once: numbers (with the manual that defines them) and
//! typed bits. The levelling MSRs, and the two MSRs a CPU policy carries.

use bitflags::bitflags;

/// MSR_PLATFORM_INFO (Intel SDM vol. 4, table 2-12; Nehalem and later).
pub const PLATFORM_INFO: u32 = 0xce;
/// IA32_ARCH_CAPABILITIES (Intel SDM vol. 4, MSR 0x10A; enumerated by `CPUID.07H.0:EDX[29]`).
pub const ARCH_CAPABILITIES: u32 = 0x10a;
/// MSR_MISC_FEATURES_ENABLES (Intel SDM vol. 4; "CPUID faulting" in the Ivy Bridge
/// virtualization technology FlexMigration application note).
pub const MISC_FEATURES_ENABLES: u32 = 0x140;
/// MSR_K8_HWCR, the AMD hardware configuration register (AMD APM vol. 2, 3.2.x; PPRs).
pub const AMD_HWCR: u32 = 0xc001_0015;

/// Intel V1 leaf 1 mask, Penryn/Dunnington (Intel FlexMigration note; Xen `MSR_INTEL_MASK_V1_CPUID1`).
pub const INTEL_MASK_V1_LEAF1: u32 = 0x478;
/// Intel V2 leaf 1 mask, Nehalem/Westmere.
pub const INTEL_MASK_V2_LEAF1: u32 = 0x130;
/// Intel V2 leaf 0x80000001 mask.
pub const INTEL_MASK_V2_EXTD1: u32 = 0x131;
/// Intel V3 leaf 1 mask, Sandy Bridge.
pub const INTEL_MASK_V3_LEAF1: u32 = 0x132;
/// Intel V3 leaf 0x80000001 mask.
pub const INTEL_MASK_V3_EXTD1: u32 = 0x133;
/// Intel V3 leaf 0xD subleaf 1 EAX mask.
pub const INTEL_MASK_V3_XSAVE1: u32 = 0x134;
/// AMD leaf 1 override (AMD BKDG for families 10h-16h, "CPUID Features Override"; Xen `MSR_K8_FEATURE_MASK`).
pub const AMD_OVERRIDE_LEAF1: u32 = 0xc001_1004;
/// AMD leaf 0x80000001 override (`MSR_K8_EXT_FEATURE_MASK`).
pub const AMD_OVERRIDE_EXTD1: u32 = 0xc001_1005;
/// AMD leaf 7 subleaf 0 EAX/EBX override (`MSR_AMD_L7S0_FEATURE_MASK`).
pub const AMD_OVERRIDE_LEAF7: u32 = 0xc001_1002;
/// AMD leaf 6 ECX override, family 15h only (`MSR_AMD_THRM_FEATURE_MASK`).
pub const AMD_OVERRIDE_LEAF6: u32 = 0xc001_1003;

/// Every MSR levelling owns: the faulting enumeration and controls and every vendor mask. A
/// guest's access to one never reaches hardware (the trap handlers' `guest_rdmsr` and
/// `guest_wrmsr`); the QEMU shim intercepts these (and MSR_ARCH_CAPABILITIES) for the silicon
/// model.
pub const LEVELLING_MSRS: [u32; 13] = [
    PLATFORM_INFO,
    MISC_FEATURES_ENABLES,
    AMD_HWCR,
    INTEL_MASK_V1_LEAF1,
    INTEL_MASK_V2_LEAF1,
    INTEL_MASK_V2_EXTD1,
    INTEL_MASK_V3_LEAF1,
    INTEL_MASK_V3_EXTD1,
    INTEL_MASK_V3_XSAVE1,
    AMD_OVERRIDE_LEAF1,
    AMD_OVERRIDE_EXTD1,
    AMD_OVERRIDE_LEAF7,
    AMD_OVERRIDE_LEAF6,
];

bitflags! {
    /// MSR_PLATFORM_INFO bits levelling reads.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PlatformInfo: u64 {
        /// `MSR_PLATFORM_INFO[31]`: CPUID faulting is supported.
        const CPUID_FAULTING = 1 << 31;
    }
}

bitflags! {
    /// MSR_MISC_FEATURES_ENABLES bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MiscFeaturesEnables: u64 {
        /// `MSR_MISC_FEATURES_ENABLES[0]`: CPUID at CPL > 0 raises #GP(0).
        const CPUID_FAULTING = 1 << 0;
        /// `MSR_MISC_FEATURES_ENABLES[1]`: MONITOR/MWAIT allowed at CPL 3 (Xeon Phi).
        const RING3_MWAIT = 1 << 1;
    }
}

bitflags! {
    /// MSR_K8_HWCR bits levelling touches.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Hwcr: u64 {
        /// `HWCR[35]` CpuidUserDis: CPUID at CPL > 0 raises #GP(0) (enumerated by
        /// `CPUID.80000021H:EAX[17]`).
        const CPUID_USER_DIS = 1 << 35;
    }
}
