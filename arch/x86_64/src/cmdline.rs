//! The kernel command line, from PVH's `hvm_start_info` (QEMU's `-append`).
//!
//! Words separated by spaces; `key=value` options and bare flags. The xtask passes
//! `scenario=NAME` plus any options the scenario takes (e.g. `rounds=20` for `switch`).

/// `hvm_start_info.magic` (xen/include/public/arch-x86/hvm/start_info.h): "xEn3" with bit 7 set.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Offset of `cmdline_paddr` (u64) in `hvm_start_info`.
const CMDLINE_PADDR_OFFSET: u64 = 24;
/// The longest command line kept.
const MAX_LEN: usize = 512;

/// A copy of the command line.
pub struct Cmdline {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl Cmdline {
    /// Reads the command line through the `hvm_start_info` at physical address `start_info`;
    /// empty if the structure or the line is missing.
    pub fn from_start_info(start_info: u32) -> Cmdline {
        let mut line = Cmdline {
            buf: [0; MAX_LEN],
            len: 0,
        };
        let base = u64::from(start_info);
        if base == 0 {
            return line;
        }
        // SAFETY: QEMU's PVH loader places hvm_start_info in low RAM, which the kernel
        // identity-maps, and leaves it alone; fields are read by value.
        let (magic, cmdline) = unsafe {
            (
                core::ptr::read_unaligned(base as *const u32),
                core::ptr::read_unaligned((base + CMDLINE_PADDR_OFFSET) as *const u64),
            )
        };
        if magic != START_INFO_MAGIC || cmdline == 0 || cmdline >= crate::paging::IDENTITY_LIMIT {
            return line;
        }
        while line.len < MAX_LEN {
            // SAFETY: the command line is a NUL-terminated string in identity-mapped low RAM
            // written by QEMU's loader; reading stops at the NUL or at MAX_LEN.
            let byte = unsafe { core::ptr::read((cmdline + line.len as u64) as *const u8) };
            if byte == 0 {
                break;
            }
            line.buf[line.len] = byte;
            line.len += 1;
        }
        line
    }

    /// The whole line (invalid UTF-8 reads as empty).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// The words of the line.
    fn words(&self) -> impl Iterator<Item = &str> {
        self.as_str().split_ascii_whitespace()
    }

    /// The value of `key=value`, if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.words().find_map(|word| {
            word.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }

    /// The value of `key=N` as a number, or `default`.
    pub fn number(&self, key: &str, default: u32) -> u32 {
        self.value(key)
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    }

    /// The scenario: `scenario=NAME`, else the first word without `=`.
    pub fn scenario(&self) -> Option<&str> {
        self.value("scenario")
            .or_else(|| self.words().find(|word| !word.contains('=')))
    }
}
