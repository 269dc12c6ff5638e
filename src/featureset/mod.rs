//! [`Featureset`]: Xen's featureset words as a value with set algebra and dependency closure.
//!
//! Word `i` of a featureset mirrors one CPUID register or MSR half (see
//! [`crate::feature::WORDS`]); bit `b` of word `i` is feature `i * 32 + b`. Text formats live
//! in [`text`].

pub mod text;

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not, Sub, SubAssign};

use crate::feature::{COMMON_1D, DEEP_DEPS, DEEP_FEATURES, Feature, KNOWN, NR_WORDS};

pub use text::{FeaturesetError, Names, Xapi, XenWords};

/// A set of CPU features: `NR_WORDS` 32-bit words in Xen's order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Featureset([u32; NR_WORDS]);

impl Featureset {
    /// No features.
    pub const EMPTY: Featureset = Featureset([0; NR_WORDS]);
    /// Every bit set, named or not: the identity of intersection.
    pub const FULL: Featureset = Featureset([!0; NR_WORDS]);

    /// A featureset from exactly `NR_WORDS` words.
    pub const fn from_words(words: [u32; NR_WORDS]) -> Featureset {
        Featureset(words)
    }

    /// A featureset from a word array of any length, as the hypercall and older toolstacks
    /// hand them over: shorter arrays are zero-extended; words past `NR_WORDS` must be zero,
    /// otherwise the error names the first word with set bits (never a silent truncation).
    pub fn from_word_slice(words: &[u32]) -> Result<Featureset, FeaturesetError> {
        if let Some((word, &value)) = words
            .iter()
            .enumerate()
            .skip(NR_WORDS)
            .find(|(_, w)| **w != 0)
        {
            return Err(FeaturesetError::UnknownWord { word, value });
        }
        let mut fs = Featureset::EMPTY;
        for (dst, src) in fs.0.iter_mut().zip(words) {
            *dst = *src;
        }
        Ok(fs)
    }

    /// The words, in Xen's order.
    pub const fn words(&self) -> &[u32; NR_WORDS] {
        &self.0
    }

    /// One word.
    pub const fn word(&self, index: usize) -> u32 {
        self.0[index]
    }

    /// Replace one word.
    pub fn set_word(&mut self, index: usize, value: u32) {
        self.0[index] = value;
    }

    /// A featureset holding exactly the given features.
    pub fn of(features: &[Feature]) -> Featureset {
        let mut fs = Featureset::EMPTY;
        for &f in features {
            fs.insert(f);
        }
        fs
    }

    /// True if `feature` is in the set.
    pub const fn contains(&self, feature: Feature) -> bool {
        self.0[feature.word()] & feature.mask() != 0
    }

    /// Add `feature`.
    pub fn insert(&mut self, feature: Feature) {
        self.0[feature.word()] |= feature.mask();
    }

    /// Remove `feature`.
    pub fn remove(&mut self, feature: Feature) {
        self.0[feature.word()] &= !feature.mask();
    }

    /// Add or remove `feature`.
    pub fn set(&mut self, feature: Feature, present: bool) {
        if present {
            self.insert(feature)
        } else {
            self.remove(feature)
        }
    }

    /// Features in both sets.
    pub fn intersection(&self, other: &Featureset) -> Featureset {
        self.zip(other, |a, b| a & b)
    }

    /// Features in either set.
    pub fn union(&self, other: &Featureset) -> Featureset {
        self.zip(other, |a, b| a | b)
    }

    /// Features in `self` but not in `other`.
    pub fn difference(&self, other: &Featureset) -> Featureset {
        self.zip(other, |a, b| a & !b)
    }

