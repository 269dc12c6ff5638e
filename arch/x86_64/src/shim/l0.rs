//! The shim's L0 side: the model, the guest VMCB and MSR permission map, the exit loop.
//! See the module above for what is modelled.

use xen_levelling::CpuidRegs;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::hardware::{AMD_MSR_PASSCODE, Hardware, MsrFault};
use xen_levelling::levelling::msr::LEVELLING_MSRS;
use xen_levelling::policy::MSR_ARCH_CAPABILITIES;
use xen_levelling::silicon::SiliconModel;

use super::call;
use crate::cmdline::Cmdline;
use crate::exit::{ExitCode, exit};
use crate::idt::Gprs;
use crate::svm::{self, MSR_VM_CR, MSR_VM_HSAVE_PA, Vmcb, offset};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::percpu::MAX_CPUS;
use crate::sync::{KernelCell, Stack, stack_top};
use crate::{gdt, idt, paging, println};

/// The MSRs the model serves: every levelling MSR (the crate's `LEVELLING_MSRS`: faulting
/// enumeration and controls, Intel's V1/V2/V3 masks, AMD's HWCR and overrides) and
/// MSR_ARCH_CAPABILITIES.
const MODELLED_MSRS: [u32; LEVELLING_MSRS.len() + 1] = {
    let mut all = [MSR_ARCH_CAPABILITIES; LEVELLING_MSRS.len() + 1];
    let mut i = 0;
    while i < LEVELLING_MSRS.len() {
        all[i] = LEVELLING_MSRS[i];
        i += 1;
    }
    all
};
/// VM_CR reads as LOCK | SVMDIS, so the kernel above finds SVM disabled by firmware, and
/// VM_HSAVE_PA raises #GP: the kernel above gets no SVM.
const VM_CR_LOCK_SVMDIS: u64 = 1 << 3 | 1 << 4;

/// #GP(0): valid (31), error code valid (11), type 3 exception (10:8), vector 13.
const EVENTINJ_GP0: u64 = 0x8000_0b0d;
/// CR4.OSXSAVE (bit 18), CR4.SMEP (20), CR4.SMAP (21).
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_SMEP_SMAP: u64 = 1 << 20 | 1 << 21;

/// The MSR permission map: 2 bits per MSR (read, write) for 0-0x1FFF at 0x000,
/// 0xC0000000-0xC0001FFF at 0x800 and 0xC0010000-0xC0011FFF at 0x1000; the rest unused.
#[repr(C, align(4096))]
struct Msrpm([u8; 8192]);

static MSRPM: KernelCell<Msrpm> = KernelCell::new(Msrpm([0; 8192]));
/// Each CPU's guest VMCB (the kernel above on that CPU).
static L1_VMCBS: KernelCell<[Vmcb; MAX_CPUS]> = KernelCell::new([const { Vmcb::ZERO }; MAX_CPUS]);
/// The kernel's stack on the boot CPU while it runs above the shim (the shim keeps the boot
/// stack there; on an AP the kernel runs on its `smp` stack, the shim on [`AP_HOST_STACKS`]).
static L1_STACK: KernelCell<Stack<{ 128 * 1024 }>> = KernelCell::new(Stack::new());
/// The shim's own stack on each AP (slot 0 unused: the boot CPU's shim keeps the boot stack).
const AP_HOST_STACK: usize = 64 * 1024;
static AP_HOST_STACKS: KernelCell<[Stack<AP_HOST_STACK>; MAX_CPUS]> =
    KernelCell::new([const { Stack::new() }; MAX_CPUS]);
/// Each CPU's model: the levelling MSRs are per-CPU state, as on real hardware.
static MODELS: KernelCell<[Option<SiliconModel>; MAX_CPUS]> =
    KernelCell::new([const { None }; MAX_CPUS]);
