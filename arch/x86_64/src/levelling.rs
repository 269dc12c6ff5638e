//! The crate's levelling mechanism, plugged into the kernel: the boot probe, the host-wide
//! [`HostLevelling`], each CPU's [`LevellingState`], the context switch, and the checks that
//! the switch writes exactly the MSRs whose value differs.
//!
//! | what | kernel | crate | Xen's counterpart |
//! |---|---|---|---|
//! | probe at boot | `xen::Host::probe` (the crate's `host::Host::boot`), [`virtualised`] | `Levelling::probe` | `probe_cpuid_faulting`, `{amd,intel}_init_levelling` |
//! | CPU bring-up | [`install`] | `LevellingState::init` | `ctxt_switch_levelling(NULL)` on the BSP |
//! | domain creation | [`record`] (from `Domain::new`), [`assess`] | `abi::domain::Domain::with_policy`, `Levelling::assess` | `domain_cpu_policy_changed` |
//! | context switch | [`switch_to`], [`switch_to_idle`] (from `sched`) | `LevellingState::switch_to` | `ctxt_switch_levelling(next)` |
//!
//! The host-wide state is shared by every CPU behind a readers-writer lock (switches and
//! assessments read it concurrently; [`HostLevelling::mark_failed`] writes it). Each CPU has
//! its own [`LevellingState`] (brought up on that CPU: [`install`] on the boot CPU,
//! [`init_this_cpu`] on each AP) and its own switch tally, one slot per CPU used by that CPU
//! alone (interrupts are off: the main flow uses it while no domain runs, the scheduler in a
//! trap handler while the main flow is suspended).
//!
//! # Checking the switch
//!
//! Every switch is checked as it happens: the MSR writes the crate reports
//! ([`SwitchStats`](xen_levelling::levelling::SwitchStats)) must equal the number of levelling
//! MSRs whose shadow changed. Under the silicon shim (`shim=…`) the hardware is asked too: the
//! levelling MSRs are read back with RDMSR before and after the switch (the shim's model
//! answers), and the shim's count of WRMSRs it served must equal both the number of MSRs whose
//! value really changed and the crate's count. [`report_switches`] prints the verdict.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xen_levelling::CpuPolicy;
use xen_levelling::abi::domain::Domain as DomainRecord;
use xen_levelling::hardware::{Hardware, MsrFault};
use xen_levelling::levelling::masks::MaskKind;
use xen_levelling::levelling::probe::FaultingCheck;
use xen_levelling::levelling::{
    DomainLevelling, DomainRole, Levelling as HostLevelling, LevellingCaps, LevellingState,
    Mechanism, SwitchTo,
};
use xen_levelling::policy::system::DomainKind;

use crate::domain::Domain;
use crate::hardware::{self, NativeHardware};
use crate::percpu::{self, MAX_CPUS};
use crate::sync::{KernelCell, ReadGuard, RwSpinLock};
use crate::{checks, println, shim};

/// The most levelling MSRs one mechanism drives (one per mask kind, or one faulting control).
const MAX_MSRS: usize = MaskKind::ALL.len();

/// What the host's CPU offers, found at boot; marked failed if a levelling MSR faults later.
static HOST: RwSpinLock<Option<HostLevelling>> = RwSpinLock::new(None);
/// Each CPU's levelling state and switch bookkeeping.
static CPUS: KernelCell<[Cpu; MAX_CPUS]> = KernelCell::new([const { Cpu::new() }; MAX_CPUS]);
/// While set, faulting switches are what the scenario wants (`msr-fault`): the switch check
/// does not count them as failures.
static FAULTS_EXPECTED: AtomicBool = AtomicBool::new(false);
/// Armed by [`arm_msr_failure`]: after this many more switches to a levelled domain (on any
/// CPU), the shim makes `ARMED_MSR` raise #GP; `u64::MAX` when disarmed.
static ARMED_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);
static ARMED_MSR: AtomicU64 = AtomicU64::new(0);

/// One CPU: its MSR shadows and what its switches did.
struct Cpu {
    /// The crate's per-CPU state (`None` before [`install`], or if bring-up faulted).
    state: Option<LevellingState>,
    /// Calls of the switch hook since boot.
    switch_calls: u64,
    /// Switches checked since the last [`report_switches`].
    tally: Tally,
}

impl Cpu {
    const fn new() -> Cpu {
        Cpu {
            state: None,
            switch_calls: 0,
            tally: Tally::new(),
        }
    }
}

