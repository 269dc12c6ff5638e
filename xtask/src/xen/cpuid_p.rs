//! Parsing Xen's `xen-cpuid -p` (the system policies as CPUID leaf and MSR lists) and
//! `xen-cpuid` (the featuresets, one line of 32-bit words each).
//!
//! `xen-cpuid -p` prints, per policy:
//!
//! ```text
//! Raw policy: 32 leaves, 2 MSRs
//!  CPUID:
//!   leaf     subleaf  -> eax      ebx      ecx      edx
//!   00000000:ffffffff -> 0000000d:756e6547:6c65746e:49656e69
//!  MSRs:
//!   index    -> value
//!   000000ce -> 0000000000000000
//! ```
//!
//! and `xen-cpuid` prints `Static sets:` and `Dynamic sets:`, each line a name padded with
//! spaces and then the words joined by `:`.

/// One CPUID leaf of a policy, as `xen_cpuid_leaf_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leaf {
    /// The leaf.
    pub leaf: u32,
    /// The subleaf, or `0xffffffff` for leaves without subleaves.
    pub subleaf: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// One policy of `xen-cpuid -p`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `Raw`, `Host`, `PV Max`, `HVM Max`, `PV Default`, `HVM Default`.
    pub name: String,
    /// The count in the heading: the serialised leaves, all-zero ones included (the listing
    /// leaves those out).
    pub nr_leaves: usize,
    /// The leaves listed (the nonzero ones).
    pub leaves: Vec<Leaf>,
    /// `(index, value)` of the MSRs listed.
    pub msrs: Vec<(u32, u64)>,
}

/// Parses the whole output of `xen-cpuid -p`.
pub fn parse_policies(text: &str) -> Result<Vec<Policy>, String> {
    let mut policies: Vec<Policy> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("xen-cpuid -p line {}: `{}`", number + 1, line.trim());
        let trimmed = line.trim();
        if let Some((name, counts)) = trimmed.split_once(" policy: ") {
            let nr_leaves = counts
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(at)?;
            policies.push(Policy {
                name: name.to_owned(),
                nr_leaves,
                ..Policy::default()
            });
            continue;
        }
        let Some((left, right)) = trimmed.split_once(" -> ") else {
            continue; // headings, the "Xen reports …" line
        };
        if left.starts_with("leaf") || left.starts_with("index") {
            continue; // column headings
        }
        let policy = policies.last_mut().ok_or_else(at)?;
        let hex32 = |s: &str| u32::from_str_radix(s, 16).map_err(|_| at());
        match left.split_once(':') {
            Some((leaf, subleaf)) => {
                let regs: Vec<u32> = right.split(':').map(hex32).collect::<Result<_, _>>()?;
                let regs: [u32; 4] = regs.try_into().map_err(|_| at())?;
                policy.leaves.push(Leaf {
                    leaf: hex32(leaf)?,
                    subleaf: hex32(subleaf)?,
                    regs,
                });
            }
            None => {
                let value = u64::from_str_radix(right, 16).map_err(|_| at())?;
                policy.msrs.push((hex32(left)?, value));
            }
        }
    }
    if policies.is_empty() {
        return Err("xen-cpuid -p: no `… policy:` heading".into());
    }
    Ok(policies)
}

/// One featureset line of `xen-cpuid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Featureset {
    /// `Static` or `Dynamic`.
    pub kind: String,
    /// E.g. `PV Max`, `HVM Hap Default`, `Raw`.
    pub name: String,
    /// The words, in Xen's order.
    pub words: Vec<u32>,
}

/// Parses the featureset lines of `xen-cpuid` (no arguments).
pub fn parse_featuresets(text: &str) -> Result<Vec<Featureset>, String> {
    let mut kind = None;
    let mut sets = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(k) = trimmed.strip_suffix(" sets:") {
            kind = Some(k.to_owned());
            continue;
        }
        let Some(kind) = &kind else { continue };
        if trimmed.is_empty() {
            continue;
        }
        // The name is everything before the last run of spaces; the words after it.
        let Some((name, words)) = trimmed.rsplit_once(' ') else {
            continue;
        };
        let words: Result<Vec<u32>, _> = words
            .split(':')
            .map(|w| u32::from_str_radix(w, 16))
            .collect();
        let words = words.map_err(|_| format!("xen-cpuid: bad featureset line `{trimmed}`"))?;
        sets.push(Featureset {
            kind: kind.clone(),
            name: name.trim().to_owned(),
            words,
        });
    }
    if sets.is_empty() {
        return Err("xen-cpuid: no `Dynamic sets:` featuresets".into());
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::{parse_featuresets, parse_policies};
    use crate::xen::serial;

    const EPYC: &str = include_str!("testdata/epyc-serial.log");

    #[test]
    fn the_recorded_epyc_policies_parse() {
        let log = serial::parse(EPYC);
        let policies = parse_policies(&log.cpuid_p.unwrap()).unwrap();
        let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Raw",
                "Host",
                "PV Max",
                "HVM Max",
                "PV Default",
                "HVM Default"
            ]
        );
        for p in &policies {
            // The listing leaves out all-zero leaves; the count in the heading does not.
            assert!(p.leaves.len() <= p.nr_leaves, "{}", p.name);
            assert_eq!(p.msrs.len(), 2, "{}", p.name);
        }
        let raw = &policies[0];
        assert_eq!(raw.nr_leaves, 50);
        assert_eq!(raw.leaves[0].leaf, 0);
        assert_eq!(raw.leaves[0].subleaf, 0xffff_ffff);
        assert_eq!(
            raw.leaves[0].regs,
            [0x0000000d, 0x68747541, 0x444d4163, 0x69746e65]
        );
        assert_eq!(raw.msrs[0], (0xce, 0));
        assert_eq!(raw.msrs[1].0, 0x10a);
    }

    #[test]
    fn the_recorded_epyc_featuresets_parse() {
        let log = serial::parse(EPYC);
        let sets = parse_featuresets(&log.featuresets.unwrap()).unwrap();
        let raw = sets
            .iter()
            .find(|s| s.kind == "Dynamic" && s.name == "Raw")
            .unwrap();
        assert_eq!(raw.words.len(), 19);
        assert_eq!(raw.words[0], 0x078bfbfd);
        let hap_max = sets
            .iter()
            .find(|s| s.kind == "Static" && s.name == "HVM Hap Max")
            .unwrap();
        assert_eq!(hap_max.words[0], 0x1fcbfbff);
        assert_eq!(
            sets.iter().filter(|s| s.kind == "Dynamic").count(),
            6,
            "Raw, Host, PV/HVM Default and Max"
        );
    }

    #[test]
    fn bad_lines_are_errors_that_name_the_line() {
        let err = parse_policies("Raw policy: 1 leaves, 0 MSRs\n  0000000g:ffffffff -> 1:2:3:4\n")
            .unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_policies("nothing\n").is_err());
        assert!(parse_policies("  00000000:ffffffff -> 1:2:3:4\n").is_err());
        assert!(parse_featuresets("Dynamic sets:\nRaw   12:zz\n").is_err());
    }
}
