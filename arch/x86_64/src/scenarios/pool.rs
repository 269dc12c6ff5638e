//! `agent` and `at-level`: the two boots `cargo xtask run` gives every host of its pools.
//!
//! | scenario | domains | what it prints for the xtask |
//! |---|---|---|
//! | `agent` | dom0 running the ring-3 agent `xl_agent` | the host report (levelctl's JSON, schema v1) between `agent: host report begin` and `agent: host report end` |
//! | `at-level` | dom0 (native walk), `domU1` (PV, native CPUID: levelled by the host's mechanism), `domU2` (PV, forced-emulation CPUID), then an HVM guest; the PV guests at `level_pv=`, the HVM guest at `level_hvm=` | a `level-guest` line per guest, a `view` line per guest (what its CPUIDs showed, as a featureset) |
//!
//! **The agent** is dom0's ring-3 program: native CPUID for the vendor, signature and brand
//! (dom0 sees the host), then through the hypercall gate sysctl 25 (levelling caps) and
//! sysctl 26 (get_cpu_featureset: the size query, then featuresets 0-5), into its own data
//! page. The kernel checks every return code, that each featureset is the one Xen holds, and
//! that dom0's CPUID was the CPU's, then prints the report from dom0's page (dom0 has no
//! console of its own here). `hostname=NAME` names the host in the report.
//!
//! **`at-level`** starts guests the way a toolstack does at the pool level: `level_pv=` and
//! `level_hvm=` are XAPI featureset strings (`Featureset::parse_xapi`; shorter strings are
//! zero-extended). Each becomes a domain policy through `SystemPolicies::domain_policy` (which
//! refuses what the host's max lacks), checked to be the level (`policy-is-level`, topology
//! and live-state bits aside). `domU1` is held to the fail-closed rule (refused exactly when
//! the hardware cannot hide what the level lacks; with `best_effort` it then runs anyway) and
//! judged by `Oracle::Levelled`; `domU2` is exact on any CPU. Xen and dom0 must keep the full
//! host CPUID. The HVM guest (`xl_level_hvm_walk`, under SVM: every CPUID exits) writes each
//! result into a buffer the kernel reads back and reports it with VMMCALL, where `hvm.rs`
//! checks it against `guest_cpuid`.
//!
//! `hvm_host=<dump>` is for hosts that run above the silicon shim, where the kernel has no
//! SVM (nested SVM is not modelled): that boot runs on plain QEMU with SVM instead, and takes
//! its HVM host policies from the embedded dump, booted through the crate's `Host::boot` on
//! the silicon model of that CPU (the same model the shim serves). What an HVM guest sees is
//! computed from its policy on every CPUID exit, so the QEMU CPU underneath does not show
//! through; the xtask checks that those policies are the ones the agent reported.

use core::arch::global_asm;
use core::mem::offset_of;

use xen_levelling::abi::dispatch::FEATURESET_INDEXES;
use xen_levelling::dump::Aida64Dump;
use xen_levelling::feature::NR_WORDS;
use xen_levelling::host::HostConfig;
use xen_levelling::levelling::{Mechanism, ProbeOptions};
use xen_levelling::policy::guest::CpuidEntry;
use xen_levelling::policy::system::DomainKind;
use xen_levelling::policy::{WORD_HOMES, WordHome};
use xen_levelling::silicon::SiliconModel;
use xen_levelling::{CpuPolicy, CpuidRegs, Feature, Featureset};

use crate::checks;
use crate::cmdline::Cmdline;
use crate::domain::{Domain, DomainSpec, Oracle, Program};
use crate::guest::{MAX_WALK, WALK_FORCED, WALK_YIELD, WalkList, WalkPage};
use crate::hypercall::{self, HC_CPUID_RESULT, HC_EXIT, HC_SYSCTL};
use crate::idt::HYPERCALL_VECTOR;
use crate::sync::KernelCell;
use crate::xen::Host;
use crate::{hvm, print, println, sched, shim, svm};

/// The agent scenario's name on the command line.
pub const AGENT: &str = "agent";
/// The guests-at-the-pool-level scenario's name on the command line.
pub const AT_LEVEL: &str = "at-level";

