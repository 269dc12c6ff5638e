//! `bench`: exact instruction counts of the trap, exit and switch paths, for `-icount
//! shift=0` boots (`cargo xtask bench` boots it on a few models and records the figures in
//! BENCHMARKS.md). Without icount the figures are host TSC ticks, meaningless but harmless.
//!
//! Every figure is printed as `bench <name> <instructions>` (per operation; a fraction where
//! N does not divide the total):
//!
//! | figures | how | baseline in the same boot |
//! |---|---|---|
//! | `pv/loop`, `pv/trap-nop`, `pv/cpuid-forced-leaf{0,1,7,d,d1,80000001}`, `pv/cpuid-forced-out-of-range` (0x3fffffff), `pv/cpuid-faulted-leaf1` (where the host faults, else `pv/cpuid-native-leaf1`) | `xl_bench_pv` in ring 3: N operations between two RDTSCs, less the empty loop | `pv/trap-nop`: `int 0x82` with the nop hypercall, the bare trap round trip |
//! | `pv-breakdown/*` | at CPL0, RDTSC around each piece of the forced-emulation path, on the bench domain's tables: the instruction fetch, the trap context, `guest_cpuid`, the crate's `handle_ud`; and a CPL0 CPUID (the silicon shim's exit, where there is one) | |
//! | `switch/{same-policy,different-policy,dom0-guest}` | `xl_bench_yield` and `xl_bench_partner` yield to each other N times: instructions from one domain's `int 0x82` to the other's next instruction (the whole path: trap, scheduler, levelling, CR3, `iretq`) | `pv/trap-nop` |
//! | `levelling/<pattern>`, `levelling/<pattern>/msr-writes`, `.../msr-writes-differing` | at CPL0, RDTSC around each `LevellingState::switch_to` call alone (less an empty RDTSC pair), on a second per-CPU state brought up for the purpose; its `SwitchStats` give the MSR writes, compared with how many levelling MSRs differ between the two sides | none: target 30 instructions for a switch that changes nothing |
//! | `hvm/loop`, `hvm/vmmcall-nop`, `hvm/cpuid-leaf{0,1,7,d}` | `xl_bench_hvm` under SVM (skipped without SVM) | `hvm/vmmcall-nop`: the bare exit round trip |
//!
//! `iterations=N` sets N (default 1000).

use core::arch::asm;
use core::fmt;
use core::hint::black_box;

use xen_levelling::hardware::MsrFault;
use xen_levelling::levelling::trap::{self, CpuidFrame, TrapOutcome};
use xen_levelling::levelling::{
    DomainLevelling, DomainRole, Levelling, LevellingState, Mechanism, SwitchStats, SwitchTo,
};
use xen_levelling::policy::guest::{CpuidEntry, CpuidTable, GuestContext, VcpuState};
use xen_levelling::policy::system::DomainKind;
use xen_levelling::{CpuPolicy, Feature};

use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::emulate::DomainMemory;
use crate::guest::bench::{
    PARTNER_LOOP_INSTRUCTIONS, figure, xl_bench_forced_site, xl_bench_hvm, xl_bench_partner,
    xl_bench_pv, xl_bench_yield,
};
use crate::guest::programs;
use crate::hardware::NativeHardware;
use crate::svm::{self, SvmError};
use crate::xen::Host;
use crate::{checks, hvm, levelling, println, sched};
use crate::{hypercall, paging};

/// The scenario's name on the command line.
pub const NAME: &str = "bench";

/// Iterations of each loop unless `iterations=N` says otherwise.
const DEFAULT_ITERATIONS: u32 = 1000;
/// Repetitions of each levelling switch pattern.
const SWITCH_REPETITIONS: u64 = 64;

/// Taken from the PV default for the "different policy" guest: features of each maskable
/// leaf (1c, e1c, 7b0, Da1), so that masks differ wherever the generation has them.
const LESS: [Feature; 5] = [
    Feature::AVX,
    Feature::MOVBE,
    Feature::ABM,
    Feature::ERMS,
    Feature::XSAVEOPT,
];

