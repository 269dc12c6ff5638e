//! The system policies (raw → host → PV/HVM max and default) and domain policies built from a
//! toolstack's featureset, following Xen's `xen/arch/x86/cpu-policy.c` (reference
//! `xen-levelling.md` 4.4).
//!
//! Where this differs from Xen, it is on purpose: a domain featureset asking for features the
//! domain type's max policy lacks is refused with the list of offenders, where Xen silently
//! clamps; and `cpuid=` accepts only `no-<feature>` items, with an error naming a bad item.

use core::fmt;

use super::{CpuPolicy, EXTD_BASE, NR_XSTATE, Slot};
use crate::cpuid::{CpuidRegs, Vendor};
use crate::feature::{self, Feature};
use crate::featureset::Featureset;
use crate::featureset::text::ShortText;

/// How the host is configured: what Xen's command line and probing decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostOptions {
    /// Features removed with `cpuid=no-<feature>` (their dependents go too).
    pub disabled: Featureset,
    /// CPUID faulting is available and working (probed by the levelling mechanism).
    pub cpuid_faulting: bool,
    /// HVM guests use hardware-assisted paging (EPT/NPT); otherwise shadow paging.
    pub hap: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            disabled: Featureset::EMPTY,
            cpuid_faulting: false,
            hap: true,
        }
    }
}

/// A `cpuid=` item that is not `no-<known feature>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidOptionError {
    /// 1-based column where the item starts.
    pub column: usize,
    /// The item (cut to fit).
    pub item: ShortText,
}

impl fmt::Display for CpuidOptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpuid= column {}: `{}` is not `no-<feature>` with a known feature name",
            self.column, self.item
        )
    }
}

impl core::error::Error for CpuidOptionError {}

/// Parse Xen's `cpuid=` option, `no-avx512f,no-rdrand`: the features to disable.
pub fn parse_cpuid_option(text: &str) -> Result<Featureset, CpuidOptionError> {
    let mut disabled = Featureset::EMPTY;
    let mut at = 0;
    for item in text.split(',') {
        let feature = item.trim().strip_prefix("no-").and_then(Feature::from_name);
        match feature {
            Some(f) => disabled.insert(f),
            None if item.trim().is_empty() => {}
            None => {
                return Err(CpuidOptionError {
                    column: text[..at].chars().count() + 1,
                    item: ShortText::new(item),
                });
            }
        }
        at += item.len() + 1;
    }
    Ok(disabled)
}

/// The kind of domain a policy is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// A paravirtualised guest (ring 3 kernel, levelled by faulting or masking).
    Pv,
    /// An HVM guest on hardware-assisted paging.
    HvmHap,
    /// An HVM guest on shadow paging.
    HvmShadow,
}

impl DomainKind {
    /// True for the HVM kinds.
    pub const fn is_hvm(self) -> bool {
        !matches!(self, DomainKind::Pv)
    }
}

/// Which system policy (the sysctl's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemPolicy {
    /// What the hardware reports.
    Raw,
    /// What Xen itself uses.
    Host,
    /// The most a PV guest may have.
    PvMax,
    /// What a PV guest gets by default.
    PvDefault,
    /// The most an HVM guest may have.
    HvmMax,
    /// What an HVM guest gets by default.
    HvmDefault,
}

/// The six system policies of one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemPolicies {
    /// What the hardware reports, dynamic bits cleared.
    pub raw: CpuPolicy,
    /// What Xen itself uses: raw, clamped, less `cpuid=no-…`.
    pub host: CpuPolicy,
    /// The most a PV guest may have.
    pub pv_max: CpuPolicy,
    /// What a PV guest gets by default.
    pub pv_default: CpuPolicy,
    /// The most an HVM guest may have (HAP or shadow, as the host runs HVM guests).
    pub hvm_max: CpuPolicy,
    /// What an HVM guest gets by default.
    pub hvm_default: CpuPolicy,
    /// The options the policies were derived with.
    pub options: HostOptions,
}