/// The CPUID queries the agent runs natively (subleaf 0): vendor, signature, brand.
const AGENT_CPUID: [u32; 6] = [0, 1, 0x8000_0000, 0x8000_0002, 0x8000_0003, 0x8000_0004];
/// Words in each featureset buffer of the agent (more than any Xen has).
const FS_BUF_WORDS: usize = 32;
/// The featureset indexes of sysctl 26: raw, host, PV default, HVM default, PV max, HVM max.
const FEATURESETS: usize = 6;

/// dom0's data page while the agent runs: what it passes and what it got back.
#[repr(C)]
struct AgentPage {
    /// The `xen_sysctl` it passes (136 bytes).
    sysctl: [u64; 17],
    /// Return codes: sysctl 25, the size query, featuresets 0-5.
    rets: [i64; 2 + FEATURESETS],
    /// The caps of sysctl 25.
    caps: u32,
    /// `nr_features` of the size query.
    size_nr: u32,
    /// `nr_features` returned with each featureset.
    nr: [u32; FEATURESETS],
    /// The native CPUID results of [`AGENT_CPUID`]: EAX, EBX, ECX, EDX.
    cpuid: [[u32; 4]; AGENT_CPUID.len()],
    /// The featuresets, by sysctl index.
    features: [[u32; FS_BUF_WORDS]; FEATURESETS],
}

const _: () = assert!(core::mem::size_of::<AgentPage>() <= 4096 && NR_WORDS <= FS_BUF_WORDS);

/// `xen_sysctl` offsets: the command, the version, and the featureset payload.
const SYSCTL_VERSION_OFF: usize = 4;
const FS_INDEX_OFF: usize = 8;
const FS_NR_OFF: usize = 12;
const FS_HANDLE_OFF: usize = 16;
/// `xen_sysctl_cpu_levelling_caps.caps`.
const CAPS_OFF: usize = 8;

