//! Trap emulation: the #GP from CPUID faulting, the #UD at Xen's forced-emulation prefix, the
//! HVM CPUID exit, and the guest-visible faulting MSRs (reference `xen-levelling.md` 1.4,
//! 1.5).
//!
//! Handlers work on a register frame the embedder hands in and read the instruction through
//! [`GuestMemory`], which may fail: a fault while fetching is reported for the embedder to
//! inject as #PF, never a panic. Anything that is not a CPUID is reported as not ours, for the
//! embedder to reflect to the guest.

use super::msr;
use crate::cpuid::CpuidRegs;
use crate::policy::CpuPolicy;
use crate::policy::guest::{CpuidEntry, CpuidOverlay, CpuidTable, GuestContext};
use crate::policy::system::DomainKind;

/// `CPUID`: `0F A2`.
pub(crate) const CPUID_OPCODE: [u8; 2] = [0x0f, 0xa2];
/// Xen's forced-emulation prefix, `ud2; .ascii "xen"` (`XEN_EMULATE_PREFIX`).
pub(crate) const FORCED_EMULATION_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

/// The prefix and the CPUID it forces, as `handle_ud` fetches them in one read.
const FORCED_CPUID: [u8; 7] = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
const _: () = assert!(
    FORCED_CPUID[0] == FORCED_EMULATION_PREFIX[0]
        && FORCED_CPUID[4] == FORCED_EMULATION_PREFIX[4]
        && FORCED_CPUID[5] == CPUID_OPCODE[0]
        && FORCED_CPUID[6] == CPUID_OPCODE[1]
);

/// A guest memory read that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFault {
    /// The linear address that could not be read.
    pub address: u64,
}

/// Reads guest memory at guest linear addresses, as the guest would (its page tables and
/// permissions).
pub trait GuestMemory {
    /// Fill `buf` from `address`, or fail with the first address that could not be read.
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryFault>;

    /// The `len` (at most 8) bytes at `address` as a little-endian word, the bytes past
    /// `len` zero: how the trap handlers fetch an instruction. The default reads through
    /// [`GuestMemory::read`]; an embedder that can read a word in one load (an instruction
    /// that does not cross a page) overrides it.
    fn read_word(&self, address: u64, len: usize) -> Result<u64, MemoryFault> {
        let mut bytes = [0u8; 8];
        self.read(address, &mut bytes[..len.min(8)])?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// The registers CPUID emulation reads and writes, in whatever frame the embedder keeps
/// them: [`CpuidFrame`], or the embedder's own trap frame, so that nothing is copied in and
/// out on every trap.
pub trait CpuidRegisters {
    /// RAX: the leaf (its low 32 bits).
    fn rax(&self) -> u64;
    /// RCX: the subleaf (its low 32 bits).
    fn rcx(&self) -> u64;
    /// RIP: the faulting instruction.
    fn rip(&self) -> u64;
    /// Move RIP.
    fn set_rip(&mut self, rip: u64);
    /// CPUID's results: EAX, EBX, ECX, EDX, each zero-extended into its 64-bit register.
    fn set_cpuid(&mut self, regs: CpuidRegs);
}

/// The registers CPUID emulation reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidFrame {
    /// RAX: the leaf in, EAX out.
    pub rax: u64,
    /// RBX: EBX out.
    pub rbx: u64,
    /// RCX: the subleaf in, ECX out.
    pub rcx: u64,
    /// RDX: EDX out.
    pub rdx: u64,
    /// RIP: the faulting instruction in, the next one out.
    pub rip: u64,
}

impl CpuidRegisters for CpuidFrame {
    fn rax(&self) -> u64 {
        self.rax
    }
    fn rcx(&self) -> u64 {
        self.rcx
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn set_cpuid(&mut self, r: CpuidRegs) {
        self.rax = r.a as u64;
        self.rbx = r.b as u64;
        self.rcx = r.c as u64;
        self.rdx = r.d as u64;
    }
}

/// What the embedder does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapOutcome {
    /// CPUID emulated: the frame holds the results and the advanced RIP; resume the guest.
    Emulated,
    /// Inject #GP(0) at the frame's RIP: the guest turned CPUID faulting on for this code.
    InjectGp,
    /// Not a CPUID: reflect the original exception to the guest.
    NotOurs,
    /// The instruction could not be fetched: inject #PF for this address.
    InjectPageFault {
        /// The address.
        address: u64,
    },
}

/// The vCPU the trap came from.
#[derive(Clone, Copy, Debug)]
pub struct TrapContext<'a> {
    /// The domain's CPUID answers, built from its policy when the policy was set
    /// ([`CpuidTable::new`]): what `guest_cpuid` returns, without deriving it on every trap.
    pub cpuid: &'a CpuidTable,
    /// The vCPU's answers to the table's rows that follow its state ([`CpuidTable::overlay`]),
    /// refreshed by the embedder whenever that state changes.
    pub overlay: &'a CpuidOverlay,
    /// The domain and vCPU; `state` describes the vCPU as it trapped. Borrowed: an embedder
    /// keeps one per vCPU and lends it, instead of building one on every trap. Its `domain`
    /// must be the one `cpuid` was built for (the table holds what it needs of it), its
    /// vCPU and state the ones `overlay` was last refreshed for.
    pub guest: &'a GuestContext,
    /// The privilege level the guest was at.
    pub cpl: u8,
    /// The guest's virtual `MSR_MISC_FEATURES_ENABLES[0]`: it wants faulting for its user space.
    pub virtual_faulting: bool,
}

