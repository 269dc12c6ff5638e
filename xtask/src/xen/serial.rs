//! Reading a real Xen boot's serial log: Xen's own lines (`(XEN) …`), dom0's kernel, and what
//! our initramfs's `/init` prints between its `xenboot:` markers: the measuring program's
//! `xenbench` lines (`xtask/xen-guest/measure.c`), `xen-cpuid -p` and `xen-cpuid`.

/// One CPUID timed in dom0 user space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// The leaf.
    pub leaf: u32,
    /// The subleaf.
    pub subleaf: u32,
    /// Guest instructions per CPUID (median of 4001, the RDTSC frame subtracted).
    pub instructions: u64,
    /// What the CPUID returned: EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// What one boot's log says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XenLog {
    /// `Xen version 4.17.7 (Debian …)`: the version word.
    pub version: Option<String>,
    /// Xen's command line, as it printed it.
    pub command_line: Option<String>,
    /// The value of `Levelling caps: 0x…` (printed with `cpuinfo`).
    pub levelling_caps: Option<u32>,
    /// The `MSR defaults: …` line that follows it (the mask MSRs' boot values).
    pub msr_defaults: Option<String>,
    /// `HVM: SVM enabled` / `HVM: VMX enabled`.
    pub hvm: bool,
    /// `HVM: Hardware Assisted Paging (HAP) detected`.
    pub hap: bool,
    /// Forced-emulation CPUIDs (`ud2; .ascii "xen"; cpuid`), in the order measured.
    pub forced: Vec<Timed>,
    /// Plain CPUIDs (native unless Xen faults dom0's CPUID).
    pub plain: Vec<Timed>,
    /// The RDTSC pair around nothing (`xenbench empty`) and the frame subtracted (`frame`).
    pub empty: Option<u64>,
    /// See [`XenLog::empty`].
    pub frame: Option<u64>,
    /// The measuring program finished (`xenbench done`).
    pub measured: bool,
    /// The text of `xen-cpuid -p`.
    pub cpuid_p: Option<String>,
    /// The text of `xen-cpuid` (the featuresets).
    pub featuresets: Option<String>,
    /// `/init` reached its end (`xenboot: done`).
    pub done: bool,
    /// Xen's `Panic on CPU` or dom0's `Kernel panic` line, if any.
    pub panic: Option<String>,
}

impl XenLog {
    /// The forced-emulation figure for `(leaf, subleaf)`.
    pub fn forced(&self, leaf: u32, subleaf: u32) -> Option<u64> {
        find(&self.forced, leaf, subleaf)
    }

    /// The plain CPUID figure for `(leaf, subleaf)`.
    pub fn plain(&self, leaf: u32, subleaf: u32) -> Option<u64> {
        find(&self.plain, leaf, subleaf)
    }

    /// The `Levelling caps:` line as Xen printed it, or why there is none.
    pub fn caps_text(&self) -> String {
        match self.levelling_caps {
            Some(caps) => format!("Levelling caps: {caps:#x} ({})", caps_names(caps)),
            None => "no `Levelling caps:` line (Xen prints it with `cpuinfo`)".into(),
        }
    }
}

fn find(list: &[Timed], leaf: u32, subleaf: u32) -> Option<u64> {
    list.iter()
        .find(|t| t.leaf == leaf && t.subleaf == subleaf)
        .map(|t| t.instructions)
}

/// Xen's `XEN_SYSCTL_CPU_LEVELCAP_*` bits (public/sysctl.h, before 4.22), by name.
pub const CAPS: [(u32, &str); 9] = [
    (1 << 0, "faulting"),
    (1 << 1, "ecx"),
    (1 << 2, "edx"),
    (1 << 3, "extd_ecx"),
    (1 << 4, "extd_edx"),
    (1 << 5, "xsave_eax"),
    (1 << 6, "thermal_ecx"),
    (1 << 7, "l7s0_eax"),
    (1 << 8, "l7s0_ebx"),
];

