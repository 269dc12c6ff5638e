//! Reads `data/generations.tbl` (the CPU generations table; its header documents the columns)
//! and generates the `GENERATIONS` table of `levelling::generation`. Every rejection names the
//! table line. Shared with `tests/generations.rs`, which feeds it malformed tables.

use std::fmt::Write as _;

/// A rejected table: the 1-based line and what is wrong there.
#[derive(Debug, PartialEq, Eq)]
pub struct TableError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number.
    pub line: usize,
    /// `intel` or `amd`.
    pub vendor: String,
    /// Inclusive family range.
    pub family: (u32, u32),
    /// Inclusive model ranges.
    pub models: Vec<(u32, u32)>,
    /// The generation's name.
    pub name: String,
    /// `Absent`, `Present` or `Faulting`.
    pub platform_info: &'static str,
    /// Mask MSR accesses need the passcode.
    pub passcode: bool,
    /// (kind variant, MSR constant, condition variant).
    pub masks: Vec<(&'static str, String, &'static str)>,
    /// Why the row is what it is.
    pub reason: String,
    /// Where the facts come from.
    pub source: String,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, TableError> {
    Err(TableError {
        line,
        message: message.into(),
    })
}

fn hex(text: &str, line: usize, what: &str) -> Result<u32, TableError> {
    match u32::from_str_radix(text, 16) {
        Ok(value) if value <= 0xfff => Ok(value),
        _ => err(line, format!("{what} `{text}` is not a hex number 0-fff")),
    }
}

fn range(text: &str, line: usize, what: &str) -> Result<(u32, u32), TableError> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (hex(lo, line, what)?, hex(hi, line, what)?),
        None => {
            let value = hex(text, line, what)?;
            (value, value)
        }
    };
    if lo > hi {
        return err(line, format!("{what} range `{text}` runs backwards"));
    }
    Ok((lo, hi))
}

fn mask(text: &str, line: usize) -> Result<(&'static str, String, &'static str), TableError> {
    let Some((kind, rest)) = text.split_once('=') else {
        return err(line, format!("mask `{text}` is not KIND=MSR_CONSTANT"));
    };
    let kind = match kind {
        "1cd" => "Leaf1",
        "e1cd" => "Extd1",
        "Da1" => "Xsave1",
        "6c" => "Thermal",
        "7ab0" => "Leaf7",
        _ => {
            return err(
                line,
                format!("unknown mask kind `{kind}` (1cd, e1cd, Da1, 6c or 7ab0)"),
            );
        }
    };
    let (msr, condition) = match rest.split_once('?') {
        None => (rest, "Always"),
        Some((msr, "leaf7")) => (msr, "Leaf7"),
        Some((msr, "leaf6c")) => (msr, "Leaf6Ecx"),
        Some((_, other)) => {
            return err(
                line,
                format!("unknown mask condition `{other}` (leaf7 or leaf6c)"),
            );
        }
    };
    let constant = !msr.is_empty()
        && msr.starts_with(|c: char| c.is_ascii_uppercase())
        && msr
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !constant {
        return err(line, format!("`{msr}` is not an MSR constant name"));
    }
    Ok((kind, msr.to_string(), condition))
}