global_asm!(
    r#"
    .macro AG_CPUID leaf, slot
    mov eax, \leaf
    xor ecx, ecx
    cpuid
    mov dword ptr [r12 + {cpuid} + \slot * 16], eax
    mov dword ptr [r12 + {cpuid} + \slot * 16 + 4], ebx
    mov dword ptr [r12 + {cpuid} + \slot * 16 + 8], ecx
    mov dword ptr [r12 + {cpuid} + \slot * 16 + 12], edx
    .endm

    # A zeroed xen_sysctl with command `cmd` at [r12]. Clobbers RDI, RCX, RAX.
    .macro AG_SYSCTL_START cmd
    mov rdi, r12
    mov ecx, 17
    xor eax, eax
    rep stosq
    mov dword ptr [r12], \cmd
    mov dword ptr [r12 + {version_off}], {sysctl_version}
    .endm

    .macro AG_SYSCTL_CALL
    mov rdi, r12
    mov eax, {hc_sysctl}
    int {vector}
    .endm

    .pushsection .user_text, "ax"
    .balign 16
    .global xl_agent
xl_agent:
    mov r12, rdi                            # the data page (an AgentPage)
    AG_CPUID 0x0, 0
    AG_CPUID 0x1, 1
    AG_CPUID 0x80000000, 2
    AG_CPUID 0x80000002, 3
    AG_CPUID 0x80000003, 4
    AG_CPUID 0x80000004, 5

    # sysctl 25: the levelling caps.
    AG_SYSCTL_START {cmd_caps}
    AG_SYSCTL_CALL
    mov qword ptr [r12 + {rets}], rax
    mov eax, dword ptr [r12 + {caps_off}]
    mov dword ptr [r12 + {caps}], eax

    # sysctl 26 with a NULL handle: how many words.
    AG_SYSCTL_START {cmd_fs}
    AG_SYSCTL_CALL
    mov qword ptr [r12 + {rets} + 8], rax
    mov eax, dword ptr [r12 + {fs_nr_off}]
    mov dword ptr [r12 + {size_nr}], eax

    # sysctl 26 for featuresets 0-5, each into its buffer.
    xor r13d, r13d
1:
    AG_SYSCTL_START {cmd_fs}
    mov dword ptr [r12 + {fs_index_off}], r13d
    mov dword ptr [r12 + {fs_nr_off}], {buf_words}
    mov rax, r13
    shl rax, 7                              # * FS_BUF_WORDS * 4
    lea rax, [r12 + rax + {features}]
    mov qword ptr [r12 + {fs_handle_off}], rax
    AG_SYSCTL_CALL
    mov qword ptr [r12 + r13 * 8 + {rets} + 16], rax
    mov eax, dword ptr [r12 + {fs_nr_off}]
    mov dword ptr [r12 + r13 * 4 + {nr}], eax
    inc r13d
    cmp r13d, {featuresets}
    jb 1b

    xor edi, edi
    mov eax, {hc_exit}
    int {vector}
    ud2
    .popsection

    # The HVM guest's walk: like xl_hvm_walk, and each result is also written to the buffer
    # whose address is in the walk page's `probe` field (16 bytes per query).
    .pushsection .text.xl_level_hvm_walk, "ax"
    .balign 16
    .global xl_level_hvm_walk
xl_level_hvm_walk:
    mov r12, rdi
    mov r13, qword ptr [r12 + {probe}]
    xor r15d, r15d
2:
    cmp r15d, dword ptr [r12 + {count}]
    jae 3f
    mov eax, dword ptr [r12 + r15 * 8 + {leaves}]
    mov ecx, dword ptr [r12 + r15 * 8 + {leaves} + 4]
    cpuid
    mov r14, r15
    shl r14, 4
    mov dword ptr [r13 + r14], eax
    mov dword ptr [r13 + r14 + 4], ebx
    mov dword ptr [r13 + r14 + 8], ecx
    mov dword ptr [r13 + r14 + 12], edx
    mov r9d, edx                            # cpuid_result(leaf, subleaf, a, b, c, d)
    mov r8d, ecx
    mov r10d, ebx
    mov edx, eax
    mov edi, dword ptr [r12 + r15 * 8 + {leaves}]
    mov esi, dword ptr [r12 + r15 * 8 + {leaves} + 4]
    mov eax, {hc_cpuid}
    vmmcall
    inc r15d
    jmp 2b
3:
    xor edi, edi
    mov eax, {hc_exit}
    vmmcall
    ud2
    .popsection
    "#,
    vector = const HYPERCALL_VECTOR,
    hc_sysctl = const HC_SYSCTL,
    hc_exit = const HC_EXIT,
    hc_cpuid = const HC_CPUID_RESULT,
    sysctl_version = const xen_levelling::abi::SYSCTL_INTERFACE_VERSION,
    cmd_caps = const xen_levelling::abi::SYSCTL_GET_CPU_LEVELLING_CAPS,
    cmd_fs = const xen_levelling::abi::SYSCTL_GET_CPU_FEATURESET,
    version_off = const SYSCTL_VERSION_OFF,
    caps_off = const CAPS_OFF,
    fs_index_off = const FS_INDEX_OFF,
    fs_nr_off = const FS_NR_OFF,
    fs_handle_off = const FS_HANDLE_OFF,
    buf_words = const FS_BUF_WORDS,
    featuresets = const FEATURESETS,
    cpuid = const offset_of!(AgentPage, cpuid),
    rets = const offset_of!(AgentPage, rets),
    caps = const offset_of!(AgentPage, caps),
    size_nr = const offset_of!(AgentPage, size_nr),
    nr = const offset_of!(AgentPage, nr),
    features = const offset_of!(AgentPage, features),
    probe = const offset_of!(WalkPage, probe),
    count = const offset_of!(WalkPage, count),
    leaves = const offset_of!(WalkPage, leaves),
);

const _: () = assert!(FS_BUF_WORDS * 4 == 1 << 7);

unsafe extern "C" {
    /// dom0's agent (in `.user_text`).
    safe fn xl_agent();
    /// The HVM guest's walk that keeps its results (kernel text, run at CPL0 under SVM).
    safe fn xl_level_hvm_walk();
}

