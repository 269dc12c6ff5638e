//! Trap emulation: what is ours and what is not, RIP handling, faults while fetching, the
//! guest's own CPUID faulting, and the levelling MSRs as guests see them.

use xen_levelling::levelling::trap::{
    CpuidFrame, GuestMemory, MemoryFault, MsrAccess, TrapContext, TrapOutcome, guest_rdmsr,
    guest_wrmsr, handle_cpuid_exit, handle_gp, handle_ud,
};
use xen_levelling::policy::guest::{CpuidEntry, CpuidTable, GuestContext, GuestDomain, VcpuState};
use xen_levelling::policy::system::DomainKind;
use xen_levelling::{CpuPolicy, CpuidRegs, Feature, Featureset, Vendor};

/// Guest memory: `bytes` mapped at `base`, everything else faults.
struct Memory {
    base: u64,
    bytes: Vec<u8>,
}

impl GuestMemory for Memory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = address.wrapping_add(i as u64);
            let offset = at
                .checked_sub(self.base)
                .filter(|&o| o < self.bytes.len() as u64);
            *b = self.bytes[offset.ok_or(MemoryFault { address: at })? as usize];
        }
        Ok(())
    }
}

const RIP: u64 = 0x40_0000;

fn memory(bytes: &[u8]) -> Memory {
    Memory {
        base: RIP,
        bytes: bytes.to_vec(),
    }
}

/// A small Intel policy: max leaf 7, leaf 1 with SSE2 and XSAVE, leaf 7 with AVX2, faulting offered.
fn policy() -> CpuPolicy {
    let mut p = CpuPolicy::EMPTY;
    let (b, c, d) = Vendor::INTEL_REGS;
    *p.leaf_mut(0, 0).unwrap() = CpuidRegs::new(7, b, c, d);
    let mut fs = Featureset::of(&[Feature::SSE2, Feature::XSAVE, Feature::AVX2, Feature::FPU]);
    fs.insert(Feature::HYPERVISOR);
    p.set_featureset(&fs);
    p.set_cpuid_faulting(true);
    p
}

fn context(
    policy: &CpuPolicy,
    kind: DomainKind,
    cpl: u8,
    kernel_mode: bool,
    virtual_faulting: bool,
) -> TrapContext<'_> {
    // Leaked: each test builds a handful, and the context must outlive the TrapContext.
    let guest = Box::leak(Box::new(GuestContext {
        domain: GuestDomain {
            kind,
            domid: 3,
            hardware_domain: false,
            host_features: Featureset::EMPTY,
            host_paddr_bits: 40,
            xen_version: (4, 23),
        },
        vcpu_id: 0,
        state: Some(VcpuState {
            entry: CpuidEntry::Fault,
            cr4_osxsave: false,
            cr4_pke: false,
            kernel_mode,
            host_cr4_osxsave: true,
            xcr0: 3,
            xss: 0,
            apic_enabled: true,
            long_mode: true,
        }),
    }));
    // The domain's CPUID table, built from its policy as an embedder does when it sets it.
    let cpuid = Box::leak(Box::new(CpuidTable::new(policy, &guest.domain)));
    // The vCPU's overlay, as an embedder builds it with the vCPU.
    let overlay = Box::leak(Box::new(cpuid.overlay(guest)));
    TrapContext {
        cpuid,
        overlay,
        guest,
        cpl,
        virtual_faulting,
    }
}

fn frame(leaf: u32, subleaf: u32) -> CpuidFrame {
    // Upper halves set, to check CPUID zero-extends its results.
    CpuidFrame {
        rax: 0xdead_0000_0000_0000 | leaf as u64,
        rbx: !0,
        rcx: subleaf as u64,
        rdx: !0,
        rip: RIP,
    }
}

