//! The trap decoder: #GP (CPUID faulting), #UD (forced-emulation prefix), the HVM CPUID exit,
//! and the guest-visible levelling MSRs.
//!
//! Input: a policy (a real one, optionally with fuzzed leaves merged in), a register frame,
//! guest code bytes mapped at one of a few bases (one at the very top of the address space),
//! CPL, error code, vCPU state, and an MSR access.
//!
//! Oracles:
//! - no panic;
//! - `NotOurs` / `InjectPageFault`: the frame is unchanged, and the page-fault address is one
//!   the handler had to fetch and that is not mapped;
//! - #GP/exit `InjectGp`: the frame is unchanged; #UD `InjectGp`: only RIP moved, to the CPUID
//!   past the prefix;
//! - `Emulated`: the instruction bytes are really there, RIP moved by its length, the results
//!   are `guest_cpuid`'s, zero-extended;
//! - MSRs: `None` exactly for the MSRs levelling does not own; a refused write changes
//!   nothing; a write that took effect reads back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

use xen_levelling::abi::XenCpuidLeaf;
use xen_levelling::featureset::Featureset;
use xen_levelling::levelling::msr;
use xen_levelling::levelling::trap::{
    CpuidFrame, GuestMemory, MsrAccess, TrapContext, TrapOutcome, guest_rdmsr, guest_wrmsr,
    handle_cpuid_exit, handle_gp, handle_ud,
};
use xen_levelling::policy::guest::{
    CpuidEntry, CpuidTable, GuestContext, GuestDomain, VcpuState, guest_cpuid,
};
use xen_levelling::policy::system::DomainKind;
use xen_levelling_fuzz::CodeMem;

/// CPUID's encoding (`0F A2`), and Xen's forced-emulation prefix before it (`ud2` then
/// the bytes of "xen"): the oracle's own copies, not the decoder's.
const CPUID_OPCODE: [u8; 2] = [0x0f, 0xa2];
const FORCED_EMULATION_PREFIX: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

