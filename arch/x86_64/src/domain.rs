//! A ring-3 domain: dom0 or a PV guest, with its own address space, its saved registers, its
//! CPUID policy, and the bookkeeping of its checks.
//!
//! The kernel judges every CPUID result a domain reports against an [`Oracle`]: for Xen and
//! dom0 what the CPU reported at boot (they see the full host CPUID), for a trapped CPUID
//! `guest_cpuid` on the guest's policy, and for a levelled guest's native CPUID what its
//! levelling promises ([`Oracle::Levelled`]). Every check line names the scenario, the domain
//! and what was checked, e.g. `check pv-forced/domU1/forced/00000007.0: ok`.
//!
//! Every domain carries the crate's record of it (`abi::domain::Domain`: its policy and the
//! precomputed [`DomainLevelling`] with the fail-closed list, which change together), the one
//! the hypercall dispatcher reads and sets through the scheduler (`sched`'s `Domains`):
//! the domain a toolstack creates by hypercall is the one the scheduler runs.
//! [`Domain::start`] applies the crate's start rule (`abi::domain::Domain::start`): a levelled
//! PV guest whose hardware cannot hide what its policy lacks is refused unless best effort was
//! asked for ([`Domain::with_best_effort`]). `sched::add` starts every domain it is given, so a
//! refused domain never runs; a domain the toolstack created waits until it starts it.

use xen_levelling::abi::domain::{Domain as DomainRecord, PolicyUpdate};
use xen_levelling::feature::KNOWN;
use xen_levelling::levelling::trap::TrapContext;
use xen_levelling::levelling::{DomainLevelling, DomainRole, Mechanism, Unenforceable};
use xen_levelling::policy::guest::{
    CpuidEntry, CpuidOverlay, CpuidTable, GuestContext, VcpuState, guest_cpuid_entered,
};
use xen_levelling::policy::system::DomainKind;
use xen_levelling::policy::{WORD_HOMES, WordHome};
use xen_levelling::{CpuPolicy, CpuidRegs, Featureset};

use crate::checks::{self, Leaf, Regs};
use crate::gdt::{USER_CS, USER_DS};
use crate::guest::programs::{self, xl_user_probe, xl_user_walk};
use crate::guest::{WALK_FORCED, WalkList, WalkPage};
use crate::hardware;
use crate::hypercall::Report;
use crate::idt::{Gprs, TrapFrame, vector};
use crate::levelling;
use crate::paging::{AddressSpace, USER_DATA, USER_STACK_TOP, user_code_address};
use crate::xen::{self, Host};

/// `scenario/domain`, the start of a domain's check names.
struct Prefix(&'static str, &'static str);

impl core::fmt::Display for Prefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

/// A domain id.
pub type DomId = u16;

/// RFLAGS for ring 3: bit 1 (reserved, always 1) only, so IF = 0 and IOPL = 0.
const USER_RFLAGS: u64 = 0x2;

/// What a domain's CPUID results are compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// Full host CPUID: what the CPU reported at boot, before any levelling was loaded (for
    /// a query the boot read did not cover, the same query run by the kernel at CPL0 when the
    /// result arrives).
    HostCpl0,
    /// `guest_cpuid` on the domain's policy, for CPUIDs that reach Xen through `entry`.
    Policy(CpuidEntry),
    /// Native CPUID of a levelled PV guest: with faulting every CPUID traps and must be
    /// exactly `guest_cpuid` (`CpuidEntry::Fault`); with masks (or nothing, best effort) the
    /// features it saw must differ from its policy by exactly its fail-closed list
    /// (`DomainLevelling::unenforceable`, shown but not wanted) and `not_shown` (wanted but not
    /// shown), and on the words the masks cover not at all.
    Levelled,
}

/// What a domain runs.
#[derive(Clone, Copy, Debug)]
pub enum Program<'a> {
    /// `xl_user_walk` over `list`, `rounds` times, with the walk flags (`guest::WALK_*`).
    Walk {
        /// The queries.
        list: &'a WalkList,
        /// How many times to walk them.
        rounds: u32,
        /// `WALK_FORCED` and/or `WALK_YIELD`.
        flags: u32,
    },
    /// `xl_user_probe` reading kernel address `address`, which must raise #PF.
    Probe {
        /// A kernel (supervisor-only) address.
        address: u64,
    },
    /// Any other ring-3 program from `.user_text` (the toolstack, the benchmarks), entered
    /// with RDI = its data page, which starts zeroed; it reports through its own hypercalls.
    Raw {
        /// The program.
        entry: extern "C" fn(),
    },
}