#[test]
fn faulted_cpuid_is_emulated_from_the_policy() {
    let p = policy();
    let ctx = context(&p, DomainKind::Pv, 3, true, false);
    let mut f = frame(7, 0);
    assert_eq!(
        handle_gp(&ctx, &mut f, &memory(&[0x0f, 0xa2]), 0),
        TrapOutcome::Emulated
    );
    assert_eq!(f.rip, RIP + 2);
    assert_eq!(
        f.rbx,
        Feature::AVX2.mask() as u64,
        "CPUID.07H.0:EBX from the policy, zero-extended"
    );
    assert_eq!((f.rax, f.rcx, f.rdx), (0, 0, 0));
    let mut f = frame(1, 0);
    handle_gp(&ctx, &mut f, &memory(&[0x0f, 0xa2]), 0);
    assert_eq!(
        f.rcx as u32 & Feature::OSXSAVE.mask(),
        0,
        "virtual CR4.OSXSAVE is clear"
    );
    assert_ne!(f.rcx as u32 & Feature::XSAVE.mask(), 0);
}

#[test]
fn other_gps_are_not_ours() {
    let p = policy();
    let user = context(&p, DomainKind::Pv, 3, false, false);
    let mut f = frame(1, 0);
    // Not CPUID (WRMSR), a non-zero error code, or CPL 0: reflect.
    assert_eq!(
        handle_gp(&user, &mut f, &memory(&[0x0f, 0x30]), 0),
        TrapOutcome::NotOurs
    );
    assert_eq!(
        handle_gp(&user, &mut f, &memory(&[0x0f, 0xa2]), 0x10),
        TrapOutcome::NotOurs
    );
    let cpl0 = context(&p, DomainKind::Pv, 0, true, false);
    assert_eq!(
        handle_gp(&cpl0, &mut f, &memory(&[0x0f, 0xa2]), 0),
        TrapOutcome::NotOurs
    );
    assert_eq!(f, frame(1, 0), "nothing changed");
    // An unmapped RIP: #PF for the embedder to inject, never a panic.
    let mut f = frame(1, 0);
    f.rip = 0x1000;
    assert_eq!(
        handle_gp(&user, &mut f, &memory(&[]), 0),
        TrapOutcome::InjectPageFault { address: 0x1000 }
    );
    // The second byte on an unmapped page.
    let mut f = frame(1, 0);
    assert_eq!(
        handle_gp(&user, &mut f, &memory(&[0x0f]), 0),
        TrapOutcome::InjectPageFault { address: RIP + 1 }
    );
}

#[test]
fn forced_emulation_prefix() {
    let p = policy();
    let ctx = context(&p, DomainKind::Pv, 3, true, false);
    let prefix = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
    let mut f = frame(1, 0);
    assert_eq!(
        handle_ud(&ctx, &mut f, &memory(&prefix)),
        TrapOutcome::Emulated
    );
    assert_eq!(f.rip, RIP + 7);
    // In kernel mode the prefix leaks Xen's CR4.OSXSAVE (de-facto PV ABI).
    assert_ne!(f.rcx as u32 & Feature::OSXSAVE.mask(), 0);
    // A plain ud2, a prefix followed by something else, a cut-off prefix: not ours.
    for bytes in [
        &[0x0f, 0x0b, 0x90, 0x90, 0x90][..],
        &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x30],
    ] {
        let mut f = frame(1, 0);
        assert_eq!(
            handle_ud(&ctx, &mut f, &memory(bytes)),
            TrapOutcome::NotOurs
        );
        assert_eq!(f.rip, RIP);
    }
    let mut f = frame(1, 0);
    assert_eq!(
        handle_ud(&ctx, &mut f, &memory(&prefix[..6])),
        TrapOutcome::InjectPageFault { address: RIP + 6 }
    );
}

#[test]
fn the_guests_own_faulting_injects_gp_in_its_user_space() {
    let p = policy();
    let user = context(&p, DomainKind::Pv, 3, false, true);
    let mut f = frame(1, 0);
    assert_eq!(
        handle_gp(&user, &mut f, &memory(&[0x0f, 0xa2]), 0),
        TrapOutcome::InjectGp
    );
    assert_eq!(f.rip, RIP);
    let mut f = frame(1, 0);
    let prefix = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
    assert_eq!(
        handle_ud(&user, &mut f, &memory(&prefix)),
        TrapOutcome::InjectGp
    );
    assert_eq!(f.rip, RIP + 5, "the #GP is at the CPUID itself");
    // The guest's kernel is not affected by its own faulting.
    let kernel = context(&p, DomainKind::Pv, 3, true, true);
    let mut f = frame(1, 0);
    assert_eq!(
        handle_gp(&kernel, &mut f, &memory(&[0x0f, 0xa2]), 0),
        TrapOutcome::Emulated
    );
}