/// Why a domain policy could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainPolicyError {
    /// The featureset was made for another vendor's CPUs.
    VendorMismatch {
        /// This host's vendor.
        host: Vendor,
        /// The vendor asked for.
        requested: Vendor,
    },
    /// Bits the feature table does not name.
    UnknownFeatures {
        /// The bits.
        bits: Featureset,
    },
    /// Features the domain type's max policy does not offer on this host.
    NotOffered {
        /// The features.
        offenders: Featureset,
    },
    /// A HAP guest on a host that runs HVM guests on shadow paging.
    HapUnavailable,
}

impl fmt::Display for DomainPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPolicyError::VendorMismatch { host, requested } => {
                write!(f, "featureset is for {requested} but this host is {host}")
            }
            DomainPolicyError::UnknownFeatures { bits } => {
                write!(
                    f,
                    "featureset has bits no feature is known for: {}",
                    bits.names()
                )
            }
            DomainPolicyError::NotOffered { offenders } => {
                write!(
                    f,
                    "features not offered to this domain type here: {}",
                    offenders.names()
                )
            }
            DomainPolicyError::HapUnavailable => {
                f.write_str("HAP guest asked for, but this host runs HVM guests on shadow paging")
            }
        }
    }
}

impl core::error::Error for DomainPolicyError {}

impl SystemPolicies {
    /// Derive every system policy from the raw hardware policy, as Xen does at boot.
    pub fn derive(raw: &CpuPolicy, options: HostOptions) -> SystemPolicies {
        let raw = raw_policy(raw);
        let host = host_policy(&raw, &options);
        let pv_max = pv_max_policy(&host);
        let pv_default = pv_default_policy(&host, &pv_max);
        let hvm_max = hvm_max_policy(&host, options.hap);
        let hvm_default = hvm_default_policy(&host, &hvm_max, options.hap);
        SystemPolicies {
            raw,
            host,
            pv_max,
            pv_default,
            hvm_max,
            hvm_default,
            options,
        }
    }

    /// One of the policies.
    pub fn get(&self, which: SystemPolicy) -> &CpuPolicy {
        match which {
            SystemPolicy::Raw => &self.raw,
            SystemPolicy::Host => &self.host,
            SystemPolicy::PvMax => &self.pv_max,
            SystemPolicy::PvDefault => &self.pv_default,
            SystemPolicy::HvmMax => &self.hvm_max,
            SystemPolicy::HvmDefault => &self.hvm_default,
        }
    }

    /// The max policy for a domain kind (HVM shadow guests get the HVM max less HAP-only
    /// features), or `None` for a HAP guest on a shadow-only host.
    pub fn max_for(&self, kind: DomainKind) -> Option<CpuPolicy> {
        match kind {
            DomainKind::Pv => Some(self.pv_max),
            DomainKind::HvmHap if !self.options.hap => None,
            DomainKind::HvmHap => Some(self.hvm_max),
            DomainKind::HvmShadow => {
                Some(self.shadow_paging(self.hvm_max, feature::HVM_SHADOW_MAX))
            }
        }
    }

    /// The default policy for a domain kind.
    pub fn default_for(&self, kind: DomainKind) -> CpuPolicy {
        match kind {
            DomainKind::Pv => self.pv_default,
            DomainKind::HvmHap => self.hvm_default,
            DomainKind::HvmShadow => {
                self.shadow_paging(self.hvm_default, feature::HVM_SHADOW_DEFAULT)
            }
        }
    }

    /// An HVM policy cut down to what shadow paging offers (`mask`), keeping the host's FPU
    /// behaviour bits (a fact about the CPU, not an offer) and AMD's copies of leaf 1.
    fn shadow_paging(&self, mut p: CpuPolicy, mask: Featureset) -> CpuPolicy {
        let mut fs = p.featureset() & mask;
        fpu_behaviour_from_host(&mut fs, &self.host);
        p.set_featureset(&fs);
        mirror_common_1d(&mut p);
        p
    }

