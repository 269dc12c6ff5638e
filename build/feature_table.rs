//! The feature table's reader, checker and code generator.
//!
//! `build.rs` uses it to turn `data/features.tbl` into Rust; `tests/feature_table.rs` includes
//! the same file to prove that a bad table fails the build with a message naming its line.
//! std only: this runs on the build host.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Bits in a featureset word.
pub const WORD_BITS: u32 = 32;

/// Annotation letters in the order they are stored as bits.
pub const ANNOTATION_LETTERS: [char; 8] = ['A', 'S', 'H', 'a', 's', 'h', '!', '|'];

/// A problem in the table, with the 1-based line it is on.
#[derive(Debug, PartialEq, Eq)]
pub struct TableError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One `word` line.
#[derive(Debug, Clone)]
pub struct WordRow {
    pub index: usize,
    pub name: String,
    pub locator: String,
}

/// One feature line.
#[derive(Debug, Clone)]
pub struct FeatureRow {
    pub name: String,
    pub word: usize,
    pub bit: u32,
    /// Bit i set = `ANNOTATION_LETTERS[i]` present.
    pub annotations: u8,
    pub description: String,
    pub line: usize,
}

impl WordRow {
    /// The locator without a trailing bit range, and the bit the word starts at:
    /// `MSR.10AH[63:32]` is (`MSR.10AH`, 32); `CPUID.01H:EDX` is (`CPUID.01H:EDX`, 0).
    pub fn register_and_offset(&self) -> (&str, u32) {
        let parsed = self.locator.split_once('[').and_then(|(base, range)| {
            let (_, lo) = range.strip_suffix(']')?.split_once(':')?;
            Some((base, lo.parse().ok()?))
        });
        parsed.unwrap_or((&self.locator, 0))
    }
}

impl FeatureRow {
    /// Xen's feature number, `word * 32 + bit`.
    pub fn number(&self) -> usize {
        self.word * WORD_BITS as usize + self.bit as usize
    }

    /// Xen's user-facing name: lower case, `_` replaced by `-`.
    pub fn xen_name(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }

    fn has(&self, letter: char) -> bool {
        let i = ANNOTATION_LETTERS
            .iter()
            .position(|&l| l == letter)
            .unwrap();
        self.annotations & (1 << i) != 0
    }
}

/// What a `dep` line makes dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependent {
    Feature(String),
    Word(usize),
}

/// One `dep` line.
#[derive(Debug, Clone)]
pub struct DepRow {
    pub prerequisite: String,
    pub dependent: Dependent,
    pub reason: String,
    pub line: usize,
}

/// The whole table, checked.
#[derive(Debug)]
pub struct Table {
    pub words: Vec<WordRow>,
    pub features: Vec<FeatureRow>,
    pub deps: Vec<DepRow>,
}

/// A featureset as plain words, for generation.
pub type Words = Vec<u32>;

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, TableError> {
    Err(TableError {
        line,
        message: message.into(),
    })
}

fn is_feature_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Split off the first blank-separated field.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], s[end..].trim_start()))
}

fn parse_annotations(text: &str, line: usize) -> Result<u8, TableError> {
    if text == "-" {
        return Ok(0);
    }
    let mut bits = 0u8;
    for c in text.chars() {
        let Some(i) = ANNOTATION_LETTERS.iter().position(|&l| l == c) else {
            return err(
                line,
                format!("unknown annotation `{c}` in `{text}` (allowed: A S H a s h ! | or -)"),
            );
        };
        if bits & (1 << i) != 0 {
            return err(line, format!("annotation `{c}` given twice in `{text}`"));
        }
        bits |= 1 << i;
    }
    let scopes = bits & 0x3f;
    if scopes.count_ones() > 1 {
        return err(
            line,
            format!("annotations `{text}` name more than one guest scope"),
        );
    }
    Ok(bits)
}

