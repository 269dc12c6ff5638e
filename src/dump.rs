//! A `no_std`, allocation-free parser for the AIDA64/EVEREST CPUID dumps published by
//! InstLatx64, so that a recorded processor can stand in for the real `cpuid` instruction.
//!
//! [`Aida64Dump::parse`] reads the whole text of a dump and keeps the CPUID results of the
//! *first* logical CPU (the one to use for feature data: every feature-bearing value is the same
//! in every block) in a fixed-capacity array of [`MAX_ENTRIES`] entries. The dump then answers
//! CPUID queries through [`CpuidSource`] and MSR queries through [`Aida64Dump::msr`].
//!
//! # Formats
//!
//! Five layouts of the same `CPUID` lines exist ([`DumpFormat`]); the format is detected like
//! this, first match wins:
//!
//! - **B**: a section header `------[ CPUID Registers / Logical CPU #n ]------` (AIDA64 6.x/7.x).
//!   One `MSR Registers / Logical CPU #n` section per CPU.
//! - **A**: a section header `------[ Logical CPU #n ]------` (EVEREST, AIDA64 up to 5.x). One
//!   `MSR Registers` section for the whole machine.
//! - **C**: before any section header, a line `CPU#nnn AffMask: ...` opening each block; a block
//!   ends at the next such line or at a blank line.
//! - **D**: before any section header, bare `CPUID` lines in blocks separated by blank lines.
//! - **E**: like D, but the leaf is followed by spaces and a TAB instead of `": "`
//!   (`CPUID 00000001  \t000306E4-...`); blocks are separated by (blank) lines holding one space.
//!
//! In formats A and B the first CPU block runs from the first block header to the next header.
//! In C it runs from the first `CPU#` line, in D and E from the first `CPUID` line, to the next
//! blank line (or `CPU#` line, or section header).
//!
//! # Lines
//!
//! Lines end in LF or CRLF; trailing spaces, TABs and CRs are ignored. The parser is strict on
//! the lines it reads data from and lenient on everything else:
//!
//! - A line starting with `CPUID ` inside a CPU block section (formats A and B), or anywhere
//!   before the first section header (formats C, D and E), must match
//!   `CPUID <leaf>: <EAX>-<EBX>-<ECX>-<EDX>[ [SL nn]][ <annotation>]` with exactly 8 upper-case
//!   hex digits per group and an optional subleaf tag of exactly 2 upper-case hex digits. Such
//!   lines are checked in every CPU block, not just the first. Lines starting with `CPUID `
//!   elsewhere (`CPUID Manufacturer : GenuineIntel` in the `CPU Info` section) are free text.
//! - A line starting with `MSR ` inside any MSR section must match
//!   `MSR <index>: <g3>-<g2>-<g1>-<g0>[ <annotation>]` (4 upper-case hex digits per group, most
//!   significant first) or `MSR <index>: < FAILED >[ <annotation>]`.
//! - Every other line (headers of other sections, cache summaries, `allcpu:` lines, ...) is
//!   skipped. Annotations (vendor strings, brand-string chunks, cache sizes) are never parsed.
//!
//! # Subleaves
//!
//! A `[SL nn]` tag right after EDX gives the subleaf. Untagged lines (old format A dumps,
//! formats D and E) are numbered by their position among the block's lines of the same leaf:
//!
//! - leaves 4, 7, 0xB, 0x18, 0x1F and 0x8000001D: the n-th line is subleaf n (0, 1, 2, ...);
//! - leaf 0xD in format A: the first line is subleaf 0, the n-th further line is the n-th
//!   XSAVE component set in subleaf 0's `EAX | EDX << 32`, counting from bit 2 (old AIDA64 prints
//!   subleaf 0 then subleaf 2, without subleaf 1);
//! - leaf 0xD in the other formats: sequential, like leaf 4;
//! - any other leaf: subleaf 0.
//!
//! A (leaf, subleaf) pair that occurs twice in the first block is an error. The out-of-range
//! leaf 0x8FFFFFFF that AIDA64 prints on AMD processors is ignored. A leaf or subleaf that was
//! not dumped reads as [`CpuidRegs::ZERO`]; [`Aida64Dump::seen`] tells it apart from a dumped
//! zero.
//!
//! # Completeness
//!
//! A dump cut short (by `head`, a broken copy, a full disk) must not pass for a CPU without
//! the features it lost. When the first CPU block ends, it must hold every leaf it announces
//! itself, by the rules of [`missing_leaves`] (every leaf up to leaf 0 EAX and up to leaf
//! 0x80000000 EAX, with the omissions real dumps have, and the subleaves that some leaves
//! count in their subleaf 0); otherwise the dump is refused with
//! [`DumpErrorKind::IncompleteBlock`] at the block's last line, naming the missing leaves. The
//! MSR section cannot be checked this way (nothing announces how many MSRs were dumped).
//!
//! # MSRs
//!
//! The MSR section of CPU #0 is the first section named `MSR Registers` or
//! `MSR Registers / Logical CPU #0`. It is kept as a slice of the text and scanned on demand;
//! for an index printed several times (AIDA64 samples fast-changing MSRs three times) the last
//! line wins.

use core::fmt;

use crate::cpuid::{CpuidRegs, CpuidSource, Signature, Vendor};
use crate::policy::RawMsrs;

/// The most CPUID entries the first CPU block may hold. The largest public dump (Genoa) has 79.
pub const MAX_ENTRIES: usize = 160;

/// The out-of-range leaf AIDA64 prints after the AMD extended range; never recorded.
const IGNORED_LEAF: u32 = 0x8FFF_FFFF;