/// The agent: dom0 reads the host through the ABI, the kernel prints its report.
///
/// Out of line, as [`at_level`]: their frames must not add to every other scenario's.
#[inline(never)]
pub fn agent(host: &Host, cmdline: &Cmdline) {
    // The agent starts no domain: what one would run does not matter.
    hypercall::install_abi(AGENT, xl_agent);
    let dom0 = Domain::new(
        AGENT,
        DomainSpec::dom0(host, Program::Raw { entry: xl_agent }),
        host,
    );
    let frame = dom0.space.data_frame;
    sched::add(dom0);
    sched::run();
    hypercall::uninstall_abi();
    // SAFETY: dom0's data frame is identity mapped, page aligned, and was zeroed at creation
    // (every bit pattern is a valid AgentPage); dom0 has exited and frames are never reused,
    // so nothing writes it while this reference lives.
    let page = unsafe { &*(frame as *const AgentPage) };
    if !agent_checks(host, page) {
        return;
    }
    println!(
        "agent: levelling caps {:#x} (sysctl 25); mechanism {}",
        page.caps,
        crate::levelling::current().mechanism()
    );
    println!("agent: host report begin");
    print_report(cmdline, page);
    println!("agent: host report end");
}

/// The featureset dom0 got for sysctl index `i`.
fn agent_featureset(page: &AgentPage, i: usize) -> Featureset {
    let mut words = [0; NR_WORDS];
    words.copy_from_slice(&page.features[i][..NR_WORDS]);
    Featureset::from_words(words)
}

/// The kernel's checks of what dom0 got: every call succeeded, every featureset is Xen's,
/// dom0's CPUID was the CPU's. False if the report cannot be printed.
fn agent_checks(host: &Host, page: &AgentPage) -> bool {
    let ok = checks::check(
        format_args!("{AGENT}/dom0/sysctl-levelling-caps"),
        page.rets[0] == 0,
        format_args!("returned {}", page.rets[0]),
    );
    let sized = checks::check(
        format_args!("{AGENT}/dom0/sysctl-featureset-size"),
        page.rets[1] == 0 && page.size_nr as usize == NR_WORDS,
        format_args!(
            "returned {} with {} words, expected 0 with {NR_WORDS}",
            page.rets[1], page.size_nr
        ),
    );
    let mut all = ok && sized;
    for (i, policy) in FEATURESET_INDEXES.into_iter().enumerate() {
        let expected = host.policies.get(policy).featureset();
        let got = agent_featureset(page, i);
        all &= checks::check(
            format_args!("{AGENT}/dom0/sysctl-featureset-{i}"),
            page.rets[2 + i] == 0 && page.nr[i] as usize == NR_WORDS && got == expected,
            format_args!(
                "returned {} with {} words: {} expected {}",
                page.rets[2 + i],
                page.nr[i],
                got.xen_words(),
                expected.xen_words()
            ),
        );
    }
    let mut mismatch = None;
    for (i, &leaf) in AGENT_CPUID.iter().enumerate() {
        let c = page.cpuid[i];
        let got = CpuidRegs {
            a: c[0],
            b: c[1],
            c: c[2],
            d: c[3],
        };
        if crate::xen::read_at_boot(&host.hardware, leaf, 0)
            && host.hardware.leaf(leaf, 0) != Some(got)
            && mismatch.is_none()
        {
            mismatch = Some(leaf);
        }
    }
    all &= checks::check(
        format_args!("{AGENT}/dom0/native-cpuid-is-host"),
        mismatch.is_none(),
        format_args!(
            "leaf {:#x} differs from the boot read",
            mismatch.unwrap_or(0)
        ),
    );
    all
}

