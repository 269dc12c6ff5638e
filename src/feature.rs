//! The named CPU features, generated from `data/features.tbl` by `build.rs`.
//!
//! A [`Feature`] is Xen's feature number, `word * 32 + bit`, where the word indexes a
//! [`Featureset`]. Its constants (`Feature::AVX2`, …) carry Xen's upper-case names; users see
//! Xen's lower-case names with dashes (`avx512-vp2intersect`), as `cpuid=` and libxl spell them.

use core::fmt;

use crate::featureset::Featureset;

/// One CPU feature: Xen's feature number, `word * 32 + bit`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Feature(u16);

/// What Xen's guest annotations say about a feature (`A S H a s h ! |` in the table).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Annotations(u8);

/// A featureset word: its Xen name and where its bits live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordInfo {
    /// Xen's short name (`1d`, `7b0`, `m10Al`, …).
    pub name: &'static str,
    /// The CPUID leaf and register, or MSR bit range, the word mirrors (`CPUID.07H.0:EBX`,
    /// `MSR.10AH[63:32]`).
    pub locator: &'static str,
    /// The register without a bit range (`MSR.10AH`).
    pub register: &'static str,
    /// The register bit that the word's bit 0 is (32 for the high half of an MSR).
    pub first_bit: u32,
}

/// Everything the table says about one feature.
#[derive(Clone, Copy, Debug)]
pub struct FeatureInfo {
    /// The feature.
    pub feature: Feature,
    /// Xen's upper-case name (`AVX512_VP2INTERSECT`).
    pub name: &'static str,
    /// Xen's user-facing name (`avx512-vp2intersect`).
    pub xen_name: &'static str,
    /// Its guest annotations.
    pub annotations: Annotations,
    /// One line on what the feature is.
    pub description: &'static str,
}

/// A direct dependency edge: the dependents cannot be offered without the prerequisite.
#[derive(Clone, Copy, Debug)]
pub struct Dependency {
    /// The feature the others need.
    pub prerequisite: Feature,
    /// The features that need it (one feature, or every bit of a word).
    pub dependents: Featureset,
    /// Why they need it.
    pub reason: &'static str,
}

mod generated {
    use super::{Annotations, Dependency, Feature, FeatureInfo, WordInfo};
    use crate::featureset::Featureset;
    include!(concat!(env!("OUT_DIR"), "/features.rs"));
}

pub use generated::{
    DEEP_DEPS, DEEP_FEATURES, DEPENDENCIES, FEATURES, HVM_HAP_DEFAULT, HVM_HAP_MAX,
    HVM_SHADOW_DEFAULT, HVM_SHADOW_MAX, KNOWN, NR_FEATURES, NR_WORDS, PV_DEFAULT, PV_MAX,
    SIMPLE_OR, SPECIAL, WORDS,
};

/// The CPUID.01H:EDX features that AMD repeats at the same bits of CPUID.80000001H:EDX
/// (Xen's `CPUID_COMMON_1D_FEATURES`): FPU VME DE PSE TSC MSR PAE MCE CX8 APIC MTRR PGE MCA
/// CMOV PAT PSE36 MMX FXSR. Featuresets from AMD hosts carry the copies in word 2, unnamed.
pub const COMMON_1D: u32 = 0x0183_f3ff;

impl Feature {
    /// The feature with Xen's number `word * 32 + bit`, whether or not the table names it.
    pub const fn from_index(word: usize, bit: u32) -> Option<Feature> {
        if word < NR_WORDS && bit < 32 {
            Some(Feature((word * 32) as u16 + bit as u16))
        } else {
            None
        }
    }

    /// Xen's feature number, `word * 32 + bit`.
    pub const fn number(self) -> usize {
        self.0 as usize
    }

    /// The featureset word the feature lives in.
    pub const fn word(self) -> usize {
        self.0 as usize / 32
    }

    /// The bit within its word.
    pub const fn bit(self) -> u32 {
        self.0 as u32 % 32
    }

