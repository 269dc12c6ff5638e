//! AMD SVM: turning it on, the VMCB, and the world switch (AMD APM vol. 2, chapter 15 and
//! appendix B for the VMCB layout; appendix C for exit codes).
//!
//! QEMU 7.2 TCG emulates SVM on AMD models and on Intel models with `,+svm`, with no NRIPS
//! (CPUID 8000_000Ah:EDX[3] = 0), so exit handlers advance RIP themselves (qemu-facts.md
//! sections 10 and 11). VMRUN loads only ES/CS/SS/DS, GDTR/IDTR, CRs, EFER, RFLAGS, RIP, RSP,
//! RAX and the DRs; the rest of the guest's state (FS, GS, TR, LDTR, the SYSCALL and SYSENTER
//! MSRs, KernelGsBase) moves with VMLOAD/VMSAVE, so the world switch brackets VMRUN with
//! `vmsave host; vmload guest; vmrun; vmsave guest; vmload host`, GIF cleared throughout.

use core::arch::global_asm;
use core::mem::offset_of;

use x86::msr::{IA32_EFER, rdmsr, wrmsr};
use xen_levelling::hardware::Hardware;

use crate::gdt;
use crate::hardware::{NativeHardware, cpuid};
use crate::idt::{self, Gprs};
use crate::percpu::{self, MAX_CPUS};
use crate::sync::{KernelCell, Page};

/// VM_CR (APM vol. 2 15.30.1): bit 4 SVMDIS, set when firmware disabled SVM.
pub const MSR_VM_CR: u32 = 0xc001_0114;
/// VM_CR.SVMDIS (MSR C001_0114h[4]).
const VM_CR_SVMDIS: u64 = 1 << 4;
/// VM_HSAVE_PA (APM vol. 2 15.30.4): where VMRUN saves the host state.
pub const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
/// EFER.SVME (MSR C000_0080h[12]).
pub const EFER_SVME: u64 = 1 << 12;

/// VMCB offsets used here (APM vol. 2 tables B-1 and B-2).
pub mod offset {
    /// Intercept vector 2: exceptions, bit n = vector n.
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// Intercept vector 3: bit 18 CPUID, bit 24 HLT, bit 28 MSR_PROT, bit 31 SHUTDOWN.
    pub const INTERCEPT_MISC1: usize = 0x00c;
    /// Intercept vector 4: bit 0 VMRUN, bit 1 VMMCALL.
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// Physical address of the I/O permission map (used only with the IOIO intercept).
    pub const IOPM_BASE_PA: usize = 0x040;
    /// Physical address of the 8 KiB MSR permission map (used with the MSR_PROT intercept).
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// Guest ASID (32 bits); must not be 0.
    pub const ASID: usize = 0x058;
    /// TLB control (8 bits): 1 = flush the whole TLB on VMRUN.
    pub const TLB_CONTROL: usize = 0x05c;
    /// Exit code.
    pub const EXIT_CODE: usize = 0x070;
    /// Exit information 1.
    pub const EXIT_INFO1: usize = 0x078;
    /// Exit information 2.
    pub const EXIT_INFO2: usize = 0x080;
    /// Nested paging enable (bit 0).
    pub const NP_ENABLE: usize = 0x090;
    /// Event injection: bits 7:0 vector, 10:8 type (3 = exception), 11 error code valid,
    /// 31 valid, 63:32 the error code.
    pub const EVENTINJ: usize = 0x0a8;
    /// Save area: ES (each segment is selector u16, attrib u16, limit u32, base u64).
    pub const ES: usize = 0x400;
    /// Save area: CS.
    pub const CS: usize = 0x410;
    /// Save area: SS.
    pub const SS: usize = 0x420;
    /// Save area: DS.
    pub const DS: usize = 0x430;
    /// Save area: GDTR (limit at +4, base at +8).
    pub const GDTR: usize = 0x460;
    /// Save area: IDTR.
    pub const IDTR: usize = 0x480;
    /// Save area: CPL (8 bits).
    pub const CPL: usize = 0x4cb;
    /// Save area: EFER.
    pub const EFER: usize = 0x4d0;
    /// Save area: CR4.
    pub const CR4: usize = 0x548;
    /// Save area: CR3.
    pub const CR3: usize = 0x550;
    /// Save area: CR0.
    pub const CR0: usize = 0x558;
    /// Save area: DR7.
    pub const DR7: usize = 0x560;
    /// Save area: DR6.
    pub const DR6: usize = 0x568;
    /// Save area: RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// Save area: RIP.
    pub const RIP: usize = 0x578;
    /// Save area: RSP.
    pub const RSP: usize = 0x5d8;
    /// Save area: RAX.
    pub const RAX: usize = 0x5f8;
    /// Save area: guest PAT.
    pub const G_PAT: usize = 0x668;
}

