//! [`CpuidTable`]: a domain's CPUID answers, computed once when its policy is set.
//!
//! `guest_cpuid` derives every answer from the policy on every query: it range-checks the leaf
//! against the policy's maxima, finds the leaf's array, applies the feature conditions of the
//! dynamic pass. None of that depends on the query's vCPU except a handful of bits, so a
//! [`CpuidTable`] does it once per domain: every (leaf, subleaf) a guest can name maps, by
//! arithmetic on the leaf alone (no policy read), to one row of a fixed layout; each row holds
//! the static pass's answer for this domain (zero where the policy's maxima put the leaf out of
//! range) and a [`Patch`] naming what the dynamic pass still does to it. A query is then one
//! bounded, speculation-clamped load ([`crate::nospec`]) plus, for the few dynamic rows, a
//! patch from the vCPU's state: OSXSAVE and OSPKE from its CR4, the APIC ID, the XSAVE sizes
//! from XCR0 and XSS, SYSCALL outside long mode, the hardware domain's leaks. Which patch a row
//! gets already holds every condition on the domain (its kind, its features, its maxima), so a
//! patch reads only the vCPU.
//!
//! The answers are exactly `guest_cpuid`'s, for every leaf and subleaf, every policy and every
//! vCPU state: the rows are filled by `guest_cpuid`'s own static pass, and a test compares the
//! two over every dump's system policies, domain kinds and vCPU states.

use super::{
    CpuidEntry, GuestContext, GuestDomain, VcpuState, XEN_LEAF_COUNT, static_pass, xsave_size_of,
};
use crate::cpuid::CpuidRegs;
use crate::feature::Feature;
use crate::nospec;
use crate::policy::system::DomainKind;
use crate::policy::{
    CpuPolicy, EXTD_BASE, NR_CACHE, NR_EXTD, NR_FEAT, NR_TOPO, NR_XSTATE, XEN_LEAVES,
    XEN_LEAVES_RELOCATED,
};

/// The all-zero row every out-of-range query lands on.
const ZERO_ROW: usize = 0;
/// Basic leaves 0 to 0xD without subleaves: row `BASIC_ROW + leaf` (the rows of leaves 4, 7,
/// 0xB and 0xD stay zero: those leaves have rows of their own below).
const BASIC_ROW: usize = 1;
/// Leaf 4 subleaves.
const CACHE_ROW: usize = BASIC_ROW + 0xe;
/// Leaf 7 subleaves.
const FEAT_ROW: usize = CACHE_ROW + NR_CACHE;
/// Leaf 0xB subleaves.
const TOPO_ROW: usize = FEAT_ROW + NR_FEAT;
/// Leaf 0xB past its subleaves: zero, but the x2APIC patch still applies to it.
const TOPO_BEYOND_ROW: usize = TOPO_ROW + NR_TOPO;
/// Leaf 0xD subleaves.
const XSTATE_ROW: usize = TOPO_BEYOND_ROW + 1;
/// Extended leaves 0x80000000 + n.
const EXTD_ROW: usize = XSTATE_ROW + NR_XSTATE;
/// Xen leaves 0 to 5 at 0x40000000, then at 0x40000100.
const XEN_ROW: usize = EXTD_ROW + NR_EXTD;
/// Xen leaves per range that can be non-zero (0 to `XEN_LEAF_COUNT`).
const XEN_ROWS: usize = XEN_LEAF_COUNT as usize + 1;
/// Rows in a table.
pub const ROWS: usize = XEN_ROW + 2 * XEN_ROWS;

/// How a basic leaf's subleaf picks its row: `base + (subleaf & mask)` while that is below
/// `count`, else `beyond`.
#[derive(Clone, Copy)]
struct BasicLeaf {
    base: u8,
    count: u8,
    beyond: u8,
    mask: u32,
}

const fn basic_dir() -> [BasicLeaf; 16] {
    let mut dir = [BasicLeaf {
        base: ZERO_ROW as u8,
        count: 0,
        beyond: ZERO_ROW as u8,
        mask: 0,
    }; 16];
    let mut leaf = 0;
    while leaf < 0xe {
        dir[leaf] = match leaf {
            0x4 => sub_leaf(CACHE_ROW, NR_CACHE, ZERO_ROW),
            0x7 => sub_leaf(FEAT_ROW, NR_FEAT, ZERO_ROW),
            0xb => sub_leaf(TOPO_ROW, NR_TOPO, TOPO_BEYOND_ROW),
            0xd => sub_leaf(XSTATE_ROW, NR_XSTATE, ZERO_ROW),
            // Leaves without subleaves ignore the subleaf: mask 0, one row.
            _ => BasicLeaf {
                base: (BASIC_ROW + leaf) as u8,
                count: 1,
                beyond: ZERO_ROW as u8,
                mask: 0,
            },
        };
        leaf += 1;
    }
    dir
}