/// Runs the scenario.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let n = cmdline
        .number("iterations", DEFAULT_ITERATIONS)
        .clamp(1, 100_000);
    let pv = match host.default_domain_policy(DomainKind::Pv) {
        Ok(policy) => policy,
        Err(error) => {
            checks::fail(format_args!("{NAME}/policy"), format_args!("{error}"));
            return;
        }
    };
    let mut less = pv.featureset();
    for feature in LESS {
        less.remove(feature);
    }
    let reduced = match host
        .policies
        .domain_policy(DomainKind::Pv, host.vendor, &less.closed())
    {
        Ok(policy) => policy,
        Err(error) => {
            checks::fail(format_args!("{NAME}/policy"), format_args!("{error}"));
            return;
        }
    };
    println!("bench: iterations {n}");
    pv_traps(host, &pv, n);
    pv_breakdown(host, &pv);
    switches(host, &pv, &reduced, n);
    levelling_switch(host, &pv, &reduced);
    hvm_exits(host, n);
}

/// A per-operation figure: `total / n`, exactly.
#[derive(Clone, Copy, Debug)]
struct PerOp {
    total: u64,
    n: u64,
}

impl fmt::Display for PerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.n.max(1);
        let (whole, rest) = (self.total / n, self.total % n);
        if rest == 0 {
            write!(f, "{whole}")
        } else {
            write!(f, "{whole}.{:03}", rest * 1000 / n)
        }
    }
}

/// Prints `bench <name> <figure>`.
fn figure_line(name: fmt::Arguments, value: PerOp) {
    println!("bench {name} {value}");
}

/// The figures the guests reported since the last call, by id.
struct Reported {
    figures: [(u64, u64); 32],
    len: usize,
}

impl Reported {
    fn take() -> Reported {
        let mut figures = [(0, 0); 32];
        let len = hypercall::take_bench(&mut figures);
        Reported { figures, len }
    }

    fn get(&self, id: u64) -> Option<u64> {
        self.figures[..self.len]
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }
}

/// A ring-3 domain running `entry` with N at the start of its data page.
fn bench_domain(
    host: &Host,
    name: &'static str,
    domid: u16,
    control: bool,
    policy: &CpuPolicy,
    entry: extern "C" fn(),
    n: u32,
) -> Domain {
    let domain = Domain::new(
        NAME,
        DomainSpec {
            name,
            domid,
            hardware_domain: control,
            policy: *policy,
            oracle: Oracle::HostCpl0,
            program: Program::Raw { entry },
            per_result_checks: false,
        },
        host,
    )
    // Its CPUID is not what it is measured for: it runs where nothing can hide anything too.
    .with_best_effort();
    // SAFETY: the data frame was just allocated for this domain alone and is identity mapped.
    unsafe { (domain.space.data_frame as *mut u32).write(n) };
    domain
}

/// `xl_bench_pv`: the trap round trips.
fn pv_traps(host: &Host, pv: &CpuPolicy, n: u32) {
    sched::add(bench_domain(host, "domU1", 1, false, pv, xl_bench_pv, n));
    sched::run();
    levelling::report_switches("bench/pv");
    let r = Reported::take();
    // A levelled guest's native CPUID traps (#GP) only where the host faults.
    let native = if levelling::current().faulting() {
        "pv/cpuid-faulted-leaf1"
    } else {
        "pv/cpuid-native-leaf1"
    };
    let figures = [
        ("pv/trap-nop", figure::PV_TRAP_NOP),
        ("pv/cpuid-forced-leaf0", figure::PV_FORCED_LEAF0),
        ("pv/cpuid-forced-leaf1", figure::PV_FORCED_LEAF1),
        ("pv/cpuid-forced-leaf7", figure::PV_FORCED_LEAF7),
        ("pv/cpuid-forced-leafd", figure::PV_FORCED_LEAFD),
        ("pv/cpuid-forced-leafd1", figure::PV_FORCED_LEAFD1),
        ("pv/cpuid-forced-leaf80000001", figure::PV_FORCED_EXTD1),
        (
            "pv/cpuid-forced-out-of-range",
            figure::PV_FORCED_OUT_OF_RANGE,
        ),
        (native, figure::PV_NATIVE_LEAF1),
    ];
    report_loops("pv", &r, figure::PV_EMPTY, &figures, n);
}