/// Exit codes (APM vol. 2 appendix C).
pub mod exit {
    /// First exception exit: 0x40 + vector.
    pub const EXCEPTION_BASE: u64 = 0x40;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// RDMSR or WRMSR of an intercepted MSR (EXITINFO1: 0 read, 1 write).
    pub const MSR: u64 = 0x7c;
    /// Shutdown (the guest triple-faulted).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMRUN refused the VMCB's state.
    pub const INVALID: u64 = u64::MAX;
}

/// A VMCB: one page, control area then state save area at 0x400.
#[repr(C, align(4096))]
pub struct Vmcb(Page);

impl Vmcb {
    /// An all-zero VMCB.
    pub const ZERO: Vmcb = Vmcb(Page::ZERO);

    /// The 8-byte field at `offset`.
    pub fn get64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.0.0[offset..offset + 8].try_into().expect("8 bytes"))
    }

    /// Writes `bytes` at `offset`.
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        self.0.0[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Sets the 8-byte field at `offset`.
    pub fn set64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }

    /// Sets the 4-byte field at `offset`.
    pub fn set32(&mut self, offset: usize, value: u32) {
        self.put(offset, &value.to_le_bytes());
    }

    /// Sets the 1-byte field at `offset`.
    pub fn set8(&mut self, offset: usize, value: u8) {
        self.0.0[offset] = value;
    }

    /// The 1-byte field at `offset`.
    pub fn get8(&self, offset: usize) -> u8 {
        self.0.0[offset]
    }

    /// Sets a segment register in the save area: selector, attributes (the descriptor's
    /// bits 55:52 and 47:40 packed into 12 bits), limit, base.
    pub fn set_segment(
        &mut self,
        offset: usize,
        selector: u16,
        attrib: u16,
        limit: u32,
        base: u64,
    ) {
        self.put(offset, &selector.to_le_bytes());
        self.put(offset + 2, &attrib.to_le_bytes());
        self.set32(offset + 4, limit);
        self.set64(offset + 8, base);
    }

    /// Sets a descriptor-table register (GDTR, IDTR) in the save area.
    pub fn set_table(&mut self, offset: usize, base: u64, limit: u16) {
        self.set32(offset + 4, u32::from(limit));
        self.set64(offset + 8, base);
    }

    /// This VMCB's physical address (the kernel is identity-mapped).
    pub fn pa(&self) -> u64 {
        self as *const Vmcb as u64
    }
}

/// Where VMRUN saves each CPU's host state (VM_HSAVE_PA): one page per CPU (`percpu::id`).
static HOST_SAVE_AREA: KernelCell<[Page; MAX_CPUS]> = KernelCell::new([Page::ZERO; MAX_CPUS]);
/// Where the world switch VMSAVEs each CPU's host hidden state (FS, GS, TR, LDTR, syscall
/// MSRs): one per CPU.
static HOST_VMCB: KernelCell<[Vmcb; MAX_CPUS]> = KernelCell::new([const { Vmcb::ZERO }; MAX_CPUS]);

/// This CPU's host VMCB (for VMSAVE/VMLOAD of the host's hidden state).
fn host_vmcb() -> u64 {
    // SAFETY: only the address of this CPU's slot is taken.
    unsafe { &raw const (*HOST_VMCB.get())[percpu::id()] as u64 }
}

/// Why SVM cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmError {
    /// CPUID 8000_0001h:ECX[2] is clear.
    NotPresent,
    /// VM_CR.SVMDIS is set.
    Disabled,
}

impl core::fmt::Display for SvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SvmError::NotPresent => "this CPU has no SVM (CPUID 8000_0001h:ECX[2] = 0)",
            SvmError::Disabled => "SVM is disabled (VM_CR.SVMDIS, MSR C001_0114h[4] = 1)",
        })
    }
}

/// True if the CPU enumerates SVM: CPUID 8000_0001h:ECX[2].
pub fn present() -> bool {
    cpuid(0x8000_0000, 0).a >= 0x8000_0001 && cpuid(0x8000_0001, 0).c & 1 << 2 != 0
}