    /// The policy for a new domain of `kind` whose toolstack asks for `featureset` (the pool
    /// level, typically) on `vendor`'s CPUs. The vendor must be this host's; every feature
    /// must be within the kind's max policy (otherwise the error lists the offenders); the
    /// result is dependency-closed, with Xen's per-domain fix-ups applied.
    pub fn domain_policy(
        &self,
        kind: DomainKind,
        vendor: Vendor,
        featureset: &Featureset,
    ) -> Result<CpuPolicy, DomainPolicyError> {
        let host_vendor = self.host.vendor();
        if vendor != host_vendor {
            return Err(DomainPolicyError::VendorMismatch {
                host: host_vendor,
                requested: vendor,
            });
        }
        let bits = featureset.unknown();
        if !bits.is_empty() {
            return Err(DomainPolicyError::UnknownFeatures { bits });
        }
        let max = self
            .max_for(kind)
            .ok_or(DomainPolicyError::HapUnavailable)?;
        let offenders = *featureset - max.featureset();
        if !offenders.is_empty() {
            return Err(DomainPolicyError::NotOffered { offenders });
        }
        let mut p = self.default_for(kind);
        let mut fs = *featureset;
        // The toolstack's topology rules (libxc `xc_cpuid_apply_policy`): PV guests see the
        // host's HTT/CMP_LEGACY; HVM guests always get HTT and never CMP_LEGACY.
        let topology = Featureset::of(&[Feature::HTT, Feature::CMP_LEGACY]);
        let topology_bits = match kind {
            DomainKind::Pv => self.host.featureset() & topology,
            _ => Featureset::of(&[Feature::HTT]),
        };
        fs = (fs - topology) | topology_bits;
        p.set_featureset(&fs);
        Ok(recalculate_domain_policy(p, &max, &self.host))
    }
}

impl SystemPolicies {
    /// Xen's per-domain recalculation of a whole policy a toolstack set (`recalculate_cpuid_policy`):
    /// clamped to the kind's max, dependency-closed, leaf 0xD and the miscellaneous leaves
    /// re-derived. `None` for a HAP guest on a shadow-only host. Check the policy against the
    /// max first ([`crate::policy::compat::check_compatible`]): this clamps silently.
    pub fn recalculate(&self, kind: DomainKind, policy: &CpuPolicy) -> Option<CpuPolicy> {
        let max = self.max_for(kind)?;
        Some(recalculate_domain_policy(*policy, &max, &self.host))
    }
}

/// Xen's raw policy: the hardware's, with the bits that depend on the running CR4/XCR0 cleared.
fn raw_policy(hardware: &CpuPolicy) -> CpuPolicy {
    let mut p = *hardware;
    let mut fs = p.featureset();
    fs.remove(Feature::OSXSAVE); // CPUID.01H:ECX[27] mirrors CR4.OSXSAVE
    fs.remove(Feature::OSPKE); // CPUID.07H.0:ECX[4] mirrors CR4.PKE
    p.set_featureset(&fs);
    // CPUID.0DH.0:EBX and CPUID.0DH.1:EBX are sizes for the current XCR0/XSS.
    p.slot_mut(Slot::Xstate(0)).b = 0;
    p.slot_mut(Slot::Xstate(1)).b = 0;
    p
}

fn host_policy(raw: &CpuPolicy, options: &HostOptions) -> CpuPolicy {
    let mut p = *raw;
    p.set_max_basic_leaf(p.max_basic_leaf().min(0xd));
    p.set_max_feat_subleaf(p.max_feat_subleaf().min(2));
    // As Xen: only the low half of CPUID.80000000H:EAX counts (out-of-range clearing and
    // serialisation read it so), and the top half is made 0x8000.
    p.set_max_extd_leaf(EXTD_BASE | (p.max_extd_leaf() & 0xffff).min(0x21));
    let fs = (raw.featureset() - options.disabled).sanitised();
    p.set_featureset(&fs);
    recalculate_xstate(&mut p, raw);
    mirror_common_1d(&mut p);
    p.set_cpuid_faulting(options.cpuid_faulting);
    p.clear_out_of_range_leaves();
    p
}

/// Guests' max policies run with the array limits as max leaves (`guest_common_max_leaves`).
fn set_common_max_leaves(p: &mut CpuPolicy) {
    p.set_max_basic_leaf(0xd);
    p.set_max_feat_subleaf(2);
    p.set_max_extd_leaf(EXTD_BASE + 0x21);
}

/// Default policies keep the host's max leaves (`guest_common_default_leaves`).
fn set_host_max_leaves(p: &mut CpuPolicy, host: &CpuPolicy) {
    p.set_max_basic_leaf(host.max_basic_leaf());
    p.set_max_feat_subleaf(host.max_feat_subleaf());
    p.set_max_extd_leaf(host.max_extd_leaf());
}

