//! `smp`: every CPU runs its own domains at once, each CPU with its own levelling state, and
//! two CPUs race a policy change against a domain start.
//!
//! **Concurrent switching.** Each CPU (`cpuN`, the boot CPU first) gets its own run queue of
//! four ring-3 domains, yielding after every CPUID: dom0 (native CPUID, judged against CPL0
//! CPUID on that CPU), domU1 and domU2 (the `switch` pair: forced-emulation CPUID at two
//! different policies, judged by `guest_cpuid`, as `pv-forced` does) and domU3 (levelled,
//! native CPUID, started with best effort: `pv-levelled`'s checks). The APs run their queues
//! while the boot CPU runs its own; every check line names its CPU (`smp/cpuN/...`), and each
//! CPU reports its own switch tally (`smp/cpuN/levelling/msr-writes-per-switch`), the hook
//! count, and that Xen's CPL0 CPUID on that CPU is what it was before its domains ran.
//!
//! **The race.** A domain (id 7) is created in a crate `DomainTable` behind a spin lock, as
//! the ABI's table; CPU 0 then loops `domctl set_cpu_policy` on it (the crate's
//! `do_domctl`, Xen's structures, in kernel buffers), alternating two policies, while CPU 1
//! starts it (`DomainTable::start`). Whatever the interleaving, the outcome must be one of the
//! two orders: every set before the start succeeded, every set after it failed with
//! `-EEXIST`, and the domain runs with exactly the policy of the last successful set and the
//! levelling computed from that policy (never a torn pair).
//!
//! Above the silicon shim every CPU has its own L0 and its own copy of the `SiliconModel`, so
//! each CPU's switch tally is judged against that CPU's own model (the MSRs that changed
//! there, the WRMSRs its L0 served). With one CPU (no `--smp`) the scenario skips.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use xen_levelling::abi::dispatch::{Caller, CopyFault, GuestCopy, do_domctl, errno};
use xen_levelling::abi::domain::{DomainTable, levelling_of};
use xen_levelling::abi::{
    DOMCTL_GET_CPU_POLICY, DOMCTL_INTERFACE_VERSION, DOMCTL_SET_CPU_POLICY, Payload, Wire,
    XenCpuidLeaf, XenDomctl, XenDomctlCpuPolicy,
};
use xen_levelling::levelling::{DomainLevelling, DomainRole};
use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::DomainKind;
use xen_levelling::{CpuPolicy, CpuidRegs, Feature, Featureset};

use super::switch::LEAVES;
use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{WALK_FORCED, WALK_YIELD, WalkList};
use crate::percpu::{self, MAX_CPUS};
use crate::sync::{KernelCell, SpinLock};
use crate::xen::{self, Host};
use crate::{checks, hardware, levelling, println, sched, smp};

/// The scenario's name on the command line.
pub const NAME: &str = "smp";

/// Each CPU's prefix for check names.
const CPU_NAMES: [&str; MAX_CPUS] = ["smp/cpu0", "smp/cpu1", "smp/cpu2", "smp/cpu3"];

/// Taken from the PV default for domU3 (as `pv-levelled`'s domU1).
const LESS: [Feature; 5] = [
    Feature::AVX,
    Feature::MOVBE,
    Feature::ABM,
    Feature::ERMS,
    Feature::XSAVEOPT,
];

/// Walks per domain.
static ROUNDS: AtomicU32 = AtomicU32::new(4);

/// Runs the scenario.
pub fn run(host: &Host, cmdline: &Cmdline) {
    let cpus = smp::cpus();
    if cpus < 2 {
        checks::skip(
            format_args!("{NAME}/cpus"),
            format_args!("one CPU (boot with --smp 2 or more)"),
        );
        return;
    }
    checks::pass_with(
        format_args!("{NAME}/cpus-online"),
        format_args!("{cpus} CPUs in long mode, each on its own GDT, TSS and stacks"),
    );
    let rounds = cmdline.number("rounds", 4).max(1);
    ROUNDS.store(rounds, Ordering::Relaxed);
    if !add_domains(host, cpus, rounds) {
        return;
    }
    for cpu in 1..cpus {
        smp::run_on(cpu, run_this_cpu);
    }
    run_this_cpu(0);
    smp::wait_all();
    race();
}