    /// The single-bit mask of the feature within its word.
    pub const fn mask(self) -> u32 {
        1 << self.bit()
    }

    /// The table's entry for this feature, if the table names it.
    pub fn info(self) -> Option<&'static FeatureInfo> {
        FEATURES
            .binary_search_by_key(&self, |i| i.feature)
            .ok()
            .map(|i| &FEATURES[i])
    }

    /// Xen's user-facing name (`lahf-lm`), if the table names the feature.
    pub fn xen_name(self) -> Option<&'static str> {
        self.info().map(|i| i.xen_name)
    }

    /// The feature with Xen's user-facing name (`lahf-lm`); upper case and `_` are accepted too.
    pub fn from_name(name: &str) -> Option<Feature> {
        let len = name.len();
        let matches = |candidate: &str| {
            candidate.len() == len
                && candidate
                    .bytes()
                    .zip(name.bytes())
                    .all(|(c, n)| c == normalise_name_byte(n))
        };
        let cmp = |candidate: &str| {
            let folded = name.bytes().map(normalise_name_byte);
            candidate.bytes().cmp(folded)
        };
        let i = generated::BY_XEN_NAME
            .binary_search_by(|&i| cmp(FEATURES[i as usize].xen_name))
            .ok()?;
        let info = &FEATURES[generated::BY_XEN_NAME[i] as usize];
        matches(info.xen_name).then_some(info.feature)
    }

    /// Where the feature's bit lives, e.g. `CPUID.07H.0:EBX[5]`, as a displayable value.
    pub fn locator(self) -> Locator {
        Locator(self)
    }
}

/// `lahf_LM` → `lahf-lm`: Xen's name tables are lower case with dashes.
const fn normalise_name_byte(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        _ => b.to_ascii_lowercase(),
    }
}

/// Displays a feature's word locator and bit, `CPUID.07H.0:EBX[5]`.
#[derive(Clone, Copy, Debug)]
pub struct Locator(Feature);

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = &WORDS[self.0.word()];
        write!(f, "{}[{}]", word.register, word.first_bit + self.0.bit())
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(info) => f.write_str(info.name),
            None => write!(f, "Feature({}:{})", self.word(), self.bit()),
        }
    }
}

/// Prints Xen's user-facing name, or `word:bit` for a bit the table does not name.
impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.xen_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.word(), self.bit()),
        }
    }
}

impl Annotations {
    /// All guests, on by default (`A`).
    pub const ALL: Annotations = Annotations(1 << 0);
    /// HVM guests, on by default (`S`).
    pub const HVM: Annotations = Annotations(1 << 1);
    /// HVM guests with hardware-assisted paging, on by default (`H`).
    pub const HAP: Annotations = Annotations(1 << 2);
    /// All guests, max only (`a`).
    pub const ALL_MAX: Annotations = Annotations(1 << 3);
    /// HVM guests, max only (`s`).
    pub const HVM_MAX: Annotations = Annotations(1 << 4);
    /// HAP guests, max only (`h`).
    pub const HAP_MAX: Annotations = Annotations(1 << 5);
    /// Special: Xen computes or overrides the value (`!`).
    pub const SPECIAL: Annotations = Annotations(1 << 6);
    /// ORed across a pool rather than ANDed (`|`).
    pub const POOL_OR: Annotations = Annotations(1 << 7);

    const LETTERS: [char; 8] = ['A', 'S', 'H', 'a', 's', 'h', '!', '|'];

    /// From the bits the generator stores.
    pub const fn from_bits(bits: u8) -> Annotations {
        Annotations(bits)
    }

    /// True if every annotation of `other` is present.
    pub const fn contains(self, other: Annotations) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Prints the table's letters (`!A|`), or `-` for none.
impl fmt::Display for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("-");
        }
        // Print `!` first and `|` last, as the table does.
        for i in [6, 0, 1, 2, 3, 4, 5, 7] {
            if self.0 & (1 << i) != 0 {
                write!(f, "{}", Self::LETTERS[i])?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Annotations({self})")
    }
}