/// The leaves the breakdowns measure: (figure suffix, leaf, subleaf).
const LEAVES: [(&str, u32, u32); 7] = [
    ("0", 0, 0),
    ("1", 1, 0),
    ("7", 7, 0),
    ("d", 0xd, 0),
    ("d1", 0xd, 1),
    ("80000001", 0x8000_0001, 0),
    ("-out-of-range", 0x3fff_ffff, 0),
];

/// Where the forced-emulation round trip's instructions go, piece by piece, at CPL0 on a
/// domain that is not running (its tables decode the instruction): the fetches, the trap
/// context, `guest_cpuid` alone, and the crate's whole `handle_ud`.
fn pv_breakdown(host: &Host, pv: &CpuPolicy) {
    let domain = bench_domain(host, "domU1", 1, false, pv, xl_bench_pv, 1);
    let memory = DomainMemory {
        cr3: domain.space.cr3,
    };
    let site = paging::user_code_address(programs::address(xl_bench_forced_site));
    // As in a trap: the domain's tables loaded (the fetches take the direct path).
    paging::switch_address_space(memory.cr3);
    let t0 = rdtsc();
    let t1 = black_box(rdtsc());
    let overhead = t1.wrapping_sub(t0);
    let measure = |f: &mut dyn FnMut()| {
        let t0 = rdtsc();
        f();
        let t1 = rdtsc();
        t1.wrapping_sub(t0).saturating_sub(overhead)
    };
    let one = |total| PerOp { total, n: 1 };
    // CPUID at CPL0: 1 instruction on plain QEMU; above the silicon shim, an exit to it and
    // back (what the shim adds to every CPUID the kernel or a guest runs).
    let l0 = measure(&mut || {
        black_box(crate::hardware::cpuid(black_box(1), 0));
    });
    figure_line(format_args!("pv-breakdown/cpuid-at-cpl0"), one(l0));
    let read = measure(&mut || {
        let _ = black_box(paging::read_user_word(memory.cr3, black_box(site), 7));
    });
    figure_line(format_args!("pv-breakdown/fetch-7-bytes"), one(read));
    let context = measure(&mut || {
        black_box(domain.trap_context(3));
    });
    figure_line(format_args!("pv-breakdown/trap-context"), one(context));
    let ctx = domain.trap_context(3);
    for (name, leaf, subleaf) in LEAVES {
        let cpuid = measure(&mut || {
            black_box(ctx.cpuid.cpuid(
                ctx.overlay,
                black_box(leaf),
                black_box(subleaf),
                CpuidEntry::ForcedEmulation,
            ));
        });
        figure_line(
            format_args!("pv-breakdown/guest-cpuid-leaf{name}"),
            one(cpuid),
        );
        let mut outcome = TrapOutcome::NotOurs;
        let handle = measure(&mut || {
            let mut regs = CpuidFrame {
                rax: leaf.into(),
                rcx: subleaf.into(),
                rip: site,
                ..CpuidFrame::default()
            };
            outcome = black_box(trap::handle_ud(&ctx, &mut regs, &memory));
        });
        figure_line(
            format_args!("pv-breakdown/handle-ud-leaf{name}"),
            one(handle),
        );
        checks::check(
            format_args!("{NAME}/pv-breakdown/handle-ud-leaf{name}-emulates"),
            outcome == TrapOutcome::Emulated,
            format_args!("{outcome:?}"),
        );
    }
    paging::switch_address_space(paging::kernel_cr3());
}