/// Read and check the table.
pub fn parse(text: &str) -> Result<Table, TableError> {
    let mut words: Vec<WordRow> = Vec::new();
    let mut features: Vec<FeatureRow> = Vec::new();
    let mut deps = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_number: BTreeMap<usize, usize> = BTreeMap::new();

    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        let Some((first, rest)) = next_field(content) else {
            continue;
        };
        match first {
            "word" => {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let [index, name, locator] = fields[..] else {
                    return err(
                        line,
                        "a word line is `word <index> <xen-word-name> <locator>`",
                    );
                };
                let Ok(index) = index.parse::<usize>() else {
                    return err(line, format!("word index `{index}` is not a number"));
                };
                if index != words.len() {
                    return err(
                        line,
                        format!("word {index} out of order: expected word {}", words.len()),
                    );
                }
                words.push(WordRow {
                    index,
                    name: name.into(),
                    locator: locator.into(),
                });
            }
            "dep" => {
                let (Some((pre, rest)), true) = (next_field(rest), true) else {
                    return err(
                        line,
                        "a dep line is `dep <PREREQUISITE> <DEPENDENT> <reason>`",
                    );
                };
                let Some((dependent, reason)) = next_field(rest) else {
                    return err(
                        line,
                        "a dep line is `dep <PREREQUISITE> <DEPENDENT> <reason>`",
                    );
                };
                if reason.is_empty() {
                    return err(
                        line,
                        format!("dependency {pre} -> {dependent} has no reason"),
                    );
                }
                let dependent = match dependent.strip_prefix("word:") {
                    Some(n) => match n.parse::<usize>() {
                        Ok(n) => Dependent::Word(n),
                        Err(_) => return err(line, format!("`{dependent}` is not `word:<index>`")),
                    },
                    None => Dependent::Feature(dependent.into()),
                };
                deps.push(DepRow {
                    prerequisite: pre.into(),
                    dependent,
                    reason: reason.into(),
                    line,
                });
            }
            name => {
                if !is_feature_name(name) {
                    return err(
                        line,
                        format!("`{name}` is not a feature name (upper case, digits and `_`)"),
                    );
                }
                let Some(word) = words.last() else {
                    return err(
                        line,
                        format!("feature {name} comes before the first `word` line"),
                    );
                };
                let (Some((bit, rest)), word) = (next_field(rest), word.index) else {
                    return err(line, format!("feature {name} has no bit"));
                };
                let Ok(bit) = bit.parse::<u32>() else {
                    return err(line, format!("feature {name}: bit `{bit}` is not a number"));
                };
                if bit >= WORD_BITS {
                    return err(
                        line,
                        format!("feature {name}: bit {bit} is past the end of word {word} (0-31)"),
                    );
                }
                let Some((annotations, description)) = next_field(rest) else {
                    return err(
                        line,
                        format!("feature {name} has no annotations (use `-` for none)"),
                    );
                };
                let annotations = parse_annotations(annotations, line)?;
                if description.is_empty() {
                    return err(line, format!("feature {name} has no description"));
                }
                let row = FeatureRow {
                    name: name.into(),
                    word,
                    bit,
                    annotations,
                    description: description.into(),
                    line,
                };
                if let Some(&other) = by_name.get(name) {
                    return err(
                        line,
                        format!(
                            "duplicate feature name {name} (first on line {})",
                            features[other].line
                        ),
                    );
                }
                let xen_name = row.xen_name();
                if let Some(other) = features.iter().find(|f| f.xen_name() == xen_name) {
                    return err(
                        line,
                        format!(
                            "{name} and {} (line {}) share the name `{xen_name}`",
                            other.name, other.line
                        ),
                    );
                }
                if let Some(&other) = by_number.get(&row.number()) {
                    let other = &features[other];
                    return err(
                        line,
                        format!(
                            "{name} aliases {} (line {}): both are {word}:{bit}",
                            other.name, other.line
                        ),
                    );
                }
                by_name.insert(name.into(), features.len());
                by_number.insert(row.number(), features.len());
                features.push(row);
            }
        }
    }
    if words.is_empty() {
        return err(1, "the table declares no words");
    }
    for dep in &deps {
        if !by_name.contains_key(&dep.prerequisite) {
            return err(
                dep.line,
                format!("unknown prerequisite {}", dep.prerequisite),
            );
        }
        match &dep.dependent {
            Dependent::Feature(name) if !by_name.contains_key(name) => {
                return err(dep.line, format!("unknown dependent {name}"));
            }
            Dependent::Word(n) if *n >= words.len() => {
                return err(
                    dep.line,
                    format!("word:{n} is past the last word ({})", words.len() - 1),
                );
            }
            _ => {}
        }
    }
    let table = Table {
        words,
        features,
        deps,
    };
    table.deep_dependencies()?;
    Ok(table)
}

impl Table {
    /// Number of featureset words.
    pub fn nr_words(&self) -> usize {
        self.words.len()
    }

    fn feature(&self, name: &str) -> &FeatureRow {
        self.features
            .iter()
            .find(|f| f.name == name)
            .expect("checked in parse")
    }

    fn empty(&self) -> Words {
        vec![0; self.nr_words()]
    }

