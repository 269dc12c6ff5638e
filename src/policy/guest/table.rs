//! [`CpuidTable`]: a domain's CPUID answers, computed once when its policy is set.
//!
//! `guest_cpuid` derives every answer from the policy on every query: it range-checks the leaf
//! against the policy's maxima, finds the leaf's array, applies the feature conditions of the
//! dynamic pass. None of that depends on the query's vCPU except a handful of bits, so a
//! [`CpuidTable`] does it once per domain: every (leaf, subleaf) a guest can name maps, by
//! arithmetic on the leaf alone (no policy read), to one row of a fixed layout; each row holds
//! the static pass's answer for this domain (zero where the policy's maxima put the leaf out of
//! range) and a [`Patch`] naming what the dynamic pass still does to it for this domain (every
//! condition on the domain, its kind, features and maxima, is decided here).
//!
//! The dynamic pass reads only the vCPU, and only a dozen rows have one (leaf 1, leaf 7.0,
//! leaf 0xB, leaf 0xD.0 and 0xD.1, leaf 0x80000001, Xen leaf 4): a [`CpuidOverlay`] holds those
//! rows patched for one vCPU (OSXSAVE and OSPKE from its CR4, the APIC IDs, the XSAVE sizes
//! from XCR0 and XSS, SYSCALL outside long mode, the hardware domain's leaks), recomputed
//! ([`CpuidTable::refresh`]) whenever that state changes. A query is then one bounded,
//! speculation-clamped row index ([`crate::nospec`]) and one read, from the domain's rows or
//! the vCPU's overlay, whatever the leaf.
//!
//! The answers are exactly `guest_cpuid`'s, for every leaf and subleaf, every policy and every
//! vCPU state: the rows are filled by `guest_cpuid`'s own static pass, and a test compares the
//! two over every dump's system policies, domain kinds, vCPU states and entry paths.

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

/// The overlay slots: the rows a vCPU's state can change, for any domain.
/// Leaf 1, once per entry path (the PV leaks depend on it): `LEAF1_SLOT + entry_index(entry)`.
const LEAF1_SLOT: usize = 0;
/// Leaf 7 subleaf 0.
const LEAF7_SLOT: usize = LEAF1_SLOT + 3;
/// Leaf 0xB subleaves.
const TOPO_SLOT: usize = LEAF7_SLOT + 1;
/// Leaf 0xB past its subleaves: the one dynamic row whose answer depends on the subleaf
/// (CPUID.0BH:ECX[7:0] echoes it), completed at lookup with [`CpuidOverlay::level_mask`].
const TOPO_BEYOND_SLOT: usize = TOPO_SLOT + NR_TOPO;
/// Leaf 0xD subleaves 0 and 1.
const XSAVE_SLOT: usize = TOPO_BEYOND_SLOT + 1;
/// Leaf 0x80000001.
const SYSCALL_SLOT: usize = XSAVE_SLOT + 2;
/// Xen leaf 4 at 0x40000000, then at 0x40000100.
const XEN_VCPU_SLOT: usize = SYSCALL_SLOT + 1;
/// Slots in use.
const SLOTS: usize = XEN_VCPU_SLOT + 2;
/// Rows in an overlay: a power of two above [`SLOTS`], so that `slot % OVERLAY_ROWS` bounds a
/// slot without a branch, speculation included.
const OVERLAY_ROWS: usize = 16;
/// A row every vCPU shares: the domain's row is the answer.
const STATIC: u8 = u8::MAX;

const _: () = assert!(SLOTS <= OVERLAY_ROWS && OVERLAY_ROWS.is_power_of_two());

/// The index of an entry path in the overlay's leaf 1 slots and in [`SLOT_OF`].
#[inline(always)]
const fn entry_index(entry: CpuidEntry) -> usize {
    match entry {
        CpuidEntry::VmExit => 0,
        CpuidEntry::Fault => 1,
        CpuidEntry::ForcedEmulation => 2,
    }
}

/// The entry paths, by [`entry_index`].
const ENTRIES: [CpuidEntry; 3] = [
    CpuidEntry::VmExit,
    CpuidEntry::Fault,
    CpuidEntry::ForcedEmulation,
];

