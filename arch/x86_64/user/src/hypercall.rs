//! The hypercall gate from ring 3 (`int 0x82`: RAX = number, then RDI, RSI, RDX, R10, R8;
//! the result in RAX, every other register preserved), and the forced-emulation CPUID.

use core::arch::asm;
use core::ffi::CStr;

use xl_user::{HC_CHECK, HC_EXIT, HYPERCALL_VECTOR};

/// A hypercall with five arguments; returns RAX (0 or `-errno` for the toolstack calls).
pub fn call(nr: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: the gate touches no memory of this program except through the addresses in
    // the arguments, and only through this domain's own page tables (a bad address is
    // `-EFAULT`, never a fault here); it preserves every register but RAX.
    unsafe {
        asm!(
            "int {vector}",
            vector = const HYPERCALL_VECTOR,
            inlateout("rax") nr as i64 => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
        );
    }
    ret
}

/// `exit(code)`: the domain is done.
pub fn exit(code: u64) -> ! {
    call(HC_EXIT, [code, 0, 0, 0, 0]);
    // The kernel never resumes an exited domain.
    loop {
        core::hint::spin_loop();
    }
}

/// Reports check `name`: `ok`, with what was got and expected (printed when it fails), and
/// `tag` (0, or the CPUID register it is about: `leaf << 32 | subleaf << 8 | register`).
pub fn check_tagged(name: &CStr, ok: bool, got: u64, expected: u64, tag: u64) {
    let name = name.as_ptr() as u64;
    call(HC_CHECK, [name, u64::from(ok), got, expected, tag]);
}

/// A check name joined from literal pieces at compile time, as a `&'static CStr`.
macro_rules! check_name {
    ($($piece:literal),+ $(,)?) => {
        const {
            match core::ffi::CStr::from_bytes_with_nul(concat!($($piece),+, "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a check name with a NUL inside"),
            }
        }
    };
}
pub(crate) use check_name;

/// Reports check `name`: `got == expected`.
pub fn check_eq(name: &CStr, got: u64, expected: u64) {
    check_tagged(name, got == expected, got, expected, 0);
}

/// Reports check `name`: a hypercall returned `expected` (0 or `-errno`).
pub fn check_ret(name: &CStr, got: i64, expected: i64) {
    check_eq(name, got as u64, expected as u64);
}

/// `-errno`, as the toolstack calls return it.
pub const fn err(errno: i32) -> i64 {
    -(errno as i64)
}

/// CPUID through Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`): the `ud2`
/// raises #UD, the hypervisor recognises the 7 bytes and answers with the domain's policy.
/// Returns EAX, EBX, ECX, EDX.
pub fn forced_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: the hypervisor emulates the 7 bytes as one CPUID and resumes after them; RBX,
    // which the compiler reserves, is saved in a scratch register around them.
    unsafe {
        asm!(
            "mov {saved:r}, rbx",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg {saved:r}, rbx",
            saved = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
        );
    }
    [a, b, c, d]
}
