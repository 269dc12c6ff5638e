//! `cargo xtask bench-libx86`'s benchmark process: the crate and Xen's libx86 (linked in by
//! the xtask, built at bench time from ../shared/xen-libx86) on the same policies, samples
//! interleaved, medians and ratios printed.

use std::hint::black_box;
use std::time::Instant;

use xen_levelling::abi::{XenCpuidLeaf, XenMsrEntry};
use xen_levelling::dump::Aida64Dump;
use xen_levelling::policy::compat::{CompatWords, check_compatible};
use xen_levelling::policy::serialise::MAX_SERIALISED_LEAVES;
use xen_levelling::policy::system::{HostOptions, SystemPolicies};
use xen_levelling::policy::{CpuPolicy, RawMsrs};

unsafe extern "C" {
    fn xl_policy_size() -> usize;
    fn xl_policy_new() -> *mut u8;
    fn xl_from_buffer(
        p: *mut u8,
        leaves: *const XenCpuidLeaf,
        nr: u32,
        msrs: *const XenMsrEntry,
        nr_msrs: u32,
    ) -> i32;
    fn xl_from_buffer_fresh(
        p: *mut u8,
        leaves: *const XenCpuidLeaf,
        nr: u32,
        msrs: *const XenMsrEntry,
        nr_msrs: u32,
    ) -> i32;
    fn xl_to_buffer(p: *const u8, leaves: *mut XenCpuidLeaf, nr: *mut u32) -> i32;
    fn xl_compatible(host: *const u8, guest: *const u8) -> i32;
}

const ROUNDS: usize = 201;
/// Each sample runs for about this long (the batch is sized per operation, the same for both
/// sides): long against the clock's resolution and the timing calls, short against a
/// scheduler's time slice on a shared machine.
const SAMPLE_NS: f64 = 200_000.0;

/// ns per call of `f`, one batch of `batch` calls.
fn sample(batch: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(batch)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `--count POLICY OP`: operation number OP (0-based, in the order printed) of POLICY runs
/// this many times on each side, untimed, inside [`count_crate`] and [`count_xen`], for an
/// instruction counter (`valgrind --tool=callgrind`) to attribute and divide.
const COUNT_CALLS: u32 = 1000;

/// The policy and operation `--count` asked for.
fn count_mode() -> Option<(String, usize)> {
    let args: Vec<String> = std::env::args().collect();
    match &args[2..] {
        [flag, policy, op] if flag == "--count" => Some((policy.clone(), op.parse().ok()?)),
        _ => None,
    }
}

// The two differ by the constant they pass to `black_box` (one instruction a call on each
// side), or the compiler would fold them into one function and the counter could not tell
// the sides apart.
#[inline(never)]
fn count_crate(op: &mut dyn FnMut()) {
    (0..COUNT_CALLS).for_each(|_| {
        op();
        black_box(0u8);
    });
}

#[inline(never)]
fn count_xen(op: &mut dyn FnMut()) {
    (0..COUNT_CALLS).for_each(|_| {
        op();
        black_box(1u8);
    });
}

/// Operations raced so far in this policy (for `--count`).
static OP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Times `crate_op` and `xen_op` in alternating batches; (crate ns, Xen ns, crate/Xen):
/// the medians of the times and of the rounds' ratios. Under
/// `--count`, runs the operation asked for [`COUNT_CALLS`] times a side instead (and every
/// other not at all).
fn race(mut crate_op: impl FnMut(), mut xen_op: impl FnMut()) -> (f64, f64, f64) {
    let op = OP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some((_, wanted)) = count_mode() {
        if op == wanted {
            count_crate(&mut crate_op);
            count_xen(&mut xen_op);
        }
        return (0.0, 0.0, 0.0);
    }
    // Warm both up, then size the batch from the faster side's time.
    let warm = sample(1000, &mut crate_op).min(sample(1000, &mut xen_op));
    let batch = (SAMPLE_NS / warm.max(0.1)).clamp(1000.0, 1_000_000.0) as u32;
    let (mut c, mut x) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warmer cache.
        if round % 2 == 0 {
            c.push(sample(batch, &mut crate_op));
            x.push(sample(batch, &mut xen_op));
        } else {
            x.push(sample(batch, &mut xen_op));
            c.push(sample(batch, &mut crate_op));
        }
    }
    // The ratio is taken within each round (both sides in the same state of the machine),
    // then the median of those: steadier than the ratio of the two medians when the shared
    // machine speeds up or slows down between rounds.
    let ratios = c.iter().zip(&x).map(|(c, x)| c / x).collect();
    (median(c), median(x), median(ratios))
}