/// Prints a string as a JSON string literal (ASCII; anything else becomes `?`).
fn json_str(text: &str) {
    print!("\"");
    for c in text.chars() {
        match c {
            '"' => print!("\\\""),
            '\\' => print!("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => print!("{c}"),
            _ => print!("?"),
        }
    }
    print!("\"");
}

/// Prints `"key": [names]`.
fn json_names(key: &str, fs: &Featureset, last: bool) {
    print!("    \"{key}\": [");
    for (i, f) in fs.iter().enumerate() {
        if i > 0 {
            print!(", ");
        }
        print!("\"{f}\"");
    }
    println!("]{}", if last { "" } else { "," });
}

/// ASCII text of CPUID register bytes, blanks collapsed, into `buf`.
fn regs_text<'a>(regs: &[u32], buf: &'a mut [u8; 48]) -> &'a str {
    let mut len = 0;
    let mut blank = true;
    for byte in regs.iter().flat_map(|r| r.to_le_bytes()) {
        if byte == 0 {
            break;
        }
        let byte = if byte.is_ascii_graphic() { byte } else { b' ' };
        if byte == b' ' && blank {
            continue;
        }
        blank = byte == b' ';
        buf[len] = byte;
        len += 1;
    }
    while len > 0 && buf[len - 1] == b' ' {
        len -= 1;
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// The host report, levelctl's JSON schema v1 (`levelctl/src/input.rs`).
fn print_report(cmdline: &Cmdline, page: &AgentPage) {
    let leaf0 = page.cpuid[0];
    let sig = xen_levelling::cpuid::Signature::from_eax(page.cpuid[1][0]);
    let mut vendor = [0u8; 48];
    let vendor = regs_text(&[leaf0[1], leaf0[3], leaf0[2]], &mut vendor);
    println!("{{");
    println!("  \"format\": \"levelctl-host-report\",");
    println!("  \"version\": 1,");
    if let Some(name) = cmdline.value("hostname") {
        print!("  \"name\": ");
        json_str(name);
        println!(",");
    }
    print!("  \"vendor\": ");
    json_str(vendor);
    println!(",");
    println!(
        "  \"family\": {}, \"model\": {}, \"stepping\": {},",
        sig.family, sig.model, sig.stepping
    );
    if page.cpuid[2][0] >= 0x8000_0004 {
        let mut brand = [0u8; 48];
        let regs: [u32; 12] = core::array::from_fn(|i| page.cpuid[3 + i / 4][i % 4]);
        print!("  \"brand\": ");
        json_str(regs_text(&regs, &mut brand));
        println!(",");
    }
    let faulting = page.caps & xen_levelling::abi::levelcap::FAULTING != 0;
    println!("  \"cpuid_faulting\": {faulting},");
    println!("  \"featureset_words\": {},", page.size_nr);
    if let Some(option) = cmdline.value("cpuid") {
        print!("  \"cpuid_option\": ");
        json_str(option);
        println!(",");
    }
    println!("  \"featuresets\": {{");
    json_names("hardware", &agent_featureset(page, 0), false);
    json_names("pv_default", &agent_featureset(page, 2), false);
    json_names("pv_max", &agent_featureset(page, 4), false);
    json_names("hvm_default", &agent_featureset(page, 3), false);
    json_names("hvm_max", &agent_featureset(page, 5), true);
    println!("  }}");
    println!("}}");
}

/// A level from the command line (`level_pv=`/`level_hvm=`), or a failed check.
fn level(cmdline: &Cmdline, key: &str) -> Option<Featureset> {
    let text = cmdline.value(key)?;
    match Featureset::parse_xapi(text) {
        Ok(fs) => Some(fs),
        Err(error) => {
            checks::fail(
                format_args!("{AT_LEVEL}/{key}"),
                format_args!("`{text}`: {error}"),
            );
            None
        }
    }
}

/// `policy` carries exactly `level` (the bits that follow live state or topology aside).
fn check_policy_is_level(name: &str, policy: &CpuPolicy, level: &Featureset) {
    let aside = xen_levelling::levelling::domain::not_levelled();
    let got = policy.featureset() - aside;
    let want = *level - aside;
    checks::noted(
        format_args!("{AT_LEVEL}/{name}/policy-is-level"),
        got == want,
        format_args!(
            "{} features; beyond the level [{}], missing [{}]",
            got.len(),
            (got - want).names(),
            (want - got).names()
        ),
    );
}

/// What a guest was, for the `level-guest` line.
struct GuestLine {
    name: &'static str,
    kind: &'static str,
    cpuid: &'static str,
    started: &'static str,
    policy: Featureset,
    unenforceable: Featureset,
    not_shown: Featureset,
    /// The PV levelling mechanism (`None` for the HVM guest: every CPUID exits).
    mechanism: Option<Mechanism>,
}

impl GuestLine {
    fn print(&self) {
        println!(
            "level-guest {} kind={} cpuid={} started={} policy={} unenforceable={} not_shown={} mechanism={}",
            self.name,
            self.kind,
            self.cpuid,
            self.started,
            self.policy.xen_words(),
            self.unenforceable.xen_words(),
            self.not_shown.xen_words(),
            Mech(self.mechanism)
        );
    }
}

/// A guest's mechanism for the `level-guest` line.
struct Mech(Option<Mechanism>);

impl core::fmt::Display for Mech {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(m) => write!(f, "{m}"),
            None => f.write_str("HVM CPUID exit"),
        }
    }
}