const fn sub_leaf(base: usize, count: usize, beyond: usize) -> BasicLeaf {
    BasicLeaf {
        base: base as u8,
        count: count as u8,
        beyond: beyond as u8,
        mask: !0,
    }
}

/// The row of each basic leaf (indexed by the leaf's low 4 bits: 16 entries, so the index is
/// in bounds by construction, speculation included; entries 0xE and 0xF are never selected).
const BASIC_DIR: [BasicLeaf; 16] = basic_dir();

const _: () = assert!(ROWS <= u8::MAX as usize);

/// The row a query lands on. The same for every domain: the domain's maxima are in the rows.
#[inline(always)]
const fn row_of(leaf: u32, subleaf: u32) -> usize {
    if leaf < 0xe {
        let d = BASIC_DIR[(leaf & 0xf) as usize];
        let sub = subleaf & d.mask;
        if sub < d.count as u32 {
            d.base as usize + sub as usize
        } else {
            d.beyond as usize
        }
    } else if leaf.wrapping_sub(EXTD_BASE) < NR_EXTD as u32 {
        EXTD_ROW + leaf.wrapping_sub(EXTD_BASE) as usize
    } else if (leaf ^ XEN_LEAVES) < 0x200 && leaf & 0xff < XEN_ROWS as u32 {
        XEN_ROW + ((leaf >> 8) & 1) as usize * XEN_ROWS + (leaf & 0xff) as usize
    } else {
        ZERO_ROW
    }
}

/// The XSAVE area with only x87 and SSE state: the legacy area and the header.
const XSAVE_LEGACY_SIZE: u32 = 512 + 64;

/// `reg` with `feature` set to `on`, without a branch.
#[inline(always)]
fn with(reg: u32, feature: Feature, on: bool) -> u32 {
    (reg & !feature.mask()) | (on as u32) << feature.bit()
}

/// What the dynamic pass still does to a row, for this domain. Every condition on the domain
/// (kind, features, maxima) is decided when the table is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Patch {
    /// Nothing: the row is the answer.
    None,
    /// Leaf 1 of a PV domain: APIC ID cleared, OSXSAVE (with the forced-emulation leak), the
    /// hardware domain's kernel leaks.
    Leaf1Pv,
    /// Leaf 1 of an HVM domain: APIC ID from the vCPU id, OSXSAVE, APIC from IA32_APIC_BASE.EN.
    Leaf1Hvm,
    /// Leaf 7 subleaf 0: OSPKE from CR4.PKE.
    Leaf7,
    /// Leaf 0xB with x2APIC: the level asked and the x2APIC ID.
    Topology,
    /// Leaf 0xD subleaf 0 with XSAVE: the standard-format size for XCR0.
    XsaveSize,
    /// Leaf 0xD subleaf 1 with XSAVEC: the compacted-format size for XCR0 | XSS.
    XsavesSize,
    /// Leaf 0x80000001 of an Intel HVM domain: SYSCALL only in long mode.
    Syscall,
    /// Xen leaf 4 of an HVM domain: the vCPU id (static: even for a vCPU that is not running).
    XenVcpuId,
}

/// A domain's CPUID answers: [`super::guest_cpuid`]'s, computed when its policy is set.
/// Answer with [`CpuidTable::cpuid`]. About 2.3 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidTable {
    rows: [CpuidRegs; ROWS],
    patches: [Patch; ROWS],
    /// The hardware domain's kernel sees these host bits of CPUID.01H:ECX (EIST) and EDX
    /// (MTRR); 0 for other domains.
    dom0_c: u32,
    dom0_d: u32,
    /// ... and MONITOR in ECX on the faulting path.
    dom0_monitor: u32,
    /// A PV kernel on the forced-emulation path sees Xen's CR4.OSXSAVE (the policy has XSAVE).
    osxsave_leak: bool,
}

