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
    /// Xen's `spec-ctrl=` choices that change what guests are offered.
    pub spec_ctrl: SpecCtrlOptions,
}

impl Default for HostOptions {
    /// Xen's default command line: nothing disabled, HAP, MSR_SPEC_CTRL virtualised.
    fn default() -> Self {
        SystemPolicies::EMPTY.options
    }
}

/// The part of Xen's `spec-ctrl=` command line option that shapes the guest policies
/// (`xen/arch/x86/spec_ctrl.c`). The default is Xen's default command line: Xen virtualises
/// MSR_SPEC_CTRL for PV and HVM guests wherever the hardware lets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecCtrlOptions {
    /// `spec-ctrl=msr-sc=pv` (on by default): virtualise MSR_SPEC_CTRL for PV guests. Xen can
    /// only do so on hardware enumerating it the Intel way (`CPUID.07H.0:EDX[26]` IBRSB);
    /// without it PV guests lose IBRSB and IBRS.
    pub msr_sc_pv: bool,
    /// `spec-ctrl=msr-sc=hvm` (on by default): virtualise MSR_SPEC_CTRL for HVM guests
    /// (Intel's IBRSB, or AMD's IBRS with SVM's `CPUID.8000000AH:EDX[20]` SPEC_CTRL). It also
    /// gates `virt-ssbd` (`CPUID.80000008H:EBX[25]`) for HVM guests.
    pub msr_sc_hvm: bool,
}