/// What the checked switches did.
#[derive(Clone, Copy, Debug)]
struct Tally {
    switches: u64,
    to_xen: u64,
    to_idle: u64,
    msr_writes: u64,
    /// Levelling MSRs whose shadow changed.
    shadows_changed: u64,
    /// Under the shim: MSRs whose value (read back with RDMSR) changed, and the WRMSRs the
    /// shim served.
    hardware_changed: u64,
    l0_writes: u64,
    /// Switches where the counts disagreed, and the first of them.
    mismatches: u64,
    first_mismatch: Option<Mismatch>,
    /// Switches where a levelling MSR faulted, and the first fault.
    faults: u64,
    first_fault: Option<MsrFault>,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            switches: 0,
            to_xen: 0,
            to_idle: 0,
            msr_writes: 0,
            shadows_changed: 0,
            hardware_changed: 0,
            l0_writes: 0,
            mismatches: 0,
            first_mismatch: None,
            faults: 0,
            first_fault: None,
        }
    }
}

/// One switch whose counts disagreed.
#[derive(Clone, Copy, Debug)]
struct Mismatch {
    index: u64,
    to: Target,
    msr_writes: u32,
    shadows_changed: u32,
    hardware: Option<(u32, u64)>,
}

/// Where a switch went, for messages.
#[derive(Clone, Copy, Debug)]
enum Target {
    Xen,
    Idle,
    Domain(&'static str),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Xen => f.write_str("Xen"),
            Target::Idle => f.write_str("idle"),
            Target::Domain(name) => f.write_str(name),
        }
    }
}

/// The host-wide levelling, for reading (shared with the other CPUs until the guard drops).
///
/// # Panics
///
/// Before [`install`]: nothing may ask about levelling before the boot probe.
fn host() -> ReadGuard<'static, Option<HostLevelling>> {
    let guard = HOST.read();
    assert!(guard.is_some(), "levelling installed at boot");
    guard
}

/// Records that a levelling MSR faulted (host-wide: every CPU's new guests see it).
fn mark_failed(fault: MsrFault) {
    if let Some(host) = HOST.write().as_mut() {
        host.mark_failed(fault);
    }
}

/// This CPU's state.
fn cpu() -> &'static mut Cpu {
    // SAFETY: slot `percpu::id()` is used by this CPU alone, interrupts off, and no caller
    // re-enters this module while it holds the reference.
    unsafe { &mut (*CPUS.get())[percpu::id()] }
}

/// Whether the kernel runs virtualised (`CPUID.01H:ECX[31]`, the hypervisor bit): Xen probes
/// faulting through the Intel MSRs on family 0Fh (and on AMD) only then.
pub fn virtualised() -> bool {
    hardware::cpuid(1, 0).c & 1 << 31 != 0
}

/// Makes `levelling` the host's and brings CPU 0 up: the defaults into every mask MSR in
/// use, faulting off. A fault there marks the mechanism failed (new levelled PV guests are
/// then refused unless best effort) and is returned.
pub fn install(levelling: HostLevelling) -> Result<(), MsrFault> {
    *HOST.write() = Some(levelling);
    init_this_cpu()
}

/// Brings this CPU's levelling up (the boot CPU from [`install`], each AP as it starts):
/// the crate's `LevellingState::init` on this CPU's MSRs. A fault marks the mechanism failed.
pub fn init_this_cpu() -> Result<(), MsrFault> {
    let result = {
        let host = host();
        let levelling = host.as_ref().expect("installed");
        LevellingState::init(levelling, &mut NativeHardware)
    };
    match result {
        Ok(state) => {
            cpu().state = Some(state);
            Ok(())
        }
        Err(fault) => {
            mark_failed(fault);
            Err(fault)
        }
    }
}

/// A copy of the host-wide levelling as it stands (with any failure recorded since boot).
pub fn current() -> HostLevelling {
    host().expect("installed")
}

/// True if this CPU's levelling came up (its `LevellingState` exists).
pub fn cpu_ready() -> bool {
    cpu().state.is_some()
}

/// Faulting switches are (`true`) or are not what the scenario wants.
pub fn expect_faults(expected: bool) {
    FAULTS_EXPECTED.store(expected, Ordering::Relaxed);
}

/// Above the shim: after `switches` more switches to a levelled domain, the shim makes
/// `msr` raise #GP on every access (as after a microcode update that withdrew it), just
/// before the switch writes the levelling MSRs.
pub fn arm_msr_failure(switches: u64, msr: u32) {
    ARMED_MSR.store(u64::from(msr), Ordering::Relaxed);
    ARMED_AFTER.store(switches, Ordering::Relaxed);
}

/// The failure recorded since boot, if any.
pub fn failure() -> Option<MsrFault> {
    host().as_ref().expect("installed").failure()
}