/// Features Xen virtualises for every guest that may see them at all, whatever the host has
/// (`guest_common_max_feature_adjustments`).
fn max_feature_adjustments(fs: &mut Featureset, host: &CpuPolicy) {
    let host_fs = host.featureset();
    match host.vendor() {
        Vendor::Intel => {
            // MSR_ARCH_CAPS is always virtualised, with the "affected" hints and the
            // VERW-flushing bits a guest needs to pick mitigations after migrating.
            for f in [
                Feature::ARCH_CAPS,
                Feature::RSBA,
                Feature::RRSBA,
                Feature::MD_CLEAR,
                Feature::FB_CLEAR,
                Feature::RFDS_CLEAR,
            ] {
                fs.insert(f);
            }
            // CLWB is hidden by default on Skylake-SP only; max keeps the host's.
            fs.set(Feature::CLWB, host_fs.contains(Feature::CLWB));
            if host_fs.contains(Feature::RTM_ALWAYS_ABORT) {
                fs.insert(Feature::RTM_ALWAYS_ABORT);
            }
        }
        Vendor::Amd | Vendor::Hygon => fs.insert(Feature::VERW_CLEAR),
        _ => {}
    }
    fpu_behaviour_from_host(fs, host);
    // Topology and ERMS are safe to offer anywhere; a guest may be migrated to a host with them.
    fs.insert(Feature::HTT);
    fs.insert(Feature::CMP_LEGACY);
    fs.insert(Feature::ERMS);
}

/// Adjustments shared by max and default policies (`guest_common_feature_adjustments`).
fn common_feature_adjustments(fs: &mut Featureset, host: &CpuPolicy) {
    fs.insert(Feature::HYPERVISOR); // CPUID.01H:ECX[31]: the guest runs on Xen
    if fs.contains(Feature::IBRSB) {
        fs.insert(Feature::STIBP); // Xen emulates STIBP wherever IBRS is offered
    }
    if fs.contains(Feature::IBRS) {
        fs.insert(Feature::AMD_STIBP);
    }
    if host.featureset().contains(Feature::IBRSB) {
        fs.insert(Feature::IBPB); // Intel enumerates IBPB through IBRSB; AMD's bit is separate
    }
}

/// Defaults that follow the host, not the annotations (`guest_common_default_feature_adjustments`).
fn default_feature_adjustments(fs: &mut Featureset, host: &CpuPolicy) {
    let host_fs = host.featureset();
    let sig = host.signature();
    match host.vendor() {
        Vendor::Intel => {
            // Ivy Bridge: RDRAND is hidden by default against SRBDS (family 6 model 0x3A).
            if sig.family == 6 && sig.model == 0x3a {
                fs.remove(Feature::RDRAND);
            }
            // Skylake-SP: CLWB is hidden by default (family 6 model 0x55).
            if sig.family == 6 && sig.model == 0x55 {
                fs.remove(Feature::CLWB);
            }
            // TSX forced to abort: offer RTM_ALWAYS_ABORT instead of RTM.
            if host_fs.contains(Feature::RTM_ALWAYS_ABORT) {
                fs.remove(Feature::RTM);
                fs.insert(Feature::RTM_ALWAYS_ABORT);
            }
            for f in [Feature::MD_CLEAR, Feature::FB_CLEAR, Feature::RFDS_CLEAR] {
                fs.set(f, host_fs.contains(f));
            }
        }
        Vendor::Amd | Vendor::Hygon => {
            fs.set(Feature::VERW_CLEAR, host_fs.contains(Feature::VERW_CLEAR));
        }
        _ => {}
    }
    for f in [Feature::HTT, Feature::CMP_LEGACY, Feature::ERMS] {
        fs.set(f, host_fs.contains(f));
    }
    fpu_behaviour_from_host(fs, host);
}

/// Features that describe how the host's FPU behaves rather than offer anything: every policy
/// carries the host's values (`CPUID.07H.0:EBX[6]` FDP_EXCP_ONLY, `CPUID.07H.0:EBX[13]`
/// NO_FPU_SEL).
pub const FPU_BEHAVIOUR: [Feature; 2] = [Feature::FDP_EXCP_ONLY, Feature::NO_FPU_SEL];