/// Fills every CPU's run queue; false (with a failed check) if the policies cannot be made.
fn add_domains(host: &Host, cpus: usize, rounds: u32) -> bool {
    let list = WalkList::of(LEAVES);
    let level = (host.policies.pv_default.featureset() - Featureset::of(&LESS)).closed();
    let [pair1, pair2] = super::switch::guest_pair(host);
    let policies = [
        pair1,
        pair2,
        host.policies
            .domain_policy(DomainKind::Pv, host.vendor, &level),
    ];
    let [Ok(guest1), Ok(guest2), Ok(levelled)] = policies else {
        checks::fail(
            format_args!("{NAME}/policies"),
            format_args!("{:?}", policies.map(|p| p.err())),
        );
        return false;
    };
    let walk = |flags| Program::Walk {
        list: &list,
        rounds,
        flags: flags | WALK_YIELD,
    };
    let forced = Oracle::Policy(CpuidEntry::ForcedEmulation);
    for (cpu, scenario) in CPU_NAMES.iter().enumerate().take(cpus) {
        let specs = [
            (
                "dom0",
                0,
                true,
                host.policies.host,
                Oracle::HostCpl0,
                walk(0),
            ),
            ("domU1", 1, false, guest1, forced, walk(WALK_FORCED)),
            ("domU2", 2, false, guest2, forced, walk(WALK_FORCED)),
            ("domU3", 3, false, levelled, Oracle::Levelled, walk(0)),
        ];
        for (name, domid, hardware_domain, policy, oracle, program) in specs {
            let spec = DomainSpec {
                name,
                domid,
                hardware_domain,
                policy,
                oracle,
                program,
                per_result_checks: false,
            };
            // Best effort: on hardware that cannot hide everything domU3 still runs (its
            // checks then compare what it saw with its fail-closed list).
            sched::add_on(cpu, Domain::new(scenario, spec, host).with_best_effort());
        }
    }
    true
}

/// One CPU's part: run its queue, then its own checks.
fn run_this_cpu(cpu: usize) {
    let name = CPU_NAMES[cpu];
    checks::check(
        format_args!("{name}/levelling/state"),
        levelling::cpu_ready() && percpu::id() == cpu,
        format_args!("no levelling state on this CPU (or the CPU index is wrong)"),
    );
    let mut before = [CpuidRegs::default(); LEAVES.len()];
    for (regs, &(leaf, subleaf)) in before.iter_mut().zip(LEAVES) {
        *regs = hardware::cpuid(leaf, subleaf);
    }
    let (transitions_before, calls_before) = sched::switch_counts();
    sched::run();
    let (transitions, calls) = sched::switch_counts();
    let (transitions, calls) = (transitions - transitions_before, calls - calls_before);
    checks::check(
        format_args!("{name}/levelling-hook-on-every-switch"),
        calls == transitions,
        format_args!("{calls} hook calls for {transitions} switches"),
    );
    let minimum = 4 * u64::from(ROUNDS.load(Ordering::Relaxed)) * LEAVES.len() as u64;
    checks::check(
        format_args!("{name}/switches"),
        transitions >= minimum,
        format_args!("{transitions} switches, expected at least {minimum}"),
    );
    let changed = LEAVES
        .iter()
        .zip(&before)
        .find(|&(&(leaf, subleaf), regs)| hardware::cpuid(leaf, subleaf) != *regs);
    checks::check(
        format_args!("{name}/xen/cpl0-cpuid-is-host"),
        changed.is_none(),
        format_args!(
            "leaf {:x?} changed after the domains ran",
            changed.map(|c| c.0)
        ),
    );
    levelling::report_switches(name);
}

// ---- the race ----

/// The domain the race is about.
const RACE_DOMID: u16 = 7;
/// How many policy sets CPU 0 makes before CPU 1 tries the start.
const SETS_BEFORE_START: u32 = 16;
/// How many refused sets CPU 0 waits for after the start.
const REFUSALS_WANTED: u32 = 8;