/// Everything needed to create a domain.
pub struct DomainSpec<'a> {
    /// Name in check lines (`dom0`, `domU1`, ...).
    pub name: &'static str,
    /// Domain id.
    pub domid: DomId,
    /// dom0, the hardware domain.
    pub hardware_domain: bool,
    /// The domain's CPUID policy.
    pub policy: CpuPolicy,
    /// How its results are judged.
    pub oracle: Oracle,
    /// What it runs.
    pub program: Program<'a>,
    /// One check line per CPUID result (else one summary line for the domain).
    pub per_result_checks: bool,
}

impl<'a> DomainSpec<'a> {
    /// dom0: domain 0, the hardware domain, with the host policy (not levelled by default),
    /// judged against CPL0 CPUID, running `program`, with one summary check line.
    pub fn dom0(host: &Host, program: Program<'a>) -> DomainSpec<'a> {
        DomainSpec {
            name: "dom0",
            domid: 0,
            hardware_domain: true,
            policy: host.policies.host,
            oracle: Oracle::HostCpl0,
            program,
            per_result_checks: false,
        }
    }
}

/// The parts of a [`DomainSpec`] a domain keeps besides its record (the walk list lives in its
/// walk page, the policy in the record).
struct Spec {
    name: &'static str,
    oracle: Oracle,
    program: Kind,
    per_result_checks: bool,
}

/// What a domain runs, without the walk list.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Walk { flags: u32 },
    Probe { address: u64 },
    Raw,
}

/// Saved ring-3 state of a domain that is not running.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UserContext {
    /// General-purpose registers.
    pub gprs: Gprs,
    /// Where it resumes.
    pub rip: u64,
    /// Its RFLAGS.
    pub rflags: u64,
    /// Its stack pointer.
    pub rsp: u64,
}

impl UserContext {
    /// Saves the ring-3 state in `frame`.
    pub fn save(&mut self, frame: &TrapFrame) {
        self.gprs = frame.gprs;
        self.rip = frame.rip;
        self.rflags = frame.rflags;
        self.rsp = frame.rsp;
    }

    /// Puts this state into `frame`, so that the `iretq` resumes this domain.
    pub fn restore(&self, frame: &mut TrapFrame) {
        frame.gprs = self.gprs;
        frame.rip = self.rip;
        frame.rflags = self.rflags;
        frame.rsp = self.rsp;
        frame.cs = u64::from(USER_CS);
        frame.ss = u64::from(USER_DS);
    }
}

/// Where a domain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// May run.
    Runnable,
    /// Called `exit` (or took the fault it was meant to take).
    Exited,
    /// Took a fault it should not have.
    Crashed,
    /// Created by the toolstack, not started yet: it does not run.
    Created,
    /// Refused at start (fail closed): it never ran.
    Refused,
}

/// A ring-3 domain.
pub struct Domain {
    /// Scenario name, the prefix of every check line.
    scenario: &'static str,
    spec: Spec,
    /// What `guest_cpuid` needs to know about it and its vCPU's architectural state, kept
    /// whole so that every trap can lend it to the crate instead of building it.
    cpuid_context: GuestContext,
    /// Its CPUID answers, computed from its policy when the domain was built: what every
    /// trapped CPUID is answered from.
    cpuid_table: CpuidTable,
    /// Its vCPU's answers to the table's rows that follow the vCPU's state, computed with the
    /// vCPU (which never changes its CR4, XCR0 or mode here: nothing else refreshes it).
    cpuid_overlay: CpuidOverlay,
    /// Its page tables and frames.
    pub space: AddressSpace,
    /// Its registers while it is not running.
    pub context: UserContext,
    /// Runnable, exited or crashed.
    pub state: DomainState,
    results: u32,
    mismatches: u32,
    first_mismatch: Option<(u32, u32, CpuidRegs, CpuidRegs)>,
    expected_results: u32,
    /// CPUIDs that reached Xen by a trap and were emulated.
    trapped: u32,
    /// The crate's record: its policy and levelling (changed together through the dispatcher),
    /// best effort, running.
    record: DomainRecord,
    /// Why it was refused, if it was.
    refusal: Option<Unenforceable>,
    /// The CPUID the CPU reported at boot (the [`Oracle::HostCpl0`] values).
    boot: CpuPolicy,
    /// For [`Oracle::Levelled`]: the featureset words its native CPUIDs showed, and which
    /// words it saw (bit n = word n).
    seen: Featureset,
    seen_words: u32,
    /// Print what its CPUIDs showed at the end ([`Domain::with_view`]).
    view: bool,
}

