//! Table indexes a guest chooses, clamped under speculation (Spectre v1, bounds check bypass).
//!
//! A bounds check is a branch, and a CPU may run past a mispredicted one: with a guest-chosen
//! CPUID leaf or subleaf, a load from `table[index]` could then read out of bounds and leave a
//! trace in the cache. Xen guards every such load with `array_access_nospec`; this module is
//! the same guard. [`index`] turns an index into itself when it is in bounds and into 0 when it
//! is not, with arithmetic rather than a branch, so the load that follows can only touch the
//! table even on a mispredicted path. [`CpuPolicy`](crate::CpuPolicy) routes every leaf-table
//! access through it, which covers `guest_cpuid` and the toolstack's arrays alike.

/// All ones when `index < size`, else 0, computed without a branch (Xen's generic
/// `array_index_mask_nospec`). `size` must not exceed `isize::MAX` (no Rust slice does).
#[inline(always)]
pub fn mask(index: usize, size: usize) -> usize {
    // When index >= size, `size - 1 - index` wraps to a value with its top bit set; an index
    // with its top bit set is out of bounds too. Either way the top bit of `index | rest` is
    // set, and the arithmetic shift spreads its complement over the whole word.
    let rest = size.wrapping_sub(1).wrapping_sub(index);
    let mask = ((!(index | rest)) as isize >> (usize::BITS - 1)) as usize;
    // Keep the optimiser from turning the arithmetic back into a compare and branch.
    core::hint::black_box(mask)
}

/// `index` if `index < size`, else 0; branch-free, so it holds under speculation. Callers
/// still check the bound architecturally: this only decides what a mispredicted path loads.
///
/// Clamp before any architectural check of `index`: once a check dominates it, the compiler
/// knows `index < size` and folds the mask to all ones. After a check, use [`at`] or
/// [`at_mut`], which hide the index from the compiler first.
#[inline(always)]
pub fn index(index: usize, size: usize) -> usize {
    index & mask(index, size)
}

/// `Some(index)` if `index < size`, else `None`: the bound check and the clamp in one. The
/// check's flag becomes a mask (data, through an optimisation barrier), the branch tests the
/// mask and the index returned is ANDed with it: on a mispredicted `Some` path it is 0.
///
/// Like [`index`], for an index no check has bounded yet (else the compiler folds the flag
/// to true): the check this makes is the first.
#[inline(always)]
pub fn checked(index: usize, size: usize) -> Option<usize> {
    let mask = core::hint::black_box(usize::from(index < size).wrapping_neg());
    if mask == 0 { None } else { Some(index & mask) }
}

/// [`index`] on an index the compiler may already know to be in bounds (a check before the
/// call): the index goes through an optimisation barrier first, so the mask is computed.
#[inline(always)]
fn index_checked(i: usize, size: usize) -> usize {
    let i = core::hint::black_box(i);
    // The compare's flag becomes data (all ones or 0: `cmp; sbb` or `setb; neg`); the barrier
    // keeps it data, so the AND cannot become a select and then a branch.
    i & core::hint::black_box(usize::from(i < size).wrapping_neg())
}

/// `&table[i]`, with `i` clamped under speculation. Panics like indexing when `i` is out of
/// bounds.
#[inline(always)]
pub fn at<T>(table: &[T], i: usize) -> &T {
    assert!(i < table.len(), "index {i} past a table of {}", table.len());
    &table[index_checked(i, table.len())]
}

/// `&mut table[i]`, with `i` clamped under speculation. Panics like indexing when `i` is out
/// of bounds.
#[inline(always)]
pub fn at_mut<T>(table: &mut [T], i: usize) -> &mut T {
    assert!(i < table.len(), "index {i} past a table of {}", table.len());
    let len = table.len();
    &mut table[index_checked(i, len)]
}

#[cfg(test)]
mod tests {
    use super::{index, mask};

    #[test]
    fn edges() {
        let max = isize::MAX as usize;
        for (i, size, expected) in [
            (0, 0, 0),
            (0, 1, !0),
            (1, 1, 0),
            (5, 6, !0),
            (6, 6, 0),
            (usize::MAX, 6, 0),
            (1 << (usize::BITS - 1), 6, 0),
            (max - 1, max, !0),
            (max, max, 0),
            (usize::MAX, max, 0),
        ] {
            assert_eq!(mask(i, size), expected, "mask({i:#x}, {size:#x})");
        }
        assert_eq!(index(5, 6), 5);
        assert_eq!(index(7, 6), 0);
        for (i, size, expected) in [
            (0, 1, Some(0)),
            (5, 6, Some(5)),
            (6, 6, None),
            (0, 0, None),
            (usize::MAX, 6, None),
        ] {
            assert_eq!(super::checked(i, size), expected, "checked({i:#x}, {size})");
        }
    }

    #[test]
    fn index_edges() {
        let max = isize::MAX as usize;
        for size in [1, 2, 6, 63, 64, 0x22, max - 1, max] {
            for i in [0, 1, size - 1, size, size + 1, max, max + 1, usize::MAX] {
                let expected = if i < size { i } else { 0 };
                assert_eq!(index(i, size), expected, "index({i:#x}, {size:#x})");
            }
        }
        // An empty table has no index at all: the mask says so for every input.
        for i in [0, 1, max, usize::MAX] {
            assert_eq!(mask(i, 0), 0, "mask({i:#x}, 0)");
        }
    }

    proptest::proptest! {
        /// The clamp keeps an in-bounds index and turns any other into 0: in bounds for every
        /// input with a non-empty table, never an index the table lacks.
        #[test]
        fn index_is_in_bounds(
            i in proptest::prop_oneof![0..200usize, proptest::prelude::any::<usize>(), proptest::strategy::Just(usize::MAX)],
            size in proptest::prop_oneof![1..200usize, 1..=isize::MAX as usize],
        ) {
            let clamped = index(i, size);
            proptest::prop_assert!(clamped < size, "index({:#x}, {:#x}) = {:#x}", i, size, clamped);
            proptest::prop_assert_eq!(clamped, if i < size { i } else { 0 });
            proptest::prop_assert_eq!(mask(i, size) == !0, i < size);
        }
    }
}