fn system(dumps: &str, file: &str) -> SystemPolicies {
    let text = std::fs::read_to_string(format!("{dumps}/{file}")).unwrap();
    let dump = Aida64Dump::parse(&text).unwrap();
    let msrs = RawMsrs {
        platform_info: dump.msr(0xce).value(),
        arch_caps: dump.msr(0x10a).value(),
    };
    SystemPolicies::derive(&CpuPolicy::from_source(&dump, msrs), HostOptions::default())
}

/// A C policy filled by libx86's own copy_from_buffer from the crate's serialised arrays.
fn c_policy(leaves: &[XenCpuidLeaf], msrs: &[XenMsrEntry]) -> *mut u8 {
    // SAFETY: calloc'd policy of the C size; the arrays are valid for their lengths.
    unsafe {
        let p = xl_policy_new();
        assert!(!p.is_null());
        let rc = xl_from_buffer(
            p,
            leaves.as_ptr(),
            leaves.len() as u32,
            msrs.as_ptr(),
            msrs.len() as u32,
        );
        assert_eq!(rc, 0, "libx86 refused the crate's arrays");
        p
    }
}

fn arrays(p: &CpuPolicy) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
    let mut leaves = vec![XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
    let mut msrs = vec![XenMsrEntry::default(); 2];
    let n = p.write_leaves(&mut leaves).unwrap();
    let m = p.write_msrs(&mut msrs).unwrap();
    leaves.truncate(n);
    msrs.truncate(m);
    (leaves, msrs)
}