/// The model at power-on, before the kernel above wrote anything: each AP's shim starts from
/// a copy (written by the boot CPU's shim before it enters the kernel, then only read).
static POWER_ON: KernelCell<Option<SiliconModel>> = KernelCell::new(None);
/// `shim_trace` was on the command line.
static TRACE: AtomicBool = AtomicBool::new(false);

/// The shim's counters, which the kernel above reads with VMMCALL.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    exits: u64,
    cpuid: u64,
    msr: u64,
    gp_injected: u64,
}

/// Boots the shim for `profile` (a `shim=` value) and runs the kernel above it; never
/// returns (the kernel above ends QEMU through the exit device).
pub fn run(profile: &str, start_info: u32) -> ! {
    let (stem, text) = match super::profile(profile) {
        Ok(found) => found,
        Err(error) => {
            println!("shim: `shim={profile}`: {error}; the embedded dumps:");
            for (stem, _) in super::dumps() {
                println!("shim:   {stem}");
            }
            exit(ExitCode::Fail)
        }
    };
    let dump = match Aida64Dump::parse(text) {
        Ok(dump) => dump,
        Err(error) => {
            println!("shim: {stem}: {error}");
            exit(ExitCode::Fail)
        }
    };
    let model = build_model(&dump);
    let trace = Cmdline::from_start_info(start_info)
        .as_str()
        .split_ascii_whitespace()
        .any(|word| word == "shim_trace");
    println!(
        "shim: L0 up; modelling {stem}: {} {}; levelling MSRs present: {}",
        dump.vendor(),
        dump.signature(),
        Present(&model)
    );
    TRACE.store(trace, Ordering::Relaxed);
    // SAFETY: the boot CPU's slots and the map are used by this function alone, which never
    // returns; the kernel above never touches them. POWER_ON is written here, before the
    // kernel above (the only one to start APs) runs, and only read afterwards.
    let (slot, vmcb, msrpm) = unsafe {
        *POWER_ON.get() = Some(model);
        (
            &mut (*MODELS.get())[0],
            &mut (*L1_VMCBS.get())[0],
            &mut *MSRPM.get(),
        )
    };
    let model = slot.insert(model);
    if let Err(error) = svm::enable() {
        println!("shim: {error}: the shim needs SVM (-cpu EPYC, or an Intel model with ,+svm)");
        exit(ExitCode::Fail)
    }
    for msr in MODELLED_MSRS
        .into_iter()
        .chain([MSR_VM_CR, MSR_VM_HSAVE_PA])
    {
        intercept(msrpm, msr);
    }
    let entry: extern "C" fn(u32) -> ! = crate::kernel_main_l1;
    let gprs = init_vmcb(
        vmcb,
        msrpm,
        entry as *const () as u64,
        stack_top(&L1_STACK),
        u64::from(start_info),
    );
    // The guest's GDTR and TR now name slot 0 (`kernel_main` loaded it); the shim moves to a
    // GDT, TSS and trap stacks of its own, so that the kernel above, which reloads slot 0,
    // never rewrites a descriptor or uses a stack the shim has loaded. The world switch
    // VMSAVEs this TR and VMRUN saves this GDTR as the host's on every entry.
    gdt::init(gdt::SHIM_SLOT);
    println!("shim: entering the kernel as an SVM guest");
    guest_loop(0, model, vmcb, gprs)
}