/// True for the leaves whose output depends on the subleaf in ECX.
///
/// These are 4, 7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1B, 0x1D, 0x1E, 0x1F, 0x20,
/// 0x23, 0x24, 0x8000001D, 0x80000020 and 0x80000026. [`Aida64Dump`] looks these up by
/// (leaf, subleaf) and every other leaf by leaf alone.
pub const fn leaf_has_subleaves(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1B
            | 0x1D
            | 0x1E
            | 0x1F
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// The layout of a dump (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DumpFormat {
    /// EVEREST 4.x/5.x and AIDA64 1.x-5.x: `Logical CPU #n` sections, one `MSR Registers`
    /// section. Subleaf tags only from about AIDA64 4.7, and never on leaf 7.
    A,
    /// AIDA64 6.x/7.x: `CPUID Registers / Logical CPU #n` sections, one
    /// `MSR Registers / Logical CPU #n` section per CPU, subleaf tags on every multi-subleaf leaf.
    B,
    /// `CPU#nnn AffMask:` blocks with subleaf tags and no MSRs.
    C,
    /// Bare `CPUID` lines in blank-line-separated blocks, without tags or MSRs.
    D,
    /// Bare `CPUID <leaf>  \t<registers>` lines in blocks separated by lines holding one space.
    E,
}

/// One CPUID result recorded from the first CPU block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DumpEntry {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The subleaf (ECX input): the `[SL nn]` tag, or the number the untagged-line rules give it.
    /// 0 for an untagged line of a leaf without subleaves.
    pub subleaf: u32,
    /// The four output registers.
    pub regs: CpuidRegs,
    /// The 1-based line of the dump the entry comes from.
    pub line: usize,
}

impl DumpEntry {
    /// Filler for the unused part of the entry array.
    const EMPTY: DumpEntry = DumpEntry {
        leaf: 0,
        subleaf: 0,
        regs: CpuidRegs::ZERO,
        line: 0,
    };
}

/// The value one MSR had in the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrReading {
    /// The 64-bit value that was read.
    Value(u64),
    /// The dump says `< FAILED >`: the read faulted or was refused.
    Failed,
    /// The MSR is not in the dump (or the dump has no MSR section).
    Absent,
}

impl MsrReading {
    /// The value, if the MSR was read successfully.
    pub const fn value(self) -> Option<u64> {
        match self {
            MsrReading::Value(v) => Some(v),
            MsrReading::Failed | MsrReading::Absent => None,
        }
    }
}

/// What is wrong with a line starting with `CPUID `.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuidLineError {
    /// The leaf is not 8 upper-case hex digits.
    Leaf,
    /// The leaf is not followed by `": "` (formats A to D) or by spaces and a TAB (format E).
    LeafSeparator,
    /// A register group is not 8 upper-case hex digits (wrong digit, too short, truncated).
    Register,
    /// Two register groups are not separated by a single `-`.
    RegisterSeparator,
    /// The text after EDX starts with `[SL ` but is not a tag of 2 upper-case hex digits
    /// followed by `]` and the end of the line or a space.
    SubleafTag,
    /// EDX is followed by something other than the end of the line or a space.
    TrailingText,
}

impl fmt::Display for CpuidLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuidLineError::Leaf => {
                "CPUID line has a malformed leaf: expected 8 upper-case hex digits"
            }
            CpuidLineError::LeafSeparator => {
                "CPUID line has a malformed separator after the leaf: expected \": \" (spaces and a \
                 TAB in format E)"
            }
            CpuidLineError::Register => {
                "CPUID line has a malformed register group: expected 8 upper-case hex digits"
            }
            CpuidLineError::RegisterSeparator => {
                "CPUID line has a malformed separator between register groups: expected \"-\""
            }
            CpuidLineError::SubleafTag => {
                "CPUID line has a malformed subleaf tag: expected \"[SL nn]\" with 2 upper-case \
                 hex digits"
            }
            CpuidLineError::TrailingText => {
                "CPUID line has text right after EDX: expected a space before any annotation"
            }
        })
    }
}

/// What is wrong with a line starting with `MSR ` in an MSR section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrLineError {
    /// The index is not 8 upper-case hex digits.
    Index,
    /// The index is not followed by `": "`.
    IndexSeparator,
    /// A value group is not 4 upper-case hex digits (and the value is not `< FAILED >`).
    ValueGroup,
    /// Two value groups are not separated by a single `-`.
    GroupSeparator,
    /// The value is followed by something other than the end of the line or a space.
    TrailingText,
}

impl fmt::Display for MsrLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MsrLineError::Index => {
                "MSR line has a malformed index: expected 8 upper-case hex digits"
            }
            MsrLineError::IndexSeparator => {
                "MSR line has a malformed separator after the index: expected \": \""
            }
            MsrLineError::ValueGroup => {
                "MSR line has a malformed value group: expected 4 upper-case hex digits or \
                 \"< FAILED >\""
            }
            MsrLineError::GroupSeparator => {
                "MSR line has a malformed separator between value groups: expected \"-\""
            }
            MsrLineError::TrailingText => {
                "MSR line has text right after the value: expected a space before any annotation"
            }
        })
    }
}