    /// True if every feature of `self` is in `other`.
    pub fn is_subset(&self, other: &Featureset) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }

    /// True if no bit is set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Number of bits set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Every feature in the set, named or not, in feature-number order.
    pub fn iter(&self) -> Iter {
        Iter {
            words: self.0,
            word: 0,
        }
    }

    /// Bits set that the feature table does not name, apart from AMD's copies of the common
    /// CPUID.01H:EDX bits in word 2 ([`crate::feature::COMMON_1D`]), which every AMD
    /// featureset carries.
    pub fn unknown(&self) -> Featureset {
        let mut unknown = self.difference(&KNOWN);
        unknown.0[2] &= !COMMON_1D;
        unknown
    }

    /// All transitive dependents of `feature` (empty if nothing depends on it).
    pub fn dependents_of(feature: Feature) -> Featureset {
        if !DEEP_FEATURES.contains(feature) {
            return Featureset::EMPTY;
        }
        match DEEP_DEPS.binary_search_by_key(&feature, |(f, _)| *f) {
            Ok(i) => DEEP_DEPS[i].1,
            Err(_) => Featureset::EMPTY,
        }
    }

    /// Clear every dependent of every absent feature, so that no feature is offered without
    /// what it needs. Idempotent; never adds a feature.
    pub fn close_dependencies(&mut self) {
        // The table is flattened, so one pass over the absent prerequisites suffices; a
        // prerequisite cleared as someone's dependent needs no visit of its own.
        let mut absent = !*self & DEEP_FEATURES;
        while let Some(feature) = absent.first() {
            let dependents = Self::dependents_of(feature);
            *self -= dependents;
            absent -= dependents;
            absent.remove(feature);
        }
    }

    /// The dependency-closed copy of `self`.
    pub fn closed(mut self) -> Featureset {
        self.close_dependencies();
        self
    }

    /// Xen's `sanitise_featureset`: drop unnamed bits, then close dependencies.
    pub fn sanitised(self) -> Featureset {
        (self & KNOWN).closed()
    }

    /// The lowest-numbered feature in the set.
    pub fn first(&self) -> Option<Feature> {
        self.iter().next()
    }

    /// Why `feature` is absent from a dependency-closed set: the absent prerequisite whose
    /// closure removed it, if any. The answer names the nearest direct edge on the chain.
    pub fn removed_by(&self, feature: Feature) -> Option<Feature> {
        crate::feature::DEPENDENCIES
            .iter()
            .find(|d| d.dependents.contains(feature) && !self.contains(d.prerequisite))
            .map(|d| d.prerequisite)
    }

    /// Displays the set as Xen's `xen-cpuid` word list (`178bfbff:f6f83203:…`).
    pub fn xen_words(&self) -> XenWords<'_> {
        XenWords(self)
    }

    /// Displays the set as XAPI's featureset string (`178bfbff-f6f83203-…`).
    pub fn xapi(&self) -> Xapi<'_> {
        Xapi(self)
    }

    /// Displays the set as a comma-separated list of Xen's feature names.
    pub fn names(&self) -> Names<'_> {
        Names(self)
    }

    fn zip(&self, other: &Featureset, op: impl Fn(u32, u32) -> u32) -> Featureset {
        let mut out = Featureset::EMPTY;
        for i in 0..NR_WORDS {
            out.0[i] = op(self.0[i], other.0[i]);
        }
        out
    }
}

/// Iterator over the features of a [`Featureset`].
#[derive(Clone, Debug)]
pub struct Iter {
    words: [u32; NR_WORDS],
    word: usize,
}

impl Iterator for Iter {
    type Item = Feature;

    fn next(&mut self) -> Option<Feature> {
        while self.word < NR_WORDS {
            let w = &mut self.words[self.word];
            if *w != 0 {
                let bit = w.trailing_zeros();
                *w &= *w - 1;
                return Feature::from_index(self.word, bit);
            }
            self.word += 1;
        }
        None
    }
}

impl IntoIterator for &Featureset {
    type Item = Feature;
    type IntoIter = Iter;
    fn into_iter(self) -> Iter {
        self.iter()
    }
}

impl FromIterator<Feature> for Featureset {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Featureset {
        let mut fs = Featureset::EMPTY;
        for f in iter {
            fs.insert(f);
        }
        fs
    }
}

impl BitAnd for Featureset {
    type Output = Featureset;
    fn bitand(self, rhs: Featureset) -> Featureset {
        self.intersection(&rhs)
    }
}

impl BitAndAssign for Featureset {
    fn bitand_assign(&mut self, rhs: Featureset) {
        *self = self.intersection(&rhs);
    }
}

impl BitOr for Featureset {
    type Output = Featureset;
    fn bitor(self, rhs: Featureset) -> Featureset {
        self.union(&rhs)
    }
}

impl BitOrAssign for Featureset {
    fn bitor_assign(&mut self, rhs: Featureset) {
        *self = self.union(&rhs);
    }
}

impl Sub for Featureset {
    type Output = Featureset;
    fn sub(self, rhs: Featureset) -> Featureset {
        self.difference(&rhs)
    }
}

impl SubAssign for Featureset {
    fn sub_assign(&mut self, rhs: Featureset) {
        *self = self.difference(&rhs);
    }
}

impl Not for Featureset {
    type Output = Featureset;
    fn not(self) -> Featureset {
        self.zip(&Featureset::EMPTY, |a, _| !a)
    }
}

impl fmt::Debug for Featureset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Featureset({})", self.xen_words())
    }
}
