//! Every case of Xen's own unit test of libx86, `tools/tests/cpu-policy/test-cpu-policy.c` at
//! xen-project/xen `c447b7308b1330ec6dcfef37220736c28f41daa0`, run against this crate.
//!
//! The vectors (policies, expected counts, error fields, errno values) are Xen's facts,
//! restated here as data; the code that runs them is ours. A Xen policy is written with C
//! designated initialisers (`.basic.max_leaf = 4`); here each is a list of [`Poke`]s naming
//! the leaf, subleaf and register the C field lives in. Where the crate deliberately goes
//! beyond Xen (the feature audit of `check_compatible`), the README's "Conformance with Xen"
//! section says so; no case below is changed by it.

use xen_levelling::abi::dispatch::errno;
use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::cpuid::NO_SUBLEAF;
use xen_levelling::policy::compat::check_compatible;
use xen_levelling::policy::serialise::{MAX_SERIALISED_LEAVES, MAX_SERIALISED_MSRS};
use xen_levelling::policy::{NR_BASIC, NR_CACHE, NR_EXTD, NR_FEAT, NR_TOPO, NR_XSTATE, Reg, Slot};
use xen_levelling::{CpuPolicy, Vendor};

/// One field of Xen's `struct cpu_policy`, set to a value.
#[derive(Clone, Copy, Debug)]
enum Poke {
    /// `leaf`.`subleaf`:`reg` = value (subleaf 0 for leaves without subleaves).
    Cpuid(u32, u32, Reg, u32),
    /// `.platform_info.cpuid_faulting = true` (MSR 0xCE bit 31).
    CpuidFaulting,
}

use Poke::Cpuid;
use Reg::{A, B, C, D};

/// `.basic.max_leaf`: CPUID.00H:EAX.
const fn max_leaf(v: u32) -> Poke {
    Cpuid(0, 0, A, v)
}

/// `.extd.max_leaf`: CPUID.80000000H:EAX.
const fn extd_max_leaf(v: u32) -> Poke {
    Cpuid(0x8000_0000, 0, A, v)
}

/// `.basic.vendor_{ebx,ecx,edx}`.
const fn vendor(b: u32, c: u32, d: u32) -> [Poke; 3] {
    [Cpuid(0, 0, B, b), Cpuid(0, 0, C, c), Cpuid(0, 0, D, d)]
}

fn policy(pokes: &[Poke]) -> CpuPolicy {
    let mut p = CpuPolicy::EMPTY;
    for poke in pokes {
        match *poke {
            Cpuid(leaf, subleaf, reg, value) => {
                let mut regs = p
                    .leaf_mut(leaf, subleaf)
                    .unwrap_or_else(|| panic!("no slot for {leaf:#x}:{subleaf}"));
                *reg.get_mut(&mut regs) = value;
            }
            Poke::CpuidFaulting => p.set_cpuid_faulting(true),
        }
    }
    p
}

fn serialise_leaves(p: &CpuPolicy, room: usize) -> Result<Vec<XenCpuidLeaf>, i32> {
    let mut leaves = vec![XenCpuidLeaf::default(); room];
    let n = p.write_leaves(&mut leaves).map_err(|e| -e.errno())?;
    leaves.truncate(n);
    Ok(leaves)
}

/// Xen's `leaves_are_sorted`: leaf ascending, and subleaf strictly ascending within a leaf.
fn leaves_are_sorted(leaves: &[XenCpuidLeaf]) -> bool {
    leaves
        .windows(2)
        .all(|w| (w[0].leaf, w[0].subleaf) < (w[1].leaf, w[1].subleaf))
}

// ---------------------------------------------------------------------------------------------
// test_vendor_identification