/// Why a dump was rejected; [`DumpError::line`] says where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DumpErrorKind {
    /// The text holds no CPU block in any format (reported at the last line of the text, line 1
    /// for an empty text).
    NoCpuBlock,
    /// The first CPU block has no CPUID line (reported at its first line).
    EmptyCpuBlock,
    /// A line starting with `CPUID ` where CPUID lines belong does not match the grammar.
    MalformedCpuidLine(CpuidLineError),
    /// A line starting with `MSR ` in an MSR section does not match the grammar.
    MalformedMsrLine(MsrLineError),
    /// The first CPU block holds this (leaf, subleaf) twice (reported at the second line).
    DuplicateSubleaf {
        /// The leaf.
        leaf: u32,
        /// The subleaf, tagged or numbered.
        subleaf: u32,
        /// The line of the first occurrence.
        first_line: usize,
    },
    /// The first CPU block holds more than [`MAX_ENTRIES`] CPUID entries (reported at the first
    /// entry that does not fit).
    TooManyEntries,
    /// The first CPU block has no leaf 0 (reported at its first line).
    MissingLeaf0,
    /// An untagged repeat of a leaf cannot be numbered: in format A, a leaf 0xD line beyond the
    /// XSAVE components that subleaf 0 announces, or with no subleaf 0 before it.
    UnnumberedSubleaf {
        /// The leaf.
        leaf: u32,
    },
    /// The first CPU block lacks leaves or subleaves it announces itself ([`missing_leaves`]):
    /// the dump was cut short. Reported at the block's last line.
    IncompleteBlock(MissingLeaves),
}

impl fmt::Display for DumpErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DumpErrorKind::NoCpuBlock => {
                f.write_str("no CPU block: the text holds no CPUID dump of a logical CPU")
            }
            DumpErrorKind::EmptyCpuBlock => f.write_str("the first CPU block has no CPUID line"),
            DumpErrorKind::MalformedCpuidLine(e) => fmt::Display::fmt(&e, f),
            DumpErrorKind::MalformedMsrLine(e) => fmt::Display::fmt(&e, f),
            DumpErrorKind::DuplicateSubleaf {
                leaf,
                subleaf,
                first_line,
            } => write!(
                f,
                "CPUID leaf {leaf:#x} subleaf {subleaf:#x} appears twice in the first CPU block \
                 (first on line {first_line})"
            ),
            DumpErrorKind::TooManyEntries => write!(
                f,
                "the first CPU block has more than {MAX_ENTRIES} CPUID entries"
            ),
            DumpErrorKind::MissingLeaf0 => f.write_str("the first CPU block has no CPUID leaf 0"),
            DumpErrorKind::UnnumberedSubleaf { leaf } => write!(
                f,
                "untagged CPUID leaf {leaf:#x} line cannot be given a subleaf: no XSAVE component \
                 of subleaf 0 is left for it"
            ),
            DumpErrorKind::IncompleteBlock(missing) => write!(
                f,
                "the first CPU block ends here, {missing}: the dump is cut short"
            ),
        }
    }
}

/// A dump that [`Aida64Dump::parse`] rejected: what is wrong, and on which line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DumpError {
    line: usize,
    kind: DumpErrorKind,
}

impl DumpError {
    const fn new(line: usize, kind: DumpErrorKind) -> Self {
        DumpError { line, kind }
    }

    /// The 1-based line the error is about.
    pub const fn line(&self) -> usize {
        self.line
    }

    /// What is wrong.
    pub const fn kind(&self) -> DumpErrorKind {
        self.kind
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl core::error::Error for DumpError {}

/// The MSR section of CPU #0, kept as text and scanned on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MsrSection<'a> {
    /// The lines after the header, up to the next header or the end of the text.
    text: &'a str,
    /// The line number of the header.
    header_line: usize,
}

/// The CPUID entries of the first logical CPU of an AIDA64/EVEREST dump, and its MSR section.
///
/// Implements [`CpuidSource`]: leaves that take subleaves ([`leaf_has_subleaves`]) are looked up
/// by (leaf, subleaf), every other leaf by leaf alone; what was not dumped reads as
/// [`CpuidRegs::ZERO`].
#[derive(Clone)]
pub struct Aida64Dump<'a> {
    format: DumpFormat,
    entries: [DumpEntry; MAX_ENTRIES],
    len: usize,
    block_line: usize,
    msr: Option<MsrSection<'a>>,
}

impl<'a> Aida64Dump<'a> {
    /// Parses the text of a dump (see the [module documentation](self) for the rules).
    ///
    /// # Errors
    ///
    /// A [`DumpError`] naming the offending line: no CPU block, an empty first block, a
    /// malformed `CPUID` or `MSR` line, a duplicate (leaf, subleaf), more than [`MAX_ENTRIES`]
    /// entries, no leaf 0, an untagged leaf 0xD line that cannot be numbered, or a first block
    /// that lacks leaves it announces (cut short, see [Completeness](self#completeness)).
    pub fn parse(text: &'a str) -> Result<Aida64Dump<'a>, DumpError> {
        let format = detect(text)?;
        let mut parser = Parser {
            dump: Aida64Dump {
                format,
                entries: [DumpEntry::EMPTY; MAX_ENTRIES],
                len: 0,
                block_line: 0,
                msr: None,
            },
            block: BlockState::NotStarted,
            block_cpuid_lines: 0,
            open_msr: None,
        };
        let mut context = Context::Bare;
        let mut last_line = 1;
        for line in Lines::new(text, 1) {
            last_line = line.number;
            if let Some(name) = header_name(line.text) {
                parser.close_block(line.number - 1)?;
                parser.close_msr(text, line.start);
                context = parser.open_section(name, &line);
                continue;
            }
            match context {
                Context::Bare => parser.bare_line(&line)?,
                Context::Block if line.text.starts_with("CPUID ") => parser.cpuid_line(&line)?,
                Context::Msr if line.text.starts_with("MSR ") => {
                    parse_msr_line(line.text).map_err(|e| {
                        DumpError::new(line.number, DumpErrorKind::MalformedMsrLine(e))
                    })?;
                }
                Context::Block | Context::Msr | Context::Free => {}
            }
        }
        parser.close_block(last_line)?;
        parser.close_msr(text, text.len());
        match parser.block {
            BlockState::NotStarted => Err(DumpError::new(last_line, DumpErrorKind::NoCpuBlock)),
            BlockState::Open | BlockState::Closed => Ok(parser.dump),
        }
    }

    /// The layout the dump was written in.
    pub const fn format(&self) -> DumpFormat {
        self.format
    }

    /// The line where the first CPU block starts: its section header (formats A and B), its
    /// `CPU#` line (format C) or its first `CPUID` line (formats D and E).
    pub const fn first_block_line(&self) -> usize {
        self.block_line
    }

    /// The recorded CPUID entries of the first CPU block, in file order.
    pub fn entries(&self) -> impl Iterator<Item = DumpEntry> + '_ {
        self.recorded().iter().copied()
    }