/// FDP_EXCP_ONLY and NO_FPU_SEL describe how the FPU behaves, which no guest can be shielded
/// from: every policy reports the host's (Xen forces them per domain; we also put them in the
/// max and default policies so that a domain policy stays within its max).
fn fpu_behaviour_from_host(fs: &mut Featureset, host: &CpuPolicy) {
    let host_fs = host.featureset();
    for f in FPU_BEHAVIOUR {
        fs.set(f, host_fs.contains(f));
    }
}

/// After sanitising a default: advertise RSBA/RRSBA when ARCH_CAPS is visible and the host
/// is affected, so a guest that migrates keeps its mitigations.
fn advertise_rsba(fs: &mut Featureset, host: &CpuPolicy) {
    let host_fs = host.featureset();
    // Intel's MSR_ARCH_CAPS hints: the max policies carry them on Intel only.
    if host.vendor() == Vendor::Intel && fs.contains(Feature::ARCH_CAPS) {
        if host_fs.contains(Feature::RSBA) {
            fs.insert(Feature::RSBA);
        }
        if host_fs.contains(Feature::RRSBA) && fs.contains(Feature::EIBRS) {
            fs.insert(Feature::RRSBA);
        }
    }
}

fn pv_max_policy(host: &CpuPolicy) -> CpuPolicy {
    let mut p = *host;
    recalculate_misc(&mut p);
    set_common_max_leaves(&mut p);
    let mut fs = p.featureset() & feature::PV_MAX;
    fs.insert(Feature::X2APIC); // tolerated for legacy PV kernels that probe it
    fs.remove(Feature::SRSO_US_NO); // needs BP_SPEC_REDUCE, which PV does not get here
    max_feature_adjustments(&mut fs, host);
    common_feature_adjustments(&mut fs, host);
    p.set_featureset(&fs.sanitised());
    *p.slot_mut(Slot::Extd(0xa)) = CpuidRegs::ZERO; // CPUID.8000000AH: no SVM for PV
    finish(&mut p, host);
    p.set_cpuid_faulting(false);
    p
}

fn pv_default_policy(host: &CpuPolicy, pv_max: &CpuPolicy) -> CpuPolicy {
    let mut p = *pv_max;
    set_host_max_leaves(&mut p, host);
    let mut fs = p.featureset() & feature::PV_DEFAULT;
    common_feature_adjustments(&mut fs, host);
    default_feature_adjustments(&mut fs, host);
    let mut fs = fs.sanitised();
    advertise_rsba(&mut fs, host);
    p.set_featureset(&fs);
    finish(&mut p, host);
    p
}

fn hvm_max_policy(host: &CpuPolicy, hap: bool) -> CpuPolicy {
    let mut p = *host;
    recalculate_misc(&mut p);
    set_common_max_leaves(&mut p);
    let mask = if hap {
        feature::HVM_HAP_MAX
    } else {
        feature::HVM_SHADOW_MAX
    };
    let mut fs = p.featureset() & mask;
    // Every HVM guest has an emulated local APIC with x2APIC mode, and no long-mode segment
    // limits to enforce.
    fs.insert(Feature::APIC);
    fs.insert(Feature::X2APIC);
    fs.insert(Feature::NO_LMSL);
    if host.vendor().is_amd_like() {
        fs.insert(Feature::SEP); // SYSENTER is emulated for cross-vendor migration
    }
    if !host.featureset().contains(Feature::VMX) {
        fs.remove(Feature::PKS); // protection keys for supervisor pages need VT-x support
    }
    max_feature_adjustments(&mut fs, host);
    common_feature_adjustments(&mut fs, host);
    p.set_featureset(&fs.sanitised());
    finish(&mut p, host);
    p.set_cpuid_faulting(true); // HVM guests get virtual CPUID faulting
    p
}

fn hvm_default_policy(host: &CpuPolicy, hvm_max: &CpuPolicy, hap: bool) -> CpuPolicy {
    let mut p = *hvm_max;
    set_host_max_leaves(&mut p, host);
    let mask = if hap {
        feature::HVM_HAP_DEFAULT
    } else {
        feature::HVM_SHADOW_DEFAULT
    };
    let mut fs = p.featureset() & mask;
    fs.insert(Feature::APIC);
    fs.insert(Feature::X2APIC);
    fs.insert(Feature::NO_LMSL);
    common_feature_adjustments(&mut fs, host);
    default_feature_adjustments(&mut fs, host);
    let mut fs = fs.sanitised();
    advertise_rsba(&mut fs, host);
    p.set_featureset(&fs);
    finish(&mut p, host);
    p
}