/// dom0's walk list, the PV guests' and the HVM guest's (statics: 4 KiB each).
static LISTS: KernelCell<[WalkList; 3]> = KernelCell::new([const { WalkList::new() }; 3]);

/// The guests at the pool level.
#[inline(never)]
pub fn at_level(host: &Host, cmdline: &Cmdline) {
    // SAFETY: main flow; the lists are used by this scenario only, once per boot.
    let [dom0_list, pv_list, hvm_list] = unsafe { &mut *LISTS.get() };
    let best_effort = cmdline
        .as_str()
        .split_ascii_whitespace()
        .any(|w| w == "best_effort");
    let pv = level(cmdline, "level_pv");
    let hvm_level = level(cmdline, "level_hvm");
    if cmdline.value("level_pv").is_none() && cmdline.value("level_hvm").is_none() {
        checks::fail(
            format_args!("{AT_LEVEL}/level"),
            format_args!("no level_pv= or level_hvm= on the command line"),
        );
        return;
    }
    let mut lines: [Option<GuestLine>; 3] = [None, None, None];
    *dom0_list = WalkList::with_word_homes(&host.policies.raw);
    sched::add(Domain::new(
        AT_LEVEL,
        DomainSpec::dom0(
            host,
            Program::Walk {
                list: dom0_list,
                rounds: 1,
                flags: WALK_YIELD,
            },
        ),
        host,
    ));
    if let Some(level) = pv {
        match host
            .policies
            .domain_policy(DomainKind::Pv, host.vendor, &level)
        {
            Ok(policy) => {
                check_policy_is_level("pv", &policy, &level);
                *pv_list = WalkList::with_word_homes(&policy);
                lines[0] = start_pv(host, "domU1", 1, policy, pv_list, false, best_effort);
                lines[1] = start_pv(host, "domU2", 2, policy, pv_list, true, best_effort);
            }
            Err(error) => checks::fail(
                format_args!("{AT_LEVEL}/pv/policy"),
                format_args!("the host refuses the level: {error:?}"),
            ),
        }
    }
    sched::run();
    super::check_xen_sees_host(AT_LEVEL, host, dom0_list);
    if let Some(level) = hvm_level {
        // The policies of `hvm_host=`'s CPU, or this host's own.
        let policy_host = match cmdline.value("hvm_host") {
            Some(name) => dump_host(host, name),
            None => Some(host),
        };
        if let Some(policy_host) = policy_host {
            lines[2] = run_hvm(host, policy_host, &level, hvm_list);
        }
    }
    for line in lines.iter().flatten() {
        line.print();
    }
}