impl Domain {
    /// Builds the domain: its address space, its walk page, its initial registers.
    pub fn new(scenario: &'static str, spec: DomainSpec<'_>, host: &Host) -> Domain {
        let role = if spec.hardware_domain {
            DomainRole::Control
        } else {
            DomainRole::Guest
        };
        let record = levelling::record(spec.domid, DomainKind::Pv, role, spec.policy, false);
        Domain::build(scenario, spec, record, host)
    }

    /// A domain the toolstack created by hypercall from `record`: it runs `entry` once the
    /// toolstack starts it ([`Domain::start_by_toolstack`]), judged against its policy through
    /// the forced-emulation prefix.
    pub fn created(
        scenario: &'static str,
        name: &'static str,
        record: DomainRecord,
        entry: extern "C" fn(),
        host: &Host,
    ) -> Domain {
        let spec = DomainSpec {
            name,
            domid: record.domid(),
            hardware_domain: false,
            policy: *record.policy(),
            oracle: Oracle::Policy(CpuidEntry::ForcedEmulation),
            program: Program::Raw { entry },
            per_result_checks: false,
        };
        let mut domain = Domain::build(scenario, spec, record, host);
        domain.state = DomainState::Created;
        domain
    }

    fn build(
        scenario: &'static str,
        spec: DomainSpec<'_>,
        record: DomainRecord,
        host: &Host,
    ) -> Domain {
        let space = AddressSpace::new();
        // SAFETY: the data frame was just allocated for this domain alone and is identity
        // mapped; nothing else refers to it until the domain runs.
        let page = unsafe { &mut *(space.data_frame as *mut WalkPage) };
        let (entry, expected_results, kind) = match spec.program {
            Program::Walk {
                list,
                rounds,
                flags,
            } => {
                page.fill(list, rounds, flags, 0x5a00_0000 | u32::from(spec.domid));
                let results = list.as_slice().len() as u32 * rounds;
                (
                    xl_user_walk as extern "C" fn(),
                    results,
                    Kind::Walk { flags },
                )
            }
            Program::Probe { address } => {
                page.probe = address;
                (xl_user_probe as extern "C" fn(), 0, Kind::Probe { address })
            }
            Program::Raw { entry } => (entry, 0, Kind::Raw),
        };
        let mut context = UserContext {
            rip: user_code_address(programs::address(entry)),
            rflags: USER_RFLAGS,
            rsp: USER_STACK_TOP,
            ..UserContext::default()
        };
        context.gprs.rdi = USER_DATA;
        let vcpu = VcpuState {
            entry: CpuidEntry::ForcedEmulation,
            cr4_osxsave: false,
            cr4_pke: false,
            // A 64-bit PV guest kernel runs in ring 3; the programs play its kernel.
            kernel_mode: true,
            host_cr4_osxsave: host.cr4_osxsave,
            xcr0: 0x3, // x87 | SSE: what Xen gives a PV vCPU before it sets XCR0
            xss: 0,
            apic_enabled: false,
            long_mode: true,
        };
        let guest = host.guest_domain(record.kind(), spec.domid, spec.hardware_domain);
        let cpuid_context = GuestContext {
            domain: guest,
            vcpu_id: 0,
            state: Some(vcpu),
        };
        let cpuid_table = CpuidTable::new(record.policy(), &guest);
        Domain {
            scenario,
            cpuid_overlay: cpuid_table.overlay(&cpuid_context),
            cpuid_context,
            cpuid_table,
            spec: Spec {
                name: spec.name,
                oracle: spec.oracle,
                program: kind,
                per_result_checks: spec.per_result_checks,
            },
            space,
            context,
            state: DomainState::Runnable,
            results: 0,
            mismatches: 0,
            first_mismatch: None,
            expected_results,
            trapped: 0,
            record,
            refusal: None,
            boot: host.hardware,
            seen: Featureset::EMPTY,
            seen_words: 0,
            view: false,
        }
    }