    /// The registers for a query, or `None` if the dump does not hold that leaf (or, for a leaf
    /// that takes subleaves, that subleaf).
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        let any_subleaf = !leaf_has_subleaves(leaf);
        self.recorded()
            .iter()
            .find(|e| e.leaf == leaf && (any_subleaf || e.subleaf == subleaf))
            .map(|e| e.regs)
    }

    /// True if the dump holds the answer to this query, so that a zero from
    /// [`CpuidSource::cpuid`] can be told apart from "not dumped". The subleaf is ignored for
    /// leaves without subleaves, as in the lookup.
    pub fn seen(&self, leaf: u32, subleaf: u32) -> bool {
        self.lookup(leaf, subleaf).is_some()
    }

    /// The vendor named by leaf 0.
    pub fn vendor(&self) -> Vendor {
        let r = self.cpuid(0, 0);
        Vendor::from_regs(r.b, r.c, r.d)
    }

    /// Family, model and stepping from leaf 1 EAX (all zero if leaf 1 was not dumped).
    pub fn signature(&self) -> Signature {
        Signature::from_eax(self.cpuid(1, 0).a)
    }

    /// The MSRs a raw policy reads, as this dump recorded them: MSR 0xCE only where it is
    /// MSR_PLATFORM_INFO ([`RawMsrs::platform_info_exists`]), ARCH_CAPABILITIES where dumped.
    pub fn raw_msrs(&self) -> RawMsrs {
        let platform_info_exists = RawMsrs::platform_info_exists(self.vendor(), self.signature());
        RawMsrs {
            platform_info: platform_info_exists
                .then(|| self.msr(crate::msr::PLATFORM_INFO).value())
                .flatten(),
            arch_caps: self.msr(crate::msr::ARCH_CAPABILITIES).value(),
        }
    }

    /// The reading of one MSR in CPU #0's MSR section: the last line for that index wins.
    pub fn msr(&self, index: u32) -> MsrReading {
        self.msrs()
            .filter(|&(i, _)| i == index)
            .last()
            .map_or(MsrReading::Absent, |(_, reading)| reading)
    }

    /// Every MSR line of CPU #0's MSR section, in file order. An index printed several times
    /// (AIDA64's `[S200]` samples) appears several times; [`Aida64Dump::msr`] takes the last.
    pub fn msrs(&self) -> impl Iterator<Item = (u32, MsrReading)> + use<'a> {
        let (text, first_line) = match self.msr {
            Some(section) => (section.text, section.header_line + 1),
            None => ("", 1),
        };
        Lines::new(text, first_line).filter_map(|line| {
            if line.text.starts_with("MSR ") {
                parse_msr_line(line.text).ok()
            } else {
                None
            }
        })
    }

    /// The line of CPU #0's MSR section header, or `None` if the dump has no such section.
    /// A section can be present and empty (the Hygon dump).
    pub fn msr_section_line(&self) -> Option<usize> {
        self.msr.map(|section| section.header_line)
    }

    fn recorded(&self) -> &[DumpEntry] {
        &self.entries[..self.len]
    }
}

impl CpuidSource for Aida64Dump<'_> {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.lookup(leaf, subleaf).unwrap_or(CpuidRegs::ZERO)
    }
}

impl fmt::Debug for Aida64Dump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aida64Dump")
            .field("format", &self.format)
            .field("first_block_line", &self.block_line)
            .field("entries", &self.recorded())
            .field("msr_section_line", &self.msr_section_line())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Lines and sections

/// One line of the text, without its terminator and trailing spaces, TABs and CRs.
#[derive(Clone, Copy)]
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    /// Byte offset of the line's start in the text.
    start: usize,
    /// Byte offset just after the line's `\n` (or the end of the text).
    end: usize,
    text: &'a str,
}

/// Splits a text on `\n`; a final `\n` does not start another line.
struct Lines<'a> {
    rest: &'a str,
    offset: usize,
    next_number: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str, first_number: usize) -> Self {
        Lines {
            rest: text,
            offset: 0,
            next_number: first_number,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (raw, consumed) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], i + 1),
            None => (self.rest, self.rest.len()),
        };
        let line = Line {
            number: self.next_number,
            start: self.offset,
            end: self.offset + consumed,
            text: raw.trim_end_matches([' ', '\t', '\r']),
        };
        self.rest = &self.rest[consumed..];
        self.offset += consumed;
        self.next_number += 1;
        Some(line)
    }
}

/// The name in a section header `------[ name ]------`.
fn header_name(line: &str) -> Option<&str> {
    line.strip_prefix("------[ ")?.strip_suffix(" ]------")
}