/// Turns SVM on: EFER.SVME and VM_HSAVE_PA.
pub fn enable() -> Result<(), SvmError> {
    if !present() {
        return Err(SvmError::NotPresent);
    }
    if NativeHardware.rdmsr_safe(MSR_VM_CR).unwrap_or(0) & VM_CR_SVMDIS != 0 {
        return Err(SvmError::Disabled);
    }
    // SAFETY: SVM is present and not disabled, so EFER.SVME may be set; it only makes the SVM
    // instructions usable. VM_HSAVE_PA points at a page reserved for the CPU.
    unsafe {
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SVME);
        let area = &raw const (*HOST_SAVE_AREA.get())[percpu::id()];
        wrmsr(MSR_VM_HSAVE_PA, area as u64);
    }
    Ok(())
}

/// Copies the current hidden state (FS, GS, TR, LDTR, SYSCALL/SYSENTER MSRs, KernelGsBase)
/// into `vmcb` with VMSAVE, so that a guest built on the host's descriptors has a valid TR.
pub fn vmsave_into(vmcb: &mut Vmcb) {
    // SAFETY: SVM is enabled (callers run after `enable`), the VMCB is a page-aligned page the
    // caller owns; VMSAVE only writes that page.
    unsafe { core::arch::asm!("vmsave rax", in("rax") vmcb.pa(), options(nostack)) };
}

/// Code segment attributes: type 0xB (code, exec/read, accessed), S, P, L (64-bit), G.
const CS_ATTRIB: u16 = 0x0a9b;
/// Data segment attributes: type 0x3 (data, read/write, accessed), S, P, D/B, G.
const DS_ATTRIB: u16 = 0x0c93;
/// The power-on PAT (Intel SDM vol. 3 11.12.4): WB, WT, UC-, UC, twice.
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

/// Resets `vmcb` to a guest that starts at `rip` on stack `rsp`, in 64-bit mode at CPL 0 on
/// this CPU's own descriptors, as both SVM guests here do (the HVM guest in `hvm.rs`, the
/// kernel above the shim in `shim/l0.rs`): the host's hidden state (VMSAVE), the kernel's
/// flat code and data segments, this CPU's GDTR and IDTR, CR0 and EFER as the host has them
/// (EFER.SVME is required in a guest), CR3 = `cr3`, the host's CR4 less `cr4_clear`, the
/// reset DR6, DR7, RFLAGS and PAT, ASID 1 with a TLB flush on VMRUN, no nested paging, and
/// no intercepts: the caller sets those.
pub fn init_cpl0_guest(vmcb: &mut Vmcb, cr3: u64, cr4_clear: u64, rip: u64, rsp: u64) {
    *vmcb = Vmcb::ZERO;
    vmsave_into(vmcb); // FS, GS, TR, LDTR and the syscall MSRs: this CPU's
    vmcb.set32(offset::ASID, 1);
    vmcb.set8(offset::TLB_CONTROL, 1);
    vmcb.set64(offset::NP_ENABLE, 0);
    vmcb.set_segment(offset::CS, gdt::KERNEL_CS, CS_ATTRIB, u32::MAX, 0);
    for segment in [offset::ES, offset::SS, offset::DS] {
        vmcb.set_segment(segment, gdt::KERNEL_DS, DS_ATTRIB, u32::MAX, 0);
    }
    let (gdt_base, gdt_limit) = gdt::gdtr();
    let (idt_base, idt_limit) = idt::idtr();
    vmcb.set_table(offset::GDTR, gdt_base, gdt_limit);
    vmcb.set_table(offset::IDTR, idt_base, idt_limit);
    vmcb.set8(offset::CPL, 0);
    // SAFETY: reading control registers and EFER has no side effect.
    let (cr0, cr4, efer) = unsafe {
        (
            x86::controlregs::cr0().bits() as u64,
            x86::controlregs::cr4().bits() as u64,
            rdmsr(IA32_EFER),
        )
    };
    vmcb.set64(offset::CR0, cr0);
    vmcb.set64(offset::CR3, cr3);
    vmcb.set64(offset::CR4, cr4 & !cr4_clear);
    vmcb.set64(offset::EFER, efer); // LME, LMA, NXE and SVME
    vmcb.set64(offset::DR7, 0x400);
    vmcb.set64(offset::DR6, 0xffff_0ff0);
    vmcb.set64(offset::RFLAGS, 0x2);
    vmcb.set64(offset::RIP, rip);
    vmcb.set64(offset::RSP, rsp);
    vmcb.set64(offset::G_PAT, DEFAULT_PAT);
}

