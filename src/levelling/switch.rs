//! Per-CPU levelling state and the context switch (reference `xen-levelling.md` 1.3, 3.2).
//!
//! Each CPU keeps a shadow of what its levelling MSRs hold. Switching to a vCPU works out the
//! values it needs from its domain's precomputed [`DomainLevelling`] and writes only the MSRs
//! whose value differs; faulting is toggled only when it changes. Switching to idle leaves
//! everything as it is (idle runs no guest code); switching to Xen loads the defaults.

use super::masks::{MaskKind, MaskValues, without_osxsave};
use super::probe::FaultingControl;
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
}

impl LevellingState {
    /// Bring a CPU up: load the defaults into every mask MSR in use and turn faulting off,
    /// whatever firmware left there (Xen's `ctxt_switch_levelling(NULL)` at CPU bring-up).
    pub fn init(levelling: &Levelling, hw: &mut impl Hardware) -> Result<LevellingState, MsrFault> {
        let mut state = LevellingState {
            masks: levelling.defaults,
            faulting_msr: 0,
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
                    write_mask(hw, levelling, index, levelling.defaults.get(kind))?;
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
        match levelling.mechanism() {
            Mechanism::Faulting { control, .. } => {
                let enable = domain
                    .is_some_and(|d| d.faulting || (d.kind != DomainKind::Pv && virtual_faulting));
                self.set_faulting(hw, control, enable, &mut stats)?;
            }
            Mechanism::Masking(msrs) => {
                let mut target = domain.map_or(levelling.defaults, |d| d.masks);
                // A PV kernel that has not set CR4.OSXSAVE must not see Xen's fast-forwarded.
                if domain.is_some_and(|d| d.kind == DomainKind::Pv) && !cr4_osxsave {
                    let leaf1 = target.get(MaskKind::Leaf1);
                    target.set(MaskKind::Leaf1, without_osxsave(levelling.vendor(), leaf1));
                }
                // Keep going past a fault: the other MSRs still get their values.
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
                if let Some(fault) = first_fault {
                    return Err(fault);
                }
            }
            Mechanism::None => {}
        }
        Ok(stats)
    }

    /// What the mask MSRs hold, as this CPU last wrote them.
    pub fn masks(&self) -> &MaskValues {
        &self.masks
    }

    /// True if faulting is on on this CPU.
    pub fn faulting(&self, levelling: &Levelling) -> bool {
        match levelling.mechanism() {
            Mechanism::Faulting { control, .. } => self.faulting_msr & control.msr_and_bit().1 != 0,
            _ => false,
        }
    }

    fn set_faulting(
        &mut self,
        hw: &mut impl Hardware,
        control: FaultingControl,
        enable: bool,
        stats: &mut SwitchStats,
    ) -> Result<(), MsrFault> {
        let (index, bit) = control.msr_and_bit();
        let value = if enable {
            self.faulting_msr | bit
        } else {
            self.faulting_msr & !bit
        };
        if value != self.faulting_msr {
            hw.wrmsr_safe(index, value)?;
            self.faulting_msr = value;
            stats.msr_writes += 1;
        }
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