/// Where each slot's answer comes from: its row, the subleaf that lands on it, the entry path.
const fn slot_sources() -> [(usize, u32, CpuidEntry); SLOTS] {
    let mut s = [(ZERO_ROW, 0, CpuidEntry::VmExit); SLOTS];
    let mut e = 0;
    while e < 3 {
        s[LEAF1_SLOT + e] = (BASIC_ROW + 1, 0, ENTRIES[e]);
        e += 1;
    }
    s[LEAF7_SLOT] = (FEAT_ROW, 0, CpuidEntry::VmExit);
    let mut i = 0;
    while i < NR_TOPO {
        s[TOPO_SLOT + i] = (TOPO_ROW + i, i as u32, CpuidEntry::VmExit);
        i += 1;
    }
    // The level byte is filled in at lookup; 0 here.
    s[TOPO_BEYOND_SLOT] = (TOPO_BEYOND_ROW, 0, CpuidEntry::VmExit);
    s[XSAVE_SLOT] = (XSTATE_ROW, 0, CpuidEntry::VmExit);
    s[XSAVE_SLOT + 1] = (XSTATE_ROW + 1, 1, CpuidEntry::VmExit);
    s[SYSCALL_SLOT] = (EXTD_ROW + 1, 0, CpuidEntry::VmExit);
    s[XEN_VCPU_SLOT] = (XEN_ROW + 4, 0, CpuidEntry::VmExit);
    s[XEN_VCPU_SLOT + 1] = (XEN_ROW + XEN_ROWS + 4, 0, CpuidEntry::VmExit);
    s
}

const SLOT_SOURCES: [(usize, u32, CpuidEntry); SLOTS] = slot_sources();

/// Each row's overlay slot as a byte offset into the overlay's rows (16 bytes a row), or
/// [`STATIC`], per entry path (they differ only at leaf 1). 256 entries, so that any `u8`
/// indexes it; those past [`ROWS`] are never selected.
const fn slot_map() -> [[u8; 256]; 3] {
    let mut m = [[STATIC; 256]; 3];
    let mut e = 0;
    while e < 3 {
        let mut slot = 0;
        while slot < SLOTS {
            let (row, _, entry) = SLOT_SOURCES[slot];
            // Leaf 1 has a slot per entry path; every other slot serves all three.
            if row != BASIC_ROW + 1 || entry_index(entry) == e {
                m[e][row] = (slot * size_of::<CpuidRegs>()) as u8;
            }
            slot += 1;
        }
        e += 1;
    }
    m
}

/// The overlay slot of every row, for each entry path (indexed by [`entry_index`]): the same
/// for every domain (a row without a patch for this domain holds its static answer there).
const SLOT_OF: [[u8; 256]; 3] = slot_map();

const _: () = assert!(size_of::<CpuidRegs>() == 16 && (OVERLAY_ROWS - 1) * 16 < STATIC as usize);

/// A domain's CPUID answers: [`super::guest_cpuid`]'s, computed when its policy is set.
/// Answer with [`CpuidTable::cpuid`], on the overlay of the vCPU asking. About 2.2 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)] // The rows first: a row's address is the table's plus 16 times its index.
pub struct CpuidTable {
    rows: [CpuidRegs; ROWS],
    /// The dynamic pass of each overlay slot, for this domain.
    patches: [Patch; SLOTS],
    /// The hardware domain's kernel sees these host bits of CPUID.01H:ECX (EIST) and EDX
    /// (MTRR); 0 for other domains.
    dom0_c: u32,
    dom0_d: u32,
    /// ... and MONITOR in ECX on the faulting path.
    dom0_monitor: u32,
    /// A PV kernel on the forced-emulation path sees Xen's CR4.OSXSAVE (the policy has XSAVE).
    osxsave_leak: bool,
}

