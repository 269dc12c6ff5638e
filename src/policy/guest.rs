//! `guest_cpuid`: what a guest's CPUID instruction returns (Xen's `guest_cpuid()` in
//! `xen/arch/x86/cpuid.c`, reference `xen-levelling.md` 7.1–7.2).
//!
//! The static pass reads the domain's policy: out-of-range queries give all zeros (the AMD
//! model, for both vendors), the Xen leaves are synthesised at 0x40000000. The dynamic pass,
//! run only when the query comes from the vCPU that is running, folds in register state:
//! OSXSAVE and OSPKE from the guest's CR4, APIC IDs from the vCPU id, XSAVE sizes from XCR0.
//!
//! Every table entry a guest's leaf, subleaf or XCR0 selects is read through
//! [`CpuPolicy::slot`], which clamps the index under speculation (the crate's `nospec` clamp, Xen's
//! `array_access_nospec`): a mispredicted bounds check cannot load past a leaf array.

use super::system::DomainKind;
use super::{CpuPolicy, EXTD_BASE, NR_XSTATE, Slot, XEN_LEAVES, XEN_LEAVES_RELOCATED};
use crate::cpuid::CpuidRegs;
use crate::feature::Feature;
use crate::featureset::Featureset;

mod table;
pub use table::{CpuidOverlay, CpuidTable, Patch};

/// How many Xen leaves there are by default (`XEN_CPUID_MAX_NUM_LEAVES`).
pub const XEN_LEAF_COUNT: u32 = 5;
/// "XenVMMXenVMM" in EBX, ECX, EDX of the first Xen leaf.
pub const XEN_SIGNATURE: (u32, u32, u32) = (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e);
/// The hypercall-page MSR base the Xen leaves advertise (leaf 2 EBX).
pub const XEN_MSR_BASE: u32 = 0x4000_0000;

/// What the Xen leaves and the hardware-domain leaks need to know about a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestDomain {
    /// PV or HVM.
    pub kind: DomainKind,
    /// The domain id.
    pub domid: u16,
    /// True for the hardware domain (dom0), which Xen lets see a few host power features.
    pub hardware_domain: bool,
    /// The host's features, for the hardware domain's leaks.
    pub host_features: Featureset,
    /// The host's physical address width (`CPUID.80000008H:EAX[7:0]`), for PV leaf 5.
    pub host_paddr_bits: u8,
    /// Xen's version, (major, minor), for Xen leaf 1.
    pub xen_version: (u16, u16),
}

/// How the CPUID reached the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidEntry {
    /// An HVM CPUID intercept.
    VmExit,
    /// A #GP from CPUID faulting (a PV guest's native CPUID).
    Fault,
    /// A #UD at the forced-emulation prefix (`ud2; .ascii "xen"; cpuid`).
    ForcedEmulation,
}

/// The running vCPU's register state, for the dynamic pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuState {
    /// How the query arrived.
    pub entry: CpuidEntry,
    /// The guest's (virtual, for PV) CR4.OSXSAVE.
    pub cr4_osxsave: bool,
    /// The guest's (virtual, for PV) CR4.PKE.
    pub cr4_pke: bool,
    /// The guest runs its kernel (PV) rather than user space.
    pub kernel_mode: bool,
    /// Xen's own CR4.OSXSAVE (the PV forced-emulation leak, below).
    pub host_cr4_osxsave: bool,
    /// The guest's XCR0.
    pub xcr0: u64,
    /// The guest's IA32_XSS.
    pub xss: u64,
    /// HVM: the virtual local APIC is hardware-enabled (IA32_APIC_BASE.EN).
    pub apic_enabled: bool,
    /// HVM: the vCPU is in long mode.
    pub long_mode: bool,
}

/// One CPUID query's context: the domain, the vCPU, and its live state if it is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestContext {
    /// The domain.
    pub domain: GuestDomain,
    /// The vCPU id.
    pub vcpu_id: u32,
    /// Live register state; `None` when the vCPU is not the one running (static pass only).
    pub state: Option<VcpuState>,
}

/// The registers a guest's CPUID `leaf`/`subleaf` returns under `policy`. Never panics,
/// whatever the leaf and subleaf.
pub fn guest_cpuid(policy: &CpuPolicy, leaf: u32, subleaf: u32, ctx: &GuestContext) -> CpuidRegs {
    let entry = ctx.state.map_or(CpuidEntry::VmExit, |s| s.entry);
    guest_cpuid_entered(policy, leaf, subleaf, ctx, entry)
}

