//! The HVM guest: a 64-bit guest at CPL0 under SVM that walks its CPUID list and reports each
//! result with VMMCALL, and the #VMEXIT handler that answers its CPUIDs from its policy.
//!
//! The guest runs `xl_hvm_walk` (kernel code) on the host's own page tables and descriptors
//! (CR3, GDTR, IDTR copied; nested paging off), the set-up qemu-facts.md section 10 verified:
//! enough for a guest whose only job is to execute CPUID, and trusted because it is ours.
//! Every exception is intercepted, so a guest fault becomes a failed check rather than a
//! trip through the host's IDT in guest mode. No NRIPS under QEMU: the handler adds 2 to RIP
//! for CPUID and 3 for VMMCALL.
//!
//! HVM guests need nothing from the levelling switch (every CPUID exits), so this loop does
//! not call `Levelling::switch_to`; Xen's `ctxt_switch_levelling` likewise only handles PV.

use xen_levelling::policy::guest::{
    CpuidEntry, CpuidOverlay, CpuidTable, GuestContext, GuestDomain, VcpuState, guest_cpuid,
};
use xen_levelling::{CpuPolicy, CpuidRegs};

use crate::checks::{self, Leaf};
use crate::emulate::{self, HvmCpuid};
use crate::guest::programs::{self, xl_hvm_walk};
use crate::guest::{WalkList, WalkPage};
use crate::hypercall::{self, ENOSYS, Hypercall, Report};
use crate::idt::Gprs;
use crate::paging;
use crate::svm::{self, Vmcb, exit, offset};
use crate::sync::{KernelCell, Stack, stack_top};

/// Bound on exits per run: a guest stuck in a loop of exits fails instead of hanging.
const MAX_EXITS: u64 = 100_000;

static GUEST_VMCB: KernelCell<Vmcb> = KernelCell::new(Vmcb::ZERO);
static GUEST_STACK: KernelCell<Stack<{ 16 * 1024 }>> = KernelCell::new(Stack::new());
static GUEST_WALK: KernelCell<WalkPage> = KernelCell::new(WalkPage::EMPTY);

/// CR4.OSXSAVE (bit 18) and CR4.PKE (bit 22).
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;
/// EFER.LMA (MSR C000_0080h[10]).
const EFER_LMA: u64 = 1 << 10;

/// One HVM guest run: its policy, what `guest_cpuid` knows of it, and the tallies.
struct HvmRun {
    scenario: &'static str,
    policy: CpuPolicy,
    /// The CPUID answers of `policy`, computed once for the run.
    table: CpuidTable,
    /// The vCPU as the overlay was last computed for it.
    guest: GuestContext,
    /// The vCPU's answers to the table's rows that follow its state.
    overlay: CpuidOverlay,
    /// The VMCB's CR4 and EFER bits the overlay was computed from ([`VCPU_BITS`]).
    overlay_bits: (u64, u64),
    cpuid_exits: u64,
    results: u64,
}

/// The CR4 and EFER bits the answers follow: CR4.OSXSAVE, CR4.PKE; EFER.LMA.
const VCPU_BITS: (u64, u64) = (CR4_OSXSAVE | CR4_PKE, EFER_LMA);

impl HvmRun {
    fn new(policy: CpuPolicy, domain: GuestDomain, host_cr4_osxsave: bool) -> HvmRun {
        let table = CpuidTable::new(&policy, &domain);
        let guest = GuestContext {
            domain,
            vcpu_id: 0,
            state: Some(VcpuState {
                entry: CpuidEntry::VmExit,
                cr4_osxsave: false,
                cr4_pke: false,
                // Unused for HVM: the trap context's CPL says whether the kernel asked.
                kernel_mode: true,
                host_cr4_osxsave,
                xcr0: 0x1, // XCR0 at reset: x87 only (the guest never writes it)
                xss: 0,
                // QEMU's IA32_APIC_BASE resets to 0xFEE00900: EN (bit 11) set.
                apic_enabled: true,
                long_mode: false,
            }),
        };
        HvmRun {
            scenario: "",
            policy,
            overlay: table.overlay(&guest),
            table,
            guest,
            overlay_bits: (0, 0),
            cpuid_exits: 0,
            results: 0,
        }
    }

    /// Brings the overlay up to the vCPU's state in `vmcb`. Nothing intercepts this guest's
    /// CR4 and EFER writes (XCR0, XSS and IA32_APIC_BASE it never writes), so each CPUID exit
    /// compares the bits the answers follow with those the overlay was computed from: two
    /// loads and a compare, and a refresh only when they moved.
    #[inline]
    fn follow_vcpu(&mut self, vmcb: &Vmcb) {
        let bits = (
            vmcb.get64(offset::CR4) & VCPU_BITS.0,
            vmcb.get64(offset::EFER) & VCPU_BITS.1,
        );
        if bits != self.overlay_bits {
            self.refresh(bits);
        }
    }