    /// Direct dependents of each `dep` line, as a set of feature numbers.
    pub fn edge_targets(&self, dep: &DepRow) -> BTreeSet<usize> {
        match &dep.dependent {
            Dependent::Feature(name) => [self.feature(name).number()].into(),
            // Every *named* feature of the word, as Xen's generator flattens it: a bit the
            // table does not name is no feature, so no dependency clears it.
            Dependent::Word(w) => self
                .features
                .iter()
                .filter(|f| f.word == *w)
                .map(FeatureRow::number)
                .collect(),
        }
    }

    /// For every prerequisite, the transitive set of its dependents (breadth first, as Xen's
    /// generator flattens them). A feature reachable from itself is a cycle: an error naming
    /// an edge on it.
    pub fn deep_dependencies(&self) -> Result<BTreeMap<usize, BTreeSet<usize>>, TableError> {
        let mut direct: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for dep in &self.deps {
            let from = self.feature(&dep.prerequisite).number();
            for to in self.edge_targets(dep) {
                direct.entry(from).or_default().push((to, dep.line));
            }
        }
        let mut deep = BTreeMap::new();
        for &key in direct.keys() {
            let mut seen = BTreeSet::new();
            let mut queue: Vec<(usize, usize)> = direct[&key].clone();
            while let Some((f, line)) = queue.pop() {
                if f == key {
                    let name = &self
                        .features
                        .iter()
                        .find(|r| r.number() == key)
                        .unwrap()
                        .name;
                    return err(
                        line,
                        format!("dependency cycle: {name} depends on itself through this edge"),
                    );
                }
                if seen.insert(f)
                    && let Some(next) = direct.get(&f)
                {
                    queue.extend(next.iter().copied());
                }
            }
            deep.insert(key, seen);
        }
        Ok(deep)
    }

    fn mask(&self, pred: impl Fn(&FeatureRow) -> bool) -> Words {
        let mut w = self.empty();
        for f in self.features.iter().filter(|f| pred(f)) {
            w[f.word] |= 1 << f.bit;
        }
        w
    }

    fn mask_of(&self, numbers: &BTreeSet<usize>) -> Words {
        let mut w = self.empty();
        for &n in numbers {
            w[n / 32] |= 1 << (n % 32);
        }
        w
    }

