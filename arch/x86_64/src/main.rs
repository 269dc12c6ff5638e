//! `xl-kernel`: the test hypervisor. A small bare-metal kernel that plays Xen on QEMU so that
//! `xen-levelling` runs where guests really execute CPUID.
//!
//! It boots through PVH, builds the host policies from the real CPU through
//! [`hardware::NativeHardware`], runs dom0 and PV guests in ring 3 (each in its own address
//! space, scheduled round robin, talking to the kernel through the `int 0x82` hypercall
//! gate), runs HVM guests under AMD SVM, and checks that each sees exactly the CPUID it
//! should. One scenario per boot, chosen on the command line; the result leaves through
//! `isa-debug-exit` (33 = pass). `cargo xtask qemu` builds and boots it.
//!
//! | module | what |
//! |---|---|
//! | [`boot`] | PVH note, 32-bit entry, long mode |
//! | [`gdt`], [`idt`], [`traps`] | descriptors, per-CPU TSS/IST, trap stubs and dispatch |
//! | [`smp`], [`percpu`] | AP bring-up (MADT, INIT-SIPI-SIPI, trampoline), CPU index, work hand-off |
//! | [`extable`], [`hardware`] | exception fixups; the crate's `Hardware` on real instructions |
//! | [`paging`] | kernel identity map, per-domain address spaces |
//! | [`serial`], [`exit`], [`cmdline`], [`checks`] | console, QEMU exit, command line, check lines |
//! | [`xen`] | the host: raw CPUID → system policies |
//! | [`domain`], [`sched`], [`hypercall`] | ring-3 domains, the scheduler, the gate |
//! | [`emulate`], [`levelling`], [`userprobe`] | the crate's trap emulation and levelling mechanism; CPL 3 CPUID for its probe |
//! | [`svm`], [`hvm`] | SVM world switch; the HVM guest and its exit handler |
//! | [`guest`] | the guest programs and the walk list they read |
//! | [`shim`] | the silicon shim: an L0 that runs this kernel on a modelled CPU (`shim=<dump>`) |
//! | [`scenarios`] | `xen-dom0`, `pv-forced`, `hvm`, `switch`, `pv-levelled`, `abi` |

#![no_std]
#![no_main]

mod boot;
mod checks;
mod cmdline;
mod domain;
mod emulate;
mod exit;
mod extable;
mod gdt;
mod guest;
mod hardware;
mod hvm;
mod hypercall;
mod idt;
mod levelling;
mod paging;
mod percpu;
mod scenarios;
mod sched;
mod serial;
mod shim;
mod smp;
mod svm;
mod sync;
mod traps;
mod userprobe;
mod xen;

use cmdline::Cmdline;

/// The 64-bit entry from `boot.rs`, on the boot stack, with the `hvm_start_info` address.
/// With `shim=<dump>` on the command line this CPU becomes the silicon shim, which runs the
/// kernel above it from [`kernel_main_l1`].
extern "C" fn kernel_main(start_info: u32) -> ! {
    init_cpu();
    let cmdline = Cmdline::from_start_info(start_info);
    if let Some(profile) = cmdline.value("shim") {
        shim::run(profile, start_info)
    }
    kernel(&cmdline, start_info)
}

/// The kernel's entry above the silicon shim (the shim's guest starts here, on its own
/// stack, with the same `hvm_start_info`).
pub extern "C" fn kernel_main_l1(start_info: u32) -> ! {
    shim::enter_guest();
    init_cpu();
    kernel(&Cmdline::from_start_info(start_info), start_info)
}

/// Console, descriptors, traps, paging.
fn init_cpu() {
    serial::init();
    gdt::init(0);
    idt::init();
    paging::init();
}

/// Xen: the host probe, the application processors (above the shim each AP enters its own
/// L0 first, `shim::ap_entry`), then the scenario the command line names.
fn kernel(cmdline: &Cmdline, start_info: u32) -> ! {
    let (nx, smep, smap) = paging::protections();
    println!(
        "xl-kernel: up{}; cmdline `{}`; NX {} SMEP {} SMAP {}; {} exception-table sites",
        if shim::active() {
            " above the silicon shim"
        } else {
            ""
        },
        cmdline.as_str(),
        on_off(nx),
        on_off(smep),
        on_off(smap),
        extable::len()
    );
    let host = xen::Host::probe(cmdline);
    smp::start_aps(start_info);
    scenarios::run(host, cmdline);
    checks::finish()
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit::exit(exit::ExitCode::Panic)
}
