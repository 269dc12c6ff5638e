//! Where the crate's levelling mechanism plugs into the kernel.
//!
//! The mechanism (probing faulting and mask MSRs, per-domain mask values, the per-CPU lazy
//! context switch) lives in `xen_levelling::levelling`, which is being written; until then
//! these functions are the seams, each marked `LEVELLING:` with what goes there. The trap
//! side (forced-emulation #UD, faulting #GP, the HVM CPUID exit) has its seam in `emulate.rs`.
//!
//! | seam | called from | Xen's counterpart |
//! |---|---|---|
//! | [`probe_faulting`] | `xen::Host::probe` at boot | `probe_cpuid_faulting`, `amd_init_levelling`, `intel_init_levelling` |
//! | [`Levelling::switch_to`] | `sched::Scheduler::switch_to` on every domain change, and on the way back to Xen | `ctxt_switch_levelling` |

use xen_levelling::hardware::Hardware;

use crate::domain::Domain;

/// Whether CPUID faulting is available and works (by effect, not by presence: under TCG
/// every MSR reads 0 and swallows writes, qemu-facts.md section 5).
///
/// LEVELLING: the crate's probe goes here, given `hw`. Until it exists the kernel claims no
/// faulting, which is also the truth under plain QEMU.
pub fn probe_faulting(hw: &impl Hardware) -> bool {
    let _ = hw;
    false
}

/// The per-CPU levelling state the context switch drives.
#[derive(Debug, Default)]
pub struct Levelling {
    /// How many times [`Levelling::switch_to`] ran (the `switch` scenario checks it).
    pub switch_calls: u64,
}

impl Levelling {
    /// A CPU's state before any switch.
    pub const fn new() -> Self {
        Levelling { switch_calls: 0 }
    }

    /// Called on every context switch, before `next` runs (`None`: back to Xen itself, which
    /// must see the full host CPUID again).
    ///
    /// LEVELLING: `levelling.switch_to(next)` goes here: load `next`'s mask values (or the
    /// host defaults for `None`/dom0) and its faulting enable, writing only the MSRs whose
    /// value differs from the per-CPU shadow.
    pub fn switch_to(&mut self, next: Option<&Domain>) {
        let _ = next;
        self.switch_calls += 1;
    }
}