/// The table and what each side saw, behind the lock both CPUs take.
static RACE: SpinLock<Option<Race>> = SpinLock::new(None);
/// Successful sets so far (CPU 1 waits for a few before it starts the domain).
static SETS_OK: AtomicU32 = AtomicU32::new(0);
static RACE_GO: AtomicBool = AtomicBool::new(false);
/// CPU 0's domctl buffers: the envelope, the two policies' leaves.
static ARENA: KernelCell<[u8; ARENA_SIZE]> = KernelCell::new([0; ARENA_SIZE]);
const ARENA_SIZE: usize = 16 * 1024;
const OP: u64 = 0x100;
const LEAVES_A: u64 = 0x1000;
const LEAVES_B: u64 = 0x2000 + LEAVES_A;
const MAX_LEAVES: u32 = 120;

struct Race {
    table: DomainTable<2>,
    /// The policy of the last successful set.
    last_set: Option<CpuPolicy>,
    /// What CPU 1's start saw: the policy and levelling it started with, and how many sets
    /// had succeeded.
    started: Option<(CpuPolicy, DomainLevelling, u32)>,
    /// CPU 1's start result.
    start_result: Option<bool>,
}

/// Kernel memory as a guest's: addresses are offsets into [`ARENA`].
struct Arena<'a>(&'a mut [u8; ARENA_SIZE]);

impl GuestCopy for Arena<'_> {
    fn copy_from_guest(&self, address: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        let start = address as usize;
        let bytes = self.0.get(start..start + buf.len()).ok_or(CopyFault)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
    fn copy_to_guest(&mut self, address: u64, data: &[u8]) -> Result<(), CopyFault> {
        let start = address as usize;
        let bytes = self.0.get_mut(start..start + data.len()).ok_or(CopyFault)?;
        bytes.copy_from_slice(data);
        Ok(())
    }
}

/// One domctl with `cmd` on the race domain, leaves at `leaves` (`count` of them).
fn domctl(
    mem: &mut Arena<'_>,
    table: &mut DomainTable<2>,
    cmd: u32,
    leaves: u64,
    count: u32,
) -> i64 {
    let mut op = XenDomctl {
        cmd,
        interface_version: DOMCTL_INTERFACE_VERSION,
        domain: RACE_DOMID,
        pad: [0; 3],
        u: [0; 16],
    };
    XenDomctlCpuPolicy {
        nr_leaves: count,
        leaves,
        ..XenDomctlCpuPolicy::default()
    }
    .store_in_union(&mut op.u);
    let mut bytes = [0u8; XenDomctl::SIZE];
    op.encode(&mut bytes);
    mem.0[OP as usize..OP as usize + XenDomctl::SIZE].copy_from_slice(&bytes);
    let caller = Caller {
        domid: 0,
        control: true,
    };
    xen::with_core_host(|host| do_domctl(host, table, caller, mem, OP))
}