/// Re-derive leaf 0xD and the AMD copies of leaf 1 from the features, then zero what is out
/// of range.
fn finish(p: &mut CpuPolicy, host: &CpuPolicy) {
    recalculate_xstate(p, host);
    mirror_common_1d(p);
    p.clear_out_of_range_leaves();
}

/// Xen's `recalculate_cpuid_policy` for one domain: clamp to `max`, close dependencies, take
/// the host's FPU quirks, re-derive leaf 0xD and the miscellaneous leaves.
fn recalculate_domain_policy(mut p: CpuPolicy, max: &CpuPolicy, host: &CpuPolicy) -> CpuPolicy {
    p.set_max_basic_leaf(p.max_basic_leaf().min(max.max_basic_leaf()));
    p.set_max_feat_subleaf(p.max_feat_subleaf().min(max.max_feat_subleaf()));
    // Intel's extended range ends at 0x80000008; AMD's runs to 0x80000021.
    let extd_limit = if p.vendor().is_amd_like() { 0x21 } else { 0x8 };
    p.set_max_extd_leaf(
        p.max_extd_leaf()
            .min(max.max_extd_leaf())
            .min(EXTD_BASE + extd_limit),
    );
    let mut fs = p.featureset() & max.featureset();
    if p.max_basic_leaf() < 0xd {
        fs.remove(Feature::XSAVE); // no leaf 0xD, no XSAVE
    }
    let mut fs = fs.sanitised();
    fpu_behaviour_from_host(&mut fs, host);
    p.set_featureset(&fs);
    recalculate_xstate(&mut p, host);
    recalculate_misc(&mut p);
    *p.slot_mut(Slot::Basic(0xa)) = CpuidRegs::ZERO; // CPUID.0AH: no vPMU
    if !fs.contains(Feature::SVM) {
        *p.slot_mut(Slot::Extd(0xa)) = CpuidRegs::ZERO; // CPUID.8000000AH: SVM features
    }
    if !fs.contains(Feature::PAGE1GB) {
        *p.slot_mut(Slot::Extd(0x19)) = CpuidRegs::ZERO; // CPUID.80000019H: 1G TLB info
    }
    p.clear_out_of_range_leaves();
    p
}

/// XSAVE state components (Intel SDM vol. 1, 13.1) and the features that enable them.
const XSTATE_FEATURES: [(u32, Feature); 10] = [
    (2, Feature::AVX),       // YMM_Hi128
    (3, Feature::MPX),       // BNDREGS
    (4, Feature::MPX),       // BNDCSR
    (5, Feature::AVX512F),   // opmask
    (6, Feature::AVX512F),   // ZMM_Hi256
    (7, Feature::AVX512F),   // Hi16_ZMM
    (9, Feature::PKU),       // PKRU
    (17, Feature::AMX_TILE), // XTILECFG
    (18, Feature::AMX_TILE), // XTILEDATA
    (62, Feature::LWP),      // AMD lightweight profiling
];

/// x87 and SSE state: always present with XSAVE.
const XSTATE_FP_SSE: u64 = 0b11;
/// The legacy region and the XSAVE header (Intel SDM vol. 1, 13.4).
const XSAVE_AREA_BASE_SIZE: u32 = 512 + 64;