impl TrapContext<'_> {
    /// The guest's own kernel is running: a PV kernel (ring 3 for 64-bit PV, so this comes
    /// from the embedder's vCPU state) or an HVM guest at CPL 0.
    fn guest_kernel(&self) -> bool {
        match self.guest.domain.kind {
            DomainKind::Pv => self.guest.state.is_some_and(|s| s.kernel_mode),
            _ => self.cpl == 0,
        }
    }

    #[inline]
    fn emulate(&self, frame: &mut impl CpuidRegisters, entry: CpuidEntry, length: u64) {
        let (leaf, subleaf) = (frame.rax() as u32, frame.rcx() as u32);
        let rip = frame.rip();
        frame.set_cpuid(self.cpuid.cpuid(self.overlay, leaf, subleaf, entry));
        frame.set_rip(rip.wrapping_add(length));
    }
}

/// The `N` (at most 8) bytes at `address`, as [`GuestMemory::read_word`] gives them.
#[inline]
fn fetch<const N: usize>(mem: &impl GuestMemory, address: u64) -> Result<u64, TrapOutcome> {
    mem.read_word(address, N)
        .map_err(|f| TrapOutcome::InjectPageFault { address: f.address })
}

/// `bytes` as a little-endian word, for comparing with what [`fetch`] returns.
const fn word(bytes: &[u8]) -> u64 {
    let mut w = 0;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        w = w << 8 | bytes[i] as u64;
    }
    w
}

/// A #GP(`error_code`) from a guest. Ours only if CPUID faulting raised it: CPL > 0, error
/// code 0, and `0F A2` at RIP. Emulated from the policy, RIP advanced by 2.
pub fn handle_gp(
    ctx: &TrapContext<'_>,
    frame: &mut impl CpuidRegisters,
    mem: &impl GuestMemory,
    error_code: u64,
) -> TrapOutcome {
    if ctx.cpl == 0 || error_code != 0 {
        return TrapOutcome::NotOurs;
    }
    match fetch::<2>(mem, frame.rip()) {
        Ok(w) if w == word(&CPUID_OPCODE) => {}
        Ok(_) => return TrapOutcome::NotOurs,
        Err(outcome) => return outcome,
    }
    if ctx.virtual_faulting && !ctx.guest_kernel() {
        return TrapOutcome::InjectGp;
    }
    ctx.emulate(frame, CpuidEntry::Fault, 2);
    TrapOutcome::Emulated
}

/// A #UD from a guest. Ours only at the forced-emulation prefix followed by CPUID (7 bytes);
/// emulated from the policy, RIP advanced past all 7.
pub fn handle_ud(
    ctx: &TrapContext<'_>,
    frame: &mut impl CpuidRegisters,
    mem: &impl GuestMemory,
) -> TrapOutcome {
    let rip = frame.rip();
    let cpuid_at = rip.wrapping_add(FORCED_EMULATION_PREFIX.len() as u64);
    // One fetch of all 7 bytes in the common case. If it faults, look again in two steps as
    // Xen does: a #UD whose first 5 bytes are not the prefix is the guest's, not a #PF.
    let bytes = match fetch::<7>(mem, rip) {
        Ok(bytes) => bytes,
        Err(_) => return handle_ud_fetch_fault(mem, rip, cpuid_at),
    };
    if bytes != word(&FORCED_CPUID) {
        return TrapOutcome::NotOurs;
    }
    if ctx.virtual_faulting && !ctx.guest_kernel() {
        // The guest's own faulting applies to the CPUID itself, past the prefix.
        frame.set_rip(cpuid_at);
        return TrapOutcome::InjectGp;
    }
    ctx.emulate(frame, CpuidEntry::ForcedEmulation, 7);
    TrapOutcome::Emulated
}

