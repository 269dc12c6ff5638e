//! The scheduler: runs the ring-3 domains round robin on this CPU until all have finished.
//! Each CPU has its own run queue ([`add_on`] fills another CPU's before it runs; [`run`]
//! runs the calling CPU's), its own saved kernel stack pointer, and its own levelling state:
//! domains switch on all CPUs concurrently, each CPU touching only its own slot.
//!
//! Switching is cooperative (interrupts stay off): a domain gives up the CPU by the `yield`
//! or `exit` hypercall or by a fault. A switch happens inside the trap handler: the running
//! domain's registers are saved from the trap frame, [`Scheduler::switch_to`] calls the
//! levelling hook (`levelling::switch_to`) and loads the next domain's CR3, and the next
//! domain's registers are put in the same frame, so the handler's `iretq` lands in the next
//! domain. When a domain stops for good the CPU passes through idle first (as Xen's does while
//! it tears a vCPU down), which must leave the levelling MSRs alone.
//!
//! [`add`] starts the domain (`Domain::start`, the fail-closed rule): a refused domain stays
//! in its slot, never runs, and reports its refusal when the run finishes.
//!
//! The scheduler is also the domain registry of the hypercall dispatcher: it implements the
//! crate's `Domains` over its own domains ([`with_registry`]), so a domain the toolstack
//! creates ([`add_created`]) is one the scheduler runs once the toolstack starts it.
//!
//! [`run`] enters the first domain with `xl_enter_user`, which saves the kernel's
//! callee-saved registers and stack pointer; when the last domain finishes, the trap handler
//! calls `xl_resume_kernel`, which returns from `xl_enter_user` as if it were a plain call.

use core::arch::global_asm;
use core::mem::offset_of;

use xen_levelling::abi::domain::{Domain as DomainRecord, DomainError, Domains, PolicyUpdate};

use crate::domain::{DomId, Domain, DomainState, UserContext};
use crate::gdt::{USER_CS, USER_DS};
use crate::idt::{Gprs, TrapFrame};
use crate::percpu::{self, MAX_CPUS};
use crate::sync::KernelCell;
use crate::{levelling, paging, println};

/// The most domains one run holds (the `abi` scenario's dom0, unprivileged guest and three
/// toolstack-created guests among them).
pub const MAX_DOMAINS: usize = 8;

/// The domains of the current run and the switch bookkeeping.
pub struct Scheduler {
    domains: [Option<Domain>; MAX_DOMAINS],
    current: Option<usize>,
    /// How many times the running domain changed (including entering the first one and
    /// leaving the last one for Xen).
    pub transitions: u64,
}

static SCHED: KernelCell<[Scheduler; MAX_CPUS]> = KernelCell::new(
    [const {
        Scheduler {
            domains: [const { None }; MAX_DOMAINS],
            current: None,
            transitions: 0,
        }
    }; MAX_CPUS],
);

/// Each CPU's kernel stack pointer `xl_enter_user` saved, for `xl_resume_kernel`.
static KERNEL_RESUME_RSP: KernelCell<[u64; MAX_CPUS]> = KernelCell::new([0; MAX_CPUS]);

/// This CPU's scheduler.
///
/// # Safety
///
/// The caller must not hold another reference from this function: the main flow uses it
/// only while no domain runs, and trap handlers (which run while the main flow is suspended
/// in `xl_enter_user`) use one at a time and drop it before the `iretq`. Other CPUs never
/// touch this CPU's slot while it runs ([`add_on`] fills it before).
unsafe fn scheduler() -> &'static mut Scheduler {
    // SAFETY: exclusive by the caller's contract (interrupts off, one slot per CPU).
    unsafe { &mut (*SCHED.get())[percpu::id()] }
}

/// This CPU's slot for the saved kernel stack pointer.
fn resume_slot() -> *mut u64 {
    // SAFETY: only the address of this CPU's slot is taken.
    unsafe { &raw mut (*KERNEL_RESUME_RSP.get())[percpu::id()] }
}