#[derive(Arbitrary, Debug)]
enum Rip {
    /// An offset into the code.
    Off(u16),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Code {
    /// `0F A2` at the offset.
    Cpuid {
        at: u8,
        bytes: Vec<u8>,
    },
    /// `ud2; "xen"; cpuid` at the offset, possibly cut short.
    Forced {
        at: u8,
        cut: u8,
        bytes: Vec<u8>,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum MsrIndex {
    Levelling(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    leaves: Vec<[u32; 6]>,
    faulting: Option<bool>,
    base: u8,
    code: Code,
    rip: Rip,
    regs: [u64; 4],
    cpl: u8,
    error_code: u64,
    kind: u8,
    domid: u16,
    vcpu_id: u32,
    hardware_domain: bool,
    state: Option<(bool, bool, bool, bool, u64, u64, bool, bool)>,
    virtual_faulting: bool,
    msr: MsrIndex,
    msr_value: u64,
}

const LEVELLING_MSRS: [u32; 13] = [
    msr::PLATFORM_INFO,
    msr::MISC_FEATURES_ENABLES,
    msr::AMD_HWCR,
    msr::INTEL_MASK_V1_LEAF1,
    msr::INTEL_MASK_V2_LEAF1,
    msr::INTEL_MASK_V2_EXTD1,
    msr::INTEL_MASK_V3_LEAF1,
    msr::INTEL_MASK_V3_EXTD1,
    msr::INTEL_MASK_V3_XSAVE1,
    msr::AMD_OVERRIDE_LEAF1,
    msr::AMD_OVERRIDE_EXTD1,
    msr::AMD_OVERRIDE_LEAF7,
    msr::AMD_OVERRIDE_LEAF6,
];

/// Can `mem` not read the byte at `address`?
fn unmapped(mem: &CodeMem, address: u64) -> bool {
    mem.read(address, &mut [0u8]).is_err()
}

fn check_fetch_fault(mem: &CodeMem, rip: u64, len: u64, address: u64) {
    assert!(
        address.wrapping_sub(rip) < len,
        "#PF at {address:#x}, outside the {len} bytes at RIP {rip:#x}"
    );
    assert!(unmapped(mem, address), "#PF at mapped address {address:#x}");
}

fn check_emulated(
    policy: &xen_levelling::CpuPolicy,
    ctx: &TrapContext<'_>,
    entry: CpuidEntry,
    before: &CpuidFrame,
    after: &CpuidFrame,
    len: u64,
) {
    assert_eq!(
        after.rip,
        before.rip.wrapping_add(len),
        "RIP not advanced by {len}"
    );
    let mut guest = *ctx.guest;
    if let Some(s) = guest.state.as_mut() {
        s.entry = entry;
    }
    let r = guest_cpuid(policy, before.rax as u32, before.rcx as u32, &guest);
    assert_eq!(
        (after.rax, after.rbx, after.rcx, after.rdx),
        (r.a as u64, r.b as u64, r.c as u64, r.d as u64),
        "emulated CPUID differs from guest_cpuid"
    );
}

/// Known findings are reported once and then tolerated, so that a long run can find others;
/// `FUZZ_STRICT=1` checks them again (to reproduce the saved regressions).
fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("FUZZ_STRICT").is_some_and(|v| v == "1"))
}

/// Finding T1: on an AMD-like policy without faulting, WRMSR MISC_FEATURES_ENABLES = 0 is
/// accepted but RDMSR of it raises #GP.
fn known_t1(policy: &xen_levelling::CpuPolicy, index: u32) -> bool {
    !strict()
        && index == msr::MISC_FEATURES_ENABLES
        && policy.vendor().is_amd_like()
        && !policy.cpuid_faulting()
}

fuzz_target!(|input: Input| {
    let real = xen_levelling_fuzz::real_policies();
    let mut policy = real[input.policy as usize % real.len()];
    let leaves: Vec<XenCpuidLeaf> = input
        .leaves
        .iter()
        .take(8)
        .map(|r| XenCpuidLeaf {
            leaf: r[0],
            subleaf: r[1],
            a: r[2],
            b: r[3],
            c: r[4],
            d: r[5],
        })
        .collect();
    if let Ok(p) = policy.merged(&leaves, &[]) {
        policy = p;
    }
    if let Some(f) = input.faulting {
        policy.set_cpuid_faulting(f);
    }

    let base = [0x40_0000u64, 0x1000, u64::MAX - 0x7f, 0][input.base as usize % 4];
    let bytes = match input.code {
        Code::Cpuid { at, mut bytes } => {
            bytes.truncate(512);
            let at = at as usize;
            if bytes.len() < at + 2 {
                bytes.resize(at + 2, 0x90);
            }
            bytes[at..at + 2].copy_from_slice(&CPUID_OPCODE);
            bytes
        }
        Code::Forced { at, cut, mut bytes } => {
            bytes.truncate(512);
            let at = at as usize;
            let mut seq = FORCED_EMULATION_PREFIX.to_vec();
            seq.extend_from_slice(&CPUID_OPCODE);
            seq.truncate(1 + cut as usize % 7 + usize::from(cut >= 128) * 7);
            if bytes.len() < at + seq.len() {
                bytes.resize(at + seq.len(), 0x90);
            }
            bytes[at..at + seq.len()].copy_from_slice(&seq);
            // A cut sequence ends the mapping right there.
            if seq.len() < 7 {
                bytes.truncate(at + seq.len());
            }
            bytes
        }
        Code::Raw(mut b) => {
            b.truncate(512);
            b
        }
    };
    // Keep the mapping inside the address space.
    let max_len = (u64::MAX - base).saturating_add(1).min(bytes.len() as u64) as usize;
    let mem = CodeMem {
        base,
        bytes: bytes[..max_len].to_vec(),
    };
    let rip = match input.rip {
        Rip::Off(o) => base.wrapping_add(o as u64 % 600),
        Rip::Raw(r) => r,
    };
    let kind = [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow][input.kind as usize % 3];
    let state = input.state.map(
        |(osxsave, pke, kernel, host_osxsave, xcr0, xss, apic, lm)| VcpuState {
            entry: CpuidEntry::Fault,
            cr4_osxsave: osxsave,
            cr4_pke: pke,
            kernel_mode: kernel,
            host_cr4_osxsave: host_osxsave,
            xcr0,
            xss,
            apic_enabled: apic,
            long_mode: lm,
        },
    );
    let guest = GuestContext {
        domain: GuestDomain {
            kind,
            domid: input.domid,
            hardware_domain: input.hardware_domain,
            host_features: if input.hardware_domain {
                Featureset::FULL
            } else {
                Featureset::EMPTY
            },
            host_paddr_bits: 46,
            xen_version: (4, 23),
        },
        vcpu_id: input.vcpu_id,
        state,
    };
    let cpuid = CpuidTable::new(&policy, &guest.domain);
    let overlay = cpuid.overlay(&guest);
    let ctx = TrapContext {
        cpuid: &cpuid,
        overlay: &overlay,
        guest: &guest,
        cpl: input.cpl % 4,
        virtual_faulting: input.virtual_faulting,
    };
    let start = CpuidFrame {
        rax: input.regs[0],
        rbx: input.regs[1],
        rcx: input.regs[2],
        rdx: input.regs[3],
        rip,
    };

    // #GP.
    let mut f = start;
    match handle_gp(&ctx, &mut f, &mem, input.error_code) {
        TrapOutcome::Emulated => {
            assert!(ctx.cpl > 0 && input.error_code == 0);
            let mut op = [0u8; 2];
            mem.read(rip, &mut op).expect("emulated, so fetched");
            assert_eq!(op, CPUID_OPCODE);
            check_emulated(&policy, &ctx, CpuidEntry::Fault, &start, &f, 2);
        }
        TrapOutcome::InjectGp => {
            assert!(ctx.virtual_faulting);
            assert_eq!(f, start, "#GP InjectGp changed the frame");
        }
        TrapOutcome::NotOurs => assert_eq!(f, start, "#GP NotOurs changed the frame"),
        TrapOutcome::InjectPageFault { address } => {
            assert_eq!(f, start, "#GP InjectPageFault changed the frame");
            check_fetch_fault(&mem, rip, 2, address);
        }
    }

    // #UD.
    let mut f = start;
    match handle_ud(&ctx, &mut f, &mem) {
        TrapOutcome::Emulated => {
            let mut op = [0u8; 7];
            for (i, b) in op.iter_mut().enumerate() {
                mem.read(rip.wrapping_add(i as u64), core::slice::from_mut(b))
                    .expect("emulated, so fetched");
            }
            assert_eq!(&op[..5], &FORCED_EMULATION_PREFIX);
            assert_eq!(&op[5..], &CPUID_OPCODE);
            check_emulated(&policy, &ctx, CpuidEntry::ForcedEmulation, &start, &f, 7);
        }
        TrapOutcome::InjectGp => {
            assert!(ctx.virtual_faulting);
            let mut expected = start;
            expected.rip = start.rip.wrapping_add(5);
            assert_eq!(f, expected, "#UD InjectGp: only RIP moves, to the CPUID");
        }
        TrapOutcome::NotOurs => assert_eq!(f, start, "#UD NotOurs changed the frame"),
        TrapOutcome::InjectPageFault { address } => {
            assert_eq!(f, start, "#UD InjectPageFault changed the frame");
            check_fetch_fault(&mem, rip, 7, address);
        }
    }

    // HVM CPUID exit.
    let mut f = start;
    match handle_cpuid_exit(&ctx, &mut f) {
        TrapOutcome::Emulated => check_emulated(&policy, &ctx, CpuidEntry::VmExit, &start, &f, 2),
        TrapOutcome::InjectGp => assert_eq!(f, start, "exit InjectGp changed the frame"),
        other => panic!("a CPUID exit is always ours: {other:?}"),
    }

    // MSRs.
    let index = match input.msr {
        MsrIndex::Levelling(i) => LEVELLING_MSRS[i as usize % LEVELLING_MSRS.len()],
        MsrIndex::Raw(r) => r,
    };
    let owned = LEVELLING_MSRS.contains(&index);
    let read = guest_rdmsr(&policy, input.virtual_faulting, index);
    assert_eq!(read.is_some(), owned, "rdmsr {index:#x}: ownership");
    let mut vf = input.virtual_faulting;
    let write = guest_wrmsr(&policy, &mut vf, index, input.msr_value);
    assert_eq!(write.is_some(), owned, "wrmsr {index:#x}: ownership");
    match write {
        None | Some(MsrAccess::InjectGp) => {
            assert_eq!(vf, input.virtual_faulting, "a refused WRMSR changed state")
        }
        Some(MsrAccess::Written) if known_t1(&policy, index) => {}
        Some(MsrAccess::Written) => {
            assert_eq!(
                guest_rdmsr(&policy, vf, index),
                Some(MsrAccess::Read(input.msr_value)),
                "WRMSR {index:#x} = {:#x} took effect but does not read back",
                input.msr_value
            );
        }
        Some(MsrAccess::Read(_)) => panic!("a write returned a read"),
    }
});
