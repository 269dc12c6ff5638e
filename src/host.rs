//! What Xen does for levelling when a host boots: read the raw CPUID and MSRs, probe the
//! levelling mechanism, derive the system policies. One sequence for the test hypervisor on
//! real instructions, for the silicon model in tests and tools, and for `levelctl inspect`.

use crate::feature::Feature;
use crate::featureset::Featureset;
use crate::hardware::{Hardware, HardwareCpuid};
use crate::levelling::{Levelling, LevellingConfig, ProbeOptions};
use crate::policy::system::{HostOptions, SystemPolicies};
use crate::policy::{CpuPolicy, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, RawMsrs};

/// How the host is booted (Xen's command line and environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Probing options (running virtualised).
    pub probe: ProbeOptions,
    /// Levelling choices (level dom0 or not).
    pub levelling: LevellingConfig,
    /// Features removed with `cpuid=no-…`.
    pub disabled: Featureset,
    /// HVM guests use hardware-assisted paging.
    pub hap: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            probe: ProbeOptions::default(),
            levelling: LevellingConfig::default(),
            disabled: Featureset::EMPTY,
            hap: true,
        }
    }
}

/// What the hypervisor knows about the host: its system policies and levelling.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// Raw, host, PV/HVM max and default.
    pub system: SystemPolicies,
    /// The levelling mechanism.
    pub levelling: Levelling,
}

impl Host {
    /// Boot on the CPU `hw` runs on, before any levelling is loaded: the raw policy through
    /// `hw` (MSR_PLATFORM_INFO only where it exists, ARCH_CAPABILITIES only where enumerated),
    /// the probe, then the system policies with faulting as probed.
    pub fn boot(hw: &mut impl Hardware, config: HostConfig) -> Host {
        let cpuid_only = CpuPolicy::from_source(&HardwareCpuid(&*hw), RawMsrs::default());
        let platform_info =
            RawMsrs::platform_info_exists(cpuid_only.vendor(), cpuid_only.signature())
                .then(|| hw.rdmsr_safe(MSR_PLATFORM_INFO).ok())
                .flatten();
        let arch_caps = cpuid_only
            .featureset()
            .contains(Feature::ARCH_CAPS)
            .then(|| hw.rdmsr_safe(MSR_ARCH_CAPABILITIES).ok())
            .flatten();
        let raw = CpuPolicy::from_source(
            &HardwareCpuid(&*hw),
            RawMsrs {
                platform_info,
                arch_caps,
            },
        );
        let mut levelling = Levelling::probe(hw, &raw, config.probe, config.levelling);
        let options = HostOptions {
            disabled: config.disabled,
            cpuid_faulting: levelling.faulting(),
            hap: config.hap,
            ..HostOptions::default()
        };
        let system = SystemPolicies::derive(&raw, options);
        levelling.set_host_features(&system.host.featureset());
        Host { system, levelling }
    }
}