/// The dispatcher's view: each domain's crate record, by id.
impl Domains for Scheduler {
    fn domain(&self, domid: u16) -> Option<&DomainRecord> {
        self.find(domid).map(Domain::record)
    }

    fn set_policy(&mut self, domid: u16, update: PolicyUpdate) -> Result<(), DomainError> {
        self.find_mut(domid)
            .ok_or(DomainError::NoSuchDomain(domid))?
            .apply(update);
        Ok(())
    }
}

impl Scheduler {
    /// The domain `domid` of this run.
    pub fn find(&self, domid: DomId) -> Option<&Domain> {
        self.domains.iter().flatten().find(|d| d.domid() == domid)
    }

    /// The domain `domid` of this run, for changing.
    pub fn find_mut(&mut self, domid: DomId) -> Option<&mut Domain> {
        self.domains
            .iter_mut()
            .flatten()
            .find(|d| d.domid() == domid)
    }

    /// A slot is free.
    pub fn has_room(&self) -> bool {
        self.domains.iter().any(Option::is_none)
    }

    /// The next runnable domain after `after` in round-robin order (`after` itself last).
    /// Inlined into every switch: as a call it cost 21 more instructions a switch.
    #[inline(always)]
    fn next_runnable(&self, after: Option<usize>) -> Option<usize> {
        let start = after.map_or(0, |i| i + 1);
        (start..start + MAX_DOMAINS)
            .map(|i| i % MAX_DOMAINS)
            .find(|&i| matches!(&self.domains[i], Some(d) if d.state == DomainState::Runnable))
    }

    /// Makes `next` the running domain (`None`: Xen itself): the levelling hook, then CR3.
    /// Nothing happens if it already runs.
    fn switch_to(&mut self, next: Option<usize>) {
        if next == self.current {
            return;
        }
        self.transitions += 1;
        let domain = next.and_then(|i| self.domains[i].as_ref());
        levelling::switch_to(domain);
        paging::switch_address_space(domain.map_or_else(paging::kernel_cr3, |d| d.space.cr3));
        self.current = next;
    }

    /// The running domain.
    fn current_domain(&mut self) -> &mut Domain {
        let index = self.current.expect("a domain is running");
        self.domains[index]
            .as_mut()
            .expect("the running domain exists")
    }

    /// The running domain stopped (exited or crashed): run the next one in `frame`, or go
    /// back to the kernel when none is left.
    fn run_next_or_resume_kernel(&mut self, frame: &mut TrapFrame) {
        levelling::switch_to_idle();
        match self.next_runnable(self.current) {
            Some(next) => {
                self.switch_to(Some(next));
                self.current_domain().context.restore(frame);
            }
            None => {
                self.switch_to(None);
                // SAFETY: a domain ran, so `run` is suspended in `xl_enter_user`, whose saved
                // stack and registers are intact (traps run on the TSS stack).
                unsafe { xl_resume_kernel(resume_slot()) }
            }
        }
    }
}

/// Adds a domain to the next run and starts it; returns its slot. A domain the fail-closed
/// rule refuses (`Domain::start`) keeps its slot but never runs; it reports the refusal as a
/// failed check when the run finishes.
///
/// # Panics
///
/// If the run already has [`MAX_DOMAINS`] domains.
pub fn add(domain: Domain) -> usize {
    add_on(percpu::id(), domain)
}

/// [`add`] on CPU `cpu`'s run queue: another CPU's only before `smp::run_on` hands it over
/// (the boot CPU fills the APs' queues), this CPU's from the main flow or from a trap handler
/// holding no other scheduler reference (`domain_start`).
pub fn add_on(cpu: usize, mut domain: Domain) -> usize {
    if let Err(refusal) = domain.start() {
        println!("sched: {} refused (fail closed): {refusal}", domain.name());
    }
    // SAFETY: another CPU `cpu` does not touch its queue until it is handed the work
    // (release/acquire in `smp::run_on`); on this CPU, either the main flow while no domain
    // runs or a trap handler whose `with_current` reference has ended (caller's contract).
    let s = unsafe { &mut (*SCHED.get())[cpu] };
    let slot = s
        .domains
        .iter()
        .position(Option::is_none)
        .expect("too many domains");
    s.domains[slot] = Some(domain);
    slot
}