/// `ecx,edx,…` for a caps value (`none` for 0).
pub fn caps_names(caps: u32) -> String {
    let names: Vec<&str> = CAPS
        .iter()
        .filter(|(bit, _)| caps & bit != 0)
        .map(|&(_, name)| name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// Parses a whole serial log.
pub fn parse(log: &str) -> XenLog {
    let mut out = XenLog::default();
    // The section being collected (between `xenboot: X begin` and `xenboot: X end`).
    let mut section: Option<(&str, String)> = None;
    for raw in log.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(marker) = line.strip_prefix("xenboot: ") {
            let marker = marker.trim();
            if let Some(name) = marker.strip_suffix(" begin") {
                section = Some((name, String::new()));
            } else if let Some(name) = marker.strip_suffix(" end") {
                if let Some((open, text)) = section.take()
                    && open == name
                {
                    match name {
                        "xen-cpuid-p" => out.cpuid_p = Some(text),
                        "xen-cpuid" => out.featuresets = Some(text),
                        _ => {}
                    }
                }
            } else if marker == "done" {
                out.done = true;
            }
            continue;
        }
        if let Some((_, text)) = section.as_mut() {
            // dom0's kernel may print into the middle of a section: keep only the tool's lines.
            if !line.starts_with("(XEN)") && !line.starts_with('[') {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("xenbench ") {
            parse_bench(rest, &mut out);
            continue;
        }
        let xen = line.strip_prefix("(XEN) ").map(str::trim);
        match xen {
            Some(text) => parse_xen(text, &mut out),
            None if line.contains("Kernel panic") => {
                out.panic.get_or_insert_with(|| line.trim().to_owned());
            }
            None => {}
        }
    }
    out
}

/// One of Xen's own lines.
fn parse_xen(text: &str, out: &mut XenLog) {
    if let Some(rest) = text.strip_prefix("Xen version ") {
        out.version
            .get_or_insert_with(|| rest.split_whitespace().next().unwrap_or("").to_owned());
    } else if let Some(rest) = text.strip_prefix("Command line: ") {
        out.command_line.get_or_insert_with(|| rest.to_owned());
    } else if let Some(rest) = text.strip_prefix("Levelling caps: ") {
        let value = rest.trim().trim_start_matches("0x");
        out.levelling_caps = u32::from_str_radix(value, 16).ok();
    } else if let Some(rest) = text.strip_prefix("MSR defaults: ") {
        out.msr_defaults.get_or_insert_with(|| rest.to_owned());
    } else if text == "HVM: SVM enabled" || text == "HVM: VMX enabled" {
        out.hvm = true;
    } else if text.starts_with("HVM: Hardware Assisted Paging (HAP) detected") {
        out.hap = true;
    } else if text.starts_with("Panic on CPU") || text.starts_with("FATAL") {
        out.panic.get_or_insert_with(|| text.to_owned());
    }
}

/// A `xenbench …` line (after the prefix).
fn parse_bench(rest: &str, out: &mut XenLog) {
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        ["empty", n] => out.empty = n.parse().ok(),
        ["frame", n] => out.frame = n.parse().ok(),
        ["done"] => out.measured = true,
        [kind @ ("forced" | "plain"), leaf, n, a, b, c, d] => {
            let Some((leaf, subleaf)) = leaf.split_once('.') else {
                return;
            };
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let (Some(leaf), Some(subleaf), Some(instructions)) =
                (hex(leaf), hex(subleaf), n.parse().ok())
            else {
                return;
            };
            let (Some(a), Some(b), Some(c), Some(d)) = (hex(a), hex(b), hex(c), hex(d)) else {
                return;
            };
            let timed = Timed {
                leaf,
                subleaf,
                instructions,
                regs: [a, b, c, d],
            };
            if *kind == "forced" {
                out.forced.push(timed);
            } else {
                out.plain.push(timed);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{caps_names, parse};

    const EPYC: &str = include_str!("testdata/epyc-serial.log");

    #[test]
    fn a_recorded_epyc_boot_parses_whole() {
        let log = parse(EPYC);
        assert_eq!(log.version.as_deref(), Some("4.17.7"));
        assert!(
            log.command_line
                .as_deref()
                .is_some_and(|c| c.contains("smap=hvm"))
        );
        assert_eq!(log.levelling_caps, Some(0x19e));
        assert!(
            log.msr_defaults
                .as_deref()
                .is_some_and(|m| m.starts_with("1d 0x078bfbfd"))
        );
        assert!(log.hvm && log.hap);
        assert_eq!(log.empty, Some(3));
        assert_eq!(log.frame, Some(7));
        assert!(log.measured && log.done);
        assert_eq!(log.panic, None);
        assert_eq!(log.forced.len(), 7);
        assert_eq!(log.forced(0, 0), Some(353));
        assert_eq!(log.forced(1, 0), Some(396));
        assert_eq!(log.forced(0xd, 1), Some(353));
        assert_eq!(log.forced(0x8000_0001, 0), Some(356));
        assert_eq!(log.forced(0x3fff_ffff, 0), Some(321));
        assert_eq!(log.plain(1, 0), Some(1), "dom0's CPUID is not faulted");
        assert_eq!(
            log.forced[1].regs,
            [0x00800f12, 0x00000800, 0xfed83203, 0x0789c3f5]
        );
        let p = log.cpuid_p.expect("xen-cpuid -p captured");
        assert!(p.starts_with("Xen reports there are maximum 120 leaves and 2 MSRs\n"));
        assert!(p.contains("HVM Default policy: 49 leaves, 2 MSRs"));
        let fs = log.featuresets.expect("xen-cpuid captured");
        assert!(fs.contains("Dynamic sets:"));
    }

    #[test]
    fn caps_are_named_with_xens_bit_names() {
        assert_eq!(
            caps_names(0x19e),
            "ecx,edx,extd_ecx,extd_edx,l7s0_eax,l7s0_ebx"
        );
        assert_eq!(caps_names(0x3e), "ecx,edx,extd_ecx,extd_edx,xsave_eax");
        assert_eq!(caps_names(0), "none");
        assert_eq!(caps_names(1), "faulting");
    }

    #[test]
    fn kernel_lines_inside_a_section_are_dropped_and_panics_are_seen() {
        let log = parse(
            "xenboot: xen-cpuid-p begin\nRaw policy: 1 leaves, 0 MSRs\n[    3.1] noise\r\n\
             (XEN) noise\n  00000000:ffffffff -> 0000000d:1:2:3\nxenboot: xen-cpuid-p end\n\
             (XEN) Panic on CPU 0:\nxenbench forced 1.0 x 1 2 3 4\nxenbench bogus\n",
        );
        assert_eq!(
            log.cpuid_p.as_deref(),
            Some("Raw policy: 1 leaves, 0 MSRs\n  00000000:ffffffff -> 0000000d:1:2:3\n")
        );
        assert_eq!(log.panic.as_deref(), Some("Panic on CPU 0:"));
        assert!(log.forced.is_empty() && !log.done && !log.measured);
    }
}