/// One vCPU's answers to the rows of its domain's [`CpuidTable`] that depend on the vCPU's
/// state (its id, CR4, XCR0, XSS, EFER, IA32_APIC_BASE, and for PV whether its kernel runs).
/// Built with [`CpuidTable::overlay`]; whoever changes that state calls
/// [`CpuidTable::refresh`] before the vCPU's next CPUID, and so does whoever gives the domain a
/// new table (a new policy): the overlay's rows come from the table's. 260 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidOverlay {
    rows: [CpuidRegs; OVERLAY_ROWS],
    /// CPUID.0BH:ECX[7:0] of the row past the topology levels echoes the subleaf: 0xff where
    /// the topology patch applies, else 0.
    level_mask: u32,
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
            patches: [Patch::None; SLOTS],
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
        let mut patches = [Patch::None; SLOTS];
        let mut patch = |slots: core::ops::Range<usize>, p: Patch, on: bool| {
            if on {
                patches[slots].fill(p);
            }
        };
        let leaf1 = if is_pv {
            Patch::Leaf1Pv
        } else {
            Patch::Leaf1Hvm
        };
        patch(LEAF1_SLOT..LEAF7_SLOT, leaf1, max_basic >= 1);
        patch(LEAF7_SLOT..TOPO_SLOT, Patch::Leaf7, max_basic >= 7);
        let x2apic = policy.has(Feature::X2APIC) && max_basic >= 0xb;
        patch(TOPO_SLOT..XSAVE_SLOT, Patch::Topology, x2apic);
        let xsave = policy.has(Feature::XSAVE) && max_basic >= 0xd;
        patch(XSAVE_SLOT..XSAVE_SLOT + 1, Patch::XsaveSize, xsave);
        let xsavec = xsave && policy.has(Feature::XSAVEC);
        patch(XSAVE_SLOT + 1..SYSCALL_SLOT, Patch::XsavesSize, xsavec);
        patch(
            SYSCALL_SLOT..XEN_VCPU_SLOT,
            Patch::Syscall,
            !is_pv && !policy.vendor().is_amd_like(),
        );
        for range in 0..2 {
            // Xen leaf 4 is answered (HVM only) where the range's limit reaches it: then its
            // EAX holds flags, never 0.
            let slot = XEN_VCPU_SLOT + range;
            let on = !is_pv && t.rows[SLOT_SOURCES[slot].0].a != 0;
            patch(slot..slot + 1, Patch::XenVcpuId, on);
        }
        t.patches = patches;
        let host = &domain.host_features;
        if is_pv && domain.hardware_domain {
            let bit = |f: Feature| if host.contains(f) { f.mask() } else { 0 };
            t.dom0_c = bit(Feature::EIST); // CPUID.01H:ECX[7]
            t.dom0_d = bit(Feature::MTRR); // CPUID.01H:EDX[12]
            t.dom0_monitor = bit(Feature::MONITOR); // CPUID.01H:ECX[3]
        }
        t.osxsave_leak = is_pv && policy.has(Feature::XSAVE);
        t
    }

    /// The overlay of the vCPU `ctx` describes (its id and state; `ctx.domain` is not read,
    /// and neither is `ctx.state.entry`: the overlay answers every entry path).
    pub fn overlay(&self, ctx: &GuestContext) -> CpuidOverlay {
        let mut overlay = CpuidOverlay {
            rows: [CpuidRegs::ZERO; OVERLAY_ROWS],
            level_mask: 0,
        };
        self.refresh(&mut overlay, ctx);
        overlay
    }

    /// Recomputes `overlay` for the vCPU `ctx` describes: after its CR4 (OSXSAVE, PKE), XCR0,
    /// XSS, EFER (long mode), IA32_APIC_BASE (EN) or, for PV, its kernel/user mode changed.
    /// A dozen rows, each a few instructions (the XSAVE sizes a walk over XCR0's components).
    pub fn refresh(&self, overlay: &mut CpuidOverlay, ctx: &GuestContext) {
        for (slot, &(row, subleaf, entry)) in SLOT_SOURCES.iter().enumerate() {
            let (ab, cd) = self.patch(self.patches[slot], self.rows[row], subleaf, ctx, entry);
            overlay.rows[slot] =
                CpuidRegs::new(ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32);
        }
        let topology = self.patches[TOPO_BEYOND_SLOT] == Patch::Topology;
        overlay.level_mask = if topology && ctx.state.is_some() {
            0xff
        } else {
            0
        };
    }

    /// What `leaf`/`subleaf` returns to the vCPU whose overlay is `overlay`, for a query that
    /// arrived through `entry`: exactly [`super::guest_cpuid_entered`] on the policy and
    /// domain the table was built from and the vCPU the overlay was last refreshed for.
    /// Never panics.
    #[inline]
    pub fn cpuid(
        &self,
        overlay: &CpuidOverlay,
        leaf: u32,
        subleaf: u32,
        entry: CpuidEntry,
    ) -> CpuidRegs {
        let (ab, cd) = self.cpuid_words(overlay, leaf, subleaf, entry);
        CpuidRegs::new(ab as u32, (ab >> 32) as u32, cd as u32, (cd >> 32) as u32)
    }

    /// [`CpuidTable::cpuid`] as two words, EAX | EBX << 32 and ECX | EDX << 32: the answer
    /// comes back in two registers (four u32 would come back through memory). Inline, so that
    /// an `entry` known where it is called picks one of three out-of-line lookups, each with
    /// its entry path built in.
    #[inline(always)]
    pub fn cpuid_words(
        &self,
        overlay: &CpuidOverlay,
        leaf: u32,
        subleaf: u32,
        entry: CpuidEntry,
    ) -> (u64, u64) {
        match entry {
            CpuidEntry::VmExit => self.words::<0>(overlay, leaf, subleaf),
            CpuidEntry::Fault => self.words::<1>(overlay, leaf, subleaf),
            CpuidEntry::ForcedEmulation => self.words::<2>(overlay, leaf, subleaf),
        }
    }

    /// The lookup for the entry path whose [`entry_index`] is `ENTRY`.
    #[inline(never)]
    fn words<const ENTRY: usize>(
        &self,
        overlay: &CpuidOverlay,
        leaf: u32,
        subleaf: u32,
    ) -> (u64, u64) {
        // The row is in bounds by construction; the clamp keeps it so under speculation too.
        let row = nospec::index(row_of(leaf, subleaf), ROWS);
        let words = |r: &CpuidRegs| {
            (
                u64::from(r.a) | u64::from(r.b) << 32,
                u64::from(r.c) | u64::from(r.d) << 32,
            )
        };
        let offset = SLOT_OF[ENTRY][row % 256];
        if offset == STATIC {
            return self.rows.get(row).map_or((0, 0), words);
        }
        // A slot of the layout, below OVERLAY_ROWS: the modulo is a mask, not a branch.
        let (ab, mut cd) =
            words(&overlay.rows[offset as usize / size_of::<CpuidRegs>() % OVERLAY_ROWS]);
        if offset as usize == TOPO_BEYOND_SLOT * size_of::<CpuidRegs>() {
            let level = u64::from(overlay.level_mask);
            cd = (cd & !level) | (u64::from(subleaf) & level);
        }
        (ab, cd)
    }

    /// Leaf 1 of a PV domain: APIC ID cleared, OSXSAVE (with the forced-emulation leak), the
    /// hardware domain's kernel leaks.
    #[inline(always)]
    fn leaf1_pv(&self, r: &mut CpuidRegs, s: &VcpuState, entry: CpuidEntry) {
        r.b &= 0x00ff_ffff; // CPUID.01H:EBX[31:24]: no APIC ID for PV
        let leak = self.osxsave_leak
            & (entry == CpuidEntry::ForcedEmulation)
            & s.kernel_mode
            & s.host_cr4_osxsave;
        r.c = with(r.c, Feature::OSXSAVE, s.cr4_osxsave | leak); // CPUID.01H:ECX[27]
        if s.kernel_mode {
            r.c |= self.dom0_c;
            r.d |= self.dom0_d;
            if entry == CpuidEntry::Fault {
                r.c |= self.dom0_monitor;
            }
        }
    }

    /// The dynamic pass on one row, for the overlay.
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
            r.b = ctx.vcpu_id; // Xen leaf 4 EBX: the vCPU id
            return words(r);
        }
        let Some(s) = &ctx.state else {
            return words(r);
        };
        match patch {
            Patch::Leaf1Pv => self.leaf1_pv(&mut r, s, entry),
            Patch::Leaf1Hvm => {
                // CPUID.01H:EBX[31:24]: initial APIC ID, HVM vCPUs numbered 0, 2, 4, ...
                r.b = (r.b & 0x00ff_ffff) | (ctx.vcpu_id.wrapping_mul(2) & 0xff) << 24;
                r.c = with(r.c, Feature::OSXSAVE, s.cr4_osxsave); // CPUID.01H:ECX[27]
                // CPUID.01H:EDX[9] follows IA32_APIC_BASE.EN.
                r.d &= !((!s.apic_enabled as u32) << Feature::APIC.bit());
            }
            Patch::Leaf7 => r.c = with(r.c, Feature::OSPKE, s.cr4_pke), // CPUID.07H.0:ECX[4]
            Patch::Topology => {
                r.c = (r.c & !0xff) | (subleaf & 0xff); // CPUID.0BH:ECX[7:0]: the level
                r.d = ctx.vcpu_id.wrapping_mul(2); // CPUID.0BH:EDX: the x2APIC ID
            }
            Patch::XsaveSize => r.b = self.xsave_size(s.xcr0, false), // CPUID.0DH.0:EBX
            Patch::XsavesSize => r.b = self.xsave_size(s.xcr0 | s.xss, true), // CPUID.0DH.1:EBX
            Patch::Syscall => {
                // CPUID.80000001H:EDX[11]: Intel reports SYSCALL only in 64-bit mode.
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
        match SLOT_OF[0][row_of(leaf, subleaf)] {
            STATIC => Patch::None,
            offset => self.patches[offset as usize / size_of::<CpuidRegs>()],
        }
    }
}