/// Runs the guest of `vmcb` until its next #VMEXIT. `gprs` holds the guest's registers
/// other than RSP (RAX is copied through the VMCB).
///
/// # Safety
///
/// SVM must be enabled ([`enable`]) and `vmcb` must describe a guest that cannot harm the
/// host: it runs on the host's page tables (no nested paging here), so its code must be
/// trusted kernel code, and it must intercept VMRUN (or VMRUN fails with VMEXIT_INVALID).
pub unsafe fn run(vmcb: &mut Vmcb, gprs: &mut Gprs) {
    vmcb.set64(offset::RAX, gprs.rax);
    // SAFETY: the caller's contract; this CPU's HOST_VMCB slot is used only here, by this CPU,
    // for the host's hidden state.
    unsafe { xl_svm_run(vmcb.pa(), gprs, host_vmcb()) };
    gprs.rax = vmcb.get64(offset::RAX);
}

global_asm!(
    r#"
    .pushsection .text.xl_svm, "ax"
    # xl_svm_run(guest_vmcb_pa: rdi, gprs: rsi, host_vmcb_pa: rdx)
    .global xl_svm_run
xl_svm_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rsi                                # [rsp + 16]: gprs
    push rdx                                # [rsp + 8]: host VMCB
    push rdi                                # [rsp + 0]: guest VMCB
    clgi
    mov rax, rdx
    vmsave rax
    mov rax, rdi
    vmload rax
    mov rbx, qword ptr [rsi + {rbx}]
    mov rcx, qword ptr [rsi + {rcx}]
    mov rdx, qword ptr [rsi + {rdx}]
    mov rdi, qword ptr [rsi + {rdi}]
    mov rbp, qword ptr [rsi + {rbp}]
    mov r8, qword ptr [rsi + {r8}]
    mov r9, qword ptr [rsi + {r9}]
    mov r10, qword ptr [rsi + {r10}]
    mov r11, qword ptr [rsi + {r11}]
    mov r12, qword ptr [rsi + {r12}]
    mov r13, qword ptr [rsi + {r13}]
    mov r14, qword ptr [rsi + {r14}]
    mov r15, qword ptr [rsi + {r15}]
    mov rsi, qword ptr [rsi + {rsi}]
    vmrun rax
    # #VMEXIT: RAX, RSP and RIP are the host's again; the other GPRs are the guest's.
    push rsi                                # guest RSI; gprs is now at [rsp + 24]
    mov rsi, qword ptr [rsp + 24]
    mov qword ptr [rsi + {rbx}], rbx
    mov qword ptr [rsi + {rcx}], rcx
    mov qword ptr [rsi + {rdx}], rdx
    mov qword ptr [rsi + {rdi}], rdi
    mov qword ptr [rsi + {rbp}], rbp
    mov qword ptr [rsi + {r8}], r8
    mov qword ptr [rsi + {r9}], r9
    mov qword ptr [rsi + {r10}], r10
    mov qword ptr [rsi + {r11}], r11
    mov qword ptr [rsi + {r12}], r12
    mov qword ptr [rsi + {r13}], r13
    mov qword ptr [rsi + {r14}], r14
    mov qword ptr [rsi + {r15}], r15
    pop rax
    mov qword ptr [rsi + {rsi}], rax
    mov rax, qword ptr [rsp]
    vmsave rax
    mov rax, qword ptr [rsp + 8]
    vmload rax
    stgi
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
    .popsection
    "#,
    rbx = const offset_of!(Gprs, rbx),
    rcx = const offset_of!(Gprs, rcx),
    rdx = const offset_of!(Gprs, rdx),
    rsi = const offset_of!(Gprs, rsi),
    rdi = const offset_of!(Gprs, rdi),
    rbp = const offset_of!(Gprs, rbp),
    r8 = const offset_of!(Gprs, r8),
    r9 = const offset_of!(Gprs, r9),
    r10 = const offset_of!(Gprs, r10),
    r11 = const offset_of!(Gprs, r11),
    r12 = const offset_of!(Gprs, r12),
    r13 = const offset_of!(Gprs, r13),
    r14 = const offset_of!(Gprs, r14),
    r15 = const offset_of!(Gprs, r15),
);

unsafe extern "C" {
    /// The world switch (assembly above).
    fn xl_svm_run(guest_vmcb: u64, gprs: *mut Gprs, host_vmcb: u64);
}