/// Prints the loop figures less the empty loop; one check that all arrived.
fn report_loops(what: &str, r: &Reported, empty: u64, figures: &[(&str, u64)], n: u32) {
    let n = u64::from(n);
    let Some(empty) = r.get(empty) else {
        checks::fail(
            format_args!("{NAME}/{what}-figures"),
            format_args!("no empty loop reported"),
        );
        return;
    };
    figure_line(format_args!("{what}/loop"), PerOp { total: empty, n });
    let mut missing = 0;
    for &(name, id) in figures {
        match r.get(id) {
            Some(total) => figure_line(
                format_args!("{name}"),
                PerOp {
                    total: total.saturating_sub(empty),
                    n,
                },
            ),
            None => missing += 1,
        }
    }
    checks::check(
        format_args!("{NAME}/{what}-figures"),
        missing == 0,
        format_args!("{missing} of {} figures missing", figures.len()),
    );
}

/// One side of a switch pair: name, domain id, control domain, policy.
type Side<'a> = (&'static str, u16, bool, &'a CpuPolicy);

/// The ring-3 switch pairs.
fn switches(host: &Host, pv: &CpuPolicy, reduced: &CpuPolicy, n: u32) {
    let patterns: [(&str, &str, Side, Side); 3] = [
        (
            "switch/same-policy",
            "bench/switch-same-policy",
            ("domU1", 1, false, pv),
            ("domU2", 2, false, pv),
        ),
        (
            "switch/different-policy",
            "bench/switch-different-policy",
            ("domU1", 1, false, pv),
            ("domU3", 3, false, reduced),
        ),
        (
            "switch/dom0-guest",
            "bench/switch-dom0-guest",
            ("dom0", 0, true, &host.policies.host),
            ("domU1", 1, false, pv),
        ),
    ];
    for (name, tally, a, b) in patterns {
        sched::add(bench_domain(host, a.0, a.1, a.2, a.3, xl_bench_yield, n));
        sched::add(bench_domain(host, b.0, b.1, b.2, b.3, xl_bench_partner, n));
        sched::run();
        // The scheduler's own switch check for this pattern (writes = MSRs that differ).
        levelling::report_switches(tally);
        let r = Reported::take();
        let (Some(empty), Some(total)) = (r.get(figure::YIELD_EMPTY), r.get(figure::YIELD_LOOP))
        else {
            checks::fail(
                format_args!("{NAME}/{name}"),
                format_args!("the switch figures were not reported"),
            );
            continue;
        };
        // Each iteration: two switches and the partner's bookkeeping.
        let per_two = total.saturating_sub(empty);
        let switches = total_switches(per_two, u64::from(n));
        figure_line(format_args!("{name}"), switches);
        checks::pass_with(
            format_args!("{NAME}/{name}"),
            format_args!("{} switches measured", 2 * u64::from(n)),
        );
    }
}

/// Instructions per switch: (total - N × partner bookkeeping) / 2N.
fn total_switches(total: u64, n: u64) -> PerOp {
    PerOp {
        total: total.saturating_sub(n * PARTNER_LOOP_INSTRUCTIONS),
        n: 2 * n,
    }
}

/// The TSC: under icount, instructions retired. No `nomem`: the compiler may not move
/// memory accesses across it.
#[inline(always)]
fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC reads the time-stamp counter (CR4.TSD is clear); no other effect.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nostack)) };
    u64::from(high) << 32 | u64::from(low)
}

/// One switch pattern at CPL0: the sequence of targets it cycles through.
struct Pattern<'a> {
    name: &'static str,
    cycle: &'a [SwitchTo<'a>],
}

/// What a pattern measured over its repetitions.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    calls: u64,
    instructions: u64,
    msr_writes: u64,
    /// Of the calls, how many levelling MSRs differed between what was loaded and what the
    /// target needs (the lower bound of MSR writes).
    differing: u64,
}