/// (switches that faulted, the first fault) on this CPU since the last report.
pub fn fault_tally() -> (u64, Option<MsrFault>) {
    let t = &cpu().tally;
    (t.faults, t.first_fault)
}

/// The levelling of a new domain of `kind` and `role` with `policy`, with what the hardware
/// cannot hide listed (the fail-closed list); `Domain::start` decides whether it may run.
pub fn assess(kind: DomainKind, role: DomainRole, policy: &CpuPolicy) -> DomainLevelling {
    host()
        .as_ref()
        .expect("installed")
        .assess(kind, role, policy)
}

/// The crate's record of a new domain with `policy`: its levelling assessed on the host's
/// levelling as it stands (see [`assess`]).
pub fn record(
    domid: u16,
    kind: DomainKind,
    role: DomainRole,
    policy: CpuPolicy,
    best_effort: bool,
) -> DomainRecord {
    let host = host();
    let levelling = host.as_ref().expect("installed");
    DomainRecord::with_policy(levelling, domid, kind, role, policy, best_effort)
}

/// How many times the switch hook ran since boot (switches to idle not counted).
pub fn switch_calls() -> u64 {
    cpu().switch_calls
}

/// Called on every context switch, before `next` runs (`None`: back to Xen itself, which
/// sees the full host CPUID again): loads `next`'s mask values or faulting enable, writing
/// only the MSRs whose value differs, and checks that it did.
pub fn switch_to(next: Option<&Domain>) {
    match next {
        None => switch(SwitchTo::Xen, Target::Xen),
        Some(domain) => switch(
            SwitchTo::Vcpu {
                domain: domain.levelling(),
                cr4_osxsave: domain.cr4_osxsave(),
                virtual_faulting: false,
            },
            Target::Domain(domain.name()),
        ),
    }
}

/// The CPU goes idle (it runs no guest code): nothing may be written.
pub fn switch_to_idle() {
    switch(SwitchTo::Idle, Target::Idle);
}

fn switch(next: SwitchTo<'_>, target: Target) {
    let cpu = cpu();
    if !matches!(target, Target::Idle) {
        cpu.switch_calls += 1;
    }
    let Some(state) = cpu.state.as_mut() else {
        return; // bring-up faulted: nothing is levelled any more
    };
    // One atomic step from "armed, 0 left" to disarmed, so that of CPUs switching at once
    // exactly one fires it and none underflows the count.
    if matches!(next, SwitchTo::Vcpu { domain, .. } if domain.levelled())
        && ARMED_AFTER.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| match left {
            u64::MAX => None,
            0 => Some(u64::MAX),
            n => Some(n - 1),
        }) == Ok(0)
    {
        let msr = ARMED_MSR.load(Ordering::Relaxed) as u32;
        let failing = shim::fail_msr(msr);
        println!(
            "levelling: before the switch to {target}: MSR {msr:#x} now raises #GP (shim: {failing})"
        );
    }
    let guard = host();
    let host = guard.as_ref().expect("installed");
    // Only the shim can be asked what the hardware did: elsewhere nothing is read back.
    let msrs = shim::active().then(|| Msrs::of(host));
    let shadows_before = Shadows::of(state, host);
    let hardware_before = msrs.map(|m| (m.read(), shim::l0_msr_writes()));
    let result = state.switch_to(host, &mut NativeHardware, next);
    let shadows_after = Shadows::of(state, host);
    let hardware_after = msrs.map(|m| (m.read(), shim::l0_msr_writes()));

    let tally = &mut cpu.tally;
    tally.switches += 1;
    match target {
        Target::Xen => tally.to_xen += 1,
        Target::Idle => tally.to_idle += 1,
        Target::Domain(_) => {}
    }
    let stats = match result {
        Ok(stats) => stats,
        Err(fault) => {
            // Xen carries on with what it could write; new levelled guests are refused.
            drop(guard);
            mark_failed(fault);
            tally.faults += 1;
            tally.first_fault.get_or_insert(fault);
            if tally.faults == 1 {
                println!(
                    "levelling: switch to {target}: {fault}; mechanism marked failed (each later fault counted, not printed)"
                );
            }
            return;
        }
    };
    let shadows_changed = shadows_before.differing(&shadows_after);
    tally.msr_writes += u64::from(stats.msr_writes);
    tally.shadows_changed += u64::from(shadows_changed);
    let mut agree = stats.msr_writes == shadows_changed;
    let hardware = match (hardware_before, hardware_after) {
        (Some((before, l0_before)), Some((after, l0_after))) => {
            let changed = before.differing(&after);
            let l0 = l0_after.wrapping_sub(l0_before);
            tally.hardware_changed += u64::from(changed);
            tally.l0_writes += l0;
            agree &= l0 == u64::from(changed) && l0 == u64::from(stats.msr_writes);
            Some((changed, l0))
        }
        _ => None,
    };
    if !agree {
        tally.mismatches += 1;
        let index = tally.switches;
        tally.first_mismatch.get_or_insert(Mismatch {
            index,
            to: target,
            msr_writes: stats.msr_writes,
            shadows_changed,
            hardware,
        });
    }
}

