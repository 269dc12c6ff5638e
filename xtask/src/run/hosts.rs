//! The pools `cargo xtask run` boots: which QEMU model each host is, and how its CPU is
//! modelled.
//!
//! QEMU 7.2's TCG implements neither CPUID faulting nor any mask MSR, so a plain QEMU host has
//! no levelling mechanism at all: a PV guest running native CPUID there is refused (fail
//! closed) and runs only with best effort. Where a real CPU of the QEMU model's generation is
//! among the dumps in `data/cpuid-dumps/`, the host runs above the silicon shim with that
//! dump instead: its CPUID and its levelling MSRs are that CPU's, and the QEMU model only
//! provides SVM (for the shim), SMEP and SMAP. The pairs are the same family and model (or,
//! for Ice Lake, the same server generation: QEMU's Icelake-Server says model 0x86, the dump's
//! Ice Lake-SP is 0x6a). `EPYC` (Zen 1) and `EPYC-Milan` (Zen 3) have no dump of their
//! generation (Castle Peak is Zen 2, Genoa Zen 4, Hygon's Zen 1 is another vendor), so they
//! stay plain QEMU rather than borrow another generation's mechanism.
//!
//! HVM guests need SVM, which the kernel above the shim does not get (nested SVM is not
//! modelled): a shim host's HVM guest runs in a second boot on the plain QEMU model with SVM
//! (`,+svm` for Intel models), taking its HVM host policies from the same dump through the
//! silicon model (`hvm_host=`). Every CPUID of an HVM guest exits and is answered from its
//! policy, so the QEMU CPU underneath does not show through; the run checks that those
//! policies are the ones the host's agent reported.

/// One host of the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Its name in the pool (and on the kernel command line, `hostname=`).
    pub name: &'static str,
    /// The pool it joins.
    pub pool: &'static str,
    /// The QEMU CPU model (without `,+svm`).
    pub model: &'static str,
    /// The dump the silicon shim models, if the host runs above it.
    pub dump: Option<&'static str>,
}

/// The Intel pool, then the AMD pool.
pub const HOSTS: &[HostSpec] = &[
    HostSpec {
        name: "nehalem",
        pool: "intel",
        model: "Nehalem",
        dump: Some("GenuineIntel00106A2_Nehalem-EP_CPUID"),
    },
    HostSpec {
        name: "sandybridge",
        pool: "intel",
        model: "SandyBridge",
        dump: Some("GenuineIntel00206A7_SandyBridge2_CPUID"),
    },
    HostSpec {
        name: "haswell",
        pool: "intel",
        model: "Haswell",
        dump: Some("GenuineIntel00306C3_Haswell_CPUID"),
    },
    HostSpec {
        name: "skylake-server",
        pool: "intel",
        model: "Skylake-Server",
        dump: Some("GenuineIntel0050654_SkylakeXeon_20_CPUID"),
    },
    HostSpec {
        name: "icelake-server",
        pool: "intel",
        model: "Icelake-Server",
        dump: Some("GenuineIntel00606A6_ICX_04_CPUID"),
    },
    HostSpec {
        name: "opteron-g3",
        pool: "amd",
        model: "Opteron_G3",
        dump: Some("AuthenticAMD0100F21_K10_Barcelona_CPUID"),
    },
    HostSpec {
        name: "epyc",
        pool: "amd",
        model: "EPYC",
        dump: None,
    },
    HostSpec {
        name: "epyc-rome",
        pool: "amd",
        model: "EPYC-Rome",
        dump: Some("AuthenticAMD0830F10_K17_CastlePeak_CPUID"),
    },
    HostSpec {
        name: "epyc-milan",
        pool: "amd",
        model: "EPYC-Milan",
        dump: None,
    },
];

impl HostSpec {
    /// The `-cpu` value with SVM: AMD models have it, Intel models get `,+svm`.
    pub fn svm_cpu(&self) -> String {
        if self.model.starts_with("EPYC") || self.model.starts_with("Opteron") {
            self.model.to_string()
        } else {
            format!("{},+svm", self.model)
        }
    }

    /// How the host's CPU is modelled, for the report.
    pub fn modelled_as(&self) -> String {
        match self.dump {
            Some(dump) => format!("{} (shim) on QEMU {}", short(dump), self.svm_cpu()),
            None => format!("plain QEMU {} (no dump of its generation)", self.model),
        }
    }
}

/// A dump's stem without the vendor/signature prefix and the `_CPUID` suffix (`Nehalem-EP`).
pub fn short(stem: &str) -> &str {
    let stem = stem.find("_CPUID").map_or(stem, |end| &stem[..end]);
    stem.split_once('_').map_or(stem, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::{HOSTS, short};

    #[test]
    fn every_host_is_named_once_and_intel_models_get_svm() {
        let mut names: Vec<&str> = HOSTS.iter().map(|h| h.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HOSTS.len());
        let nehalem = HOSTS.iter().find(|h| h.model == "Nehalem").unwrap();
        assert_eq!(nehalem.svm_cpu(), "Nehalem,+svm");
        let epyc = HOSTS.iter().find(|h| h.model == "EPYC").unwrap();
        assert_eq!(epyc.svm_cpu(), "EPYC");
        assert_eq!(short("GenuineIntel00106A2_Nehalem-EP_CPUID"), "Nehalem-EP");
        assert_eq!(
            short("AuthenticAMD0A10F11_K19_Genoa_02_CPUID"),
            "K19_Genoa_02"
        );
    }

    #[test]
    fn every_dump_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/cpuid-dumps");
        for host in HOSTS {
            if let Some(dump) = host.dump {
                assert!(dir.join(format!("{dump}.txt")).is_file(), "{dump}");
            }
        }
    }
}