impl CpuidTable {
    /// The answers of `policy` for a domain described by `domain`.
    pub fn new(policy: &CpuPolicy, domain: &GuestDomain) -> CpuidTable {
        let ctx = GuestContext {
            domain: *domain,
            vcpu_id: 0,
            state: None,
        };
        let mut t = CpuidTable {
            rows: [CpuidRegs::ZERO; ROWS],
            patches: [Patch::None; ROWS],
            dom0_c: 0,
            dom0_d: 0,
            dom0_monitor: 0,
            osxsave_leak: false,
        };
        // Every row from the static pass, on the query that lands on it.
        let mut fill = |row: usize, leaf: u32, subleaf: u32| {
            debug_assert_eq!(row_of(leaf, subleaf), row);
            t.rows[row] = static_pass(policy, leaf, subleaf, &ctx);
        };
        for leaf in 0..0xe {
            match leaf {
                0x4 => (0..NR_CACHE).for_each(|s| fill(CACHE_ROW + s, leaf, s as u32)),
                0x7 => (0..NR_FEAT).for_each(|s| fill(FEAT_ROW + s, leaf, s as u32)),
                0xb => (0..=NR_TOPO).for_each(|s| fill(TOPO_ROW + s, leaf, s as u32)),
                0xd => (0..NR_XSTATE).for_each(|s| fill(XSTATE_ROW + s, leaf, s as u32)),
                _ => fill(BASIC_ROW + leaf as usize, leaf, 0),
            }
        }
        for i in 0..NR_EXTD {
            fill(EXTD_ROW + i, EXTD_BASE + i as u32, 0);
        }
        for (range, base) in [XEN_LEAVES, XEN_LEAVES_RELOCATED].into_iter().enumerate() {
            for i in 0..XEN_ROWS {
                fill(XEN_ROW + range * XEN_ROWS + i, base + i as u32, 0);
            }
        }
        // The dynamic pass, with its conditions on the domain decided here.
        let is_pv = domain.kind == DomainKind::Pv;
        let max_basic = policy.max_basic_leaf();
        let mut patch = |row: usize, p: Patch, on: bool| {
            if on {
                t.patches[row] = p;
            }
        };
        let leaf1 = if is_pv {
            Patch::Leaf1Pv
        } else {
            Patch::Leaf1Hvm
        };
        patch(BASIC_ROW + 1, leaf1, max_basic >= 1);
        patch(FEAT_ROW, Patch::Leaf7, max_basic >= 7);
        let x2apic = policy.has(Feature::X2APIC) && max_basic >= 0xb;
        for row in TOPO_ROW..=TOPO_BEYOND_ROW {
            patch(row, Patch::Topology, x2apic);
        }
        let xsave = policy.has(Feature::XSAVE) && max_basic >= 0xd;
        patch(XSTATE_ROW, Patch::XsaveSize, xsave);
        let xsavec = xsave && policy.has(Feature::XSAVEC);
        patch(XSTATE_ROW + 1, Patch::XsavesSize, xsavec);
        patch(
            EXTD_ROW + 1,
            Patch::Syscall,
            !is_pv && !policy.vendor().is_amd_like(),
        );
        for range in 0..2 {
            // Xen leaf 4 is answered (HVM only) where the range's limit reaches it: then its
            // EAX holds flags, never 0.
            let row = XEN_ROW + range * XEN_ROWS + 4;
            patch(row, Patch::XenVcpuId, !is_pv && t.rows[row].a != 0);
        }
        let host = &domain.host_features;
        if is_pv && domain.hardware_domain {
            let bit = |f: Feature| if host.contains(f) { f.mask() } else { 0 };
            t.dom0_c = bit(Feature::EIST);
            t.dom0_d = bit(Feature::MTRR);
            t.dom0_monitor = bit(Feature::MONITOR);
        }
        t.osxsave_leak = is_pv && policy.has(Feature::XSAVE);
        t
    }

    /// What `leaf`/`subleaf` returns to the vCPU `ctx` describes, for a query that arrived
    /// through `entry`: exactly [`super::guest_cpuid_entered`] on the policy and domain the
    /// table was built from (`ctx.domain` is not read: the table holds it). Never panics.
    #[inline]
    pub fn cpuid(
        &self,
        leaf: u32,
        subleaf: u32,
        ctx: &GuestContext,
        entry: CpuidEntry,
    ) -> CpuidRegs {
        let (ab, cd) = self.cpuid_words(leaf, subleaf, ctx, entry);
        CpuidRegs::new(ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32)
    }

    /// [`CpuidTable::cpuid`] as two words, EAX | EBX << 32 and ECX | EDX << 32: out of line,
    /// the answer comes back in two registers (four u32 would come back through memory).
    #[inline(never)]
    pub fn cpuid_words(
        &self,
        leaf: u32,
        subleaf: u32,
        ctx: &GuestContext,
        entry: CpuidEntry,
    ) -> (u64, u64) {
        let r = self.answer(leaf, subleaf, ctx, entry);
        (
            u64::from(r.a) | u64::from(r.b) << 32,
            u64::from(r.c) | u64::from(r.d) << 32,
        )
    }