/// The levelling MSRs the mechanism drives, each with whether it wants the AMD passcode.
#[derive(Clone, Copy, Debug)]
struct Msrs([Option<(u32, bool)>; MAX_MSRS]);

impl Msrs {
    fn of(host: &HostLevelling) -> Msrs {
        let mut list = [None; MAX_MSRS];
        match host.mechanism() {
            Mechanism::Faulting { control, .. } => list[0] = Some((control.msr_and_bit().0, false)),
            Mechanism::Masking(masks) => {
                let amd = host.vendor().is_amd_like();
                for (slot, (_, index)) in list.iter_mut().zip(masks.kinds()) {
                    *slot = Some((index, amd));
                }
            }
            Mechanism::None => {}
        }
        Msrs(list)
    }

    /// Their values now, read with RDMSR (AMD's mask MSRs with the passcode in EDI).
    fn read(&self) -> Values {
        let mut values = [None; MAX_MSRS];
        for (value, msr) in values.iter_mut().zip(self.0) {
            *value = msr.and_then(|(index, amd)| {
                let read = if amd {
                    NativeHardware.rdmsr_amd_safe(index)
                } else {
                    NativeHardware.rdmsr_safe(index)
                };
                read.ok()
            });
        }
        Values(values)
    }
}

/// Levelling MSR values read back from the hardware.
#[derive(Clone, Copy, Debug)]
struct Values([Option<u64>; MAX_MSRS]);

impl Values {
    fn differing(&self, after: &Values) -> u32 {
        self.0.iter().zip(&after.0).filter(|(b, a)| b != a).count() as u32
    }
}

/// The crate's shadows of the MSRs the mechanism drives.
#[derive(Clone, Copy, Debug)]
struct Shadows {
    masks: [Option<u64>; MAX_MSRS],
    faulting: bool,
}

impl Shadows {
    fn of(state: &LevellingState, host: &HostLevelling) -> Shadows {
        let mut masks = [None; MAX_MSRS];
        if let Mechanism::Masking(msrs) = host.mechanism() {
            for (kind, _) in msrs.kinds() {
                masks[kind.index()] = Some(state.masks().get(kind));
            }
        }
        Shadows {
            masks,
            faulting: state.faulting(),
        }
    }

    fn differing(&self, after: &Shadows) -> u32 {
        let masks = self
            .masks
            .iter()
            .zip(&after.masks)
            .filter(|(b, a)| b != a)
            .count() as u32;
        masks + u32::from(self.faulting != after.faulting)
    }
}

/// Prints the switch checks of `scenario` (if it switched at all) and starts a new tally:
/// every switch wrote exactly the MSRs whose value differs, and none faulted.
pub fn report_switches(scenario: &str) {
    let cpu = cpu();
    let t = core::mem::replace(&mut cpu.tally, Tally::new());
    if t.switches == 0 {
        return;
    }
    let mechanism = MechanismName(current().mechanism());
    print_tally(&t, mechanism);
    let name = format_args!("{scenario}/levelling/msr-writes-per-switch");
    match t.first_mismatch {
        None if t.faults == 0 || FAULTS_EXPECTED.load(Ordering::Relaxed) => checks::pass_with(
            name,
            format_args!(
                "{} switches on {mechanism}: {} MSR writes, each to an MSR whose value differed{}",
                t.switches,
                t.msr_writes,
                if t.faults > 0 {
                    " (switches that faulted, as the scenario wanted, not counted)"
                } else {
                    ""
                }
            ),
        ),
        None => checks::fail(
            name,
            format_args!(
                "{} of {} switches faulted; first: MSR {:#x}",
                t.faults,
                t.switches,
                t.first_fault.map_or(0, |f| f.msr)
            ),
        ),
        Some(m) => {
            let hardware = m.hardware.map_or((0, 0), |h| h);
            checks::fail(
                name,
                format_args!(
                    "{} of {} switches disagree; first: switch {} to {}: the crate wrote {} MSRs, \
                     {} shadows changed; shim: {} MSRs changed, {} WRMSRs served{}",
                    t.mismatches,
                    t.switches,
                    m.index,
                    m.to,
                    m.msr_writes,
                    m.shadows_changed,
                    hardware.0,
                    hardware.1,
                    if m.hardware.is_none() {
                        " (not under the shim)"
                    } else {
                        ""
                    }
                ),
            )
        }
    };
}