/// A domain the toolstack created (`Domain::created`): in the registry, not started. `None`
/// if no slot is free (the caller checks [`Scheduler::has_room`] before building it).
pub fn add_created(domain: Domain) -> Option<usize> {
    // SAFETY: a trap handler holding no other scheduler reference (the caller's contract).
    let s = unsafe { scheduler() };
    let slot = s.domains.iter().position(Option::is_none)?;
    s.domains[slot] = Some(domain);
    Some(slot)
}

/// Runs `f` on this CPU's domains as the dispatcher's registry (from a trap handler that
/// holds no other scheduler reference, or the main flow while no domain runs).
pub fn with_registry<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    // SAFETY: one reference at a time (the caller's contract); `f` does not call back into
    // the scheduler.
    f(unsafe { scheduler() })
}

/// Runs every added domain until each has exited or crashed, then calls each one's
/// `finish` and removes them all. Returns to Xen (kernel CR3, levelling hook with `None`).
pub fn run() {
    run_then(|_| ());
}

/// [`run`], letting `inspect` look at the domains (the registry as the run left it) before
/// they are removed.
pub fn run_then<R>(inspect: impl FnOnce(&Scheduler) -> R) -> R {
    let first = {
        // SAFETY: main flow, no domain runs; the reference ends before entering ring 3.
        let s = unsafe { scheduler() };
        let Some(first) = s.next_runnable(None) else {
            // Nothing ran: the domains stay for the next run.
            return inspect(s);
        };
        s.switch_to(Some(first));
        s.current_domain().context
    };
    // SAFETY: `first` holds a valid ring-3 context in the domain's address space (now in
    // CR3); the call returns through `xl_resume_kernel` once no domain is runnable.
    unsafe { xl_enter_user(&first, resume_slot()) };
    // SAFETY: main flow again; no domain runs.
    let s = unsafe { scheduler() };
    let seen = inspect(s);
    for slot in &mut s.domains {
        if let Some(domain) = slot.take() {
            domain.finish();
        }
    }
    s.current = None;
    seen
}

/// (domain transitions, levelling hook calls) since boot.
pub fn switch_counts() -> (u64, u64) {
    // SAFETY: main flow, no domain runs; values are copied out.
    let s = unsafe { scheduler() };
    (s.transitions, levelling::switch_calls())
}

/// Runs `f` on the running domain (from a trap handler).
pub fn with_current<R>(f: impl FnOnce(&mut Domain) -> R) -> R {
    // SAFETY: trap context, one reference at a time; `f` does not call back into the scheduler.
    f(unsafe { scheduler() }.current_domain())
}

/// [`with_current`] from a trap whose frame lies at `frame` (on this CPU's trap stack, where
/// the CPU pushed it): the CPU is found from that address, without taking one of a local.
pub fn with_current_at<R>(frame: u64, f: impl FnOnce(&mut Domain) -> R) -> R {
    let cpu = percpu::id_at(frame);
    // SAFETY: trap context, one reference at a time; `f` does not call back into the
    // scheduler. `cpu` is this CPU's index, so the slot is this CPU's own.
    let s = unsafe { &mut (*SCHED.get())[cpu] };
    // A trap from ring 3 comes from the running domain: `current` names it, and its slot
    // holds it until the end of the run (checked in debug builds).
    debug_assert!(
        s.current
            .is_some_and(|i| i < MAX_DOMAINS && s.domains[i].is_some())
    );
    // SAFETY: as just stated, `current` is `Some(i)` with `i < MAX_DOMAINS` and
    // `domains[i]` is `Some` whenever a ring-3 trap reaches here.
    let domain = unsafe {
        let i = s.current.unwrap_unchecked();
        s.domains.get_unchecked_mut(i).as_mut().unwrap_unchecked()
    };
    f(domain)
}