/// [`handle_ud`] when the 7 bytes could not be read at once (out of line: rare).
#[inline(never)]
#[cold]
fn handle_ud_fetch_fault(mem: &impl GuestMemory, rip: u64, cpuid_at: u64) -> TrapOutcome {
    match fetch::<5>(mem, rip) {
        Ok(w) if w == word(&FORCED_EMULATION_PREFIX) => match fetch::<2>(mem, cpuid_at) {
            Ok(_) => TrapOutcome::NotOurs, // readable now: the memory changed
            Err(outcome) => outcome,
        },
        Ok(_) => TrapOutcome::NotOurs,
        Err(outcome) => outcome,
    }
}

/// An HVM CPUID intercept. With the guest's virtual faulting on above CPL 0, #GP is injected
/// without advancing RIP; otherwise emulated and RIP advanced by 2 (the embedder uses the
/// next-RIP the CPU reports instead where it has one: QEMU's SVM does not set NRIPS).
pub fn handle_cpuid_exit(ctx: &TrapContext<'_>, frame: &mut impl CpuidRegisters) -> TrapOutcome {
    if ctx.virtual_faulting && ctx.cpl > 0 {
        return TrapOutcome::InjectGp;
    }
    ctx.emulate(frame, CpuidEntry::VmExit, 2);
    TrapOutcome::Emulated
}

/// A guest RDMSR or WRMSR that levelling owns, after emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAccess {
    /// The read returns this value.
    Read(u64),
    /// The write took effect in the guest's virtual state.
    Written,
    /// Inject #GP(0), as the architecture does for this access.
    InjectGp,
}

/// Whether `msr` is one of the levelling MSRs, which guests never reach on hardware.
pub(crate) const fn is_levelling_msr(msr: u32) -> bool {
    let mut i = 0;
    while i < msr::LEVELLING_MSRS.len() {
        if msr::LEVELLING_MSRS[i] == msr {
            return true;
        }
        i += 1;
    }
    false
}

/// A guest's RDMSR of a levelling MSR, answered from its policy and virtual state; `None` for
/// MSRs levelling does not own. PLATFORM_INFO reads the policy's faulting bit;
/// MISC_FEATURES_ENABLES the virtual value (any vendor); HWCR reads 0 on AMD-like policies (no
/// CpuidUserDis offered); the mask MSRs do not exist for guests.
pub fn guest_rdmsr(policy: &CpuPolicy, virtual_faulting: bool, index: u32) -> Option<MsrAccess> {
    if !is_levelling_msr(index) {
        return None;
    }
    Some(match index {
        msr::PLATFORM_INFO => MsrAccess::Read(policy.platform_info() as u64),
        // Readable for every vendor, as in Xen: a guest reads back what it may write (0 at
        // least, which migration restores), whether or not its policy offers faulting.
        msr::MISC_FEATURES_ENABLES => MsrAccess::Read(virtual_faulting as u64),
        msr::AMD_HWCR if policy.vendor().is_amd_like() => MsrAccess::Read(0),
        _ => MsrAccess::InjectGp,
    })
}

/// A guest's WRMSR of a levelling MSR; `None` for MSRs levelling does not own. Only
/// `MSR_MISC_FEATURES_ENABLES[0]` is writable, and only if the policy offers faulting; every
/// other bit and MSR raises #GP. The new virtual faulting state is written to
/// `virtual_faulting`.
pub fn guest_wrmsr(
    policy: &CpuPolicy,
    virtual_faulting: &mut bool,
    index: u32,
    value: u64,
) -> Option<MsrAccess> {
    if !is_levelling_msr(index) {
        return None;
    }
    Some(match index {
        msr::MISC_FEATURES_ENABLES
            if value & !1 == 0 && (value == 0 || policy.cpuid_faulting()) =>
        {
            *virtual_faulting = value & 1 != 0;
            MsrAccess::Written
        }
        _ => MsrAccess::InjectGp,
    })
}