/// The CPU number of a `Logical CPU #n` name, as its digits.
fn logical_cpu(name: &str) -> Option<&str> {
    let digits = name.strip_prefix("Logical CPU #")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// A format A CPU block header name.
fn is_a_block(name: &str) -> bool {
    logical_cpu(name).is_some()
}

/// A format B CPU block header name.
fn is_b_block(name: &str) -> bool {
    name.strip_prefix("CPUID Registers / ")
        .and_then(logical_cpu)
        .is_some()
}

/// `None` if the name is not an MSR section, else whether it is CPU #0's (or the machine's).
fn msr_section(name: &str) -> Option<bool> {
    if name == "MSR Registers" {
        return Some(true);
    }
    let digits = name
        .strip_prefix("MSR Registers / ")
        .and_then(logical_cpu)?;
    Some(digits.bytes().all(|b| b == b'0'))
}

/// A format C block opener: `CPU#` and 3 decimal digits, then ` AffMask:`.
fn is_c_block_start(line: &str) -> bool {
    let b = line.as_bytes();
    b.starts_with(b"CPU#")
        && b.get(4..7)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && b.get(7..)
            .is_some_and(|rest| rest.starts_with(b" AffMask:"))
}

/// Format E: the leaf of a `CPUID` line is followed by spaces and a TAB.
fn is_tab_separated(line: &str) -> bool {
    let b = line.as_bytes();
    if hex(b, 6, 8).is_none() {
        return false;
    }
    let rest = b.get(14..).unwrap_or_default();
    let spaces = rest.iter().take_while(|&&c| c == b' ').count();
    spaces > 0 && rest.get(spaces) == Some(&b'\t')
}

/// Detects the format (see the module documentation), or fails with `NoCpuBlock`.
fn detect(text: &str) -> Result<DumpFormat, DumpError> {
    let mut has_a = false;
    let mut has_c = false;
    let mut in_section = false;
    let mut first_cpuid: Option<&str> = None;
    let mut last_line = 1;
    for line in Lines::new(text, 1) {
        last_line = line.number;
        if let Some(name) = header_name(line.text) {
            if is_b_block(name) {
                return Ok(DumpFormat::B);
            }
            has_a |= is_a_block(name);
            in_section = true;
        } else if !in_section {
            if is_c_block_start(line.text) {
                has_c = true;
            } else if first_cpuid.is_none() && line.text.starts_with("CPUID ") {
                first_cpuid = Some(line.text);
            }
        }
    }
    if has_a {
        Ok(DumpFormat::A)
    } else if has_c {
        Ok(DumpFormat::C)
    } else {
        match first_cpuid {
            Some(line) if is_tab_separated(line) => Ok(DumpFormat::E),
            Some(_) => Ok(DumpFormat::D),
            None => Err(DumpError::new(last_line, DumpErrorKind::NoCpuBlock)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Line grammars

/// The value of `n` upper-case hex digits at `pos`, if they are there.
fn hex(bytes: &[u8], pos: usize, n: usize) -> Option<u32> {
    bytes
        .get(pos..pos.checked_add(n)?)?
        .iter()
        .try_fold(0u32, |acc, &b| {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'A'..=b'F' => b - b'A' + 10,
                _ => return None,
            };
            Some(acc << 4 | u32::from(digit))
        })
}

/// A position in the bytes of one line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, s: &[u8]) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    fn hex(&mut self, n: usize) -> Option<u32> {
        let value = hex(self.bytes, self.pos, n)?;
        self.pos += n;
        Some(value)
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// At the end of the line, or at a space that starts an annotation.
    fn at_end_or_space(&self) -> bool {
        matches!(self.rest().first(), None | Some(b' '))
    }
}

/// A well-formed `CPUID` line.
struct CpuidLine {
    leaf: u32,
    regs: CpuidRegs,
    tag: Option<u32>,
}

/// Parses a line starting with `CPUID `; `tab` selects the format E leaf separator.
fn parse_cpuid_line(line: &str, tab: bool) -> Result<CpuidLine, CpuidLineError> {
    let mut c = Cursor {
        bytes: line.as_bytes(),
        pos: 0,
    };
    if !c.eat(b"CPUID ") {
        return Err(CpuidLineError::Leaf);
    }
    let leaf = c.hex(8).ok_or(CpuidLineError::Leaf)?;
    let separated = if tab {
        let mut spaces = 0;
        while c.eat(b" ") {
            spaces += 1;
        }
        spaces > 0 && c.eat(b"\t")
    } else {
        c.eat(b": ")
    };
    if !separated {
        return Err(CpuidLineError::LeafSeparator);
    }
    let mut regs = [0u32; 4];
    for (i, reg) in regs.iter_mut().enumerate() {
        if i > 0 && !c.eat(b"-") {
            return Err(CpuidLineError::RegisterSeparator);
        }
        *reg = c.hex(8).ok_or(CpuidLineError::Register)?;
    }
    if !c.at_end_or_space() {
        return Err(CpuidLineError::TrailingText);
    }
    let tag = if c.eat(b" [SL ") {
        let subleaf = c.hex(2).ok_or(CpuidLineError::SubleafTag)?;
        if !c.eat(b"]") || !c.at_end_or_space() {
            return Err(CpuidLineError::SubleafTag);
        }
        Some(subleaf)
    } else {
        None
    };
    let [a, b, cx, d] = regs;
    Ok(CpuidLine {
        leaf,
        regs: CpuidRegs::new(a, b, cx, d),
        tag,
    })
}

/// Parses a line starting with `MSR `.
fn parse_msr_line(line: &str) -> Result<(u32, MsrReading), MsrLineError> {
    let mut c = Cursor {
        bytes: line.as_bytes(),
        pos: 0,
    };
    if !c.eat(b"MSR ") {
        return Err(MsrLineError::Index);
    }
    let index = c.hex(8).ok_or(MsrLineError::Index)?;
    if !c.eat(b": ") {
        return Err(MsrLineError::IndexSeparator);
    }
    let reading = if c.eat(b"< FAILED >") {
        MsrReading::Failed
    } else {
        let mut value = 0u64;
        for i in 0..4 {
            if i > 0 && !c.eat(b"-") {
                return Err(MsrLineError::GroupSeparator);
            }
            value = value << 16 | u64::from(c.hex(4).ok_or(MsrLineError::ValueGroup)?);
        }
        MsrReading::Value(value)
    };
    if !c.at_end_or_space() {
        return Err(MsrLineError::TrailingText);
    }
    Ok((index, reading))
}

// ---------------------------------------------------------------------------------------------
// The parser proper

/// What the current line belongs to.
#[derive(Clone, Copy)]
enum Context {
    /// Before the first section header: CPU blocks of formats C, D and E, free text otherwise.
    Bare,
    /// A CPU block section (formats A and B).
    Block,
    /// An MSR section.
    Msr,
    /// Any other section.
    Free,
}

/// Where the parser is relative to the first CPU block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockState {
    NotStarted,
    Open,
    Closed,
}

struct Parser<'a> {
    dump: Aida64Dump<'a>,
    block: BlockState,
    /// CPUID lines seen in the first block, ignored ones included.
    block_cpuid_lines: usize,
    /// CPU #0's MSR section while it is open: its text start offset and header line.
    open_msr: Option<(usize, usize)>,
}

impl<'a> Parser<'a> {
    /// A section header: classify the section; open the first block or CPU #0's MSR section.
    fn open_section(&mut self, name: &str, line: &Line<'_>) -> Context {
        let is_block = match self.dump.format {
            DumpFormat::A => is_a_block(name),
            DumpFormat::B => is_b_block(name),
            DumpFormat::C | DumpFormat::D | DumpFormat::E => false,
        };
        if is_block {
            if self.block == BlockState::NotStarted {
                self.open_block(line.number);
            }
            Context::Block
        } else if let Some(cpu0) = msr_section(name) {
            if cpu0 && self.dump.msr.is_none() {
                self.open_msr = Some((line.end, line.number));
            }
            Context::Msr
        } else {
            Context::Free
        }
    }

    fn close_msr(&mut self, text: &'a str, end: usize) {
        if let Some((start, header_line)) = self.open_msr.take() {
            let text = text.get(start..end).unwrap_or_default();
            self.dump.msr = Some(MsrSection { text, header_line });
        }
    }

    fn open_block(&mut self, line: usize) {
        self.block = BlockState::Open;
        self.dump.block_line = line;
    }

    /// Ends the first block if it is open (its last line is `end`), and checks it.
    fn close_block(&mut self, end: usize) -> Result<(), DumpError> {
        if self.block != BlockState::Open {
            return Ok(());
        }
        self.block = BlockState::Closed;
        let at = self.dump.block_line;
        if self.block_cpuid_lines == 0 {
            return Err(DumpError::new(at, DumpErrorKind::EmptyCpuBlock));
        }
        if self.find(0, 0).is_none() {
            return Err(DumpError::new(at, DumpErrorKind::MissingLeaf0));
        }
        let missing = missing_leaves(
            self.dump
                .recorded()
                .iter()
                .map(|e| (e.leaf, e.subleaf, e.regs)),
        );
        if !missing.is_empty() {
            return Err(DumpError::new(
                end.max(at),
                DumpErrorKind::IncompleteBlock(missing),
            ));
        }
        Ok(())
    }

    /// A line before the first section header.
    fn bare_line(&mut self, line: &Line<'_>) -> Result<(), DumpError> {
        match self.dump.format {
            DumpFormat::A | DumpFormat::B => Ok(()),
            DumpFormat::C if is_c_block_start(line.text) => {
                self.close_block(line.number - 1)?;
                if self.block == BlockState::NotStarted {
                    self.open_block(line.number);
                }
                Ok(())
            }
            DumpFormat::C | DumpFormat::D | DumpFormat::E => {
                if line.text.is_empty() {
                    self.close_block(line.number - 1)
                } else if line.text.starts_with("CPUID ") {
                    if self.block == BlockState::NotStarted && self.dump.format != DumpFormat::C {
                        self.open_block(line.number);
                    }
                    self.cpuid_line(line)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A line starting with `CPUID ` where CPUID lines belong: check it, record it if it is in
    /// the first block.
    fn cpuid_line(&mut self, line: &Line<'_>) -> Result<(), DumpError> {
        let parsed = parse_cpuid_line(line.text, self.dump.format == DumpFormat::E)
            .map_err(|e| DumpError::new(line.number, DumpErrorKind::MalformedCpuidLine(e)))?;
        if self.block == BlockState::Open {
            self.record(parsed, line.number)?;
        }
        Ok(())
    }

    fn record(&mut self, parsed: CpuidLine, line: usize) -> Result<(), DumpError> {
        self.block_cpuid_lines += 1;
        let leaf = parsed.leaf;
        if leaf == IGNORED_LEAF {
            return Ok(());
        }
        let subleaf = match parsed.tag {
            Some(tag) => tag,
            None => self.untagged_subleaf(leaf).ok_or(DumpError::new(
                line,
                DumpErrorKind::UnnumberedSubleaf { leaf },
            ))?,
        };
        if let Some(first) = self.find(leaf, subleaf) {
            let first_line = first.line;
            return Err(DumpError::new(
                line,
                DumpErrorKind::DuplicateSubleaf {
                    leaf,
                    subleaf,
                    first_line,
                },
            ));
        }
        let Some(slot) = self.dump.entries.get_mut(self.dump.len) else {
            return Err(DumpError::new(line, DumpErrorKind::TooManyEntries));
        };
        *slot = DumpEntry {
            leaf,
            subleaf,
            regs: parsed.regs,
            line,
        };
        self.dump.len += 1;
        Ok(())
    }

    /// The subleaf of an untagged line of `leaf`, from the lines of that leaf already recorded.
    fn untagged_subleaf(&self, leaf: u32) -> Option<u32> {
        let prior = self
            .dump
            .recorded()
            .iter()
            .filter(|e| e.leaf == leaf)
            .count();
        let prior = u32::try_from(prior).ok()?;
        match leaf {
            0x4 | 0x7 | 0xB | 0x18 | 0x1F | 0x8000_001D => Some(prior),
            0xD if self.dump.format == DumpFormat::A && prior > 0 => {
                let sl0 = self.find(0xD, 0)?.regs;
                nth_xsave_component(u64::from(sl0.a) | u64::from(sl0.d) << 32, prior)
            }
            0xD => Some(prior),
            _ => Some(0),
        }
    }

    /// The recorded entry for exactly this (leaf, subleaf).
    fn find(&self, leaf: u32, subleaf: u32) -> Option<&DumpEntry> {
        self.dump
            .recorded()
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf == subleaf)
    }
}

/// The `n`-th (1-based) bit set in `mask`, counting from bit 2.
fn nth_xsave_component(mask: u64, n: u32) -> Option<u32> {
    (2..64)
        .filter(|bit| mask >> bit & 1 != 0)
        .nth(usize::try_from(n).ok()?.checked_sub(1)?)
}

// ---------------------------------------------------------------------------------------------
// Completeness of the first CPU block

/// The most missing items a [`MissingLeaves`] lists by name; the rest are counted.
pub const MAX_MISSING_LISTED: usize = 4;

/// One gap in a CPU block: a run of leaves, or a run of subleaves of one leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissingItem {
    /// Leaves `first..=last`, absent altogether.
    Leaves {
        /// The first absent leaf.
        first: u32,
        /// The last absent leaf of the run.
        last: u32,
    },
    /// Subleaves `first..=last` of `leaf`, which is present but announces them.
    Subleaves {
        /// The leaf.
        leaf: u32,
        /// The first absent subleaf.
        first: u32,
        /// The last absent subleaf of the run.
        last: u32,
    },
}

impl fmt::Display for MissingItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MissingItem::Leaves { first, last } if first == last => write!(f, "{first:#x}"),
            MissingItem::Leaves { first, last } => write!(f, "{first:#x}-{last:#x}"),
            MissingItem::Subleaves { leaf, first, last } if first == last => {
                write!(f, "{leaf:#x} subleaf {first}")
            }
            MissingItem::Subleaves { leaf, first, last } => {
                write!(f, "{leaf:#x} subleaves {first}-{last}")
            }
        }
    }
}