    /// The guest context read afresh from `vmcb`, for judging results: independent of what
    /// the overlay was computed from.
    fn live_context(&self, vmcb: &Vmcb) -> GuestContext {
        let (cr4, efer) = (vmcb.get64(offset::CR4), vmcb.get64(offset::EFER));
        let mut guest = self.guest;
        if let Some(state) = &mut guest.state {
            state.cr4_osxsave = cr4 & CR4_OSXSAVE != 0;
            state.cr4_pke = cr4 & CR4_PKE != 0;
            state.kernel_mode = vmcb.get8(offset::CPL) == 0;
            state.long_mode = efer & EFER_LMA != 0;
        }
        guest
    }

    #[inline(never)]
    fn refresh(&mut self, (cr4, efer): (u64, u64)) {
        if let Some(state) = &mut self.guest.state {
            state.cr4_osxsave = cr4 & CR4_OSXSAVE != 0;
            state.cr4_pke = cr4 & CR4_PKE != 0;
            state.long_mode = efer & EFER_LMA != 0;
        }
        self.table.refresh(&mut self.overlay, &self.guest);
        self.overlay_bits = (cr4, efer);
    }
}

/// Sets up the guest VMCB to run `program(page)` in 64-bit mode at CPL0.
fn init_vmcb(vmcb: &mut Vmcb, program: extern "C" fn(), page: u64) -> Gprs {
    // SAFETY: reading CR3 has no side effect.
    let cr3 = unsafe { x86::controlregs::cr3() };
    svm::init_cpl0_guest(
        vmcb,
        cr3,
        0,
        programs::address(program),
        stack_top(&GUEST_STACK),
    );
    vmcb.set32(offset::INTERCEPT_EXCEPTIONS, u32::MAX);
    // CPUID (bit 18) | HLT (bit 24) | SHUTDOWN (bit 31).
    vmcb.set32(offset::INTERCEPT_MISC1, 1 << 18 | 1 << 24 | 1 << 31);
    // VMRUN (bit 0, required) | VMMCALL (bit 1).
    vmcb.set32(offset::INTERCEPT_MISC2, 1 << 0 | 1 << 1);
    Gprs {
        rdi: page,
        ..Gprs::default()
    }
}

/// Runs an HVM guest with `policy` over `list` and checks every CPUID it saw (one check line
/// per result), then that every result arrived and each took exactly one CPUID exit.
/// `Err` if SVM cannot be turned on.
pub fn run_walk(
    scenario: &'static str,
    policy: CpuPolicy,
    domain: GuestDomain,
    host_cr4_osxsave: bool,
    list: &WalkList,
) -> Result<(), svm::SvmError> {
    let tag = 0x4800_0000 | u32::from(domain.domid);
    let fill = |page: &mut WalkPage| page.fill(list, 1, 0, tag);
    let (finished, run) = run_guest(
        scenario,
        xl_hvm_walk,
        policy,
        domain,
        host_cr4_osxsave,
        fill,
    )?;
    let expected = list.as_slice().len() as u64;
    checks::check(
        format_args!("{scenario}/hvm/all-results-reported"),
        finished && run.results == expected,
        format_args!("{} of {expected} results", run.results),
    );
    checks::check(
        format_args!("{scenario}/hvm/one-exit-per-cpuid"),
        run.cpuid_exits == expected,
        format_args!("{} CPUID exits for {expected} CPUIDs", run.cpuid_exits),
    );
    Ok(())
}

/// Runs an HVM guest with `policy` executing `program` (kernel code at CPL0, entered with
/// RDI = its walk page, which `fill` prepares) until it exits; true if it exited with 0. Its
/// CPUIDs are answered from `policy`; it reports through VMMCALL (`hypercall.rs`). `Err` if
/// SVM cannot be turned on.
pub fn run_program(
    scenario: &'static str,
    program: extern "C" fn(),
    policy: CpuPolicy,
    domain: GuestDomain,
    host_cr4_osxsave: bool,
    fill: impl FnOnce(&mut WalkPage),
) -> Result<bool, svm::SvmError> {
    run_guest(scenario, program, policy, domain, host_cr4_osxsave, fill).map(|(done, _)| done)
}

/// [`run_program`], with the run's tallies.
fn run_guest(
    scenario: &'static str,
    program: extern "C" fn(),
    policy: CpuPolicy,
    domain: GuestDomain,
    host_cr4_osxsave: bool,
    fill: impl FnOnce(&mut WalkPage),
) -> Result<(bool, HvmRun), svm::SvmError> {
    svm::enable()?;
    // SAFETY: the HVM statics are used by this function only, which does not re-enter.
    let (vmcb, page) = unsafe { (&mut *GUEST_VMCB.get(), &mut *GUEST_WALK.get()) };
    fill(page);
    // The guest runs on the kernel's tables, which map this page supervisor-only.
    paging::switch_address_space(paging::kernel_cr3());
    let mut gprs = init_vmcb(vmcb, program, page as *const WalkPage as u64);
    let mut run = HvmRun {
        scenario,
        ..HvmRun::new(policy, domain, host_cr4_osxsave)
    };
    let mut exits = 0;
    let finished = loop {
        // SAFETY: SVM is enabled; the VMCB describes our own walk program on the kernel's
        // tables, intercepting VMRUN, VMMCALL, CPUID, HLT, shutdown and every exception.
        unsafe { svm::run(vmcb, &mut gprs) };
        exits += 1;
        if exits > MAX_EXITS {
            checks::fail(
                format_args!("{scenario}/hvm/exits"),
                format_args!("more than {MAX_EXITS} exits"),
            );
            break false;
        }
        match handle_exit(&mut run, vmcb, &mut gprs) {
            Exit::Resume => {}
            Exit::Done => break true,
            Exit::Failed => break false,
        }
    };
    Ok((finished, run))
}