fn print_tally(t: &Tally, mechanism: MechanismName) {
    println!(
        "levelling: {} switches ({} to Xen, {} to idle) on {mechanism}: {} MSR writes, {} shadows changed",
        t.switches, t.to_xen, t.to_idle, t.msr_writes, t.shadows_changed
    );
    if shim::active() {
        println!(
            "levelling: the shim served {} WRMSRs during the switches; {} MSRs changed value",
            t.l0_writes, t.hardware_changed
        );
    }
}

/// A mechanism, as check lines name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MechanismName(pub Mechanism);

impl fmt::Display for MechanismName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Mechanism::Faulting { control, check } => {
                let (index, bit) = control.msr_and_bit();
                let how = match check {
                    FaultingCheck::Verified => "verified at CPL 3",
                    FaultingCheck::Unverifiable => "unverified",
                    FaultingCheck::ByGeneration => "by generation",
                };
                write!(
                    f,
                    "CPUID faulting (MSR {index:#x} bit {}, {how})",
                    bit.trailing_zeros()
                )
            }
            Mechanism::Masking(masks) => {
                f.write_str("masks")?;
                for (kind, index) in masks.kinds() {
                    write!(f, " {}={index:#x}", kind.name())?;
                }
                Ok(())
            }
            Mechanism::None => f.write_str("no mechanism"),
        }
    }
}

/// The boot probe's checks. Under plain QEMU (no `shim=`) the emulator-quirk case must be
/// detected: TCG implements no faulting and no mask MSRs but accepts every MSR (reads 0,
/// swallows writes), so the expected mask MSRs look present and must prove ineffective, and
/// nothing may be used. Under the shim, `expected` is the mechanism the modelled generation has
/// (from the vendors' documentation, `shim::expected_mechanism`), and everything expected
/// must be present and effective.
pub fn check_probe(expected: Option<Mechanism>) {
    let host = current();
    let report = &host.report();
    println!(
        "xen: levelling: {}; expected {} present {} effective {} ineffective {} untested {}",
        MechanismName(report.mechanism),
        Caps(report.expected),
        Caps(report.present),
        Caps(report.effective),
        Caps(report.ineffective()),
        Caps(report.untested),
    );
    if let Some(fault) = host.failure() {
        checks::fail(
            format_args!("levelling/bring-up"),
            format_args!("{fault} while loading the boot defaults"),
        );
    }
    let caps = format_args!(
        "expected {} present {} effective {} ineffective {}",
        Caps(report.expected),
        Caps(report.present),
        Caps(report.effective),
        Caps(report.ineffective())
    );
    match expected {
        None => {
            checks::noted(
                format_args!("levelling/probe/no-faulting"),
                !report.effective.contains(LevellingCaps::FAULTING)
                    && !matches!(report.mechanism, Mechanism::Faulting { .. }),
                format_args!("{caps}"),
            );
            checks::noted(
                format_args!("levelling/probe/no-usable-mask"),
                report.mechanism == Mechanism::None && report.effective.is_empty(),
                format_args!("{}; {caps}", MechanismName(report.mechanism)),
            );
            // Every expected mask MSR "exists" under TCG and none works: the quirk is seen.
            let detected = report.missing().is_empty()
                && report.ineffective() == report.present - report.untested
                && (report.expected.is_empty() || !report.ineffective().is_empty());
            checks::noted(
                format_args!("levelling/probe/emulator-quirk-detected"),
                detected,
                format_args!("{caps}"),
            );
        }
        Some(expected) => {
            checks::noted(
                format_args!("levelling/probe/mechanism"),
                report.mechanism == expected,
                format_args!(
                    "found {}, this generation has {}",
                    MechanismName(report.mechanism),
                    MechanismName(expected)
                ),
            );
            checks::noted(
                format_args!("levelling/probe/everything-expected-works"),
                report.missing().is_empty() && report.ineffective().is_empty(),
                format_args!(
                    "missing {} ineffective {}; {caps}",
                    Caps(report.missing()),
                    Caps(report.ineffective())
                ),
            );
        }
    }
}

/// Capabilities as `MASK_1CD|MASK_E1CD`, or `-`.
#[derive(Clone, Copy)]
struct Caps(LevellingCaps);

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, (name, _)) in self.0.iter_names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}
