//! Policy deserialisation: `xen_cpuid_leaf_t[]` / `xen_msr_entry_t[]` → `CpuPolicy`.
//!
//! Input: a selector (merge into EMPTY with `from_arrays`, or into a real policy with
//! `merged`), then raw 24-byte leaves and 16-byte MSR entries, exactly as a toolstack would
//! hand them over (the layout `tests/` and the seed corpus use: byte 0 selector, byte 1
//! leaf-count hint, bytes 2..8 context bits, then `nr_msrs` MSR entries, then leaves).
//!
//! Oracles:
//! - no panic anywhere below;
//! - a merge that fails never changed its base (checked by value);
//! - on success, after `clear_out_of_range_leaves`, serialising then deserialising is the
//!   identity, and the serialised form is what `nr_serialised_leaves` announces;
//! - `clear_out_of_range_leaves` is idempotent;
//! - `guest_cpuid` on the result for interesting leaves and the input's own leaves does not
//!   panic, and is all zeros outside the table;
//! - `SystemPolicies::derive` on the result does not panic, and its defaults fit their max;
//!   `recalculate` of the result for each kind does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use xen_levelling::abi::{Wire, XenCpuidLeaf, XenMsrEntry};
use xen_levelling::cpuid::CpuidRegs;
use xen_levelling::featureset::Featureset;
use xen_levelling::policy::CpuPolicy;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::guest::{CpuidEntry, GuestContext, GuestDomain, VcpuState, guest_cpuid};
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xen_levelling::policy::system::{DomainKind, HostOptions, SystemPolicies};

const INTERESTING_LEAVES: [u32; 24] = [
    0,
    1,
    4,
    6,
    7,
    0xa,
    0xb,
    0xd,
    0xe,
    0xf,
    0x1f,
    0x4000_0000,
    0x4000_0001,
    0x4000_0005,
    0x4000_0006,
    0x4000_0100,
    0x4000_0105,
    0x4000_01ff,
    0x8000_0000,
    0x8000_0001,
    0x8000_0008,
    0x8000_0021,
    0x8000_0022,
    0xffff_ffff,
];