/// What a CPU block lacks of what it announces (see [`missing_leaves`]): the first
/// [`MAX_MISSING_LISTED`] gaps, how many gaps there are, and the maxima it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MissingLeaves {
    items: [MissingItem; MAX_MISSING_LISTED],
    len: u8,
    total: u16,
    /// Leaf 0 EAX: the highest basic leaf the block announces.
    pub max_basic: u32,
    /// Leaf 0x80000000 EAX, if the block has that leaf.
    pub max_extended: Option<u32>,
}

impl MissingLeaves {
    const fn new(max_basic: u32, max_extended: Option<u32>) -> Self {
        MissingLeaves {
            items: [MissingItem::Leaves { first: 0, last: 0 }; MAX_MISSING_LISTED],
            len: 0,
            total: 0,
            max_basic,
            max_extended,
        }
    }

    fn push(&mut self, item: MissingItem) {
        if let Some(slot) = self.items.get_mut(usize::from(self.len)) {
            *slot = item;
            self.len += 1;
        }
        self.total = self.total.saturating_add(1);
    }

    /// True when nothing is missing.
    pub const fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The gaps listed by name (at most [`MAX_MISSING_LISTED`]).
    pub fn listed(&self) -> &[MissingItem] {
        &self.items[..usize::from(self.len)]
    }