/// CPU 0 sets policies while CPU 1 starts the domain.
fn race() {
    let name = format_args!("{NAME}/race");
    // CPU 0 alone lends itself the booted host (`xen::with_core_host`): CPU 1 only starts.
    let mut table = DomainTable::default();
    let created = xen::with_core_host(|core| {
        table
            .create(core, RACE_DOMID, DomainKind::Pv, DomainRole::Guest, true)
            .map(drop)
    });
    if let Err(error) = created {
        checks::fail(name, format_args!("create: {error}"));
        return;
    }
    // SAFETY: CPU 0 alone uses the arena, here and in the loop below.
    let mut mem = Arena(unsafe { &mut *ARENA.get() });
    // Policy A: the domain's own (got back); B: A without POPCNT (or SSE4A), no dependants.
    let got = domctl(
        &mut mem,
        &mut table,
        DOMCTL_GET_CPU_POLICY,
        LEAVES_A,
        MAX_LEAVES,
    );
    let op = XenDomctl::decode(&mem.0[OP as usize..OP as usize + XenDomctl::SIZE]);
    let count = XenDomctlCpuPolicy::from_union(&op.u).nr_leaves;
    if got != 0 {
        checks::fail(name, format_args!("get_cpu_policy: {got}"));
        return;
    }
    let size = count as usize * XenCpuidLeaf::SIZE;
    mem.0.copy_within(
        LEAVES_A as usize..LEAVES_A as usize + size,
        LEAVES_B as usize,
    );
    let mut removed = "nothing";
    for i in 0..count as usize {
        let at = LEAVES_B as usize + i * XenCpuidLeaf::SIZE;
        let mut leaf = XenCpuidLeaf::decode(&mem.0[at..at + XenCpuidLeaf::SIZE]);
        if leaf.leaf == 1 && leaf.c & 1 << 23 != 0 {
            leaf.c &= !(1 << 23);
            removed = "POPCNT";
        } else if leaf.leaf == 0x8000_0001 && removed == "nothing" && leaf.c & 1 << 6 != 0 {
            leaf.c &= !(1 << 6);
            removed = "SSE4A";
        }
        leaf.encode(&mut mem.0[at..at + XenCpuidLeaf::SIZE]);
    }
    let policy_a = table.get(RACE_DOMID).map(|d| *d.policy());
    *RACE.lock() = Some(Race {
        table,
        last_set: policy_a,
        started: None,
        start_result: None,
    });
    SETS_OK.store(0, Ordering::Relaxed);
    smp::run_on(1, race_start);
    RACE_GO.store(true, Ordering::Release);

    let (mut sets, mut refused, mut other) = (0u32, 0u32, None);
    let mut after_start_ok = 0u32;
    for i in 0..2_000_000u32 {
        let leaves = if i % 2 == 0 { LEAVES_B } else { LEAVES_A };
        let mut guard = RACE.lock();
        let race = guard.as_mut().expect("set up");
        let running = race.table.get(RACE_DOMID).is_some_and(|d| d.running());
        let r = domctl(
            &mut mem,
            &mut race.table,
            DOMCTL_SET_CPU_POLICY,
            leaves,
            count,
        );
        match r {
            0 => {
                sets += 1;
                after_start_ok += u32::from(running);
                race.last_set = race.table.get(RACE_DOMID).map(|d| *d.policy());
                SETS_OK.store(sets, Ordering::Release);
            }
            r if r == -i64::from(errno::EEXIST) => refused += 1,
            r => other = other.or(Some(r)),
        }
        drop(guard);
        if refused >= REFUSALS_WANTED || other.is_some() {
            break;
        }
    }
    smp::wait_all();
    let guard = RACE.lock();
    let race = guard.as_ref().expect("set up");
    let Some((policy, levelling, sets_before)) = race.started else {
        checks::fail(
            name,
            format_args!(
                "CPU 1 did not start the domain: {:?}; {sets} sets, {refused} refused, other {other:?}",
                race.start_result
            ),
        );
        return;
    };
    println!(
        "{NAME}: race: CPU 0 alternated policies A and B (B: A less {removed}): {sets} sets succeeded, \
         then {refused} refused with -EEXIST; CPU 1 started the domain after {sets_before} sets"
    );
    checks::noted(
        format_args!("{NAME}/race/one-order"),
        other.is_none() && after_start_ok == 0 && sets == sets_before && refused >= 1,
        format_args!(
            "{sets_before} sets before the start, {refused} refused after it; other errors {other:?}, \
             sets that succeeded on a running domain {after_start_ok}"
        ),
    );
    let now = race.table.get(RACE_DOMID);
    checks::noted(
        format_args!("{NAME}/race/policy-is-the-last-set"),
        Some(policy) == race.last_set && now.is_some_and(|d| *d.policy() == policy && d.running()),
        format_args!(
            "the domain runs with the policy of set {sets_before} ({})",
            if sets_before % 2 == 1 { "B" } else { "A" }
        ),
    );
    let expected =
        xen::with_core_host(|core| levelling_of(core, DomainKind::Pv, DomainRole::Guest, &policy));
    checks::noted(
        format_args!("{NAME}/race/levelling-matches-policy"),
        levelling == expected && now.is_some_and(|d| *d.levelling() == expected),
        format_args!("the started levelling is the one computed from the started policy"),
    );
}

/// CPU 1's side of the race: after a few sets, start the domain.
fn race_start(_cpu: usize) {
    while !RACE_GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    while SETS_OK.load(Ordering::Acquire) < SETS_BEFORE_START {
        core::hint::spin_loop();
    }
    let mut guard = RACE.lock();
    let race = guard.as_mut().expect("set up");
    let result = race.table.start(RACE_DOMID);
    race.start_result = Some(result.is_ok());
    if result.is_ok()
        && let Some(d) = race.table.get(RACE_DOMID)
    {
        race.started = Some((*d.policy(), *d.levelling(), SETS_OK.load(Ordering::Relaxed)));
    }
}