/// `LevellingState::switch_to` alone, at CPL0, on each pattern.
fn levelling_switch(host: &Host, pv: &CpuPolicy, reduced: &CpuPolicy) {
    let host_levelling = levelling::current();
    let mut hw = NativeHardware;
    // A second per-CPU state: it starts from the defaults (what the kernel's state holds now,
    // back in Xen after the last run) and ends there, so the hardware the kernel's state
    // shadows is as it was.
    let mut state = match LevellingState::init(&host_levelling, &mut hw) {
        Ok(state) => state,
        Err(fault) => {
            checks::fail(
                format_args!("{NAME}/levelling/init"),
                format_args!("{fault}"),
            );
            return;
        }
    };
    let guest1 = levelling::assess(DomainKind::Pv, DomainRole::Guest, pv);
    let guest2 = levelling::assess(DomainKind::Pv, DomainRole::Guest, pv);
    let guest3 = levelling::assess(DomainKind::Pv, DomainRole::Guest, reduced);
    let dom0 = levelling::assess(DomainKind::Pv, DomainRole::Control, &host.policies.host);
    let (g1, g2, g3, d0) = (vcpu(&guest1), vcpu(&guest2), vcpu(&guest3), vcpu(&dom0));
    let patterns = [
        Pattern {
            name: "xen-to-xen",
            cycle: &[SwitchTo::Xen],
        },
        Pattern {
            name: "same-policy",
            cycle: &[g1, g2],
        },
        Pattern {
            name: "different-policy",
            cycle: &[g1, g3],
        },
        Pattern {
            name: "dom0-guest",
            cycle: &[d0, g1],
        },
        Pattern {
            name: "xen-guest",
            cycle: &[SwitchTo::Xen, g1],
        },
        Pattern {
            name: "idle-between-different",
            cycle: &[g1, SwitchTo::Idle, g3, SwitchTo::Idle],
        },
        Pattern {
            name: "to-idle",
            cycle: &[SwitchTo::Idle],
        },
    ];
    // The cost of the measurement itself: an empty RDTSC pair.
    let t0 = rdtsc();
    let t1 = black_box(rdtsc());
    let overhead = t1.wrapping_sub(t0);
    let mut fault = None;
    for pattern in &patterns {
        let mut m = Measured::default();
        // One pass to reach the pattern's steady state, then the measured repetitions.
        for pass in 0..=SWITCH_REPETITIONS {
            for &next in pattern.cycle {
                let before = state;
                let t0 = rdtsc();
                let result = state.switch_to(&host_levelling, &mut hw, black_box(next));
                let t1 = rdtsc();
                let result: Result<SwitchStats, MsrFault> = black_box(result);
                if pass == 0 {
                    continue;
                }
                match result {
                    Ok(stats) => {
                        m.calls += 1;
                        m.instructions += t1.wrapping_sub(t0).saturating_sub(overhead);
                        m.msr_writes += u64::from(stats.msr_writes);
                        m.differing += differing(&host_levelling, &before, &state);
                    }
                    Err(f) => {
                        fault.get_or_insert(f);
                    }
                }
            }
        }
        let name = pattern.name;
        figure_line(
            format_args!("levelling/{name}"),
            PerOp {
                total: m.instructions,
                n: m.calls,
            },
        );
        figure_line(
            format_args!("levelling/{name}/msr-writes"),
            PerOp {
                total: m.msr_writes,
                n: m.calls,
            },
        );
        figure_line(
            format_args!("levelling/{name}/msr-writes-differing"),
            PerOp {
                total: m.differing,
                n: m.calls,
            },
        );
        checks::check(
            format_args!("{NAME}/levelling/{name}/msr-writes-are-the-differing-msrs"),
            m.msr_writes == m.differing,
            format_args!(
                "{} MSR writes for {} MSRs that differed in {} switches",
                m.msr_writes, m.differing, m.calls
            ),
        );
    }
    // Back to what the kernel's state shadows.
    let back = state.switch_to(&host_levelling, &mut hw, SwitchTo::Xen);
    checks::check(
        format_args!("{NAME}/levelling/no-fault"),
        fault.is_none() && back.is_ok(),
        format_args!("{:?} {:?}", fault, back.err()),
    );
    println!(
        "bench: levelling mechanism {}",
        match host_levelling.mechanism() {
            Mechanism::None => "none",
            Mechanism::Faulting { .. } => "faulting",
            Mechanism::Masking(_) => "masking",
        }
    );
}