    /// How many gaps there are in all.
    pub const fn total(&self) -> usize {
        self.total as usize
    }
}

impl fmt::Display for MissingLeaves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing CPUID leaves ")?;
        for (i, item) in self.listed().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        if self.total > u16::from(self.len) {
            write!(f, " and {} more", self.total - u16::from(self.len))?;
        }
        write!(f, " (leaf 0 announces up to {:#x}", self.max_basic)?;
        match self.max_extended {
            Some(max) => write!(f, ", leaf 0x80000000 up to {max:#x})"),
            None => f.write_str(", and every x86 CPU has leaf 0x80000000)"),
        }
    }
}

/// The leaf ranges whose base leaf announces the range's highest leaf in EAX, besides the
/// basic range: extended, hypervisor and Centaur.
const ANNOUNCED_RANGES: [u32; 3] = [0x8000_0000, 0x4000_0000, 0xC000_0000];

/// The highest leaf `base`'s EAX may announce: a range never holds more than 0x10000 leaves.
const RANGE_SPAN: u32 = 0xFFFF;

/// Leaves of the basic range that AMD documents as reserved (leaf 4, deterministic cache
/// parameters; leaf 0xB, extended topology, before Zen 2) and that AIDA64 does not print on
/// AMD-like CPUs although leaf 0 announces higher leaves.
const fn reserved_on_amd(leaf: u32) -> bool {
    matches!(leaf, 0x4 | 0xB)
}