/// [`guest_cpuid`] for a query that arrived through `entry`, whatever `ctx.state.entry` says:
/// the trap handlers know how they were entered and need not copy the context to say so.
pub fn guest_cpuid_entered(
    policy: &CpuPolicy,
    leaf: u32,
    subleaf: u32,
    ctx: &GuestContext,
    entry: CpuidEntry,
) -> CpuidRegs {
    let mut regs = static_pass(policy, leaf, subleaf, ctx);
    if let Some(state) = &ctx.state {
        dynamic_pass(policy, leaf, subleaf, ctx, state, entry, &mut regs);
    }
    regs
}

fn static_pass(p: &CpuPolicy, leaf: u32, subleaf: u32, ctx: &GuestContext) -> CpuidRegs {
    match leaf {
        0..=0xd => {
            if leaf > p.max_basic_leaf().min(0xd) {
                return CpuidRegs::ZERO;
            }
            let in_range = match leaf {
                0x7 => subleaf <= p.max_feat_subleaf().min(2),
                0xd => p.has(Feature::XSAVE) && (subleaf as usize) < NR_XSTATE,
                _ => true,
            };
            match Slot::of(leaf, subleaf) {
                Some(slot) if in_range => *p.slot(slot),
                _ => CpuidRegs::ZERO,
            }
        }
        XEN_LEAVES..=0x4000_00ff => xen_leaf(XEN_LEAVES, p.hypervisor_limits().0, leaf, ctx),
        XEN_LEAVES_RELOCATED..=0x4000_01ff => {
            xen_leaf(XEN_LEAVES_RELOCATED, p.hypervisor_limits().1, leaf, ctx)
        }
        EXTD_BASE..=0x8000_ffff => {
            let max = (p.max_extd_leaf() & 0xffff).min(0x21);
            if p.max_extd_leaf() >> 16 != EXTD_BASE >> 16 || leaf & 0xffff > max {
                return CpuidRegs::ZERO;
            }
            *p.slot(Slot::Extd((leaf & 0xffff) as usize))
        }
        _ => CpuidRegs::ZERO,
    }
}

fn xen_leaf(base: u32, limit: u32, leaf: u32, ctx: &GuestContext) -> CpuidRegs {
    let limit = if limit == 0 {
        XEN_LEAF_COUNT
    } else {
        limit.clamp(2, XEN_LEAF_COUNT)
    };
    let idx = leaf - base;
    if idx > limit {
        return CpuidRegs::ZERO;
    }
    let d = &ctx.domain;
    let is_pv = d.kind == DomainKind::Pv;
    match idx {
        0 => {
            let (b, c, dx) = XEN_SIGNATURE;
            CpuidRegs::new(base + limit, b, c, dx)
        }
        1 => CpuidRegs::new(
            (d.xen_version.0 as u32) << 16 | d.xen_version.1 as u32,
            0,
            0,
            0,
        ),
        // One hypercall page; its MSR; PV: MMU_PT_UPDATE_PRESERVE_AD is supported.
        2 => CpuidRegs::new(1, XEN_MSR_BASE, is_pv as u32, 0),
        // TSC information: this crate models no TSC scaling, so the leaf is empty.
        3 => CpuidRegs::ZERO,
        // HVM: vCPU id and domain id present (flags bits 3 and 4).
        4 if !is_pv => CpuidRegs::new(1 << 3 | 1 << 4, ctx.vcpu_id, d.domid as u32, 0),
        // PV: the machine address width.
        5 if is_pv => CpuidRegs::new(0, d.host_paddr_bits as u32, 0, 0),
        _ => CpuidRegs::ZERO,
    }
}

