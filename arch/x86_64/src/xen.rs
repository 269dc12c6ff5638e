//! The host, as Xen sees it at boot: booted through the crate's own `host::Host::boot` on
//! [`NativeHardware`] (the raw CPUID, the levelling mechanism probed on it, the system
//! policies derived from both: the host policy offers CPUID faulting to guests only where it
//! works), plus what the kernel's checks and the HVM side need besides.

use xen_levelling::hardware::HardwareCpuid;
use xen_levelling::host::{Host as CoreHost, HostConfig};
use xen_levelling::levelling::{LevellingConfig, ProbeOptions};
use xen_levelling::policy::RawMsrs;
use xen_levelling::policy::guest::GuestDomain;
use xen_levelling::policy::system::{
    DomainKind, DomainPolicyError, SystemPolicies, parse_cpuid_option,
};
use xen_levelling::{CpuPolicy, Feature, Featureset, Vendor};

use crate::cmdline::Cmdline;
use crate::hardware::NativeHardware;
use crate::sync::KernelCell;
use crate::{levelling, println};

/// The Xen version the Xen leaves report: XenServer "Dundee" shipped Xen 4.6.
pub const XEN_VERSION: (u16, u16) = (4, 6);

/// The host as the crate booted it: 14 KB, so booted in place here rather than on the boot
/// stack. A levelling failure recorded since boot (`levelling::failure()`) is marked on it
/// whenever it is lent ([`with_core_host`]); everything else is only read after boot.
static BOOTED: KernelCell<CoreHost> = KernelCell::new(CoreHost::UNBOOTED);
/// The kernel's view of the host, written once by [`Host::probe`], then only read.
static KERNEL_HOST: KernelCell<Option<Host>> = KernelCell::new(None);

/// The kernel's view of the host ([`Host::probe`] ran).
///
/// # Panics
///
/// Before [`Host::probe`].
pub fn host() -> &'static Host {
    // SAFETY: written once by `probe` before any reader, then only read.
    unsafe { (*KERNEL_HOST.get()).as_ref() }.expect("host probed at boot")
}

/// Lends `f` the host as the crate booted it, with the levelling as it stands now (a levelling
/// MSR that faulted since boot makes new levelled guests fail closed): what the hypercall
/// dispatcher acts on.
pub fn with_core_host<R>(f: impl FnOnce(&CoreHost) -> R) -> R {
    // SAFETY: after boot only this function writes the static, and only to record a levelling
    // failure, which touches no policy (`Host::policies` refers to the policies alone); it
    // runs on one CPU at a time (the main flow, or a hypercall handler on the boot CPU).
    unsafe {
        if let Some(fault) = levelling::failure() {
            (*BOOTED.get()).mark_levelling_failed(fault);
        }
        f(&*BOOTED.get())
    }
}

/// Everything the scenarios need to know about the host (its levelling mechanism, which a
/// later MSR fault can mark failed, is `levelling::current()`).
pub struct Host {
    /// The CPU's CPUID exactly as read at boot (before Xen's raw-policy adjustments).
    pub hardware: CpuPolicy,
    /// Raw, host, PV and HVM max/default policies: the booted host's (in a static, booted in
    /// place).
    pub policies: &'static SystemPolicies,
    /// The CPU vendor.
    pub vendor: Vendor,
    /// AMD SVM present (CPUID 8000_0001h:ECX[2]).
    pub svm: bool,
    /// SVM nested paging present (CPUID 8000_000Ah:EDX[0]).
    pub npt: bool,
    /// Xen's own CR4.OSXSAVE (bit 18), which PV forced-emulation CPUID leaks (see `guest.rs`).
    pub cr4_osxsave: bool,
}