#[test]
fn hvm_cpuid_exits() {
    let p = policy();
    let ctx = context(&p, DomainKind::HvmHap, 0, true, true);
    let mut f = frame(0, 0);
    assert_eq!(handle_cpuid_exit(&ctx, &mut f), TrapOutcome::Emulated);
    assert_eq!((f.rax, f.rip), (7, RIP + 2));
    let user = context(&p, DomainKind::HvmHap, 3, false, true);
    let mut f = frame(0, 0);
    assert_eq!(handle_cpuid_exit(&user, &mut f), TrapOutcome::InjectGp);
    assert_eq!(f.rip, RIP, "no RIP advance on injection");
}

#[test]
fn levelling_msrs_never_reach_hardware() {
    let p = policy();
    assert_eq!(guest_rdmsr(&p, false, 0xce), Some(MsrAccess::Read(1 << 31)));
    assert_eq!(guest_rdmsr(&p, true, 0x140), Some(MsrAccess::Read(1)));
    let mut vf = false;
    assert_eq!(guest_wrmsr(&p, &mut vf, 0x140, 1), Some(MsrAccess::Written));
    assert!(vf);
    assert_eq!(
        guest_wrmsr(&p, &mut vf, 0x140, 2),
        Some(MsrAccess::InjectGp),
        "reserved bit"
    );
    assert!(vf, "unchanged by a refused write");
    assert_eq!(
        guest_wrmsr(&p, &mut vf, 0xce, 0),
        Some(MsrAccess::InjectGp),
        "read-only"
    );
    for mask in [
        0x478,
        0x130,
        0x131,
        0x132,
        0x133,
        0x134,
        0xc001_1004,
        0xc001_1005,
        0xc001_1002,
        0xc001_1003,
    ] {
        assert_eq!(
            guest_rdmsr(&p, false, mask),
            Some(MsrAccess::InjectGp),
            "{mask:#x}"
        );
        assert_eq!(
            guest_wrmsr(&p, &mut vf, mask, !0),
            Some(MsrAccess::InjectGp),
            "{mask:#x}"
        );
    }
    assert_eq!(
        guest_wrmsr(&p, &mut vf, 0xc001_0015, 1 << 35),
        Some(MsrAccess::InjectGp)
    );
    assert_eq!(guest_rdmsr(&p, false, 0x10), None, "TSC is not levelling's");
    // Without faulting in the policy, only 0 may be written.
    let mut no_faulting = p;
    no_faulting.set_cpuid_faulting(false);
    let mut vf = false;
    assert_eq!(
        guest_wrmsr(&no_faulting, &mut vf, 0x140, 1),
        Some(MsrAccess::InjectGp)
    );
    assert_eq!(
        guest_wrmsr(&no_faulting, &mut vf, 0x140, 0),
        Some(MsrAccess::Written)
    );
}

/// Fuzz finding T1: on an AMD policy without CPUID faulting, WRMSR 0x140 = 0 was accepted but
/// RDMSR 0x140 raised #GP. A guest must be able to read back an MSR it can write.
#[test]
fn misc_features_enables_reads_back_what_was_written_on_amd_without_faulting() {
    let mut p = CpuPolicy::EMPTY;
    let (b, c, d) = Vendor::AMD_REGS;
    *p.leaf_mut(0, 0).unwrap() = CpuidRegs::new(0xd, b, c, d);
    assert!(p.vendor().is_amd_like() && !p.cpuid_faulting());
    for initial in [false, true] {
        let mut vf = initial;
        assert_eq!(guest_wrmsr(&p, &mut vf, 0x140, 0), Some(MsrAccess::Written));
        assert_eq!(guest_rdmsr(&p, vf, 0x140), Some(MsrAccess::Read(0)));
        assert_eq!(
            guest_wrmsr(&p, &mut vf, 0x140, 1),
            Some(MsrAccess::InjectGp)
        );
    }
}