/// Rebuild leaf 0xD from the policy's features: offer only the state components whose
/// features are present (and that `host` has), with sizes from `host`.
fn recalculate_xstate(p: &mut CpuPolicy, host: &CpuPolicy) {
    let fs = p.featureset();
    if !fs.contains(Feature::XSAVE) {
        for i in 0..NR_XSTATE {
            *p.slot_mut(Slot::Xstate(i)) = CpuidRegs::ZERO;
        }
        return;
    }
    let mut xcr0 = XSTATE_FP_SSE;
    for (component, feature) in XSTATE_FEATURES {
        if fs.contains(feature) {
            xcr0 |= 1 << component;
        }
    }
    xcr0 &= host.xcr0_mask() | XSTATE_FP_SSE;
    // Supervisor states (PT, CET, ...) belong to features Xen offers no guest.
    let xss = 0u64;
    let mut max_size = XSAVE_AREA_BASE_SIZE;
    for i in 2..NR_XSTATE {
        let offered = (xcr0 | xss) & (1 << i) != 0;
        let component = if offered {
            *host.slot(Slot::Xstate(i))
        } else {
            CpuidRegs::ZERO
        };
        if offered && xcr0 & (1 << i) != 0 {
            // Size plus offset; saturating, as a hostile raw policy may hold anything here.
            max_size = max_size.max(component.a.saturating_add(component.b));
        }
        *p.slot_mut(Slot::Xstate(i)) = component;
    }
    let leaf0 = p.slot_mut(Slot::Xstate(0));
    leaf0.a = xcr0 as u32;
    leaf0.d = (xcr0 >> 32) as u32;
    leaf0.c = max_size; // CPUID.0DH.0:ECX: size for every supported XCR0 component
    let leaf1 = p.slot_mut(Slot::Xstate(1));
    leaf1.c = xss as u32;
    leaf1.d = (xss >> 32) as u32;
}

/// CPUID.80000001H:EDX repeats CPUID.01H:EDX's common bits on AMD, and has them clear on
/// Intel ([`feature::COMMON_1D`]).
fn mirror_common_1d(p: &mut CpuPolicy) {
    let leaf1_edx = p.slot(Slot::Basic(1)).d;
    let amd_like = p.vendor().is_amd_like();
    let e1 = p.slot_mut(Slot::Extd(1));
    e1.d &= !feature::COMMON_1D;
    if amd_like {
        e1.d |= leaf1_edx & feature::COMMON_1D;
    }
}

/// Xen's `recalculate_misc`: hide what no guest should see of the host's identity, power
/// management and cache topology.
fn recalculate_misc(p: &mut CpuPolicy) {
    let leaf1 = p.slot_mut(Slot::Basic(1));
    leaf1.a &= !(0x3 << 12); // CPUID.01H:EAX[13:12]: processor type
    leaf1.b &= 0x00ff_ffff; // CPUID.01H:EBX[31:24]: initial APIC ID, set per vCPU
    for leaf in [0x5, 0x6, 0x8, 0xc] {
        // MONITOR sizes, thermal and power, and two reserved leaves.
        *p.slot_mut(Slot::Basic(leaf)) = CpuidRegs::ZERO;
    }
    for i in 0..super::NR_TOPO {
        *p.slot_mut(Slot::Topo(i)) = CpuidRegs::ZERO; // CPUID.0BH: topology is per domain
    }
    mirror_common_1d(p);
    let amd_like = p.vendor().is_amd_like();
    if !amd_like {
        let e1 = p.slot_mut(Slot::Extd(1));
        e1.a = 0; // CPUID.80000001H:EAX/EBX are reserved on Intel
        e1.b = 0;
    }
    if amd_like {
        // Legacy cache/TLB leaves, serial number and DCA do not exist on AMD.
        for leaf in [0x2, 0x3, 0x9] {
            *p.slot_mut(Slot::Basic(leaf)) = CpuidRegs::ZERO;
        }
        for i in 0..super::NR_CACHE {
            *p.slot_mut(Slot::Cache(i)) = CpuidRegs::ZERO;
        }
        // IBS, LWP, cache topology, memory encryption and the like: not virtualised.
        for leaf in (0x0b..=0x18).chain(0x1b..=0x20) {
            *p.slot_mut(Slot::Extd(leaf)) = CpuidRegs::ZERO;
        }
    } else {
        *p.slot_mut(Slot::Basic(0x3)) = CpuidRegs::ZERO; // processor serial number
        *p.slot_mut(Slot::Basic(0x9)) = CpuidRegs::ZERO; // direct cache access
    }
    let e8 = p.slot_mut(Slot::Extd(8));
    e8.a &= 0xffff; // CPUID.80000008H:EAX[15:0]: physical and linear address widths
    e8.d = 0;
    e8.c = if amd_like { e8.c & 0x3_f0ff } else { 0 }; // AMD: core count and APIC ID size
}