impl Host {
    /// Boots the host as an embedder does, through the crate's [`CoreHost::boot`] on the real
    /// instructions: the raw policy (MSR_PLATFORM_INFO only where the generation has it), the
    /// levelling probe, the system policies with faulting as probed. `cpuid=no-…` on the
    /// command line disables features as on Xen's command line. Then installs the levelling
    /// on the boot CPU and prints a summary. The host lives in a static from here on
    /// ([`host`]).
    pub fn probe(cmdline: &Cmdline) -> &'static Host {
        let mut hw = NativeHardware;
        let disabled = match cmdline.value("cpuid").map(parse_cpuid_option) {
            Some(Ok(fs)) => fs,
            Some(Err(error)) => {
                println!("xen: ignoring cpuid=: {error}");
                Featureset::EMPTY
            }
            None => Featureset::EMPTY,
        };
        // The CPU as read at CPL 0 before anything is loaded: the oracle Xen's and dom0's
        // CPUID results are judged against, kept beside the crate's (adjusted) raw policy.
        let hardware = CpuPolicy::from_source(&HardwareCpuid(&hw), RawMsrs::default());
        let fs = hardware.featureset();
        // CPUID.80000001H:ECX[2] SVM; CPUID.8000000AH:EDX[0] nested paging.
        let svm = fs.contains(Feature::SVM);
        let npt = svm
            && hardware.max_extd_leaf() >= 0x8000_000a
            && hardware.leaf(0x8000_000a, 0).unwrap_or_default().d & 1 != 0;
        let config = HostConfig {
            probe: ProbeOptions {
                virtualised: levelling::virtualised(),
            },
            levelling: LevellingConfig::default(),
            disabled,
            hap: npt,
            ..HostConfig::default()
        };
        // SAFETY: main flow on the boot CPU, once per boot, before any other reference to the
        // static exists; from here on it is only read.
        let booted: &'static CoreHost = unsafe {
            let host = &mut *BOOTED.get();
            host.boot_in_place(&mut hw, config);
            host
        };
        if let Err(fault) = levelling::install(*booted.levelling()) {
            println!("xen: levelling: bring-up faulted ({fault}); mechanism marked failed");
        }
        // SAFETY: reading CR4 has no side effect.
        let cr4 = unsafe { x86::controlregs::cr4() };
        let host = Host {
            hardware,
            policies: booted.system(),
            vendor: hardware.vendor(),
            svm,
            npt,
            cr4_osxsave: cr4.contains(x86::controlregs::Cr4::CR4_ENABLE_OS_XSAVE),
        };
        // SAFETY: main flow on the boot CPU, once per boot, before any reader of the static.
        let host: &'static Host = unsafe { (*KERNEL_HOST.get()).insert(host) };
        host.print();
        levelling::check_probe(crate::shim::expected_mechanism(cmdline));
        host
    }

    fn print(&self) {
        let p = &self.policies;
        println!(
            "xen: {} {}; max leaf {:#x}, max extended leaf {:#x}; SVM {} NPT {}; faulting {}",
            self.vendor,
            self.hardware.signature(),
            self.hardware.max_basic_leaf(),
            self.hardware.max_extd_leaf(),
            self.svm,
            self.npt,
            p.options.cpuid_faulting,
        );
        for (name, policy) in [
            ("host", &p.host),
            ("pv-default", &p.pv_default),
            ("hvm-default", &p.hvm_default),
        ] {
            let fs = policy.featureset();
            println!(
                "xen: {name:<11} {} features, {} leaves: {}",
                fs.len(),
                policy.nr_serialised_leaves(),
                fs.xen_words()
            );
        }
    }

    /// The HVM domain kind this host runs: HAP where SVM has nested paging.
    pub fn hvm_kind(&self) -> DomainKind {
        if self.npt {
            DomainKind::HvmHap
        } else {
            DomainKind::HvmShadow
        }
    }

    /// The policy of a new domain of `kind` started with the default featureset of `kind`,
    /// the way a toolstack starts a VM with no explicit CPUID configuration.
    pub fn default_domain_policy(&self, kind: DomainKind) -> Result<CpuPolicy, DomainPolicyError> {
        let fs = self.policies.default_for(kind).featureset();
        self.policies.domain_policy(kind, self.vendor, &fs)
    }

    /// [`Host::default_domain_policy`], or `None` after a failed check `check` saying why (the
    /// scenario then stops).
    pub fn default_policy_or_fail(
        &self,
        kind: DomainKind,
        check: core::fmt::Arguments<'_>,
    ) -> Option<CpuPolicy> {
        self.default_domain_policy(kind)
            .map_err(|error| crate::checks::fail(check, format_args!("{error}")))
            .ok()
    }

    /// The domain facts `guest_cpuid` needs.
    pub fn guest_domain(&self, kind: DomainKind, domid: u16, hardware_domain: bool) -> GuestDomain {
        GuestDomain {
            kind,
            domid,
            hardware_domain,
            host_features: self.policies.host.featureset(),
            // CPUID.80000008H:EAX[7:0]: physical address bits.
            host_paddr_bits: self
                .policies
                .host
                .leaf(0x8000_0008, 0)
                .unwrap_or_default()
                .a as u8,
            xen_version: XEN_VERSION,
        }
    }
}

/// Whether `p` (a policy read from the CPU) holds a value the CPU reported for
/// `leaf`/`subleaf`: within the reported maxima, and for leaf 0xD only the subleaves of
/// enumerated state components.
pub fn read_at_boot(p: &CpuPolicy, leaf: u32, subleaf: u32) -> bool {
    let in_range = if leaf >= xen_levelling::policy::EXTD_BASE {
        leaf <= p.max_extd_leaf()
    } else {
        leaf <= p.max_basic_leaf()
    };
    let component =
        leaf != 0xd || subleaf < 2 || (p.xcr0_mask() | p.xss_mask()) & 1 << subleaf != 0;
    in_range && component && p.leaf(leaf, subleaf).is_some()
}