    /// At the end of the run, print the featureset its CPUIDs showed, as the guest reported
    /// them: `view <scenario>/<domain>: <xen words>; words <mask>` (bit n of the mask: word n's
    /// home leaf was seen). For `cargo xtask run`, which compares it with the pool level.
    pub fn with_view(mut self) -> Domain {
        self.view = true;
        self
    }

    /// The toolstack asks for best effort: the domain may start although the hardware cannot
    /// hide everything its policy lacks (the list stays with it).
    pub fn with_best_effort(mut self) -> Domain {
        let r = &self.record;
        self.record = levelling::record(r.domid(), r.kind(), r.role(), *r.policy(), true);
        self
    }

    /// The start rule (the crate's `abi::domain::Domain::start`): a levelled PV guest whose
    /// fail-closed list is not empty is refused, unless best effort was asked for. A refused
    /// domain never runs, and reports its refusal when the run finishes.
    pub fn start(&mut self) -> Result<(), Unenforceable> {
        if let Err(refusal) = self.start_by_toolstack() {
            self.refusal = Some(refusal);
            self.state = DomainState::Refused;
            return Err(refusal);
        }
        self.refusal = None;
        Ok(())
    }

    /// The same start rule for `domain_start`: a refusal changes nothing (the toolstack is
    /// told, and the domain stays created).
    pub fn start_by_toolstack(&mut self) -> Result<(), Unenforceable> {
        self.record.start()?;
        if matches!(self.state, DomainState::Refused | DomainState::Created) {
            self.state = DomainState::Runnable;
        }
        Ok(())
    }

    /// The crate's record of it, as the hypercall dispatcher sees it.
    pub fn record(&self) -> &DomainRecord {
        &self.record
    }

    /// Takes the policy of an accepted `set_cpu_policy` with its levelling, and recomputes
    /// the CPUID answers its traps use from it, the vCPU's dynamic rows too (Xen's
    /// `domain_cpu_policy_changed`).
    pub fn apply(&mut self, update: PolicyUpdate) {
        self.record.apply(update);
        self.cpuid_table = CpuidTable::new(self.record.policy(), &self.cpuid_context.domain);
        self.cpuid_table
            .refresh(&mut self.cpuid_overlay, &self.cpuid_context);
    }

    /// Its precomputed levelling.
    pub fn levelling(&self) -> &DomainLevelling {
        self.record.levelling()
    }

    /// Its vCPU's virtual CR4.OSXSAVE (a PV kernel's own; hardware must not fast-forward
    /// Xen's while it runs).
    pub fn cr4_osxsave(&self) -> bool {
        self.cpuid_context.state.is_some_and(|s| s.cr4_osxsave)
    }