fn row(text: &str, line: usize) -> Result<Row, TableError> {
    let mut parts = text.splitn(3, '|');
    let columns: Vec<&str> = parts.next().unwrap_or("").split_whitespace().collect();
    let (Some(reason), Some(source)) = (parts.next(), parts.next()) else {
        return err(line, "a row needs `| reason | source` after its columns");
    };
    let (reason, source) = (reason.trim(), source.trim());
    if reason.is_empty() || source.is_empty() || source.contains('|') {
        return err(line, "the reason and the source must both be given, once");
    }
    let [vendor, family, models, name, platform_info, passcode, masks] = columns[..] else {
        return err(
            line,
            format!(
                "{} columns; expected 7: vendor family models name platform-info passcode masks",
                columns.len()
            ),
        );
    };
    if !matches!(vendor, "intel" | "amd") {
        return err(line, format!("unknown vendor `{vendor}` (intel or amd)"));
    }
    let models = if models == "*" {
        vec![(0, 0xff)]
    } else {
        models
            .split(',')
            .map(|m| range(m, line, "model"))
            .collect::<Result<_, _>>()?
    };
    let platform_info = match platform_info {
        "-" => "Absent",
        "present" => "Present",
        "faulting" => "Faulting",
        other => {
            return err(
                line,
                format!("platform-info `{other}` is not -, present or faulting"),
            );
        }
    };
    let passcode = match passcode {
        "yes" => true,
        "no" => false,
        other => return err(line, format!("passcode `{other}` is not yes or no")),
    };
    let masks = if masks == "-" {
        Vec::new()
    } else {
        masks
            .split(',')
            .map(|m| mask(m, line))
            .collect::<Result<Vec<_>, _>>()?
    };
    for (i, (kind, ..)) in masks.iter().enumerate() {
        if masks[..i].iter().any(|(other, ..)| other == kind) {
            return err(line, format!("mask kind {kind} given twice"));
        }
    }
    if vendor == "amd" && platform_info != "Absent" {
        return err(line, "AMD CPUs have no MSR_PLATFORM_INFO");
    }
    Ok(Row {
        line,
        vendor: vendor.to_string(),
        family: range(family, line, "family")?,
        models,
        name: name.to_string(),
        platform_info,
        passcode,
        masks,
        reason: reason.to_string(),
        source: source.to_string(),
    })
}

/// Parses the table and checks that no two rows cover the same vendor, family and model.
pub fn parse(text: &str) -> Result<Vec<Row>, TableError> {
    let mut rows: Vec<Row> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let new = row(line, line_no)?;
        let overlaps = |a: (u32, u32), b: (u32, u32)| a.0 <= b.1 && b.0 <= a.1;
        if let Some(old) = rows.iter().find(|old| {
            old.vendor == new.vendor
                && overlaps(old.family, new.family)
                && old
                    .models
                    .iter()
                    .any(|&a| new.models.iter().any(|&b| overlaps(a, b)))
        }) {
            return err(
                line_no,
                format!(
                    "overlaps line {} ({}): a CPU may be in one row only",
                    old.line, old.name
                ),
            );
        }
        if rows.iter().any(|old| old.name == new.name) {
            return err(line_no, format!("generation name {} given twice", new.name));
        }
        rows.push(new);
    }
    if rows.is_empty() {
        return err(1, "no generations");
    }
    Ok(rows)
}

/// The Rust source of the `GENERATIONS` table.
pub fn generate(rows: &[Row]) -> String {
    let mut out =
        String::from("// Generated by build.rs from data/generations.tbl: do not edit.\n\n");
    out.push_str("/// Every generation of `data/generations.tbl`, in table order.\n");
    out.push_str("pub static GENERATIONS: &[Generation] = &[\n");
    for row in rows {
        let vendor = if row.vendor == "intel" {
            "Intel"
        } else {
            "AmdLike"
        };
        let models: Vec<String> = row
            .models
            .iter()
            .map(|(lo, hi)| format!("({lo:#x}, {hi:#x})"))
            .collect();
        let masks: Vec<String> = row
            .masks
            .iter()
            .map(|(kind, msr, condition)| {
                format!(
                    "GenerationMask {{ kind: MaskKind::{kind}, msr: msr::{msr}, \
                     condition: MaskCondition::{condition} }}"
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "    Generation {{\n        name: {:?},\n        vendor: GenerationVendor::{vendor},\n        \
             families: ({:#x}, {:#x}),\n        models: &[{}],\n        \
             platform_info: PlatformInfoPresence::{},\n        passcode: {},\n        \
             masks: &[{}],\n        reason: {:?},\n        source: {:?},\n        \
             line: {},\n    }},",
            row.name,
            row.family.0,
            row.family.1,
            models.join(", "),
            row.platform_info,
            row.passcode,
            masks.join(", "),
            row.reason,
            row.source,
            row.line,
        );
    }
    out.push_str("];\n");
    out
}
