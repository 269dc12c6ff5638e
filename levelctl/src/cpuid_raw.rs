//! A parser for the raw output of Linux's `cpuid -r` (Todd Allen's `cpuid` tool), so that a
//! machine's CPUID can be taken with one command and handed to levelctl.
//!
//! # Format
//!
//! ```text
//! CPU 0:
//!    0x00000000 0x00: eax=0x0000000d ebx=0x756e6547 ecx=0x6c65746e edx=0x49656e69
//!    0x00000007 0x00: eax=0x00000000 ebx=0x000027ab ecx=0x00000000 edx=0x9c000400
//! CPU 1:
//!    ...
//! ```
//!
//! - A block header is `CPU <n>:` (every CPU) or `CPU:` (`cpuid -1 -r`); data before any
//!   header counts as the first CPU's.
//! - A data line is blanks, the leaf as `0x` and 8 hex digits, a blank, the subleaf as `0x` and
//!   2 to 8 hex digits, `:`, then exactly `eax=`, `ebx=`, `ecx=`, `edx=` each with `0x` and 8 hex
//!   digits, separated by single blanks. Upper- and lower-case digits are accepted.
//! - Blank lines are ignored; any other line is an error naming its line number, as is a
//!   (leaf, subleaf) that appears twice in the first CPU's block.
//! - The first CPU's block must hold every leaf it announces (leaf 0 EAX, 0x80000000 EAX, …)
//!   by the core's [`missing_leaves`] rules, else the output was cut short: an error naming
//!   the missing leaves at the block's last line. Every block is checked; only
//!   the first is kept (feature data is the same on every CPU).
//!
//! [`CpuidRaw`] then answers CPUID queries like [`xen_levelling::dump::Aida64Dump`]: a leaf
//! that takes subleaves ([`leaf_has_subleaves`]) by (leaf, subleaf), any other leaf by leaf
//! alone; what was not printed reads as zero.

use core::fmt;

use xen_levelling::dump::{MissingLeaves, leaf_has_subleaves, missing_leaves};
use xen_levelling::{CpuidRegs, CpuidSource};

/// One CPUID result of the first CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The subleaf (ECX input).
    pub subleaf: u32,
    /// The output registers.
    pub regs: CpuidRegs,
    /// The 1-based line it came from.
    pub line: usize,
}

/// What is wrong with a `cpuid -r` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuidRawErrorKind {
    /// A line that is neither a header, a data line nor blank.
    UnexpectedLine,
    /// A data line whose leaf or subleaf is malformed.
    BadLeaf,
    /// A data line whose registers are malformed (which one).
    BadRegister(&'static str),
    /// The same (leaf, subleaf) twice in the first block (line of the first).
    Duplicate {
        /// The leaf.
        leaf: u32,
        /// The subleaf.
        subleaf: u32,
        /// Where it appeared first.
        first_line: usize,
    },
    /// No data line at all.
    Empty,
    /// The first block has no leaf 0.
    NoLeaf0,
    /// The first block lacks leaves or subleaves it announces itself (the core's
    /// [`missing_leaves`] rules): the output was cut short. Reported at the block's last line.
    Incomplete(MissingLeaves),
}

/// A rejected `cpuid -r` text: the line and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidRawError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub kind: CpuidRawErrorKind,
}

impl fmt::Display for CpuidRawErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuidRawErrorKind::UnexpectedLine => f.write_str(
                "not a `cpuid -r` line (expected `CPU n:` or `   0xLLLLLLLL 0xSS: eax=0x… ebx=0x… \
                 ecx=0x… edx=0x…`)",
            ),
            CpuidRawErrorKind::BadLeaf => f.write_str(
                "malformed leaf or subleaf: expected `0x` and 8 hex digits, a blank, `0x` and 2-8 \
                 hex digits, then `:`",
            ),
            CpuidRawErrorKind::BadRegister(reg) => write!(
                f,
                "malformed register: expected `{reg}=0x` and 8 hex digits, in the order eax ebx \
                 ecx edx"
            ),
            CpuidRawErrorKind::Duplicate {
                leaf,
                subleaf,
                first_line,
            } => write!(
                f,
                "leaf {leaf:#x} subleaf {subleaf:#x} appears twice in the first CPU (first on \
                 line {first_line})"
            ),
            CpuidRawErrorKind::Empty => f.write_str("no CPUID data lines"),
            CpuidRawErrorKind::NoLeaf0 => f.write_str("the first CPU has no leaf 0"),
            CpuidRawErrorKind::Incomplete(missing) => write!(
                f,
                "the first CPU's block ends here, {missing}: the output is cut short"
            ),
        }
    }
}

impl fmt::Display for CpuidRawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for CpuidRawError {}

/// The first CPU of a `cpuid -r` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidRaw {
    entries: Vec<RawEntry>,
    cpus: usize,
}