    /// What the crate's trap emulation needs about this vCPU, trapping at `cpl`.
    pub fn trap_context(&self, cpl: u8) -> TrapContext<'_> {
        TrapContext {
            cpuid: &self.cpuid_table,
            overlay: &self.cpuid_overlay,
            guest: &self.cpuid_context,
            cpl,
            virtual_faulting: false,
        }
    }

    /// The domain's name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// Its domain id.
    pub fn domid(&self) -> DomId {
        self.cpuid_context.domain.domid
    }

    /// It is the control domain (dom0), which alone may use the sysctl and domctl hypercalls.
    pub fn is_control(&self) -> bool {
        self.cpuid_context.domain.hardware_domain
    }

    /// What the domain's CPUID `leaf`/`subleaf` returns when it reaches Xen through `entry`
    /// while this vCPU runs: `guest_cpuid` with the vCPU's live state.
    pub fn answer_cpuid(&self, leaf: u32, subleaf: u32, entry: CpuidEntry) -> CpuidRegs {
        guest_cpuid_entered(
            self.record.policy(),
            leaf,
            subleaf,
            &self.cpuid_context,
            entry,
        )
    }

    /// Counts a CPUID that reached Xen by a trap and was emulated.
    pub fn count_trapped(&mut self) {
        self.trapped += 1;
    }

    /// What the domain should have seen for `leaf`/`subleaf`, where one value is promised.
    fn expected(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        match self.spec.oracle {
            // The boot read is the boot CPU's; another CPU's own values (APIC IDs) differ,
            // so there dom0 is judged against CPL0 CPUID on that CPU, now.
            Oracle::HostCpl0
                if crate::percpu::id() == 0 && xen::read_at_boot(&self.boot, leaf, subleaf) =>
            {
                self.boot.leaf(leaf, subleaf)
            }
            Oracle::HostCpl0 => Some(hardware::cpuid(leaf, subleaf)),
            Oracle::Policy(entry) => Some(self.answer_cpuid(leaf, subleaf, entry)),
            Oracle::Levelled if self.levelling().faulting() => {
                Some(self.answer_cpuid(leaf, subleaf, CpuidEntry::Fault))
            }
            Oracle::Levelled => None,
        }
    }

    /// Records the featureset words a native CPUID result carries (leaves the CPU reported at
    /// boot only: past its maxima the hardware repeats other leaves).
    fn record_words(&mut self, leaf: u32, subleaf: u32, got: CpuidRegs) {
        if !xen::read_at_boot(&self.boot, leaf, subleaf) {
            return;
        }
        for (word, home) in WORD_HOMES.iter().enumerate() {
            if let WordHome::Cpuid {
                leaf: l,
                subleaf: s,
                reg,
            } = *home
                && (l, s) == (leaf, subleaf)
            {
                self.seen.set_word(word, reg.get(&got));
                self.seen_words |= 1 << word;
            }
        }
    }

    /// The path the domain's CPUIDs take, as a word for check names.
    fn path(&self) -> &'static str {
        match &self.spec.program {
            Kind::Walk { flags } if flags & WALK_FORCED != 0 => "forced",
            Kind::Walk { .. } => "native",
            Kind::Probe { .. } => "probe",
            Kind::Raw => "program",
        }
    }

    /// `cpuid_result`: judges what the domain saw.
    pub fn cpuid_result(&mut self, leaf: u32, subleaf: u32, got: CpuidRegs) {
        self.results += 1;
        if self.spec.oracle == Oracle::Levelled || self.view {
            self.record_words(leaf, subleaf, got);
        }
        let Some(expected) = self.expected(leaf, subleaf) else {
            return;
        };
        if self.spec.per_result_checks {
            checks::cpuid(
                format_args!(
                    "{}/{}/{}/{}",
                    self.scenario,
                    self.name(),
                    self.path(),
                    Leaf(leaf, subleaf)
                ),
                expected,
                got,
            );
        }
        if expected != got {
            self.mismatches += 1;
            self.first_mismatch
                .get_or_insert((leaf, subleaf, expected, got));
        }
    }

    /// `report`: a check the guest judged itself.
    pub fn report(&mut self, id: u64, ok: bool, detail: [u64; 2]) {
        let what = Report::from_id(id).map_or("unknown-report", Report::name);
        checks::check(
            format_args!("{}/{}/{what}", self.scenario, self.name()),
            ok,
            format_args!(
                "guest reported failure (report {id}, details {:#x} {:#x})",
                detail[0], detail[1]
            ),
        );
    }

    /// A fault in ring 3 that nothing emulated: the end of the domain. For the isolation
    /// probe a #PF is the expected outcome and passes its check; anything else is a crash.
    pub fn fault(&mut self, frame: &TrapFrame) {
        // SAFETY: reading CR2 has no side effect.
        let cr2 = unsafe { x86::controlregs::cr2() } as u64;
        if let Kind::Probe { address } = self.spec.program {
            let ok = frame.vector == vector::PF && cr2 == address;
            checks::check(
                format_args!(
                    "{}/{}/kernel-page-from-ring3-faults",
                    self.scenario,
                    self.name()
                ),
                ok,
                format_args!(
                    "vector {} cr2 {cr2:#x}, expected #PF at {address:#x}",
                    frame.vector
                ),
            );
            self.state = DomainState::Exited;
            return;
        }
        checks::fail(
            format_args!("{}/{}/crashed", self.scenario, self.name()),
            format_args!(
                "vector {} error {:#x} rip {:#x} rsp {:#x} cr2 {cr2:#x}",
                frame.vector, frame.error, frame.rip, frame.rsp
            ),
        );
        self.state = DomainState::Crashed;
    }

    /// `exit`: the domain is done.
    pub fn exit(&mut self, code: u64) {
        if code != 0 {
            checks::fail(
                format_args!("{}/{}/exit", self.scenario, self.name()),
                format_args!("exit code {code}"),
            );
        }
        self.state = DomainState::Exited;
    }

    /// After the run: the domain's summary checks (every result arrived; and, where results
    /// were not checked one by one, that they all matched).
    pub fn finish(&self) {
        let name = Prefix(self.scenario, self.name());
        if let Some(refusal) = self.refusal {
            checks::fail(
                format_args!("{name}/started"),
                format_args!(
                    "refused (fail closed): {refusal}; a scenario that runs it must ask for best effort"
                ),
            );
            return;
        }
        if self.expected_results == 0 {
            return;
        }
        if self.view {
            crate::println!(
                "view {name}: {}; words {:#x}",
                self.seen.xen_words(),
                self.seen_words
            );
        }
        checks::check(
            format_args!("{name}/all-results-reported"),
            self.state == DomainState::Exited && self.results == self.expected_results,
            format_args!(
                "{} of {} results, domain {:?}",
                self.results, self.expected_results, self.state
            ),
        );
        // Forced-emulation walks trap on every CPUID; native ones exactly when faulting is on
        // for the domain (a levelled PV guest on a faulting CPU), else never.
        let forced = matches!(self.spec.program, Kind::Walk { flags } if flags & WALK_FORCED != 0);
        let expected_traps = if forced || self.levelling().faulting() {
            self.expected_results
        } else {
            0
        };
        checks::check(
            format_args!("{name}/{}-cpuids-trapped", self.path()),
            self.trapped == expected_traps,
            format_args!("{} CPUIDs trapped, expected {expected_traps}", self.trapped),
        );
        if self.spec.oracle == Oracle::Levelled {
            self.finish_levelled();
        }
        // Levelled native CPUID on masks promises features, not whole leaves.
        let per_leaf = self.spec.oracle != Oracle::Levelled || self.levelling().faulting();
        if self.spec.per_result_checks || !per_leaf {
            return;
        }
        match self.first_mismatch {
            None => checks::pass_with(
                format_args!("{name}/{}-cpuid", self.path()),
                format_args!("{} results, all as expected", self.results),
            ),
            Some((leaf, subleaf, expected, got)) => checks::fail(
                format_args!("{name}/{}-cpuid", self.path()),
                format_args!(
                    "{} of {} results wrong; first {}: expected {} got {}",
                    self.mismatches,
                    self.results,
                    Leaf(leaf, subleaf),
                    Regs(expected),
                    Regs(got)
                ),
            ),
        }
    }

    /// [`Oracle::Levelled`]: what the domain's native CPUIDs showed, against its policy and
    /// its fail-closed list (the crate's `levelled_guests_see_their_policy…` test, here on
    /// the real instructions).
    fn finish_levelled(&self) {
        let name = Prefix(self.scenario, self.name());
        let l = self.levelling();
        let mut words = Featureset::EMPTY;
        for word in 0..WORD_HOMES.len() {
            if self.seen_words & 1 << word != 0 {
                words.set_word(word, !0);
            }
        }
        // OSXSAVE, OSPKE, APIC follow live state, HTT/X2APIC/CMP_LEGACY the host's topology:
        // native CPUID shows them whatever the policy says.
        let exposed = Featureset::of(&xen_levelling::levelling::domain::EXPOSED_BY_DESIGN);
        let wanted = self.record.policy().featureset() & words;
        let leaked = (self.seen - wanted - exposed) & KNOWN & words;
        let hidden = (wanted - self.seen - exposed) & KNOWN & words;
        checks::noted(
            format_args!("{name}/native-leaks-exactly-the-fail-closed-list"),
            leaked == l.unenforceable() & words,
            format_args!(
                "shown but not in its policy: [{}]; fail-closed list ({}): [{}]",
                leaked.names(),
                if self.record.best_effort() && !l.unenforceable().is_empty() {
                    "started with best effort"
                } else {
                    "empty"
                },
                l.unenforceable().names()
            ),
        );
        checks::noted(
            format_args!("{name}/native-hides-only-not-shown"),
            hidden == l.not_shown() & words,
            format_args!(
                "in its policy but not shown: [{}]; expected [{}]",
                hidden.names(),
                l.not_shown().names()
            ),
        );
        if let Mechanism::Masking(masks) = l.mechanism() {
            // On every word a mask covers, nothing beyond the policy shows.
            let mut extra = Featureset::EMPTY;
            for (kind, _) in masks.kinds() {
                for &word in kind.words() {
                    extra.set_word(word, leaked.word(word));
                }
            }
            checks::noted(
                format_args!("{name}/masked-words-are-the-policy"),
                extra.is_empty(),
                format_args!("leaked through a mask: [{}]", extra.names()),
            );
        }
    }
}