/// An AP's shim: where the trampoline enters on an AP the kernel above starts (`smp`), on
/// [`AP_HOST_STACKS`]`[cpu]`. It loads its own GDT, TSS and trap stacks
/// (`gdt::shim_slot(cpu)`), turns SVM on with this CPU's host save area, takes its own copy
/// of the model at power-on, and runs the kernel's AP entry (`smp::ap_main(cpu)`, on that AP's
/// kernel stack) as an SVM guest with its own VMCB.
pub extern "C" fn ap_entry(cpu: u64) -> ! {
    let cpu = cpu as usize;
    gdt::init(gdt::shim_slot(cpu));
    idt::load();
    paging::init();
    if let Err(error) = svm::enable() {
        println!("shim: cpu{cpu}: {error}");
        exit(ExitCode::Fail)
    }
    // SAFETY: slot `cpu` of the VMCBs and models is this AP's shim's alone; POWER_ON and the
    // map were written by the boot CPU's shim before the kernel above started any AP, and are
    // only read now.
    let (slot, vmcb, msrpm, power_on) = unsafe {
        (
            &mut (*MODELS.get())[cpu],
            &mut (*L1_VMCBS.get())[cpu],
            &*MSRPM.get(),
            *POWER_ON.get(),
        )
    };
    let Some(power_on) = power_on else {
        println!("shim: cpu{cpu}: no model");
        exit(ExitCode::Fail)
    };
    let model = slot.insert(power_on);
    let entry: extern "C" fn(u64) -> ! = crate::smp::ap_main;
    let gprs = init_vmcb(
        vmcb,
        msrpm,
        entry as *const () as u64,
        crate::smp::ap_stack_top(cpu),
        cpu as u64,
    );
    guest_loop(cpu, model, vmcb, gprs)
}

/// The top of AP `cpu`'s shim stack (`smp` puts it in the trampoline's parameters).
pub fn ap_host_stack_top(cpu: usize) -> u64 {
    // SAFETY: only the address of the slot is taken.
    unsafe { &raw const (*AP_HOST_STACKS.get())[cpu] as u64 + AP_HOST_STACK as u64 }
}

/// The AP whose shim stack holds `rsp`, if any (`percpu::id`).
pub fn cpu_of_host_stack(rsp: u64) -> Option<usize> {
    let offset = rsp.checked_sub(AP_HOST_STACKS.get() as u64)?;
    let cpu = usize::try_from(offset / AP_HOST_STACK as u64).ok()?;
    (cpu < MAX_CPUS).then_some(cpu)
}

/// Runs the kernel above on this CPU (`cpu`) for ever, handling its exits with this CPU's
/// model.
fn guest_loop(cpu: usize, model: &mut SiliconModel, vmcb: &mut Vmcb, mut gprs: Gprs) -> ! {
    let trace = TRACE.load(Ordering::Relaxed);
    let mut stats = Stats::default();
    loop {
        // SAFETY: SVM is enabled on this CPU; the VMCB describes this kernel's own code
        // (trusted) on the kernel's tables, intercepting VMRUN, VMMCALL, CPUID, MSR_PROT, HLT
        // and shutdown.
        unsafe { svm::run(vmcb, &mut gprs) };
        vmcb.set64(offset::EVENTINJ, 0);
        stats.exits += 1;
        handle_exit(cpu, model, vmcb, &mut gprs, &mut stats, trace);
    }
}

/// The model of the dump's CPU, with the MSRs the dump recorded where they exist
/// (`Aida64Dump::raw_msrs`), as the host tests build it.
fn build_model(dump: &Aida64Dump<'_>) -> SiliconModel {
    SiliconModel::new(dump, dump.raw_msrs())
}

/// The modelled MSRs that exist on this CPU, for the banner.
struct Present<'a>(&'a SiliconModel);