/// What the first CPU block of a dump lacks of what it announces itself, so that a dump cut
/// short (at a line boundary, by `head` or a broken copy) is refused instead of read as a CPU
/// without the features it lost. `entries` are the block's (leaf, subleaf, registers).
///
/// Required, in this order:
///
/// - every leaf from 0 to leaf 0 EAX (the basic maximum), except leaves 4 and 0xB on AMD and
///   Hygon CPUs, which AMD documents as reserved and AIDA64 leaves out;
/// - leaf 0x80000000, present on every x86 CPU since the Pentium 4, and every leaf up to its
///   EAX; likewise for the hypervisor (0x40000000) and Centaur (0xC0000000) ranges when their
///   base leaf is present and announces a maximum within its range;
/// - for leaves 7, 0x17, 0x18, 0x1D, 0x20 and 0x24, whose subleaf 0 EAX announces the highest
///   subleaf: every subleaf up to it.
///
/// Not required, because real dumps legitimately lack them: leaf 0xD subleaf 1 and the XSAVE
/// component subleaves (old AIDA64 prints subleaves 0 and 2 only; the ICX format D dump stops
/// at subleaf 2), leaf 0x14's subleaf 1 (the ICX dump prints subleaf 0 only), leaf 0x80000020's resource subleaves (AIDA64 6.20 prints subleaf 0 only), and
/// the subleaf chains of leaves 4, 0xB, 0x1F and 0x8000001D, which end at a null subleaf that
/// AIDA64 does not print. A block cut inside one of those is caught by the leaves after it.
pub fn missing_leaves<I>(entries: I) -> MissingLeaves
where
    I: Iterator<Item = (u32, u32, CpuidRegs)> + Clone,
{
    let regs = |leaf: u32, subleaf: u32| {
        entries
            .clone()
            .find(|&(l, s, _)| l == leaf && s == subleaf)
            .map(|(_, _, r)| r)
    };
    let has_leaf = |leaf: u32| entries.clone().any(|(l, _, _)| l == leaf);
    let leaf0 = regs(0, 0).unwrap_or(CpuidRegs::ZERO);
    let amd_like = Vendor::from_regs(leaf0.b, leaf0.c, leaf0.d).is_amd_like();
    let max_extended = regs(0x8000_0000, 0).map(|r| r.a);
    let mut missing = MissingLeaves::new(leaf0.a, max_extended);

    // A run of absent leaves in `first..=last` (exceptions skipped), as items.
    let gaps = |missing: &mut MissingLeaves, first: u32, last: u32, basic: bool| {
        let mut leaf = first;
        let mut run: Option<(u32, u32)> = None;
        while leaf <= last {
            // Jump straight over a long run: the next present leaf bounds it.
            let excused = basic && amd_like && reserved_on_amd(leaf);
            let absent = !(has_leaf(leaf) || excused);
            if absent {
                run = Some(run.map_or((leaf, leaf), |(s, _)| (s, leaf)));
                let next = entries
                    .clone()
                    .map(|(l, _, _)| l)
                    .filter(|&l| l > leaf && l <= last)
                    .min();
                match next {
                    Some(n) if n > leaf + 1 => {
                        run = run.map(|(s, _)| (s, n - 1));
                        leaf = n;
                        continue;
                    }
                    None => {
                        run = run.map(|(s, _)| (s, last));
                        break;
                    }
                    Some(_) => {}
                }
            } else if let Some((s, e)) = run.take() {
                missing.push(MissingItem::Leaves { first: s, last: e });
            }
            match leaf.checked_add(1) {
                Some(n) => leaf = n,
                None => break,
            }
        }
        if let Some((s, e)) = run {
            missing.push(MissingItem::Leaves { first: s, last: e });
        }
    };

    gaps(&mut missing, 1, leaf0.a.min(RANGE_SPAN), true);
    if leaf0.a > RANGE_SPAN {
        missing.push(MissingItem::Leaves {
            first: RANGE_SPAN + 1,
            last: leaf0.a,
        });
    }
    for base in ANNOUNCED_RANGES {
        match regs(base, 0) {
            Some(r) if r.a > base && r.a - base <= RANGE_SPAN => {
                gaps(&mut missing, base + 1, r.a, false)
            }
            Some(_) => {}
            None if base == 0x8000_0000 => missing.push(MissingItem::Leaves {
                first: base,
                last: base,
            }),
            None => {}
        }
    }
    for leaf in [0x7, 0x17, 0x18, 0x1D, 0x20, 0x24] {
        let Some(sl0) = regs(leaf, 0) else { continue };
        // A subleaf count beyond what any CPU has is not a count: leave it to the policy.
        let last = sl0.a;
        if last > 0xFF {
            continue;
        }
        let mut run: Option<(u32, u32)> = None;
        for subleaf in 1..=last {
            if regs(leaf, subleaf).is_none() {
                run = Some(run.map_or((subleaf, subleaf), |(s, _)| (s, subleaf)));
            } else if let Some((s, e)) = run.take() {
                missing.push(MissingItem::Subleaves {
                    leaf,
                    first: s,
                    last: e,
                });
            }
        }
        if let Some((s, e)) = run {
            missing.push(MissingItem::Subleaves {
                leaf,
                first: s,
                last: e,
            });
        }
    }
    missing
}
