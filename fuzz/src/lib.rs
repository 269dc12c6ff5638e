//! Shared scaffolding of the fuzz targets: real hosts booted from the CPUID dumps (as
//! `tests/levelling.rs::boot` does), guest memory for the hypercall dispatcher and the trap
//! handlers, and small helpers.

pub mod dumps;

use std::sync::OnceLock;

use xen_levelling::abi::dispatch::{CopyFault, GuestCopy};
use xen_levelling::cpuid::{CpuidRegs, CpuidSource};
use xen_levelling::dump::Aida64Dump;
use xen_levelling::host::{Host, HostConfig};
use xen_levelling::levelling::trap::{GuestMemory, MemoryFault};
use xen_levelling::levelling::{LevellingConfig, LevellingState};
use xen_levelling::policy::{CpuPolicy, RawMsrs};
use xen_levelling::silicon::SiliconModel;

pub use dumps::DUMPS;

/// How a host was booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// The silicon model behaves like QEMU's TCG (every MSR reads 0, writes vanish).
    pub emulator_quirk: bool,
    /// HVM guests on HAP (otherwise shadow paging).
    pub hap: bool,
    /// Level dom0 like a guest.
    pub level_dom0: bool,
}

/// One booted host: what the hypervisor keeps, plus the model and CPU 0's levelling state.
#[derive(Clone, Debug)]
pub struct Booted {
    /// The dump it was booted from.
    pub file: &'static str,
    /// System policies and levelling.
    pub host: Host,
    /// The modelled CPU.
    pub model: SiliconModel,
    /// CPU 0's levelling shadows after bring-up.
    pub cpu: LevellingState,
}

/// The MSRs a dump recorded (`Aida64Dump::raw_msrs`: MSR 0xCE only where it is
/// MSR_PLATFORM_INFO).
pub fn dumped_msrs(dump: &Aida64Dump<'_>) -> RawMsrs {
    dump.raw_msrs()
}

/// Boot a host from a parsed dump exactly as `tests/levelling.rs::boot` does. `None` where
/// the levelling bring-up faults (never for the real dumps).
pub fn boot_dump(dump: &Aida64Dump<'_>, file: &'static str, o: BootOptions) -> Option<Booted> {
    let mut model = SiliconModel::new(dump, dump.raw_msrs());
    if o.emulator_quirk {
        model = model.with_emulator_quirk();
    }
    boot_model(model, file, o)
}

/// Boot a host on a silicon model: `Host::boot`, then CPU 0's levelling bring-up.
pub fn boot_model(mut model: SiliconModel, file: &'static str, o: BootOptions) -> Option<Booted> {
    let config = HostConfig {
        levelling: LevellingConfig {
            level_dom0: o.level_dom0,
        },
        hap: o.hap,
        ..HostConfig::default()
    };
    let host = Host::boot(&mut model, config);
    let cpu = LevellingState::init(host.levelling(), &mut model).ok()?;
    Some(Booted {
        file,
        host,
        model,
        cpu,
    })
}

/// Every dump booted with every combination of [`BootOptions`] (22 × 8 hosts), once.
pub fn hosts() -> &'static [Booted] {
    static HOSTS: OnceLock<Vec<Booted>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        let mut hosts = Vec::new();
        for variant in 0..8u8 {
            let o = BootOptions {
                emulator_quirk: variant & 1 != 0,
                hap: variant & 2 == 0,
                level_dom0: variant & 4 != 0,
            };
            for (file, text) in DUMPS {
                let dump = Aida64Dump::parse(text).expect("a real dump parses");
                hosts.push(boot_dump(&dump, file, o).expect("a real dump boots"));
            }
        }
        hosts
    })
}

/// The host for a selector byte.
pub fn host(selector: u8) -> &'static Booted {
    let h = hosts();
    &h[selector as usize % h.len()]
}

/// Every distinct policy the hosts hold (raw, host, PV/HVM max and default of each), for
/// targets that want real policies to start from.
pub fn real_policies() -> &'static [CpuPolicy] {
    static POLICIES: OnceLock<Vec<CpuPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let mut v: Vec<CpuPolicy> = Vec::new();
        for b in &hosts()[..DUMPS.len() * 2] {
            let s = b.host.system();
            for p in [
                s.raw,
                s.host,
                s.pv_max,
                s.pv_default,
                s.hvm_max,
                s.hvm_default,
            ] {
                if !v.contains(&p) {
                    v.push(p);
                }
            }
        }
        v
    })
}

/// A policy as a CPUID source: what a CPU with exactly these leaves would answer.
pub struct PolicySource<'a>(pub &'a CpuPolicy);

impl CpuidSource for PolicySource<'_> {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.0.leaf(leaf, subleaf).unwrap_or_default()
    }
}

/// Guest memory for the hypercall dispatcher: `bytes` mapped at `base`; the first `read_only`
/// bytes are mapped read-only (a copy to them faults, as for a guest handle to a read-only
/// page); everything else is unmapped. A copy that faults part way has written the bytes
/// before the fault, as Xen's `copy_to_guest` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestMem {
    /// Where the mapping starts.
    pub base: u64,
    /// The mapped bytes.
    pub bytes: Vec<u8>,
    /// How many bytes from the start are read-only.
    pub read_only: usize,
    /// Copies made (to and from), for statistics and sanity.
    pub copies: usize,
}

impl GuestMem {
    /// The offset of `address`, if mapped.
    fn offset(&self, address: u64) -> Option<usize> {
        let o = address.checked_sub(self.base)?;
        (o < self.bytes.len() as u64).then_some(o as usize)
    }

    /// Write `data` at `offset` (clipped to the mapping), ignoring permissions: for the
    /// harness to lay out arguments.
    pub fn poke(&mut self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = self.bytes.get_mut(offset.wrapping_add(i)) {
                *slot = *b;
            }
        }
    }

    /// Read `len` bytes at `offset` (clipped).
    pub fn peek(&self, offset: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| self.bytes.get(offset.wrapping_add(i)).copied().unwrap_or(0))
            .collect()
    }
}

impl GuestCopy for GuestMem {
    fn copy_from_guest(&self, address: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = address.checked_add(i as u64).ok_or(CopyFault)?;
            *b = self.bytes[self.offset(at).ok_or(CopyFault)?];
        }
        Ok(())
    }

    fn copy_to_guest(&mut self, address: u64, data: &[u8]) -> Result<(), CopyFault> {
        self.copies += 1;
        for (i, b) in data.iter().enumerate() {
            let at = address.checked_add(i as u64).ok_or(CopyFault)?;
            let o = self.offset(at).ok_or(CopyFault)?;
            if o < self.read_only {
                return Err(CopyFault);
            }
            self.bytes[o] = *b;
        }
        Ok(())
    }
}

/// Guest memory for the trap handlers: `bytes` mapped at `base`, everything else faults.
#[derive(Clone, Debug)]
pub struct CodeMem {
    /// Where the mapping starts.
    pub base: u64,
    /// The mapped bytes.
    pub bytes: Vec<u8>,
}

impl GuestMemory for CodeMem {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = address.wrapping_add(i as u64);
            let fault = MemoryFault { address: at };
            let o = at.checked_sub(self.base).ok_or(fault)?;
            *b = *self
                .bytes
                .get(usize::try_from(o).map_err(|_| fault)?)
                .ok_or(fault)?;
        }
        Ok(())
    }
}