impl Default for SpecCtrlOptions {
    fn default() -> Self {
        SystemPolicies::EMPTY.options.spec_ctrl
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

impl SystemPolicy {
    /// Every system policy, in declaration order (the sysctls number them otherwise:
    /// `abi::dispatch::POLICY_INDEXES`, `FEATURESET_INDEXES`).
    pub const ALL: [SystemPolicy; 6] = [
        SystemPolicy::Raw,
        SystemPolicy::Host,
        SystemPolicy::PvMax,
        SystemPolicy::PvDefault,
        SystemPolicy::HvmMax,
        SystemPolicy::HvmDefault,
    ];
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
        let mut policies = SystemPolicies::EMPTY;
        policies.derive_into(raw, options);
        policies
    }

    /// No policies yet: every one empty. A `const`, so that an embedder can keep the
    /// policies in a `static` and derive them in place ([`SystemPolicies::derive_into`]).
    pub const EMPTY: SystemPolicies = SystemPolicies {
        raw: CpuPolicy::EMPTY,
        host: CpuPolicy::EMPTY,
        pv_max: CpuPolicy::EMPTY,
        pv_default: CpuPolicy::EMPTY,
        hvm_max: CpuPolicy::EMPTY,
        hvm_default: CpuPolicy::EMPTY,
        options: HostOptions {
            disabled: Featureset::EMPTY,
            cpuid_faulting: false,
            hap: true,
            spec_ctrl: SpecCtrlOptions {
                msr_sc_pv: true,
                msr_sc_hvm: true,
            },
        },
    };

    /// [`SystemPolicies::derive`] into `self`, one policy at a time: the six policies (12 KB)
    /// never pass through the stack as one value, which a hypervisor's boot stack may not hold.
    pub fn derive_into(&mut self, raw: &CpuPolicy, options: HostOptions) {
        self.raw = raw_policy(raw);
        self.host = host_policy(&self.raw, &options);
        let boot = BootChoices::new(&self.raw, &self.host, &options);
        self.pv_max = pv_max_policy(&self.host, &self.raw, &boot);
        self.pv_default = pv_default_policy(&self.host, &self.raw, &self.pv_max);
        self.hvm_max = hvm_max_policy(&self.host, &self.raw, &boot, options.hap);
        self.hvm_default =
            hvm_default_policy(&self.host, &self.raw, &boot, &self.hvm_max, options.hap);
        self.options = options;
        // The derivations write leaves directly: each policy's kept words made afresh.
        for p in [
            &mut self.raw,
            &mut self.host,
            &mut self.pv_max,
            &mut self.pv_default,
            &mut self.hvm_max,
            &mut self.hvm_default,
        ] {
            p.reseal();
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
    /// behaviour bits (a fact about the CPU, not an offer). Like every system policy it has
    /// no copies of CPUID.01H:EDX in CPUID.80000001H:EDX: those are made per domain.
    fn shadow_paging(&self, mut p: CpuPolicy, mask: Featureset) -> CpuPolicy {
        let mut fs = p.featureset() & mask;
        fpu_behaviour_from_host(&mut fs, &self.host);
        p.set_featureset(&fs);
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
        // AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX (a domain policy's featureset
        // carries them) are no feature: dropped here, remade by the recalculation below.
        let mut fs = *featureset;
        fs.set_word(2, fs.word(2) & !feature::COMMON_1D);
        let offenders = fs - max.featureset();
        if !offenders.is_empty() {
            return Err(DomainPolicyError::NotOffered { offenders });
        }
        let mut p = self.default_for(kind);
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
    p.regs_mut(Slot::Xstate(0)).b = 0;
    p.regs_mut(Slot::Xstate(1)).b = 0;
    p
}

/// What Xen's per-vendor CPU setup (`init_amd` in `cpu/amd.c`, `init_hygon` in `cpu/hygon.c`,
/// `init_intel` in `cpu/intel.c`) changes in its own capabilities before the host policy is
/// taken from them. Only the changes that follow from CPUID alone are modelled; those that
/// depend on an MSR's behaviour (LFENCE_DISPATCH through DE_CFG, ERMS through
/// MISC_ENABLE.FAST_STRING) are not.
fn vendor_host_adjustments(fs: &mut Featureset, raw: &CpuPolicy) {
    let sig = raw.signature();
    // CPUID.01H:ECX[31]: Xen's `cpu_has_hypervisor`.
    let virtualised = raw.featureset().contains(Feature::HYPERVISOR);
    match raw.vendor() {
        Vendor::Amd => {
            // CPUID.01H:EDX[11] SEP: AMD has no SYSENTER outside legacy mode, and Xen runs
            // in long mode. (HVM max puts it back: HVM guests may run in legacy mode.)
            fs.remove(Feature::SEP);
            // CPUID.01H:EDX[31] PBE: some AMD parts repeat 3DNow! here; Xen drops the alias.
            fs.remove(Feature::PBE);
            // CPUID.80000001H:ECX[0] LAHF_LM: forced by some BIOSes on K8 before model 0x14
            // (AMD erratum 110).
            if sig.family == 0xf && sig.model < 0x14 {
                fs.remove(Feature::LAHF_LM);
            }
            match sig.family {
                // CPUID.80000021H:EAX[2] LFENCE_DISPATCH: LFENCE is always dispatch
                // serialising on K8 and family 11h. (Later families get it through MSR DE_CFG,
                // which is not modelled.)
                0xf | 0x11 => fs.insert(Feature::LFENCE_DISPATCH),
                // CPUID.01H:ECX[3] MONITOR: MWAIT does not reach deep sleep on family 10h.
                0x10 => fs.remove(Feature::MONITOR),
                // CPUID.01H:ECX[30] RDRAND: may stop working after S3 on families 15h/16h;
                // Xen hides it unless `cpuid=rdrand` forces it (which this crate does not offer).
                0x15 | 0x16 => fs.remove(Feature::RDRAND),
                // CPUID.80000008H:EBX[29] BTC_NO: Zen3/4 are not affected by Branch Type
                // Confusion but predate the bit; Xen fills it in on bare metal.
                0x19 if !virtualised => fs.insert(Feature::BTC_NO),
                _ => {}
            }
        }
        // CPUID.01H:EDX[11] SEP: as on AMD.
        Vendor::Hygon => fs.remove(Feature::SEP),
        // CPUID.07H.0:EBX[24] CLWB: slow on Skylake-SP/Cascade Lake/Cooper Lake (family 6
        // model 0x55) with the GDS microcode; Xen hides it from itself. The max policies put
        // it back (see `max_feature_adjustments`).
        Vendor::Intel if sig.family == 6 && sig.model == 0x55 => fs.remove(Feature::CLWB),
        _ => {}
    }
}

/// Xen's own capabilities (`boot_cpu_data.x86_capability`): the hardware's features after the
/// vendor adjustments, less `cpuid=no-…` with every dependent, clamped to the named features
/// (`identify_cpu`). The clamp drops AMD's copies of CPUID.01H:EDX in CPUID.80000001H:EDX, so
/// the host policy has none; and since Xen commit f6894fdfa8 the host no longer goes through
/// `recalculate_misc`, which would put them back.
fn xen_capabilities(raw: &CpuPolicy, options: &HostOptions) -> Featureset {
    let mut fs = raw.featureset();
    vendor_host_adjustments(&mut fs, raw);
    for f in options.disabled.iter() {
        fs.remove(f);
        fs -= Featureset::dependents_of(f);
    }
    fs & feature::KNOWN
}

fn host_policy(raw: &CpuPolicy, options: &HostOptions) -> CpuPolicy {
    let mut p = *raw;
    p.set_max_basic_leaf(p.max_basic_leaf().min(0xd));
    p.set_max_feat_subleaf(p.max_feat_subleaf().min(2));
    let caps = xen_capabilities(raw, options);
    let mut max_extd = p.max_extd_leaf() & 0xffff;
    // CPUID.80000021H:EAX[2] LFENCE_DISPATCH: where Xen makes LFENCE dispatch serialising on
    // hardware that predates the bit, it extends the extended range to reach the leaf.
    if caps.contains(Feature::LFENCE_DISPATCH) {
        max_extd = max_extd.max(0x21);
    }
    // As Xen: only the low half of CPUID.80000000H:EAX counts (out-of-range clearing and
    // serialisation read it so), and the top half is made 0x8000.
    p.set_max_extd_leaf(EXTD_BASE | max_extd.min(0x21));
    // The crate's host policy is dependency-closed (Xen's is as consistent as the hardware).
    p.set_featureset(&caps.sanitised());
    recalculate_xstate(&mut p, raw);
    // CPUID.0AH: Xen's vPMU is off by default (`vpmu=` not given), and then Xen drops the
    // architectural performance monitoring leaf from the host policy. This crate has no vPMU.
    *p.regs_mut(Slot::Basic(0xa)) = CpuidRegs::ZERO;
    p.set_cpuid_faulting(options.cpuid_faulting);
    p.clear_out_of_range_leaves();
    p
}

/// Decisions Xen takes once at boot (`init_speculation_mitigations` in `spec_ctrl.c`, and
/// `amd_init_ssbd` in `cpu/amd.c`) that the guest policies follow.
struct BootChoices {
    /// `X86_FEATURE_SC_MSR_PV`: MSR_SPEC_CTRL is virtualised for PV guests.
    sc_msr_pv: bool,
    /// `X86_FEATURE_SC_MSR_HVM`: MSR_SPEC_CTRL is virtualised for HVM guests.
    sc_msr_hvm: bool,
    /// `amd_virt_spec_ctrl`: HVM guests get MSR_VIRT_SPEC_CTRL.SSBD by default.
    amd_virt_spec_ctrl: bool,
}

/// `CPUID.8000000AH:EDX[20]` SPEC_CTRL: SVM saves and restores the guest's MSR_SPEC_CTRL.
const SVM_FEATURE_SPEC_CTRL: u32 = 1 << 20;

impl BootChoices {
    fn new(raw: &CpuPolicy, host: &CpuPolicy, options: &HostOptions) -> BootChoices {
        // Xen decides on its capabilities as they are, not dependency-closed: a CPU with
        // AMD_SSBD but without IBRS (the Zen 2 dump here) counts as having AMD_SSBD.
        let host_fs = xen_capabilities(raw, options);
        let sig = host.signature();
        let spec = options.spec_ctrl;
        // Intel's enumeration (CPUID.07H.0:EDX[26] IBRSB) lets Xen virtualise MSR_SPEC_CTRL
        // for both guest types; AMD's (CPUID.80000008H:EBX[14] IBRS) for HVM guests only,
        // and only when SVM context-switches the MSR (read from the hardware, not the host
        // policy).
        let ibrsb = host_fs.contains(Feature::IBRSB);
        let svm_spec_ctrl = raw.max_extd_leaf() >> 16 == EXTD_BASE >> 16
            && raw.max_extd_leaf() >= EXTD_BASE + 0xa
            && raw.slot(Slot::Extd(0xa)).d & SVM_FEATURE_SPEC_CTRL != 0;
        let amd_ibrs = host_fs.contains(Feature::IBRS) && svm_spec_ctrl;
        // `amd_legacy_ssbd`: SSBD through MSR_AMD64_LS_CFG, the pre-Zen2 way (families 15h
        // to 17h, and Hygon's 18h), used when the CPU is affected (no SSB_NO,
        // CPUID.80000008H:EBX[26]) and has neither AMD_SSBD (CPUID.80000008H:EBX[24]) nor a
        // hypervisor's VIRT_SSBD (CPUID.80000008H:EBX[25]). The MSR is assumed to work, as it
        // does on those families' hardware.
        let legacy_ssbd = host.vendor().is_amd_like()
            && matches!(sig.family, 0x15..=0x18)
            && !host_fs.contains(Feature::SSB_NO)
            && !host_fs.contains(Feature::AMD_SSBD)
            && !host_fs.contains(Feature::VIRT_SSBD);
        BootChoices {
            sc_msr_pv: spec.msr_sc_pv && ibrsb,
            sc_msr_hvm: spec.msr_sc_hvm && (ibrsb || amd_ibrs),
            // VIRT_SPEC_CTRL.SSBD is offered when SPEC_CTRL.SSBD (AMD_SSBD) is not: through
            // the hypervisor's own VIRT_SPEC_CTRL, or through LS_CFG.
            amd_virt_spec_ctrl: spec.msr_sc_hvm
                && !host_fs.contains(Feature::AMD_SSBD)
                && (host_fs.contains(Feature::VIRT_SSBD) || legacy_ssbd),
        }
    }
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
fn max_feature_adjustments(fs: &mut Featureset, host: &CpuPolicy, raw: &CpuPolicy) {
    let sig = host.signature();
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
            // CPUID.07H.0:EBX[24] CLWB: hidden from the host on Skylake-SP, but a guest that
            // saw it elsewhere can run here.
            if sig.family == 6 && sig.model == 0x55 && raw.featureset().contains(Feature::CLWB) {
                fs.insert(Feature::CLWB);
            }
            // CPUID.07H.0:EDX[11] RTM_ALWAYS_ABORT now means "XBEGIN does not fault": true
            // wherever RTM (CPUID.07H.0:EBX[11]) can be offered.
            if fs.contains(Feature::RTM) {
                fs.insert(Feature::RTM_ALWAYS_ABORT);
            }
        }
        // CPUID.80000021H:EAX[5] VERW_CLEAR: a guest may migrate where VERW flushes (AMD only
        // in Xen, not Hygon).
        Vendor::Amd => fs.insert(Feature::VERW_CLEAR),
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
fn default_feature_adjustments(fs: &mut Featureset, host: &CpuPolicy, raw: &CpuPolicy) {
    let host_fs = host.featureset();
    let sig = host.signature();
    match host.vendor() {
        Vendor::Intel => {
            // Ivy Bridge: RDRAND is hidden by default against SRBDS (family 6 model 0x3A).
            if sig.family == 6 && sig.model == 0x3a {
                fs.remove(Feature::RDRAND);
            }
            // Skylake-SP: CLWB (CPUID.07H.0:EBX[24]) is hidden by default (family 6 model 0x55).
            if sig.family == 6 && sig.model == 0x55 && raw.featureset().contains(Feature::CLWB) {
                fs.remove(Feature::CLWB);
            }
            // TSX forced to abort (Xen's `rtm_disabled`, approximated as: the host has RTM and
            // CPUID.07H.0:EDX[11] RTM_ALWAYS_ABORT): offer RTM_ALWAYS_ABORT instead of RTM.
            if host_fs.contains(Feature::RTM_ALWAYS_ABORT) && host_fs.contains(Feature::RTM) {
                fs.remove(Feature::RTM);
                fs.insert(Feature::RTM_ALWAYS_ABORT);
            }
            for f in [Feature::MD_CLEAR, Feature::FB_CLEAR, Feature::RFDS_CLEAR] {
                fs.set(f, host_fs.contains(f));
            }
        }
        Vendor::Amd => {
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

/// After sanitising a default: if the host suffers RSB underflow using other predictors in
/// either form and the guest sees MSR_ARCH_CAPS, tell it, as RRSBA (`MSR 10AH[19]`) when it
/// sees eIBRS and as RSBA (`MSR 10AH[2]`) otherwise.
fn advertise_rsba(fs: &mut Featureset, host: &CpuPolicy) {
    let host_fs = host.featureset();
    // Xen does this on any vendor; only Intel's max policies carry RSBA/RRSBA, though, so
    // elsewhere (no real CPU but Intel's enumerates ARCH_CAPS) the default would exceed its
    // max: the crate keeps to Intel.
    if host.vendor() == Vendor::Intel
        && fs.contains(Feature::ARCH_CAPS)
        && (host_fs.contains(Feature::RSBA) || host_fs.contains(Feature::RRSBA))
    {
        if fs.contains(Feature::EIBRS) {
            fs.insert(Feature::RRSBA);
        } else {
            fs.insert(Feature::RSBA);
        }
    }
}

fn pv_max_policy(host: &CpuPolicy, raw: &CpuPolicy, boot: &BootChoices) -> CpuPolicy {
    let mut p = *host;
    recalculate_misc(&mut p);
    set_common_max_leaves(&mut p);
    // Masking with the PV max mask also drops AMD's copies of CPUID.01H:EDX that
    // `recalculate_misc` put in CPUID.80000001H:EDX: they are no named feature.
    let mut fs = p.featureset() & feature::PV_MAX;
    fs.insert(Feature::X2APIC); // tolerated for legacy PV kernels that probe it
    if !boot.sc_msr_pv {
        // CPUID.07H.0:EDX[26] IBRSB, CPUID.80000008H:EBX[14] IBRS: MSR_SPEC_CTRL is not
        // virtualised for PV guests.
        fs.remove(Feature::IBRSB);
        fs.remove(Feature::IBRS);
    }
    // CPUID.80000021H:EAX[30] SRSO_US_NO means something to a PV kernel only with
    // BP_SPEC_REDUCE active (CPUID.80000021H:EAX[31] SRSO_MSR_FIX, `spec-ctrl=bp-spec-reduce`
    // on by default).
    if !host.featureset().contains(Feature::SRSO_MSR_FIX) {
        fs.remove(Feature::SRSO_US_NO);
    }
    max_feature_adjustments(&mut fs, host, raw);
    common_feature_adjustments(&mut fs, host);
    p.set_featureset(&fs.sanitised());
    *p.regs_mut(Slot::Extd(0xa)) = CpuidRegs::ZERO; // CPUID.8000000AH: no SVM for PV
    finish(&mut p, host);
    p.set_cpuid_faulting(false);
    p
}

fn pv_default_policy(host: &CpuPolicy, raw: &CpuPolicy, pv_max: &CpuPolicy) -> CpuPolicy {
    let mut p = *pv_max;
    set_host_max_leaves(&mut p, host);
    let mut fs = p.featureset() & feature::PV_DEFAULT;
    common_feature_adjustments(&mut fs, host);
    default_feature_adjustments(&mut fs, host, raw);
    let mut fs = fs.sanitised();
    advertise_rsba(&mut fs, host);
    p.set_featureset(&fs);
    finish(&mut p, host);
    p
}

/// The SVM features (`CPUID.8000000AH:EDX`) Xen's nested SVM implements with the hardware's
/// help, offered only where the hardware has them: NPT (bit 0), LBRV (1), NRIPS (3),
/// PAUSEFILTER (10) and DECODEASSISTS (7).
const NESTED_SVM_FROM_HARDWARE: u32 = 1 << 0 | 1 << 1 | 1 << 3 | 1 << 10 | 1 << 7;
/// The SVM feature nested SVM always emulates: VMCBCLEAN (`CPUID.8000000AH:EDX[5]`).
const NESTED_SVM_EMULATED: u32 = 1 << 5;

fn hvm_max_policy(host: &CpuPolicy, raw: &CpuPolicy, boot: &BootChoices, hap: bool) -> CpuPolicy {
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
    // CPUID.01H:EDX[11] SEP: cleared from an AMD host (no SYSENTER in long mode), but an HVM
    // guest in legacy mode can use it where the hardware has it.
    if host.vendor().is_amd_like() && raw.featureset().contains(Feature::SEP) {
        fs.insert(Feature::SEP);
    }
    // CPUID.80000008H:EBX[25] VIRT_SSBD: offered by default when Xen provides
    // MSR_VIRT_SPEC_CTRL (see `BootChoices`), so in max too.
    if boot.amd_virt_spec_ctrl {
        fs.insert(Feature::VIRT_SSBD);
    }
    if !boot.sc_msr_hvm {
        // CPUID.07H.0:EDX[26] IBRSB, CPUID.80000008H:EBX[14] IBRS: MSR_SPEC_CTRL is not
        // virtualised for HVM guests.
        fs.remove(Feature::IBRSB);
        fs.remove(Feature::IBRS);
    } else if host.featureset().contains(Feature::AMD_SSBD) {
        // With SPEC_CTRL.SSBD (CPUID.80000008H:EBX[24]) Xen can implement VIRT_SPEC_CTRL.SSBD
        // on top of it: max only, guests should prefer SPEC_CTRL.
        fs.insert(Feature::VIRT_SSBD);
    }
    if !host.featureset().contains(Feature::VMX) {
        fs.remove(Feature::PKS); // protection keys for supervisor pages need VT-x support
    }
    // CPUID.8000000AH:EDX: nested SVM offers only what it implements (on the host's SVM
    // bit, CPUID.80000001H:ECX[2], not the guest's).
    if host.featureset().contains(Feature::SVM) {
        let svm = p.regs_mut(Slot::Extd(0xa));
        svm.d = (svm.d & NESTED_SVM_FROM_HARDWARE) | NESTED_SVM_EMULATED;
    }
    max_feature_adjustments(&mut fs, host, raw);
    common_feature_adjustments(&mut fs, host);
    p.set_featureset(&fs.sanitised());
    finish(&mut p, host);
    p.set_cpuid_faulting(true); // HVM guests get virtual CPUID faulting
    p
}

fn hvm_default_policy(
    host: &CpuPolicy,
    raw: &CpuPolicy,
    boot: &BootChoices,
    hvm_max: &CpuPolicy,
    hap: bool,
) -> CpuPolicy {
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
    default_feature_adjustments(&mut fs, host, raw);
    // CPUID.80000008H:EBX[25] VIRT_SSBD: on by default only where AMD_SSBD is absent and
    // Xen provides MSR_VIRT_SPEC_CTRL another way.
    if boot.amd_virt_spec_ctrl {
        fs.insert(Feature::VIRT_SSBD);
    }
    let mut fs = fs.sanitised();
    advertise_rsba(&mut fs, host);
    p.set_featureset(&fs);
    finish(&mut p, host);
    p
}

/// Re-derive leaf 0xD from the features, then zero what is out of range. System policies
/// get no copies of CPUID.01H:EDX in CPUID.80000001H:EDX: Xen writes their featureset back
/// masked, and the copies are no named feature.
fn finish(p: &mut CpuPolicy, host: &CpuPolicy) {
    recalculate_xstate(p, host);
    p.clear_out_of_range_leaves();
}

/// Xen's `recalculate_cpuid_policy` for one domain: clamp to `max`, close dependencies, take
/// the host's FPU quirks, re-derive leaf 0xD and the miscellaneous leaves (which, on AMD,
/// copies CPUID.01H:EDX's common bits into CPUID.80000001H:EDX).
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
    // CPUID.01H:EBX[15:8]: the host's CLFLUSH line size.
    let clflush = max.slot(Slot::Basic(1)).b & 0xff00;
    let leaf1 = p.regs_mut(Slot::Basic(1));
    leaf1.b = (leaf1.b & !0xff00) | clflush;
    recalculate_addr_widths(&mut p, max, &fs);
    recalculate_xstate(&mut p, host);
    recalculate_misc(&mut p);
    recalculate_cache_leaves(&mut p);
    *p.regs_mut(Slot::Basic(0xa)) = CpuidRegs::ZERO; // CPUID.0AH: no vPMU
    if !fs.contains(Feature::SVM) {
        *p.regs_mut(Slot::Extd(0xa)) = CpuidRegs::ZERO; // CPUID.8000000AH: SVM features
    }
    if !fs.contains(Feature::PAGE1GB) {
        *p.regs_mut(Slot::Extd(0x19)) = CpuidRegs::ZERO; // CPUID.80000019H: 1G TLB info
    }
    p.clear_out_of_range_leaves();
    p.reseal();
    p
}

/// CPUID.80000008H:EAX[7:0] (physical address bits) no wider than the max policy's and at
/// least what PAE/PSE36 imply; EAX[15:8] (linear address bits) 48 with long mode, else 32.
/// (Xen also caps the physical width by what the domain's paging can map; not modelled.)
fn recalculate_addr_widths(p: &mut CpuPolicy, max: &CpuPolicy, fs: &Featureset) {
    let max_phys = max.slot(Slot::Extd(8)).a & 0xff;
    let floor = if fs.contains(Feature::PAE) || fs.contains(Feature::PSE36) {
        36
    } else {
        32
    };
    let e8 = p.regs_mut(Slot::Extd(8));
    let phys = (e8.a & 0xff).min(max_phys).max(floor);
    let lin = if fs.contains(Feature::LM) { 48 } else { 32 };
    e8.a = (e8.a & !0xffff) | lin << 8 | phys;
}

/// CPUID.04H: keep the subleaves up to the first without a data, instruction or unified cache
/// type (EAX[4:0] 1 to 3), with their reserved bits (EAX[13:10], EDX[31:3]) cleared.
fn recalculate_cache_leaves(p: &mut CpuPolicy) {
    let mut ended = false;
    for i in 0..super::NR_CACHE {
        let leaf = p.regs_mut(Slot::Cache(i));
        if !ended && matches!(leaf.a & 0x1f, 1..=3) {
            leaf.a &= 0xffff_c3ff;
            leaf.d &= 0x7;
        } else {
            ended = true;
            *leaf = CpuidRegs::ZERO;
        }
    }
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
            *p.regs_mut(Slot::Xstate(i)) = CpuidRegs::ZERO;
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
        *p.regs_mut(Slot::Xstate(i)) = component;
    }
    let leaf0 = p.regs_mut(Slot::Xstate(0));
    leaf0.a = xcr0 as u32;
    leaf0.d = (xcr0 >> 32) as u32;
    leaf0.c = max_size; // CPUID.0DH.0:ECX: size for every supported XCR0 component
    let leaf1 = p.regs_mut(Slot::Xstate(1));
    leaf1.c = xss as u32;
    leaf1.d = (xss >> 32) as u32;
}

/// Xen's `recalculate_misc` (`cpu-policy.c`): hide what no guest should see of the host's
/// identity, power management and topology, and fill in what AMD duplicates. At the reference
/// commit Xen runs it on the PV and HVM max policies (the defaults inherit it) and on every
/// domain's policy, but no longer on the host policy (Xen commit f6894fdfa8).
fn recalculate_misc(p: &mut CpuPolicy) {
    let leaf1 = p.regs_mut(Slot::Basic(1));
    // CPUID.01H:EAX[13:12] processor type (Intel), and the reserved EAX[15:14], EAX[31:28].
    leaf1.a &= 0x0fff_0fff;
    leaf1.b &= 0x00ff_ffff; // CPUID.01H:EBX[31:24]: initial APIC ID, set per vCPU
    // CPUID.05H MONITOR sizes, CPUID.06H thermal and power, CPUID.08H and CPUID.0CH reserved.
    for leaf in [0x5, 0x6, 0x8, 0xc] {
        *p.regs_mut(Slot::Basic(leaf)) = CpuidRegs::ZERO;
    }
    for i in 0..super::NR_TOPO {
        *p.regs_mut(Slot::Topo(i)) = CpuidRegs::ZERO; // CPUID.0BH: topology is per domain
    }
    p.regs_mut(Slot::Extd(1)).d &= !feature::COMMON_1D; // CPUID.80000001H:EDX copies of leaf 1
    // CPUID.80000007H:EAX/EBX/ECX: RAS and power reporting (EDX is featureset word 7).
    let e7 = p.regs_mut(Slot::Extd(7));
    e7.a = 0;
    e7.b = 0;
    e7.c = 0;
    p.regs_mut(Slot::Extd(8)).d = 0; // CPUID.80000008H:EDX
    match p.vendor() {
        Vendor::Intel => {
            // CPUID.02H:EAX[7:0]: the number of queries of leaf 2, always 1.
            let leaf2 = p.regs_mut(Slot::Basic(2));
            leaf2.a = (leaf2.a & !0xff) | 1;
            *p.regs_mut(Slot::Basic(0x3)) = CpuidRegs::ZERO; // processor serial number
            *p.regs_mut(Slot::Basic(0x9)) = CpuidRegs::ZERO; // direct cache access
            // CPUID.80000000H:EBX/ECX/EDX: Intel reports no vendor string here.
            let e0 = p.regs_mut(Slot::Extd(0));
            e0.b = 0;
            e0.c = 0;
            e0.d = 0;
            let e1 = p.regs_mut(Slot::Extd(1));
            e1.a = 0; // CPUID.80000001H:EAX/EBX are reserved on Intel
            e1.b = 0;
            *p.regs_mut(Slot::Extd(5)) = CpuidRegs::ZERO; // CPUID.80000005H: reserved on Intel
            // CPUID.80000006H: only ECX (L2 cache) is defined on Intel.
            let e6 = p.regs_mut(Slot::Extd(6));
            e6.a = 0;
            e6.b = 0;
            e6.d = 0;
            // CPUID.80000008H:EAX[15:0] address widths only; ECX is reserved on Intel.
            let e8 = p.regs_mut(Slot::Extd(8));
            e8.a &= 0xffff;
            e8.c = 0;
        }
        Vendor::Amd | Vendor::Hygon => {
            // CPUID.02H/03H cache descriptors and serial number, CPUID.04H cache parameters,
            // CPUID.09H DCA and CPUID.0AH performance monitoring: Intel's leaves.
            for leaf in [0x2, 0x3, 0x9, 0xa] {
                *p.regs_mut(Slot::Basic(leaf)) = CpuidRegs::ZERO;
            }
            for i in 0..super::NR_CACHE {
                *p.regs_mut(Slot::Cache(i)) = CpuidRegs::ZERO;
            }
            let leaf0 = *p.slot(Slot::Basic(0));
            let leaf1 = *p.slot(Slot::Basic(1));
            // CPUID.80000000H:EBX/ECX/EDX repeat the vendor string of CPUID.00H.
            let e0 = p.regs_mut(Slot::Extd(0));
            e0.b = leaf0.b;
            e0.c = leaf0.c;
            e0.d = leaf0.d;
            let e1 = p.regs_mut(Slot::Extd(1));
            e1.a = leaf1.a; // CPUID.80000001H:EAX repeats the signature of CPUID.01H:EAX
            e1.b &= 0xff00_ffff; // CPUID.80000001H:EBX[23:16]: reserved
            e1.d |= leaf1.d & feature::COMMON_1D; // CPUID.80000001H:EDX copies of leaf 1
            // CPUID.80000008H:EAX[15:0] address widths (GuestPhysAddrSize hidden); ECX[17:12]
            // APIC ID size and ECX[7:0] core count only.
            let e8 = p.regs_mut(Slot::Extd(8));
            e8.a &= 0xffff;
            e8.c &= 0x3_f0ff;
            *p.regs_mut(Slot::Extd(9)) = CpuidRegs::ZERO; // CPUID.80000009H: reserved
            // CPUID.8000000BH-80000018H (IBS, LWP and more, reserved in between); 0x19 (1G TLB)
            // and 0x1A (performance hints) pass through; 0x1B IBS, 0x1C LWP, 0x1D/0x1E
            // topology, 0x1F SEV, 0x20 platform QoS are not virtualised.
            for leaf in (0x0b..=0x18).chain(0x1b..=0x20) {
                *p.regs_mut(Slot::Extd(leaf)) = CpuidRegs::ZERO;
            }
            // CPUID.80000021H:EBX/EDX (EAX and ECX are featureset words 11 and 18).
            let e21 = p.regs_mut(Slot::Extd(0x21));
            e21.b = 0;
            e21.d = 0;
        }
        _ => {}
    }
}