/// True if `line` (trimmed) is a `CPU n:` or `CPU:` header.
fn is_header(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("CPU") else {
        return false;
    };
    let Some(number) = rest.strip_suffix(':') else {
        return false;
    };
    number.is_empty()
        || (number.starts_with(' ')
            && !number[1..].is_empty()
            && number[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// `0x` followed by `min..=max` hex digits.
fn hex(text: &str, min: usize, max: usize) -> Option<u32> {
    let digits = text.strip_prefix("0x")?;
    if digits.len() < min || digits.len() > max || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Parse one data line (already trimmed): `(leaf, subleaf, regs)`.
fn data_line(line: &str) -> Result<(u32, u32, CpuidRegs), CpuidRawErrorKind> {
    let (head, regs) = line.split_once(':').ok_or(CpuidRawErrorKind::BadLeaf)?;
    let (leaf, subleaf) = head.split_once(' ').ok_or(CpuidRawErrorKind::BadLeaf)?;
    let leaf = hex(leaf, 8, 8).ok_or(CpuidRawErrorKind::BadLeaf)?;
    let subleaf = hex(subleaf, 2, 8).ok_or(CpuidRawErrorKind::BadLeaf)?;
    let rest = regs
        .strip_prefix(' ')
        .ok_or(CpuidRawErrorKind::BadRegister("eax"))?;
    let mut fields = rest.split(' ');
    let mut value = [0u32; 4];
    for (slot, name) in value.iter_mut().zip(["eax", "ebx", "ecx", "edx"]) {
        let field = fields.next().ok_or(CpuidRawErrorKind::BadRegister(name))?;
        let v = field
            .strip_prefix(name)
            .and_then(|f| f.strip_prefix('='))
            .and_then(|f| hex(f, 8, 8))
            .ok_or(CpuidRawErrorKind::BadRegister(name))?;
        *slot = v;
    }
    if fields.next().is_some() {
        return Err(CpuidRawErrorKind::BadRegister("edx"));
    }
    Ok((
        leaf,
        subleaf,
        CpuidRegs::new(value[0], value[1], value[2], value[3]),
    ))
}

impl CpuidRaw {
    /// True if `text` has a line that only `cpuid -r` writes (a header or a data line).
    pub fn looks_like(text: &str) -> bool {
        text.lines()
            .map(str::trim)
            .any(|l| is_header(l) || (l.starts_with("0x") && l.contains(": eax=0x")))
    }

    /// Parse the whole output (see the [module documentation](self)).
    pub fn parse(text: &str) -> Result<CpuidRaw, CpuidRawError> {
        let mut entries: Vec<RawEntry> = Vec::new();
        let mut block = 0usize; // 0 = before any header
        let mut seen_data = false;
        let mut cpus = 0;
        // The last line of the first block: its last data line.
        let mut block_end = 0;
        for (i, raw_line) in text.lines().enumerate() {
            let number = i + 1;
            let line = raw_line.trim();
            if line.is_empty() {
                continue;
            }
            if is_header(line) {
                // Data before the first header belongs to the first CPU; a header after it
                // starts the second.
                block = if block == 0 && !seen_data {
                    1
                } else {
                    block + 1
                };
                cpus += 1;
                continue;
            }
            if !line.starts_with("0x") {
                return Err(CpuidRawError {
                    line: number,
                    kind: CpuidRawErrorKind::UnexpectedLine,
                });
            }
            let (leaf, subleaf, regs) =
                data_line(line).map_err(|kind| CpuidRawError { line: number, kind })?;
            if !seen_data && block == 0 {
                cpus += 1;
                block = 1;
            }
            seen_data = true;
            if block != 1 {
                continue;
            }
            if let Some(first) = entries
                .iter()
                .find(|e| e.leaf == leaf && e.subleaf == subleaf)
            {
                return Err(CpuidRawError {
                    line: number,
                    kind: CpuidRawErrorKind::Duplicate {
                        leaf,
                        subleaf,
                        first_line: first.line,
                    },
                });
            }
            entries.push(RawEntry {
                leaf,
                subleaf,
                regs,
                line: number,
            });
            block_end = number;
        }
        if entries.is_empty() {
            return Err(CpuidRawError {
                line: text.lines().count().max(1),
                kind: CpuidRawErrorKind::Empty,
            });
        }
        if !entries.iter().any(|e| e.leaf == 0) {
            return Err(CpuidRawError {
                line: entries[0].line,
                kind: CpuidRawErrorKind::NoLeaf0,
            });
        }
        let missing = missing_leaves(entries.iter().map(|e| (e.leaf, e.subleaf, e.regs)));
        if !missing.is_empty() {
            return Err(CpuidRawError {
                line: block_end,
                kind: CpuidRawErrorKind::Incomplete(missing),
            });
        }
        Ok(CpuidRaw { entries, cpus })
    }

    /// The first CPU's entries, in file order.
    pub fn entries(&self) -> &[RawEntry] {
        &self.entries
    }

    /// How many CPU blocks the output has.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The registers for a query, if printed.
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        let any = !leaf_has_subleaves(leaf);
        self.entries
            .iter()
            .find(|e| e.leaf == leaf && (any || e.subleaf == subleaf))
            .map(|e| e.regs)
    }
}

impl CpuidSource for CpuidRaw {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.lookup(leaf, subleaf).unwrap_or(CpuidRegs::ZERO)
    }
}
