//! The boot data dom0 passes a guest it starts (`domain_start` copies it to the start of the
//! guest's data page): which CPUID registers the guest must see, and what in them.

use core::mem::{offset_of, size_of, size_of_val};

/// How many registers a guest checks at most.
pub const EXPECT_SLOTS: usize = 11;

/// One register to check: CPUID `leaf`, `subleaf`, register `register` (0 = EAX … 3 = EDX),
/// masked with `mask`, must read `value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Expectation {
    /// EAX input.
    pub leaf: u32,
    /// ECX input.
    pub subleaf: u32,
    /// Which output register: 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX.
    pub register: u32,
    /// The bits that must match.
    pub mask: u32,
    /// What they must be.
    pub value: u32,
}

/// The boot data: a count, then that many expectations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BootData {
    /// How many of `expect` hold an expectation.
    pub count: u32,
    _reserved: u32,
    /// The expectations.
    pub expect: [Expectation; EXPECT_SLOTS],
}

const _: () = assert!(size_of::<BootData>() as u64 <= xl_user::DATA_PAGE_SIZE);

impl BootData {
    /// Appends an expectation (ignored when full).
    pub fn push(&mut self, expectation: Expectation) {
        if let Some(slot) = self.expect.get_mut(self.count as usize) {
            *slot = expectation;
            self.count += 1;
        }
    }

    /// The expectations it holds (at most [`EXPECT_SLOTS`], whatever the count says).
    pub fn expectations(&self) -> &[Expectation] {
        &self.expect[..(self.count as usize).min(EXPECT_SLOTS)]
    }

    /// How many bytes of it to pass: the count and the expectations it holds.
    pub fn len(&self) -> u64 {
        (offset_of!(BootData, expect) + size_of_val(self.expectations())) as u64
    }
}