#[test]
fn vendor_identification() {
    // (the 12-byte string in EBX, EDX, ECX order, Xen's X86_VENDOR_* number)
    let cases: [(&[u8], u32); 8] = [
        (b"", 0),
        (b"            ", 0),
        (b"xxxxxxxxxxxx", 0),
        (b"GenuineIntel", 1 << 0),
        (b"AuthenticAMD", 1 << 1),
        (b"CentaurHauls", 1 << 2),
        (b"  Shanghai  ", 1 << 3),
        (b"HygonGenuine", 1 << 4),
    ];
    for (ident, expected) in cases {
        let mut bytes = [0u8; 12];
        bytes[..ident.len()].copy_from_slice(ident);
        let reg = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let (b, d, c) = (reg(0), reg(4), reg(8));
        let vendor = Vendor::from_regs(b, c, d);
        assert_eq!(
            vendor.xen_id(),
            expected,
            "{:?}: got {vendor:?}",
            String::from_utf8_lossy(ident)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// test_cpuid_current

#[cfg(target_arch = "x86_64")]
struct NativeCpuid;

#[cfg(target_arch = "x86_64")]
impl xen_levelling::CpuidSource for NativeCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> xen_levelling::CpuidRegs {
        let r = std::arch::x86_64::__cpuid_count(leaf, subleaf);
        xen_levelling::CpuidRegs::new(r.eax, r.ebx, r.ecx, r.edx)
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn cpuid_current() {
    use xen_levelling::policy::RawMsrs;
    let p = CpuPolicy::from_source(&NativeCpuid, RawMsrs::default());
    let leaves = serialise_leaves(&p, MAX_SERIALISED_LEAVES).expect("serialise, expected rc 0");
    assert!(leaves_are_sorted(&leaves), "leaves not sorted: {leaves:x?}");
}

// ---------------------------------------------------------------------------------------------
// test_cpuid_serialise_success

#[test]
fn cpuid_serialise_success() {
    let cases: [(&str, &[Poke], usize); 9] = [
        ("empty policy", &[], 4),
        // Leaf 4 stops at the first subleaf of type 0 (CPUID.04H:EAX[4:0]).
        ("empty leaf 4", &[max_leaf(4)], 4 + 4),
        (
            "partial leaf 4",
            &[max_leaf(4), Cpuid(4, 0, A, 1)],
            4 + 4 + 1,
        ),
        // Leaf 7 stops at its max subleaf (CPUID.07H.0:EAX).
        ("empty leaf 7", &[max_leaf(7)], 4 + 7),
        (
            "partial leaf 7",
            &[max_leaf(7), Cpuid(7, 0, A, 1)],
            4 + 7 + 1,
        ),
        // Leaf 0xB stops at the first subleaf of type 0 (CPUID.0BH:ECX[15:8]).
        ("empty leaf 0xb", &[max_leaf(0xb)], 4 + 0xb),
        (
            "partial leaf 0xb",
            &[max_leaf(0xb), Cpuid(0xb, 0, C, 1 << 8)],
            4 + 0xb + 1,
        ),
        // Leaf 0xD: subleaves 0 and 1, then up to the highest bit of XCR0 | XSS.
        ("empty leaf 0xd", &[max_leaf(0xd)], 4 + 0xd + 1),
        (
            "partial 0xd",
            &[max_leaf(0xd), Cpuid(0xd, 0, A, 7)],
            4 + 0xd + 1 + 1,
        ),
    ];
    for (name, pokes, nr_leaves) in cases {
        let p = policy(pokes);
        // Xen hands over a buffer of exactly the expected size.
        let leaves = serialise_leaves(&p, nr_leaves)
            .unwrap_or_else(|rc| panic!("{name}: expected rc 0, got {rc}"));
        assert_eq!(leaves.len(), nr_leaves, "{name}: leaves");
        assert!(leaves_are_sorted(&leaves), "{name}: leaves not sorted");
    }
}

// ---------------------------------------------------------------------------------------------
// test_msr_serialise_success

#[test]
fn msr_serialise_success() {
    let cases: [(&str, &[Poke], usize); 1] = [("empty policy", &[], MAX_SERIALISED_MSRS)];
    for (name, pokes, nr_msrs) in cases {
        let mut msrs = vec![XenMsrEntry::default(); nr_msrs];
        let n = policy(pokes)
            .write_msrs(&mut msrs)
            .unwrap_or_else(|e| panic!("{name}: expected rc 0, got {}", -e.errno()));
        assert_eq!(n, nr_msrs, "{name}: msrs");
        assert!(
            msrs.windows(2).all(|w| w[0].idx <= w[1].idx),
            "{name}: MSR entries not sorted"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// test_cpuid_deserialise_failure

#[test]
fn cpuid_deserialise_failure() {
    let nr = |n: usize| n as u32;
    // (name, leaf, subleaf): each alone in an array must be -ERANGE, naming itself.
    let cases = [
        ("incorrect basic subleaf", 0, 0),
        ("incorrect hv1 subleaf", 0x4000_0000, 0),
        ("incorrect hv2 subleaf", 0x4000_0100, 0),
        ("incorrect extd subleaf", 0x8000_0000, 0),
        ("OoB basic leaf", nr(NR_BASIC), 0),
        ("OoB cache leaf", 0x4, nr(NR_CACHE)),
        ("OoB feat leaf", 0x7, nr(NR_FEAT)),
        ("OoB topo leaf", 0xb, nr(NR_TOPO)),
        ("OoB xstate leaf", 0xd, nr(NR_XSTATE)),
        ("OoB extd leaf", 0x8000_0000 | nr(NR_EXTD), 0),
    ];
    for (name, leaf, subleaf) in cases {
        let entry = XenCpuidLeaf {
            leaf,
            subleaf,
            ..Default::default()
        };
        let e = CpuPolicy::EMPTY.merged(&[entry], &[]).expect_err(name);
        assert_eq!(-e.errno(), -errno::ERANGE, "{name}: rc");
        assert_eq!(
            e,
            xen_levelling::policy::serialise::PolicyArrayError::LeafOutOfRange { leaf, subleaf },
            "{name}: err leaf/subleaf"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// test_msr_deserialise_failure

#[test]
fn msr_deserialise_failure() {
    use xen_levelling::policy::serialise::PolicyArrayError;
    // (name, entry, rc): the error names the MSR.
    let cases = [
        ("bad msr index", (0xdead_c0de, 0, 0), -errno::ERANGE),
        ("nonzero flags", (0xce, 1, 0), -errno::EINVAL),
        ("truncated val", (0xce, 0, !0u64), -errno::EOVERFLOW),
    ];
    for (name, (idx, flags, val), rc) in cases {
        let entry = XenMsrEntry { idx, flags, val };
        let e = CpuPolicy::EMPTY.merged(&[], &[entry]).expect_err(name);
        assert_eq!(-e.errno(), rc, "{name}: rc");
        let err_msr = match e {
            PolicyArrayError::UnknownMsr { msr }
            | PolicyArrayError::MsrFlags { msr, .. }
            | PolicyArrayError::MsrOverflow { msr, .. } => msr,
            other => panic!("{name}: {other:?} names no MSR"),
        };
        assert_eq!(err_msr, idx, "{name}: err_msr");
    }
}

// ---------------------------------------------------------------------------------------------
// test_cpuid_out_of_range_clearing

/// Every byte the policy stores, as Xen's `memchr` over the struct sees them (its synthesised
/// `x86_vendor` byte aside, which no case marks).
fn policy_bytes(p: &CpuPolicy) -> Vec<u8> {
    let arrays = [
        (NR_BASIC, Slot::Basic as fn(usize) -> Slot),
        (NR_CACHE, Slot::Cache),
        (NR_FEAT, Slot::Feat),
        (NR_TOPO, Slot::Topo),
        (NR_XSTATE, Slot::Xstate),
        (NR_EXTD, Slot::Extd),
    ];
    let mut bytes = Vec::new();
    for (n, slot) in arrays {
        for i in 0..n {
            let r = p.slot(slot(i));
            for v in [r.a, r.b, r.c, r.d] {
                bytes.extend(v.to_le_bytes());
            }
        }
    }
    bytes.extend(p.platform_info().to_le_bytes());
    bytes.extend(p.arch_caps().to_le_bytes());
    let (hv, hv2) = p.hypervisor_limits();
    bytes.extend([hv as u8, hv2 as u8]);
    bytes
}

#[test]
fn cpuid_out_of_range_clearing() {
    const M: u32 = 0xc2;
    let cases: [(&str, usize, &[Poke]); 8] = [
        (
            // Keeps the marker in leaf 0, clears the others.
            "basic",
            1,
            &[
                max_leaf(0),
                Cpuid(0, 0, B, M),
                Cpuid(1, 0, A, M),
                Cpuid(4, 0, A, M),
                Cpuid(7, 0, A, M),
                Cpuid(0xb, 0, A, M),
                Cpuid(0xd, 0, A, M),
                Cpuid(0xd, 1, A, M),
            ],
        ),
        (
            // Keeps the marker in subleaf 0, clears the others.
            "cache",
            1,
            &[
                max_leaf(4),
                Cpuid(4, 0, A, 1),
                Cpuid(4, 0, B, M),
                Cpuid(4, 1, B, M),
                Cpuid(7, 0, A, M),
                Cpuid(0xb, 0, A, M),
                Cpuid(0xd, 0, A, M),
                Cpuid(0xd, 1, A, M),
            ],
        ),
        (
            "feat",
            1,
            &[
                max_leaf(7),
                Cpuid(7, 0, B, M),
                Cpuid(7, 1, B, M),
                Cpuid(0xb, 0, A, M),
                Cpuid(0xd, 0, A, M),
                Cpuid(0xd, 1, A, M),
            ],
        ),
        (
            "topo",
            1,
            &[
                max_leaf(0xb),
                Cpuid(0xb, 0, B, M),
                Cpuid(0xb, 0, C, 0x100),
                Cpuid(0xb, 1, B, M),
                Cpuid(0xd, 0, A, M),
                Cpuid(0xd, 1, A, M),
            ],
        ),
        (
            // The first two subleaves are always valid; the others are cleared.
            "xstate x87",
            2,
            &[
                max_leaf(0xd),
                Cpuid(0xd, 0, A, 1),
                Cpuid(0xd, 0, B, M),
                Cpuid(0xd, 1, B, M),
                Cpuid(0xd, 2, B, M),
                Cpuid(0xd, 3, B, M),
            ],
        ),
        (
            "xstate sse",
            2,
            &[
                max_leaf(0xd),
                Cpuid(0xd, 0, A, 2),
                Cpuid(0xd, 0, B, M),
                Cpuid(0xd, 1, B, M),
                Cpuid(0xd, 2, B, M),
                Cpuid(0xd, 3, B, M),
            ],
        ),
        (
            // The third subleaf (AVX) is valid too.
            "xstate avx",
            3,
            &[
                max_leaf(0xd),
                Cpuid(0xd, 0, A, 7),
                Cpuid(0xd, 0, B, M),
                Cpuid(0xd, 1, B, M),
                Cpuid(0xd, 2, B, M),
                Cpuid(0xd, 3, B, M),
            ],
        ),
        (
            // Keeps the marker in leaf 0x80000000, clears the others.
            "extd",
            1,
            &[
                extd_max_leaf(0),
                Cpuid(0x8000_0000, 0, B, M),
                Cpuid(0x8000_0001, 0, A, M),
            ],
        ),
    ];
    for (name, nr_markers, pokes) in cases {
        let mut p = policy(pokes);
        p.clear_out_of_range_leaves();
        let found = policy_bytes(&p).iter().filter(|&&b| b == M as u8).count();
        assert_eq!(found, nr_markers, "{name}: markers left");
    }
}

// ---------------------------------------------------------------------------------------------
// test_is_compatible_success / test_is_compatible_failure

/// "AuthenticAMD" with EBX changed by `delta`: an unknown vendor.
const fn almost_amd(delta: u32) -> [Poke; 3] {
    let (b, c, d) = Vendor::AMD_REGS;
    vendor(b + delta, c, d)
}

#[test]
fn is_compatible_success() {
    let cases: [(&str, &[Poke], &[Poke]); 3] = [
        (
            "Host CPUID faulting, Guest not",
            &[Poke::CpuidFaulting],
            &[],
        ),
        (
            "Host CPUID faulting, Guest wanted",
            &[Poke::CpuidFaulting],
            &[Poke::CpuidFaulting],
        ),
        (
            "Host CPU vendor == Guest CPU vendor (both unknown)",
            &almost_amd(1),
            &almost_amd(1),
        ),
    ];
    for (name, host, guest) in cases {
        let r = check_compatible(&policy(host), &policy(guest));
        assert_eq!(r, Ok(()), "{name}: expected no errors");
    }
}

#[test]
fn is_compatible_failure() {
    const NONE: u32 = !0;
    /// (name, host, guest, (err leaf, err subleaf, err msr))
    type Case<'a> = (&'a str, &'a [Poke], &'a [Poke], (u32, u32, u32));
    let cases: [Case; 4] = [
        (
            "Host basic.max_leaf out of range",
            &[],
            &[max_leaf(1)],
            (0, NO_SUBLEAF, NONE),
        ),
        (
            "Host extd.max_leaf out of range",
            &[],
            &[extd_max_leaf(1)],
            (0x8000_0000, NO_SUBLEAF, NONE),
        ),
        (
            "Host no CPUID faulting, Guest wanted",
            &[],
            &[Poke::CpuidFaulting],
            (NONE, NONE, 0xce),
        ),
        (
            "Host CPU vendor != Guest CPU vendor (both unknown)",
            &almost_amd(1),
            &almost_amd(2),
            (0, NO_SUBLEAF, NONE),
        ),
    ];
    for (name, host, guest, expected) in cases {
        let e = check_compatible(&policy(host), &policy(guest)).expect_err(name);
        assert_eq!((e.leaf, e.subleaf, e.msr), expected, "{name}");
    }
}