fn main() {
    let dumps = std::env::args().nth(1).expect("usage: vs-libx86 DUMPS_DIR");
    // SAFETY: a pure function of the C library.
    let size = unsafe { xl_policy_size() };
    println!("libx86 struct cpu_policy: {size} bytes; crate CpuPolicy: {} bytes", size_of::<CpuPolicy>());
    println!("{:<16} {:<28} {:>10} {:>10} {:>9}", "policy", "operation", "crate ns", "Xen ns", "crate/Xen");
    let mut worst: f64 = 0.0;
    for (name, file) in [
        ("SandyBridge", "GenuineIntel00206A7_SandyBridge2_CPUID.txt"),
        ("Genoa", "AuthenticAMD0A10F11_K19_Genoa_02_CPUID.txt"),
        ("SapphireRapids", "GenuineIntel00806F8_SapphireRapids_05_CPUID.txt"),
    ] {
        if count_mode().is_some_and(|(policy, _)| policy != name) {
            continue;
        }
        OP.store(0, std::sync::atomic::Ordering::Relaxed);
        let s = system(&dumps, file);
        // On the heap, as libx86's policies are (and as a toolstack keeps them): on the stack
        // their place moved with every change to this program, and with it how many of the
        // check's 16-byte loads split a cache line.
        let max = Box::new(s.hvm_max);
        let guest = Box::new(s.hvm_default);
        let (leaves, msrs) = arrays(&max);
        let (gleaves, gmsrs) = arrays(&guest);
        let c_max = c_policy(&leaves, &msrs);
        let c_guest = c_policy(&gleaves, &gmsrs);
        // Both libraries serialise the same policy to the same array.
        let mut out_c = vec![XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
        let mut out_x = vec![XenCpuidLeaf::default(); MAX_SERIALISED_LEAVES];
        let mut nr = out_x.len() as u32;
        // SAFETY: `out_x` holds `nr` entries; the policy is a C policy.
        assert_eq!(unsafe { xl_to_buffer(c_max, out_x.as_mut_ptr(), &mut nr) }, 0);
        let n = max.write_leaves(&mut out_c).unwrap();
        assert_eq!(nr as usize, n, "{name}: leaf counts differ");
        assert!(out_c[..n] == out_x[..n], "{name}: the serialised arrays differ");
        // SAFETY: the C policies are valid.
        assert_eq!(unsafe { xl_compatible(c_max, c_guest) }, 0, "{name}: libx86 says incompatible");
        assert!(check_compatible(&max, &guest).is_ok());

        let c_scratch = c_policy(&leaves, &msrs);
        let mut into = Box::new(*max);
        let mut rows: Vec<(&str, f64, f64, f64)> = Vec::new();
        let (c, x, r) = race(
            || {
                black_box(black_box(&*max).write_leaves(black_box(&mut out_c)).unwrap());
            },
            || {
                let mut nr = MAX_SERIALISED_LEAVES as u32;
                // SAFETY: as above.
                black_box(unsafe { xl_to_buffer(black_box(c_max), out_x.as_mut_ptr(), &mut nr) });
            },
        );
        rows.push(("serialise", c, x, r));
        // libx86's side of the operations raced twice (they capture only shared references
        // and pointers, so each is `Copy`).
        let xen_fresh = || {
            // SAFETY: as above.
            black_box(unsafe {
                xl_from_buffer_fresh(c_scratch, black_box(leaves.as_ptr()), leaves.len() as u32, msrs.as_ptr(), msrs.len() as u32)
            });
        };
        let xen_into = || {
            // SAFETY: as above.
            black_box(unsafe {
                xl_from_buffer(c_scratch, black_box(leaves.as_ptr()), leaves.len() as u32, msrs.as_ptr(), msrs.len() as u32)
            });
        };
        let xen_compatible = || {
            // SAFETY: as above.
            black_box(unsafe { xl_compatible(black_box(c_max), black_box(c_guest)) });
        };
        // Like for like: both sides clear a policy the caller has and fill it.
        let mut fresh = Box::new(CpuPolicy::EMPTY);
        let (c, x, r) = race(
            || {
                black_box(&mut *fresh).set_from_arrays(black_box(&leaves), black_box(&msrs)).unwrap();
            },
            xen_fresh,
        );
        rows.push(("deserialise (fresh)", c, x, r));
        let (c, x, r) = race(
            || {
                // By reference: the policy stays in the `Result` `from_arrays` returned it in.
                black_box(&CpuPolicy::from_arrays(black_box(&leaves), black_box(&msrs)));
            },
            xen_fresh,
        );
        rows.push(("deserialise (by value)", c, x, r));
        let (c, x, r) = race(
            || {
                black_box(&mut *into).merge_arrays(black_box(&leaves), black_box(&msrs)).unwrap();
            },
            xen_into,
        );
        rows.push(("deserialise (into existing)", c, x, r));
        let (c, x, r) = race(
            || {
                black_box(&black_box(&*max).merged(black_box(&leaves), black_box(&msrs)));
            },
            xen_into,
        );
        rows.push(("deserialise (merged copy)", c, x, r));
        let (c, x, r) = race(
            || {
                black_box(check_compatible(black_box(&*max), black_box(&*guest)).is_ok());
            },
            xen_compatible,
        );
        rows.push(("compatible", c, x, r));
        let (mw, gw) = (CompatWords::of(&max), CompatWords::of(&guest));
        let (c, x, r) = race(
            || {
                black_box(black_box(&mw).accepts(black_box(&gw)));
            },
            xen_compatible,
        );
        rows.push(("compatible (words kept)", c, x, r));
        for (op, c, x, ratio) in rows {
            // The two that copy the policy once more than libx86 by design are context.
            if !matches!(op, "deserialise (merged copy)" | "deserialise (by value)") {
                worst = worst.max(ratio);
            }
            println!("{name:<16} {op:<28} {c:>10.1} {x:>10.1} {ratio:>9.2}");
        }
        println!("{name:<16} ({} leaves)", leaves.len());
    }
    println!("worst crate/Xen ratio (serialise, deserialise fresh and into existing, compatible, compatible with words kept): {worst:.2}");
}
