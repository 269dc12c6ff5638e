//! Per-CPU levelling state and the context switch (reference `xen-levelling.md` 1.3, 3.2).
//!
//! Each CPU keeps a shadow of what its levelling MSRs hold. Switching to a vCPU works out the
//! values it needs from its domain's precomputed [`DomainLevelling`] and writes only the MSRs
//! whose value differs; faulting is toggled only when it changes. Switching to idle leaves
//! everything as it is (idle runs no guest code); switching to Xen loads the defaults.

use super::masks::MaskValues;
use super::{DomainLevelling, Levelling, Mechanism};
use crate::hardware::{Hardware, MsrFault};
use crate::policy::system::DomainKind;

/// What a CPU switches to.
#[derive(Clone, Copy, Debug)]
pub enum SwitchTo<'a> {
    /// The idle vCPU: nothing changes.
    Idle,
    /// Xen itself (CPU bring-up, kexec): defaults loaded, faulting off.
    Xen,
    /// A domain's vCPU.
    Vcpu {
        /// The domain's levelling.
        domain: &'a DomainLevelling,
        /// The vCPU's (virtual, for PV) CR4.OSXSAVE.
        cr4_osxsave: bool,
        /// HVM: the guest enabled its virtual CPUID faulting (MSR 0x140 bit 0).
        virtual_faulting: bool,
    },
}

/// What one switch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// MSR writes made.
    pub msr_writes: u32,
}

/// One CPU's levelling MSR shadows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevellingState {
    /// What the mask MSRs hold.
    masks: MaskValues,
    /// What the faulting control MSR holds (0x140 or HWCR, all bits).
    faulting_msr: u64,
    /// The mechanism, reduced to what the switch branches on (cheaper to test than
    /// [`Mechanism`] itself on every switch).
    mode: Mode,
}

/// What the switch does, by mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing to load.
    Nothing,
    /// Toggle the faulting bit of this MSR.
    Faulting { msr: u32, bit: u64 },
    /// Load the mask MSRs.
    Masking,
}

impl LevellingState {
    /// Bring a CPU up: load the defaults into every mask MSR in use and turn faulting off,
    /// whatever firmware left there (Xen's `ctxt_switch_levelling(NULL)` at CPU bring-up).
    pub fn init(levelling: &Levelling, hw: &mut impl Hardware) -> Result<LevellingState, MsrFault> {
        let mode = match levelling.mechanism() {
            Mechanism::Faulting { control, .. } => {
                let (msr, bit) = control.msr_and_bit();
                Mode::Faulting { msr, bit }
            }
            Mechanism::Masking(_) => Mode::Masking,
            Mechanism::None => Mode::Nothing,
        };
        let mut state = LevellingState {
            masks: *levelling.defaults(),
            faulting_msr: 0,
            mode,
        };
        match levelling.mechanism() {
            Mechanism::Faulting { control, .. } => {
                let (index, bit) = control.msr_and_bit();
                let current = hw.rdmsr_safe(index)?;
                state.faulting_msr = current & !bit;
                if current & bit != 0 {
                    hw.wrmsr_safe(index, state.faulting_msr)?;
                }
            }
            Mechanism::Masking(msrs) => {
                for (kind, index) in msrs.kinds() {
                    write_mask(hw, levelling, index, levelling.defaults().get(kind))?;
                }
            }
            Mechanism::None => {}
        }
        Ok(state)
    }

    /// Switch this CPU to `next`, writing only what differs. If an MSR faults, the others are
    /// still written, the shadow keeps what was last written successfully, and the first fault
    /// is returned: the embedder marks the mechanism failed ([`Levelling::mark_failed`]) and
    /// carries on.
    pub fn switch_to(
        &mut self,
        levelling: &Levelling,
        hw: &mut impl Hardware,
        next: SwitchTo<'_>,
    ) -> Result<SwitchStats, MsrFault> {
        let mut stats = SwitchStats::default();
        let (domain, cr4_osxsave, virtual_faulting) = match next {
            SwitchTo::Idle => return Ok(stats),
            SwitchTo::Xen => (None, true, false),
            SwitchTo::Vcpu {
                domain,
                cr4_osxsave,
                virtual_faulting,
            } => (Some(domain), cr4_osxsave, virtual_faulting),
        };
        match self.mode {
            Mode::Faulting { msr, bit } => {
                let enable = domain.is_some_and(|d| {
                    d.faulting() || (d.kind() != DomainKind::Pv && virtual_faulting)
                });
                let value = if enable {
                    self.faulting_msr | bit
                } else {
                    self.faulting_msr & !bit
                };
                if value != self.faulting_msr {
                    self.write_faulting(hw, msr, value, &mut stats)?;
                }
            }
            Mode::Masking => {
                let target = match domain {
                    // A PV kernel that has not set CR4.OSXSAVE must not see Xen's fast-forwarded.
                    Some(d) if !cr4_osxsave => d.masks_without_osxsave(),
                    Some(d) => d.masks(),
                    None => levelling.defaults(),
                };
                // The common case, nothing to change: one comparison. (Values of kinds this
                // CPU has no MSR for are kept equal to the defaults, so they never differ.)
                if target.differs_from(&self.masks) {
                    self.write_masks(levelling, hw, target, &mut stats)?;
                }
            }
            Mode::Nothing => {}
        }
        Ok(stats)
    }

    /// What the mask MSRs hold, as this CPU last wrote them.
    pub fn masks(&self) -> &MaskValues {
        &self.masks
    }

    /// True if faulting is on on this CPU.
    pub fn faulting(&self) -> bool {
        match self.mode {
            Mode::Faulting { bit, .. } => self.faulting_msr & bit != 0,
            _ => false,
        }
    }

    /// Write the mask MSRs whose value differs from the shadow. Keeps going past a fault, so
    /// the other MSRs still get their values, and returns the first fault. Out of line, so
    /// that the no-change path saves no registers.
    #[cold]
    #[inline(never)]
    fn write_masks(
        &mut self,
        levelling: &Levelling,
        hw: &mut impl Hardware,
        target: &MaskValues,
        stats: &mut SwitchStats,
    ) -> Result<(), MsrFault> {
        let Mechanism::Masking(msrs) = levelling.mechanism() else {
            return Ok(());
        };
        let mut first_fault = None;
        for (kind, index) in msrs.kinds() {
            let value = target.get(kind);
            if self.masks.get(kind) == value {
                continue;
            }
            match write_mask(hw, levelling, index, value) {
                Ok(()) => {
                    self.masks.set(kind, value);
                    stats.msr_writes += 1;
                }
                Err(fault) => {
                    first_fault.get_or_insert(fault);
                }
            }
        }
        first_fault.map_or(Ok(()), Err)
    }

    /// Out of line, so that the no-change path saves no registers.
    #[cold]
    #[inline(never)]
    fn write_faulting(
        &mut self,
        hw: &mut impl Hardware,
        index: u32,
        value: u64,
        stats: &mut SwitchStats,
    ) -> Result<(), MsrFault> {
        hw.wrmsr_safe(index, value)?;
        self.faulting_msr = value;
        stats.msr_writes += 1;
        Ok(())
    }
}

fn write_mask(
    hw: &mut impl Hardware,
    levelling: &Levelling,
    index: u32,
    value: u64,
) -> Result<(), MsrFault> {
    if levelling.vendor().is_amd_like() {
        hw.wrmsr_amd_safe(index, value)
    } else {
        hw.wrmsr_safe(index, value)
    }
}