/// Creates and starts a PV guest at `policy`: `forced` walks with the forced-emulation
/// prefix (exact on any CPU, started with best effort as `pv-forced` does); otherwise native
/// CPUID under the host's mechanism and the fail-closed rule, checked.
#[inline(never)]
fn start_pv(
    host: &Host,
    name: &'static str,
    domid: u16,
    policy: CpuPolicy,
    list: &WalkList,
    forced: bool,
    best_effort: bool,
) -> Option<GuestLine> {
    let (oracle, flags) = if forced {
        (Oracle::Policy(CpuidEntry::ForcedEmulation), WALK_FORCED)
    } else {
        (Oracle::Levelled, 0)
    };
    let mut domain = Domain::new(
        AT_LEVEL,
        DomainSpec {
            name,
            domid,
            hardware_domain: false,
            policy,
            oracle,
            program: Program::Walk {
                list,
                rounds: 1,
                flags: flags | WALK_YIELD,
            },
            per_result_checks: false,
        },
        host,
    )
    .with_view();
    let l = *domain.levelling();
    let mut line = GuestLine {
        name,
        kind: "pv",
        cpuid: if forced { "forced" } else { "native" },
        started: "yes",
        policy: policy.featureset(),
        unenforceable: l.unenforceable(),
        not_shown: l.not_shown(),
        mechanism: Some(l.mechanism()),
    };
    if forced {
        line.unenforceable = Featureset::EMPTY;
        line.not_shown = Featureset::EMPTY;
        sched::add(domain.with_best_effort());
        return Some(line);
    }
    let refused = domain.start().err();
    let must_refuse = l.mechanism() == Mechanism::None;
    checks::noted(
        format_args!("{AT_LEVEL}/{name}/fail-closed"),
        refused.is_some() != l.unenforceable().is_empty() && (refused.is_some() || !must_refuse),
        format_args!(
            "{} (fail-closed list [{}])",
            if refused.is_some() {
                "refused"
            } else {
                "started"
            },
            l.unenforceable().names()
        ),
    );
    if refused.is_some() {
        if !best_effort {
            line.started = "refused";
            // Keep it in the run: it reports its refusal when the run ends.
            sched::add(domain);
            return Some(line);
        }
        line.started = "best-effort";
        domain = domain.with_best_effort();
    }
    sched::add(domain);
    Some(line)
}

/// Where the HVM guest's results go (16 bytes per query).
static HVM_RESULTS: KernelCell<[[u32; 4]; MAX_WALK]> = KernelCell::new([[0; 4]; MAX_WALK]);
/// The silicon model of `hvm_host=`, kept out of the stack.
static MODEL: KernelCell<Option<SiliconModel>> = KernelCell::new(None);
/// The host `hvm_host=` describes, as the crate booted it (in place: it is 14 KB), and the
/// kernel's view of it.
static DUMP_BOOTED: KernelCell<xen_levelling::host::Host> =
    KernelCell::new(xen_levelling::host::Host::UNBOOTED);
static DUMP_HOST: KernelCell<Option<Host>> = KernelCell::new(None);

/// The host policies of dump `name` (`hvm_host=`): the crate's `Host::boot` on its silicon
/// model, with what the kernel above the shim would find (not virtualised; HAP where the
/// dump's CPU has SVM with nested paging).
#[inline(never)]
fn dump_host(host: &Host, name: &str) -> Option<&'static Host> {
    let (stem, text) = match shim::profile(name) {
        Ok(found) => found,
        Err(error) => {
            checks::fail(format_args!("{AT_LEVEL}/hvm/host"), format_args!("{error}"));
            return None;
        }
    };
    let dump = match Aida64Dump::parse(text) {
        Ok(dump) => dump,
        Err(error) => {
            checks::fail(
                format_args!("{AT_LEVEL}/hvm/host"),
                format_args!("{stem}: {error}"),
            );
            return None;
        }
    };
    let dumped = dump.raw_msrs();
    // SAFETY: main flow; this static is used here only.
    let model = unsafe { &mut *MODEL.get() }.insert(SiliconModel::new(&dump, dumped));
    let hardware = *model.raw();
    let fs = hardware.featureset();
    let svm = fs.contains(Feature::SVM);
    let npt = svm
        && hardware.max_extd_leaf() >= 0x8000_000a
        && hardware.leaf(0x8000_000a, 0).unwrap_or_default().d & 1 != 0;
    // SAFETY: main flow; this static is used here only, once per boot.
    let booted: &'static xen_levelling::host::Host = unsafe {
        let booted = &mut *DUMP_BOOTED.get();
        booted.boot_in_place(
            model,
            HostConfig {
                probe: ProbeOptions { virtualised: false },
                hap: npt,
                ..HostConfig::default()
            },
        );
        booted
    };
    // SAFETY: main flow; this static is used here only, once per boot.
    let dumped = unsafe { &mut *DUMP_HOST.get() }.insert(Host {
        hardware,
        policies: booted.system(),
        vendor: hardware.vendor(),
        svm,
        npt,
        cr4_osxsave: host.cr4_osxsave,
    });
    println!(
        "at-level: HVM host policies from {stem} (its silicon model, booted in this kernel): hvm-default {} hvm-max {}",
        dumped.policies.hvm_default.featureset().xen_words(),
        dumped.policies.hvm_max.featureset().xen_words()
    );
    Some(dumped)
}