impl core::fmt::Display for Present<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut any = false;
        for msr in MODELLED_MSRS {
            if self.0.rdmsr_amd_safe(msr).is_ok() {
                write!(f, "{}{msr:#x}", if any { " " } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Sets the read and write intercept bits of `msr` in the map.
fn intercept(map: &mut Msrpm, msr: u32) {
    let (base, first) = match msr {
        0..=0x1fff => (0x000, 0),
        0xc000_0000..=0xc000_1fff => (0x800, 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, 0xc001_0000),
        _ => return, // outside the map: always intercepted
    };
    let bit = (msr - first) as usize * 2;
    map.0[base + bit / 8] |= 0b11 << (bit % 8);
}

/// The guest: the kernel at `rip` (`kernel_main_l1(start_info)` on the boot CPU,
/// `smp::ap_main(cpu)` on an AP) in 64-bit mode at CPL 0 on the kernel's own tables and
/// descriptors, on stack `stack_top`, with `arg` in RDI. Returns its registers.
fn init_vmcb(vmcb: &mut Vmcb, msrpm: &Msrpm, rip: u64, stack_top: u64, arg: u64) -> Gprs {
    // SMEP and SMAP are the kernel's to turn on, from what the modelled CPU reports. As after
    // a call: RSP + 8 is 16-byte aligned at the entry.
    svm::init_cpl0_guest(
        vmcb,
        paging::kernel_cr3(),
        CR4_SMEP_SMAP,
        rip,
        stack_top - 8,
    );
    vmcb.set32(offset::INTERCEPT_EXCEPTIONS, 0); // the kernel handles its own
    // CPUID (18) | HLT (24) | MSR_PROT (28) | SHUTDOWN (31).
    vmcb.set32(
        offset::INTERCEPT_MISC1,
        1 << 18 | 1 << 24 | 1 << 28 | 1 << 31,
    );
    // VMRUN (0, required) | VMMCALL (1).
    vmcb.set32(offset::INTERCEPT_MISC2, 1 << 0 | 1 << 1);
    vmcb.set64(offset::IOPM_BASE_PA, 0); // no IOIO intercept: serial and exit go to QEMU
    vmcb.set64(offset::MSRPM_BASE_PA, msrpm as *const Msrpm as u64);
    Gprs {
        rdi: arg,
        ..Gprs::default()
    }
}

/// Handles one #VMEXIT of the kernel above.
fn handle_exit(
    cpu: usize,
    model: &mut SiliconModel,
    vmcb: &mut Vmcb,
    gprs: &mut Gprs,
    stats: &mut Stats,
    trace: bool,
) {
    let code = vmcb.get64(offset::EXIT_CODE);
    let rip = vmcb.get64(offset::RIP);
    let cpl = vmcb.get8(offset::CPL);
    match code {
        svm::exit::CPUID => {
            stats.cpuid += 1;
            let (leaf, subleaf) = (gprs.rax as u32, gprs.rcx as u32);
            model.set_cr4_osxsave(vmcb.get64(offset::CR4) & CR4_OSXSAVE != 0);
            match model.cpuid_at(cpl, leaf, subleaf) {
                Ok(regs) => {
                    if trace {
                        println!(
                            "shim: cpuid {leaf:#x}.{subleaf:#x} at cpl {cpl} rip {rip:#x} -> {:08x} {:08x} {:08x} {:08x}",
                            regs.a, regs.b, regs.c, regs.d
                        );
                    }
                    set_cpuid(gprs, regs);
                    vmcb.set64(offset::RIP, rip.wrapping_add(2)); // 0F A2
                }
                Err(_) => {
                    if trace {
                        println!(
                            "shim: cpuid {leaf:#x} at cpl {cpl} rip {rip:#x} -> faulting: #GP(0)"
                        );
                    }
                    inject_gp(vmcb, stats);
                }
            }
        }
        svm::exit::MSR => {
            stats.msr += 1;
            let msr = gprs.rcx as u32;
            let passcode = gprs.rdi as u32 == AMD_MSR_PASSCODE;
            let write = vmcb.get64(offset::EXIT_INFO1) & 1 != 0;
            let result = if write {
                let value = (gprs.rdx & 0xffff_ffff) << 32 | (gprs.rax & 0xffff_ffff);
                let result = wrmsr(model, msr, value, passcode);
                if trace {
                    println!(
                        "shim: wrmsr {msr:#x} <- {value:#x} (passcode {passcode}) at rip {rip:#x}: {result:?}"
                    );
                }
                result.map(|()| None)
            } else {
                let result = rdmsr(model, msr, passcode);
                if trace {
                    println!(
                        "shim: rdmsr {msr:#x} (passcode {passcode}) at rip {rip:#x}: {result:x?}"
                    );
                }
                result.map(Some)
            };
            match result {
                Ok(value) => {
                    if let Some(value) = value {
                        gprs.rax = value & 0xffff_ffff;
                        gprs.rdx = value >> 32;
                    }
                    vmcb.set64(offset::RIP, rip.wrapping_add(2)); // 0F 32 / 0F 30
                }
                Err(_) => inject_gp(vmcb, stats),
            }
        }
        svm::exit::VMMCALL => {
            let answer = match gprs.rax {
                call::PING => [call::PONG, 0, 0, 0],
                call::MSR_WRITES => [model.writes() as u64, 0, 0, 0],
                call::STATS => [
                    stats.cpuid,
                    stats.msr,
                    stats.gp_injected,
                    model.writes() as u64,
                ],
                call::FAIL_MSR => {
                    let msr = gprs.rdi as u32;
                    let taken = model.fail_msr(msr);
                    println!(
                        "shim: cpu{cpu}: MSR {msr:#x} now raises #GP on every access (as after a microcode update)"
                    );
                    [u64::from(taken), 0, 0, 0]
                }
                _ => [call::UNKNOWN, 0, 0, 0],
            };
            [gprs.rax, gprs.rbx, gprs.rcx, gprs.rdx] = answer;
            vmcb.set64(offset::RIP, rip.wrapping_add(3)); // 0F 01 D9
        }
        code => {
            let what = match code {
                svm::exit::SHUTDOWN => "the kernel above triple-faulted",
                svm::exit::HLT => "the kernel above halted",
                svm::exit::VMRUN => "the kernel above ran VMRUN (nested SVM is not modelled)",
                svm::exit::INVALID => "VMRUN refused the guest state",
                _ => "unexpected exit",
            };
            println!(
                "shim: cpu{cpu}: {what}: exit code {code:#x} info1 {:#x} info2 {:#x} rip {rip:#x} cpl {cpl} after {} exits",
                vmcb.get64(offset::EXIT_INFO1),
                vmcb.get64(offset::EXIT_INFO2),
                stats.exits
            );
            exit(ExitCode::Unhandled)
        }
    }
}

/// An intercepted RDMSR: the model for the levelling MSRs (with the passcode if EDI held
/// it), VM_CR as SVM disabled, #GP for the rest.
fn rdmsr(model: &SiliconModel, msr: u32, passcode: bool) -> Result<u64, MsrFault> {
    match msr {
        MSR_VM_CR => Ok(VM_CR_LOCK_SVMDIS),
        _ if MODELLED_MSRS.contains(&msr) && passcode => model.rdmsr_amd_safe(msr),
        _ if MODELLED_MSRS.contains(&msr) => model.rdmsr_safe(msr),
        _ => Err(MsrFault { msr }),
    }
}

/// An intercepted WRMSR: the model for the levelling MSRs, #GP for the rest.
fn wrmsr(model: &mut SiliconModel, msr: u32, value: u64, passcode: bool) -> Result<(), MsrFault> {
    match msr {
        _ if MODELLED_MSRS.contains(&msr) && passcode => model.wrmsr_amd_safe(msr, value),
        _ if MODELLED_MSRS.contains(&msr) => model.wrmsr_safe(msr, value),
        _ => Err(MsrFault { msr }),
    }
}

/// CPUID's results, zero-extended into the 64-bit registers.
fn set_cpuid(gprs: &mut Gprs, regs: CpuidRegs) {
    gprs.rax = u64::from(regs.a);
    gprs.rbx = u64::from(regs.b);
    gprs.rcx = u64::from(regs.c);
    gprs.rdx = u64::from(regs.d);
}

/// #GP(0) into the kernel above, at the instruction (RIP unchanged). Always with the
/// error-code-valid bit: QEMU pushes an error code either way, real hardware only with it.
fn inject_gp(vmcb: &mut Vmcb, stats: &mut Stats) {
    stats.gp_injected += 1;
    vmcb.set64(offset::EVENTINJ, EVENTINJ_GP0);
}