    #[inline(always)]
    fn answer(&self, leaf: u32, subleaf: u32, ctx: &GuestContext, entry: CpuidEntry) -> CpuidRegs {
        // The row is in bounds by construction; the clamp keeps it so under speculation too.
        let row = nospec::index(row_of(leaf, subleaf), ROWS);
        let (Some(&r), Some(&patch)) = (self.rows.get(row), self.patches.get(row)) else {
            return CpuidRegs::ZERO;
        };
        if patch == Patch::None {
            return r;
        }
        // The two patches of the leaves every guest asks for (1 and 7.0), inline: a few
        // instructions on the vCPU's bits.
        if let (Patch::Leaf7 | Patch::Leaf1Pv, Some(s)) = (patch, &ctx.state) {
            let mut r = r;
            if patch == Patch::Leaf7 {
                r.c = with(r.c, Feature::OSPKE, s.cr4_pke);
            } else {
                self.leaf1_pv(&mut r, s, entry);
            }
            return r;
        }
        // The XSAVE sizes while only x87 and SSE are enabled (the legacy area and the header,
        // in either format): no component to walk.
        if let (Patch::XsaveSize | Patch::XsavesSize, Some(s)) = (patch, &ctx.state) {
            let components = if patch == Patch::XsaveSize {
                s.xcr0
            } else {
                s.xcr0 | s.xss
            };
            if components & !0b11 & ((1 << NR_XSTATE) - 1) == 0 {
                let mut r = r;
                r.b = XSAVE_LEGACY_SIZE;
                return r;
            }
        }
        // Two words back in registers (a struct of four u32 would come back through memory).
        let (ab, cd) = self.patch(patch, r, subleaf, ctx, entry);
        CpuidRegs::new(ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32)
    }

    /// Leaf 1 of a PV domain: APIC ID cleared, OSXSAVE (with the forced-emulation leak), the
    /// hardware domain's kernel leaks.
    #[inline(always)]
    fn leaf1_pv(&self, r: &mut CpuidRegs, s: &VcpuState, entry: CpuidEntry) {
        r.b &= 0x00ff_ffff;
        let leak = self.osxsave_leak
            & (entry == CpuidEntry::ForcedEmulation)
            & s.kernel_mode
            & s.host_cr4_osxsave;
        r.c = with(r.c, Feature::OSXSAVE, s.cr4_osxsave | leak);
        if s.kernel_mode {
            r.c |= self.dom0_c;
            r.d |= self.dom0_d;
            if entry == CpuidEntry::Fault {
                r.c |= self.dom0_monitor;
            }
        }
    }

    /// The dynamic pass on one row: a few instructions on the vCPU's state (out of line: most
    /// rows need none, and the static answer stays in registers).
    #[inline(never)]
    fn patch(
        &self,
        patch: Patch,
        mut r: CpuidRegs,
        subleaf: u32,
        ctx: &GuestContext,
        entry: CpuidEntry,
    ) -> (u64, u64) {
        let words = |r: CpuidRegs| {
            (
                u64::from(r.a) | u64::from(r.b) << 32,
                u64::from(r.c) | u64::from(r.d) << 32,
            )
        };
        if patch == Patch::XenVcpuId {
            r.b = ctx.vcpu_id;
            return words(r);
        }
        let Some(s) = &ctx.state else {
            return words(r);
        };
        match patch {
            Patch::Leaf1Pv => self.leaf1_pv(&mut r, s, entry),
            Patch::Leaf1Hvm => {
                r.b = (r.b & 0x00ff_ffff) | (ctx.vcpu_id.wrapping_mul(2) & 0xff) << 24;
                r.c = with(r.c, Feature::OSXSAVE, s.cr4_osxsave);
                r.d &= !((!s.apic_enabled as u32) << Feature::APIC.bit());
            }
            Patch::Leaf7 => r.c = with(r.c, Feature::OSPKE, s.cr4_pke),
            Patch::Topology => {
                r.c = (r.c & !0xff) | (subleaf & 0xff);
                r.d = ctx.vcpu_id.wrapping_mul(2);
            }
            Patch::XsaveSize => r.b = self.xsave_size(s.xcr0, false),
            Patch::XsavesSize => r.b = self.xsave_size(s.xcr0 | s.xss, true),
            Patch::Syscall => {
                r.d &= !((!s.long_mode as u32) << Feature::SYSCALL.bit());
            }
            Patch::None | Patch::XenVcpuId => {}
        }
        words(r)
    }

    /// The XSAVE area size for `components`, from the table's leaf 0xD rows (the policy's,
    /// wherever a size patch applies).
    fn xsave_size(&self, components: u64, compacted: bool) -> u32 {
        xsave_size_of(
            |i| *nospec::at(&self.rows[XSTATE_ROW..EXTD_ROW], i),
            components,
            compacted,
        )
    }

    /// The patch a query's row gets (for tests and tools: which answers depend on the vCPU).
    pub fn patch_of(&self, leaf: u32, subleaf: u32) -> Patch {
        self.patches[row_of(leaf, subleaf)]
    }
}