/// A PV vCPU of `domain` (its kernel has not set CR4.OSXSAVE).
fn vcpu(domain: &DomainLevelling) -> SwitchTo<'_> {
    SwitchTo::Vcpu {
        domain,
        cr4_osxsave: false,
        virtual_faulting: false,
    }
}

/// How many levelling MSRs differ between two states of a CPU (masks, and the faulting
/// enable): what a switch from one to the other must write, no more.
fn differing(host: &Levelling, before: &LevellingState, after: &LevellingState) -> u64 {
    let masks = match host.mechanism() {
        Mechanism::Masking(msrs) => msrs
            .kinds()
            .filter(|&(kind, _)| before.masks().get(kind) != after.masks().get(kind))
            .count() as u64,
        _ => 0,
    };
    masks + u64::from(before.faulting() != after.faulting())
}

/// `xl_bench_hvm` under SVM.
fn hvm_exits(host: &Host, n: u32) {
    // Not a skip: the PV and switch figures stand without it.
    if !svm::present() {
        println!("bench: hvm figures skipped: {}", SvmError::NotPresent);
        return;
    }
    let kind = host.hvm_kind();
    let policy = match host.default_domain_policy(kind) {
        Ok(policy) => policy,
        Err(error) => {
            checks::fail(format_args!("{NAME}/hvm/policy"), format_args!("{error}"));
            return;
        }
    };
    let domain = host.guest_domain(kind, 1, false);
    hvm_breakdown(&policy, domain);
    let fill = |page: &mut crate::guest::WalkPage| page.count = n;
    match hvm::run_program(NAME, xl_bench_hvm, policy, domain, host.cr4_osxsave, fill) {
        Err(error) => {
            println!("bench: hvm figures skipped: {error}");
            return;
        }
        Ok(exited) => {
            checks::check(
                format_args!("{NAME}/hvm/guest-exited"),
                exited,
                format_args!("the HVM benchmark guest did not exit cleanly"),
            );
        }
    }
    let r = Reported::take();
    let figures = [
        ("hvm/vmmcall-nop", figure::HVM_VMMCALL_NOP),
        ("hvm/cpuid-leaf0", figure::HVM_CPUID_LEAF0),
        ("hvm/cpuid-leaf1", figure::HVM_CPUID_LEAF1),
        ("hvm/cpuid-leaf7", figure::HVM_CPUID_LEAF7),
        ("hvm/cpuid-leafd", figure::HVM_CPUID_LEAFD),
    ];
    report_loops("hvm", &r, figure::HVM_EMPTY, &figures, n);
}

/// The lookup inside the HVM CPUID exit, at CPL0: the domain's table answering for a running
/// vCPU (the state the exit handler reads from the VMCB: long mode, CR4 clear, XCR0 x87).
fn hvm_breakdown(policy: &CpuPolicy, domain: xen_levelling::policy::guest::GuestDomain) {
    let table = CpuidTable::new(policy, &domain);
    let guest = GuestContext {
        domain,
        vcpu_id: 0,
        state: Some(VcpuState {
            entry: CpuidEntry::VmExit,
            cr4_osxsave: false,
            cr4_pke: false,
            kernel_mode: true,
            host_cr4_osxsave: false,
            xcr0: 0x1,
            xss: 0,
            apic_enabled: true,
            long_mode: true,
        }),
    };
    // The vCPU's overlay, as the exit handler keeps it (refreshed when CR4 or EFER move).
    let overlay = table.overlay(&guest);
    let t0 = rdtsc();
    let t1 = black_box(rdtsc());
    let overhead = t1.wrapping_sub(t0);
    for (name, leaf, subleaf) in LEAVES {
        let t0 = rdtsc();
        black_box(table.cpuid(
            &overlay,
            black_box(leaf),
            black_box(subleaf),
            CpuidEntry::VmExit,
        ));
        let t1 = rdtsc();
        figure_line(
            format_args!("hvm-breakdown/lookup-leaf{name}"),
            PerOp {
                total: t1.wrapping_sub(t0).saturating_sub(overhead),
                n: 1,
            },
        );
    }
}
