//! CPUID results, where they come from, and the vendor they name.
//!
//! The crate never executes `cpuid` itself: every CPUID value reaches it through a
//! [`CpuidSource`]. The test hypervisor implements it with the real instruction, the dump parser
//! (`dump`, feature `dumps`) with a recorded processor, and tests with whatever they need.

use core::fmt;

/// Subleaf value used for leaves that take no subleaf (Xen's `XEN_CPUID_NO_SUBLEAF`).
pub const NO_SUBLEAF: u32 = 0xffff_ffff;

/// The four output registers of one CPUID query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuidRegs {
    /// EAX
    pub a: u32,
    /// EBX
    pub b: u32,
    /// ECX
    pub c: u32,
    /// EDX
    pub d: u32,
}

impl CpuidRegs {
    /// All four registers zero: what an out-of-range leaf returns to a guest.
    pub const ZERO: CpuidRegs = CpuidRegs {
        a: 0,
        b: 0,
        c: 0,
        d: 0,
    };

    /// Registers from their values in EAX, EBX, ECX, EDX order.
    pub const fn new(a: u32, b: u32, c: u32, d: u32) -> Self {
        CpuidRegs { a, b, c, d }
    }

    /// True when all four registers are zero.
    pub const fn is_zero(&self) -> bool {
        self.a == 0 && self.b == 0 && self.c == 0 && self.d == 0
    }
}

/// Anything that can answer a CPUID query: the instruction, a recorded dump, a model.
pub trait CpuidSource {
    /// The registers CPUID returns for `leaf` with ECX = `subleaf`.
    ///
    /// Leaves without subleaves ignore `subleaf`. A source that has no data for a query
    /// returns [`CpuidRegs::ZERO`].
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs;
}

impl<T: CpuidSource + ?Sized> CpuidSource for &T {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        (**self).cpuid(leaf, subleaf)
    }
}

/// The CPU vendor, from the 12-byte string in CPUID.00H:EBX,EDX,ECX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// `GenuineIntel`
    Intel,
    /// `AuthenticAMD`
    Amd,
    /// `HygonGenuine`: AMD Zen derivatives, levelled like AMD.
    Hygon,
    /// `CentaurHauls`: VIA/Zhaoxin, levelled like Intel.
    Centaur,
    /// `  Shanghai  `: Zhaoxin, Xen's `X86_VENDOR_SHANGHAI`, a vendor of its own (not Centaur),
    /// levelled like Intel.
    Shanghai,
    /// Any other string.
    Unknown,
}

impl Vendor {
    /// `GenuineIntel` in CPUID.00H EBX, ECX, EDX.
    pub const INTEL_REGS: (u32, u32, u32) = (0x756e_6547, 0x6c65_746e, 0x4965_6e69);
    /// `AuthenticAMD` in CPUID.00H EBX, ECX, EDX.
    pub const AMD_REGS: (u32, u32, u32) = (0x6874_7541, 0x444d_4163, 0x6974_6e65);
    /// `HygonGenuine` in CPUID.00H EBX, ECX, EDX.
    pub const HYGON_REGS: (u32, u32, u32) = (0x6f67_7948, 0x656e_6975, 0x6e65_476e);
    /// `CentaurHauls` in CPUID.00H EBX, ECX, EDX.
    pub const CENTAUR_REGS: (u32, u32, u32) = (0x746e_6543, 0x736c_7561, 0x4872_7561);
    /// `  Shanghai  ` in CPUID.00H EBX, ECX, EDX.
    pub const SHANGHAI_REGS: (u32, u32, u32) = (0x6853_2020, 0x2020_6961, 0x6867_6e61);

    /// The vendor named by CPUID.00H EBX, ECX, EDX.
    pub const fn from_regs(b: u32, c: u32, d: u32) -> Vendor {
        match (b, c, d) {
            Self::INTEL_REGS => Vendor::Intel,
            Self::AMD_REGS => Vendor::Amd,
            Self::HYGON_REGS => Vendor::Hygon,
            Self::CENTAUR_REGS => Vendor::Centaur,
            Self::SHANGHAI_REGS => Vendor::Shanghai,
            _ => Vendor::Unknown,
        }
    }

    /// Xen's vendor number (`X86_VENDOR_*` in `asm/x86-vendors.h`): one bit per vendor, 0 for
    /// unknown. What `x86_cpuid_lookup_vendor` returns.
    pub const fn xen_id(self) -> u32 {
        match self {
            Vendor::Unknown => 0,
            Vendor::Intel => 1 << 0,
            Vendor::Amd => 1 << 1,
            Vendor::Centaur => 1 << 2,
            Vendor::Shanghai => 1 << 3,
            Vendor::Hygon => 1 << 4,
        }
    }

    /// True for vendors whose CPUs follow AMD's CPUID and MSR conventions.
    pub const fn is_amd_like(self) -> bool {
        matches!(self, Vendor::Amd | Vendor::Hygon)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Vendor::Intel => "GenuineIntel",
            Vendor::Amd => "AuthenticAMD",
            Vendor::Hygon => "HygonGenuine",
            Vendor::Centaur => "CentaurHauls",
            Vendor::Shanghai => "  Shanghai  ",
            Vendor::Unknown => "unknown",
        })
    }
}

/// Family, model and stepping decoded from CPUID.01H:EAX the way both vendors define it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Base family (`EAX[11:8]`) plus extended family (`EAX[27:20]`) when the base is 0xF.
    pub family: u32,
    /// Base model (`EAX[7:4]`) plus extended model (`EAX[19:16]`) << 4 when the base family is 6 or 0xF.
    pub model: u32,
    /// `EAX[3:0]`
    pub stepping: u32,
}

impl Signature {
    /// Decode CPUID.01H:EAX.
    pub const fn from_eax(eax: u32) -> Signature {
        let base_family = (eax >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((eax >> 20) & 0xff)
        } else {
            base_family
        };
        let base_model = (eax >> 4) & 0xf;
        let model = if base_family == 0x6 || base_family == 0xf {
            base_model | (((eax >> 16) & 0xf) << 4)
        } else {
            base_model
        };
        Signature {
            family,
            model,
            stepping: eax & 0xf,
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "family {:#x} model {:#x} stepping {:#x}",
            self.family, self.model, self.stepping
        )
    }
}