fn dynamic_pass(
    p: &CpuPolicy,
    leaf: u32,
    subleaf: u32,
    ctx: &GuestContext,
    state: &VcpuState,
    entry: CpuidEntry,
    regs: &mut CpuidRegs,
) {
    let d = &ctx.domain;
    let is_pv = d.kind == DomainKind::Pv;
    let set = |reg: &mut u32, feature: Feature, on: bool| {
        if on {
            *reg |= feature.mask()
        } else {
            *reg &= !feature.mask()
        }
    };
    match leaf {
        0x1 if leaf <= p.max_basic_leaf() => {
            // CPUID.01H:EBX[31:24]: initial APIC ID; HVM vCPUs are numbered 0, 2, 4, ...
            regs.b &= 0x00ff_ffff;
            if !is_pv {
                regs.b |= (ctx.vcpu_id.wrapping_mul(2) & 0xff) << 24;
            }
            // CPUID.01H:ECX[27] OSXSAVE. A PV kernel using the forced-emulation prefix also
            // sees Xen's own CR4.OSXSAVE: old Linux relies on that leak, so it is ABI now.
            let pv_leak = is_pv
                && p.has(Feature::XSAVE)
                && entry == CpuidEntry::ForcedEmulation
                && state.kernel_mode
                && state.host_cr4_osxsave;
            set(&mut regs.c, Feature::OSXSAVE, state.cr4_osxsave || pv_leak);
            if is_pv && d.hardware_domain && state.kernel_mode {
                // dom0's kernel uploads ACPI C/P-states: it needs MONITOR and EIST, and
                // Xenolinux looks for MTRR to find the memtype hypercalls.
                if d.host_features.contains(Feature::MONITOR) && entry == CpuidEntry::Fault {
                    regs.c |= Feature::MONITOR.mask();
                }
                if d.host_features.contains(Feature::EIST) {
                    regs.c |= Feature::EIST.mask();
                }
                if d.host_features.contains(Feature::MTRR) {
                    regs.d |= Feature::MTRR.mask();
                }
            }
            if !is_pv && !state.apic_enabled {
                regs.d &= !Feature::APIC.mask(); // CPUID.01H:EDX[9] follows IA32_APIC_BASE.EN
            }
        }
        0x7 if subleaf == 0 && leaf <= p.max_basic_leaf() => {
            set(&mut regs.c, Feature::OSPKE, state.cr4_pke); // CPUID.07H.0:ECX[4]
        }
        0xb if p.has(Feature::X2APIC) && leaf <= p.max_basic_leaf() => {
            regs.c = (regs.c & !0xff) | (subleaf & 0xff); // CPUID.0BH:ECX[7:0]: the level asked
            regs.d = ctx.vcpu_id.wrapping_mul(2); // CPUID.0BH:EDX: x2APIC ID
        }
        0xd if p.has(Feature::XSAVE) && leaf <= p.max_basic_leaf() => match subleaf {
            // CPUID.0DH.0:EBX: XSAVE area size for the current XCR0.
            0 => regs.b = xsave_size(p, state.xcr0, false),
            // CPUID.0DH.1:EBX: XSAVES area size for XCR0 | XSS.
            1 if p.has(Feature::XSAVEC) => regs.b = xsave_size(p, state.xcr0 | state.xss, true),
            _ => {}
        },
        0x8000_0001 if !is_pv && !p.vendor().is_amd_like() && !state.long_mode => {
            regs.d &= !Feature::SYSCALL.mask(); // Intel: SYSCALL only in 64-bit mode
        }
        _ => {}
    }
}

/// The XSAVE area size for `components`: standard (uncompressed) or compacted format.
/// Saturating: the sizes come from the policy, which a toolstack may fill with anything.
fn xsave_size(p: &CpuPolicy, components: u64, compacted: bool) -> u32 {
    xsave_size_of(|i| *p.slot(Slot::Xstate(i)), components, compacted)
}

/// [`xsave_size`] over the leaf 0xD subleaves `component` gives (`i` < [`NR_XSTATE`]).
#[inline(always)]
fn xsave_size_of(component: impl Fn(usize) -> CpuidRegs, components: u64, compacted: bool) -> u32 {
    let mut size: u32 = 512 + 64;
    // Only the components asked for, lowest first (the compacted format packs them in order).
    let mut rest = components & !0b11 & ((1 << NR_XSTATE) - 1);
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let c = component(i);
        size = if compacted {
            // CPUID.0DH.n:ECX[1]: the component is 64-byte aligned in the compacted format.
            let start = if c.c & 0b10 != 0 {
                size.checked_next_multiple_of(64).unwrap_or(u32::MAX)
            } else {
                size
            };
            start.saturating_add(c.a)
        } else {
            size.max(c.a.saturating_add(c.b))
        };
    }
    size
}