/// What the loop does after an exit.
enum Exit {
    Resume,
    Done,
    Failed,
}

/// Handles one #VMEXIT.
fn handle_exit(run: &mut HvmRun, vmcb: &mut Vmcb, gprs: &mut Gprs) -> Exit {
    let scenario = run.scenario;
    let code = vmcb.get64(offset::EXIT_CODE);
    let rip = vmcb.get64(offset::RIP);
    match code {
        exit::CPUID => {
            run.cpuid_exits += 1;
            let (leaf, subleaf) = (gprs.rax as u32, gprs.rcx as u32);
            let cpl = vmcb.get8(offset::CPL);
            run.follow_vcpu(vmcb);
            let ctx = emulate::hvm_context(&run.table, &run.overlay, &run.guest, cpl);
            match emulate::hvm_cpuid_exit(&ctx, leaf, subleaf, rip) {
                HvmCpuid::Emulated { regs, rip } => {
                    gprs.rax = u64::from(regs.a);
                    gprs.rbx = u64::from(regs.b);
                    gprs.rcx = u64::from(regs.c);
                    gprs.rdx = u64::from(regs.d);
                    vmcb.set64(offset::RIP, rip); // CPUID is 0F A2: the crate added 2
                    Exit::Resume
                }
                HvmCpuid::InjectGp => {
                    checks::fail(
                        format_args!("{scenario}/hvm/cpuid-exit"),
                        format_args!(
                            "#GP for a CPUID at {rip:#x}: the guest never enables faulting"
                        ),
                    );
                    Exit::Failed
                }
            }
        }
        exit::VMMCALL => {
            let call = Hypercall::decode(gprs);
            gprs.rax = 0;
            vmcb.set64(offset::RIP, rip.wrapping_add(3)); // VMMCALL is 0F 01 D9
            match call {
                Hypercall::CpuidResult {
                    leaf,
                    subleaf,
                    regs,
                } => {
                    cpuid_result(run, vmcb, leaf, subleaf, regs);
                    Exit::Resume
                }
                Hypercall::Report { id, ok, detail } => {
                    let what = Report::from_id(id).map_or("unknown-report", Report::name);
                    checks::check(
                        format_args!("{scenario}/hvm/{what}"),
                        ok,
                        format_args!("guest reported failure ({:#x} {:#x})", detail[0], detail[1]),
                    );
                    Exit::Resume
                }
                Hypercall::Yield => Exit::Resume,
                Hypercall::Exit { code: 0 } => Exit::Done,
                Hypercall::Exit { code } => {
                    checks::fail(
                        format_args!("{scenario}/hvm/exit"),
                        format_args!("exit code {code}"),
                    );
                    Exit::Failed
                }
                Hypercall::Nop => Exit::Resume,
                Hypercall::Bench { id, value } => {
                    hypercall::record_bench(id, value);
                    Exit::Resume
                }
                // The toolstack ABI is for PV dom0 only.
                _ => {
                    gprs.rax = ENOSYS;
                    Exit::Resume
                }
            }
        }
        code => {
            let what = match code {
                c if (exit::EXCEPTION_BASE..exit::EXCEPTION_BASE + 32).contains(&c) => "exception",
                exit::HLT => "hlt",
                exit::SHUTDOWN => "shutdown",
                exit::VMRUN => "nested VMRUN",
                exit::INVALID => "invalid VMCB state",
                _ => "unexpected exit",
            };
            checks::fail(
                format_args!("{scenario}/hvm/guest-ran-cleanly"),
                format_args!(
                    "{what}: exit code {code:#x} info1 {:#x} info2 {:#x} rip {rip:#x}",
                    vmcb.get64(offset::EXIT_INFO1),
                    vmcb.get64(offset::EXIT_INFO2)
                ),
            );
            Exit::Failed
        }
    }
}

/// Judges one reported CPUID result against `guest_cpuid` on the guest's policy.
fn cpuid_result(run: &mut HvmRun, vmcb: &Vmcb, leaf: u32, subleaf: u32, got: CpuidRegs) {
    run.results += 1;
    let expected = guest_cpuid(&run.policy, leaf, subleaf, &run.live_context(vmcb));
    checks::cpuid(
        format_args!("{}/hvm/vmexit/{}", run.scenario, Leaf(leaf, subleaf)),
        expected,
        got,
    );
}