    /// The generated Rust source.
    pub fn generate(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        let n = self.nr_words();
        let words = |w: &Words| {
            let body: Vec<String> = w.iter().map(|x| format!("0x{x:08x}")).collect();
            format!("Featureset::from_words([{}])", body.join(", "))
        };
        let any = |f: &FeatureRow, letters: &str| letters.chars().any(|l| f.has(l));

        writeln!(
            o,
            "// @generated by build.rs from data/features.tbl. Do not edit."
        )
        .unwrap();
        writeln!(
            o,
            "/// Number of 32-bit words in a featureset (Xen's `FEATURESET_NR_ENTRIES`)."
        )
        .unwrap();
        writeln!(o, "pub const NR_WORDS: usize = {n};").unwrap();
        writeln!(o, "/// Number of named features.").unwrap();
        writeln!(o, "pub const NR_FEATURES: usize = {};", self.features.len()).unwrap();
        writeln!(
            o,
            "/// Every featureset word: Xen's short name and where its bits live."
        )
        .unwrap();
        writeln!(o, "pub static WORDS: [WordInfo; NR_WORDS] = [").unwrap();
        for w in &self.words {
            let (register, first_bit) = w.register_and_offset();
            writeln!(
                o,
                "    WordInfo {{ name: {:?}, locator: {:?}, register: {register:?}, first_bit: {first_bit} }},",
                w.name, w.locator
            )
            .unwrap();
        }
        writeln!(o, "];").unwrap();

        writeln!(o, "impl Feature {{").unwrap();
        for f in &self.features {
            let (register, first_bit) = self.words[f.word].register_and_offset();
            writeln!(
                o,
                "    /// {} (`{register}[{}]`)",
                f.description,
                first_bit + f.bit
            )
            .unwrap();
            writeln!(
                o,
                "    pub const {}: Feature = Feature({});",
                rust_ident(&f.name),
                f.number()
            )
            .unwrap();
        }
        writeln!(o, "}}").unwrap();

        writeln!(o, "/// Every named feature, ordered by feature number.").unwrap();
        writeln!(o, "pub static FEATURES: [FeatureInfo; NR_FEATURES] = [").unwrap();
        let mut sorted: Vec<&FeatureRow> = self.features.iter().collect();
        sorted.sort_by_key(|f| f.number());
        for f in &sorted {
            writeln!(
                o,
                "    FeatureInfo {{ feature: Feature::{}, name: {:?}, xen_name: {:?}, annotations: Annotations::from_bits({:#04x}), description: {:?} }},",
                rust_ident(&f.name), f.name, f.xen_name(), f.annotations, f.description
            )
            .unwrap();
        }
        writeln!(o, "];").unwrap();

        let mut by_name: Vec<&FeatureRow> = self.features.iter().collect();
        by_name.sort_by_key(|f| f.xen_name());
        writeln!(
            o,
            "/// Indices into [`FEATURES`], ordered by Xen's lower-case name, for binary search."
        )
        .unwrap();
        writeln!(o, "pub(crate) static BY_XEN_NAME: [u16; NR_FEATURES] = [").unwrap();
        for f in &by_name {
            let idx = sorted.iter().position(|g| g.name == f.name).unwrap();
            writeln!(o, "    {idx}, // {}", f.xen_name()).unwrap();
        }
        writeln!(o, "];").unwrap();

        let masks: [(&str, &str, Words); 9] = [
            (
                "KNOWN",
                "Every named feature (Xen's `INIT_KNOWN_FEATURES`).",
                self.mask(|_| true),
            ),
            (
                "SPECIAL",
                "Features Xen computes or overrides itself, annotated `!`.",
                self.mask(|f| f.has('!')),
            ),
            (
                "SIMPLE_OR",
                "Features a pool ORs rather than ANDs, annotated `|`.",
                self.mask(|f| f.has('|')),
            ),
            (
                "PV_DEFAULT",
                "Offered to PV guests by default (`A`).",
                self.mask(|f| any(f, "A")),
            ),
            (
                "PV_MAX",
                "Offered to PV guests at most (`A`, `a`).",
                self.mask(|f| any(f, "Aa")),
            ),
            (
                "HVM_SHADOW_DEFAULT",
                "Offered to shadow-paging HVM guests by default (`A`, `S`).",
                self.mask(|f| any(f, "AS")),
            ),
            (
                "HVM_SHADOW_MAX",
                "Offered to shadow-paging HVM guests at most (`A`, `a`, `S`, `s`).",
                self.mask(|f| any(f, "AaSs")),
            ),
            (
                "HVM_HAP_DEFAULT",
                "Offered to HAP HVM guests by default (`A`, `S`, `H`).",
                self.mask(|f| any(f, "ASH")),
            ),
            (
                "HVM_HAP_MAX",
                "Offered to HAP HVM guests at most (`A`, `a`, `S`, `s`, `H`, `h`).",
                self.mask(|f| any(f, "AaSsHh")),
            ),
        ];
        for (name, doc, w) in &masks {
            writeln!(o, "/// {doc}").unwrap();
            writeln!(o, "pub const {name}: Featureset = {};", words(w)).unwrap();
        }

        let deep = self.deep_dependencies().expect("checked in parse");
        let mut deep_features = self.empty();
        for &k in deep.keys() {
            deep_features[k / 32] |= 1 << (k % 32);
        }
        writeln!(
            o,
            "/// Features that have dependents (Xen's `INIT_DEEP_FEATURES`)."
        )
        .unwrap();
        writeln!(
            o,
            "pub const DEEP_FEATURES: Featureset = {};",
            words(&deep_features)
        )
        .unwrap();
        writeln!(o, "/// Each feature with dependents and all of its transitive dependents, ordered by feature.").unwrap();
        writeln!(
            o,
            "pub static DEEP_DEPS: [(Feature, Featureset); {}] = [",
            deep.len()
        )
        .unwrap();
        for (k, set) in &deep {
            let name = &sorted.iter().find(|f| f.number() == *k).unwrap().name;
            writeln!(
                o,
                "    (Feature::{}, {}),",
                rust_ident(name),
                words(&self.mask_of(set))
            )
            .unwrap();
        }
        writeln!(o, "];").unwrap();

        writeln!(
            o,
            "/// Every direct dependency edge of the table, with its reason."
        )
        .unwrap();
        writeln!(
            o,
            "pub static DEPENDENCIES: [Dependency; {}] = [",
            self.deps.len()
        )
        .unwrap();
        for d in &self.deps {
            writeln!(
                o,
                "    Dependency {{ prerequisite: Feature::{}, dependents: {}, reason: {:?} }},",
                rust_ident(&d.prerequisite),
                words(&self.mask_of(&self.edge_targets(d))),
                d.reason
            )
            .unwrap();
        }
        writeln!(o, "];").unwrap();
        out
    }
}

/// Feature names may start with a digit (`3DNOW`); Rust constants may not.
pub fn rust_ident(name: &str) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name.to_string()
    }
}