/// The HVM guest at `level`, on this CPU's SVM, with `policy_host`'s policies (this host's,
/// or `hvm_host=`'s).
#[inline(never)]
fn run_hvm(
    host: &Host,
    policy_host: &Host,
    level: &Featureset,
    list: &mut WalkList,
) -> Option<GuestLine> {
    if !svm::present() {
        checks::fail(
            format_args!("{AT_LEVEL}/hvm/svm"),
            format_args!("no SVM on this CPU (use an AMD model, or an Intel one with ,+svm)"),
        );
        return None;
    }
    let kind = policy_host.hvm_kind();
    let policy = match policy_host
        .policies
        .domain_policy(kind, policy_host.vendor, level)
    {
        Ok(policy) => policy,
        Err(error) => {
            checks::fail(
                format_args!("{AT_LEVEL}/hvm/policy"),
                format_args!("the host refuses the level: {error:?}"),
            );
            return None;
        }
    };
    check_policy_is_level("hvm", &policy, level);
    *list = WalkList::with_word_homes(&policy);
    let results = HVM_RESULTS.get() as u64;
    let fill = |page: &mut WalkPage| {
        page.fill(list, 1, 0, 0x4c00_0001);
        page.probe = results;
    };
    let domain = policy_host.guest_domain(kind, 1, false);
    match hvm::run_program(
        AT_LEVEL,
        xl_level_hvm_walk,
        policy,
        domain,
        host.cr4_osxsave,
        fill,
    ) {
        Ok(finished) => {
            checks::check(
                format_args!("{AT_LEVEL}/hvm/all-results-reported"),
                finished,
                format_args!("the guest did not finish its walk"),
            );
        }
        Err(error) => {
            checks::fail(format_args!("{AT_LEVEL}/hvm/svm"), format_args!("{error}"));
            return None;
        }
    }
    // SAFETY: the guest has stopped; main flow; nothing else uses the buffer.
    let results = unsafe { &*HVM_RESULTS.get() };
    let (seen, words) = view_of(&policy, list, results);
    println!(
        "view {AT_LEVEL}/hvm: {}; words {words:#x}",
        seen.xen_words()
    );
    Some(GuestLine {
        name: "hvm",
        kind: "hvm",
        cpuid: "vmexit",
        started: "yes",
        policy: policy.featureset(),
        unenforceable: Featureset::EMPTY,
        not_shown: Featureset::EMPTY,
        mechanism: None,
    })
}

/// The featureset words the HVM guest's results carry (leaves within its policy only), and
/// which words it saw (bit n = word n).
fn view_of(policy: &CpuPolicy, list: &WalkList, results: &[[u32; 4]]) -> (Featureset, u32) {
    let mut seen = Featureset::EMPTY;
    let mut words = 0u32;
    for (query, r) in list.as_slice().iter().zip(results) {
        if !crate::xen::read_at_boot(policy, query.leaf, query.subleaf) {
            continue;
        }
        let got = CpuidRegs {
            a: r[0],
            b: r[1],
            c: r[2],
            d: r[3],
        };
        for (word, home) in WORD_HOMES.iter().enumerate() {
            if let WordHome::Cpuid { leaf, subleaf, reg } = *home
                && (leaf, subleaf) == (query.leaf, query.subleaf)
            {
                seen.set_word(word, reg.get(&got));
                words |= 1 << word;
            }
        }
    }
    (seen, words)
}