fn context(bits: &[u8; 6], domid: u16, kind: DomainKind) -> GuestContext {
    let b = |i: usize, bit: u8| bits[i] >> bit & 1 != 0;
    let xcr0 = u64::from_le_bytes([bits[2], bits[3], bits[4], bits[5], bits[2], 0, 0, bits[3]]);
    GuestContext {
        domain: GuestDomain {
            kind,
            domid,
            hardware_domain: b(0, 0),
            host_features: if b(0, 1) {
                Featureset::FULL
            } else {
                Featureset::EMPTY
            },
            host_paddr_bits: bits[1],
            xen_version: (4, 23),
        },
        vcpu_id: u32::from(bits[1]) * 0x0101_0101,
        state: b(0, 2).then_some(VcpuState {
            entry: match bits[0] >> 3 & 3 {
                0 => CpuidEntry::VmExit,
                1 => CpuidEntry::Fault,
                _ => CpuidEntry::ForcedEmulation,
            },
            cr4_osxsave: b(0, 5),
            cr4_pke: b(0, 6),
            kernel_mode: b(0, 7),
            host_cr4_osxsave: b(1, 0),
            xcr0,
            xss: xcr0.rotate_left(17),
            apic_enabled: b(1, 1),
            long_mode: b(1, 2),
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let selector = data[0];
    let nr_msrs = (data[1] & 3) as usize;
    let bits: [u8; 6] = data[2..8].try_into().unwrap();
    let mut rest = &data[8..];
    let mut msrs = Vec::new();
    for _ in 0..nr_msrs {
        if rest.len() < XenMsrEntry::SIZE {
            break;
        }
        msrs.push(XenMsrEntry::decode(&rest[..XenMsrEntry::SIZE]));
        rest = &rest[XenMsrEntry::SIZE..];
    }
    let leaves: Vec<XenCpuidLeaf> = rest
        .chunks_exact(XenCpuidLeaf::SIZE)
        .map(XenCpuidLeaf::decode)
        .collect();

    let base = if selector & 0x80 == 0 {
        None
    } else {
        let real = xen_levelling_fuzz::real_policies();
        Some(real[(selector & 0x7f) as usize % real.len()])
    };
    let result = match base {
        None => CpuPolicy::from_arrays(&leaves, &msrs),
        Some(b) => {
            let copy = b;
            let r = b.merged(&leaves, &msrs);
            assert_eq!(copy, b, "merged changed its base");
            r
        }
    };
    let Ok(mut p) = result else {
        return;
    };
    if leaves.len() > MAX_SERIALISED_LEAVES || msrs.len() > MAX_SERIALISED_MSRS {
        panic!("accepted {} leaves / {} MSRs", leaves.len(), msrs.len());
    }

    p.clear_out_of_range_leaves();
    let mut twice = p;
    twice.clear_out_of_range_leaves();
    assert_eq!(twice, p, "clear_out_of_range_leaves is not idempotent");

    // Serialise and deserialise.
    let mut out = [XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let n = p
        .write_leaves(&mut out)
        .expect("any policy fits MAX_SERIALISED_LEAVES");
    assert_eq!(n, p.nr_serialised_leaves());
    let mut out_msrs = [XenMsrEntry::default(); MAX_SERIALISED_MSRS];
    let m = p.write_msrs(&mut out_msrs).expect("the MSRs fit");
    // A short buffer is refused, never overrun.
    if n > 0 {
        let mut short = vec![XenCpuidLeaf::default(); n - 1];
        assert!(p.write_leaves(&mut short).is_err());
    }
    let back = CpuPolicy::from_arrays(&out[..n], &out_msrs[..m])
        .expect("a serialised policy deserialises");
    assert_eq!(
        back, p,
        "serialise/deserialise round trip is not the identity"
    );
    // Through the wire encoding too.
    let mut wire = vec![0u8; n * XenCpuidLeaf::SIZE];
    for (i, l) in out[..n].iter().enumerate() {
        l.encode(&mut wire[i * 24..i * 24 + 24]);
    }
    let decoded: Vec<XenCpuidLeaf> = wire.chunks_exact(24).map(XenCpuidLeaf::decode).collect();
    assert_eq!(&decoded[..], &out[..n]);

    // guest_cpuid never panics; outside the table it is all zeros.
    let kind = [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow][selector as usize % 3];
    let ctx = context(&bits, u16::from(bits[4]), kind);
    for &leaf in INTERESTING_LEAVES.iter() {
        for subleaf in [0, 1, 2, 5, 62, 63, 0xffff_ffff] {
            let r = guest_cpuid(&p, leaf, subleaf, &ctx);
            if (0x0e..0x4000_0000).contains(&leaf) || (0x4000_0200..0x8000_0000).contains(&leaf) {
                assert_eq!(r, CpuidRegs::ZERO, "leaf {leaf:#x} is outside every table");
            }
        }
    }
    for l in leaves.iter().take(16) {
        let _ = guest_cpuid(&p, l.leaf, l.subleaf, &ctx);
        let _ = guest_cpuid(&p, l.a, l.b, &ctx);
    }

    // System derivation from the policy as if it were a CPU's raw policy.
    let options = HostOptions {
        disabled: Featureset::EMPTY,
        cpuid_faulting: bits[0] & 1 != 0,
        hap: bits[0] & 2 != 0,
        ..HostOptions::default()
    };
    let s = SystemPolicies::derive(&p, options);
    for kind in [DomainKind::Pv, DomainKind::HvmHap, DomainKind::HvmShadow] {
        if let Some(max) = s.max_for(kind) {
            let default = s.default_for(kind);
            if let Err(e) = check_compatible(&max, &default) {
                panic!("{kind:?} default exceeds its max: {e}");
            }
        }
        let _ = s.recalculate(kind, &p);
        let _ = s.domain_policy(kind, p.vendor(), &p.featureset());
    }
    let _ = guest_cpuid(&s.pv_default, 0xd, 1, &ctx);
    let _ = guest_cpuid(&s.hvm_default, 0xd, 0, &ctx);
});