/// `yield`: save the running domain from `frame` and put the next runnable one in it.
pub fn yield_current(frame: &mut TrapFrame) {
    // SAFETY: trap context, one reference at a time.
    let s = unsafe { scheduler() };
    let current = s.current;
    s.current_domain().context.save(frame);
    if let Some(next) = s.next_runnable(current) {
        s.switch_to(Some(next));
        s.current_domain().context.restore(frame);
    }
}

/// `exit(code)`: the running domain is done.
pub fn exit_current(frame: &mut TrapFrame, code: u64) {
    // SAFETY: trap context, one reference at a time.
    let s = unsafe { scheduler() };
    s.current_domain().exit(code);
    s.run_next_or_resume_kernel(frame);
}

/// A fault in ring 3 that nothing emulated.
pub fn guest_fault(frame: &mut TrapFrame) {
    // SAFETY: trap context, one reference at a time.
    let s = unsafe { scheduler() };
    s.current_domain().fault(frame);
    s.run_next_or_resume_kernel(frame);
}

global_asm!(
    r#"
    .pushsection .text.xl_sched, "ax"
    # xl_enter_user(context: *const UserContext, resume: *mut u64): save the kernel's
    # callee-saved registers and RSP (in *resume), then iretq into ring 3 with every register
    # from the context.
    .global xl_enter_user
xl_enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov qword ptr [rsi], rsp
    push {user_ss}
    push qword ptr [rdi + {rsp}]
    push qword ptr [rdi + {rflags}]
    push {user_cs}
    push qword ptr [rdi + {rip}]
    mov r15, qword ptr [rdi + {r15}]
    mov r14, qword ptr [rdi + {r14}]
    mov r13, qword ptr [rdi + {r13}]
    mov r12, qword ptr [rdi + {r12}]
    mov r11, qword ptr [rdi + {r11}]
    mov r10, qword ptr [rdi + {r10}]
    mov r9, qword ptr [rdi + {r9}]
    mov r8, qword ptr [rdi + {r8}]
    mov rbp, qword ptr [rdi + {rbp}]
    mov rsi, qword ptr [rdi + {rsi}]
    mov rdx, qword ptr [rdi + {rdx}]
    mov rcx, qword ptr [rdi + {rcx}]
    mov rbx, qword ptr [rdi + {rbx}]
    mov rax, qword ptr [rdi + {rax}]
    mov rdi, qword ptr [rdi + {rdi}]
    iretq

    # xl_resume_kernel(resume: *const u64): back onto the stack xl_enter_user saved, and
    # return from it.
    .global xl_resume_kernel
xl_resume_kernel:
    mov rsp, qword ptr [rdi]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .popsection
    "#,
    user_ss = const USER_DS,
    user_cs = const USER_CS,
    rsp = const offset_of!(UserContext, rsp),
    rflags = const offset_of!(UserContext, rflags),
    rip = const offset_of!(UserContext, rip),
    r15 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r15),
    r14 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r14),
    r13 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r13),
    r12 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r12),
    r11 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r11),
    r10 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r10),
    r9 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r9),
    r8 = const offset_of!(UserContext, gprs) + offset_of!(Gprs, r8),
    rbp = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rbp),
    rdi = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rdi),
    rsi = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rsi),
    rdx = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rdx),
    rcx = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rcx),
    rbx = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rbx),
    rax = const offset_of!(UserContext, gprs) + offset_of!(Gprs, rax),
);

unsafe extern "C" {
    /// Enters ring 3 with `context`, saving the kernel stack in `*resume`; returns when
    /// `xl_resume_kernel(resume)` runs.
    fn xl_enter_user(context: *const UserContext, resume: *mut u64);
    /// Returns from the pending `xl_enter_user` that saved `*resume`.
    fn xl_resume_kernel(resume: *const u64) -> !;
}
