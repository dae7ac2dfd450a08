//! Where the defender must post roots: the dissection points of an interval.
//!
//! Steps `lo < hi` are the agreed and the disputed step. If graph-node
//! boundaries lie strictly inside, the points are node boundaries (stage 1);
//! otherwise the interval is inside one node and the points are evenly
//! spaced steps (stage 2); at `hi = lo + 1` a one-step proof is due.
//!
//! # Stage-1 points, and the round bound
//!
//! Pure node-boundary points cannot always meet `ceil(log_k N) + 1` rounds:
//! with k = 2 and nodes of 1, 6 and 1 steps (N = 8), the first point is
//! step 1 or 7, the second isolates the 6-step node and stage 2 needs
//! `ceil(log2 6) = 3` more rounds: 5 > `ceil(log2 8) + 1 = 4`.
//!
//! The rule used here is a k-ary Gilbert–Moore split: node `[a, b)` is
//! placed at its (doubled) midpoint `a + b` in `[0, 2N)`, and an interval
//! made of whole nodes is split where the first base-k digit of `(a + b) / 2N`
//! that differs between its first and last node changes. The digits are
//! monotone in the midpoint, so there are between 1 and k - 1 points, and
//! each round moves at least one digit deeper. Doubled midpoints of two
//! nodes are at least `w + 1` apart for a node of `w` steps, so once the
//! grid cell `2N / k^d` is at most `w` the node is alone: stage 1 takes at
//! most `ceil(log_k(2N / w))` rounds and stage 2 `ceil(log_k w)`, so
//!
//! ```text
//! rounds <= ceil(log_k(2N / w)) + ceil(log_k w) <= ceil(log_k 2N) + 1 <= ceil(log_k N) + 2
//! ```
//!
//! ([`round_bound`]); it is `ceil(log_k N) + 1` whenever `2N <= k^ceil(log_k N)`.

use alloc::vec::Vec;

/// What the defender owes for an interval.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Dissection {
    /// `hi = lo + 1`: a one-step proof.
    OneStep,
    /// Node boundaries strictly inside the interval, ascending.
    Stage1(Vec<u64>),
    /// Steps strictly inside one node, ascending.
    Stage2(Vec<u64>),
}

impl Dissection {
    /// The points (empty for a one-step proof).
    pub fn points(&self) -> &[u64] {
        match self {
            Self::OneStep => &[],
            Self::Stage1(p) | Self::Stage2(p) => p,
        }
    }
}

/// `ceil(log_k n)` for `n >= 1`, `k >= 2`.
pub fn ceil_log(n: u64, k: u32) -> u32 {
    let (mut r, mut x) = (0u32, 1u128);
    while x < u128::from(n) {
        x *= u128::from(k);
        r += 1;
    }
    r
}

/// The proven bound on rounds for N steps: `ceil(log_k 2N) + 1` (see the
/// module documentation).
pub fn round_bound(n: u64, k: u32) -> u32 {
    ceil_log(n.saturating_mul(2), k) + 1
}

/// Digit `d` (1-based) of `x / two_n` in base `k`.
fn digit(x: u128, two_n: u128, k: u128, d: u32) -> u128 {
    let mut r = x;
    let mut dg = 0;
    for _ in 0..d {
        r *= k;
        dg = r / two_n;
        r %= two_n;
    }
    dg
}

/// The dissection of `(lo, hi)` for a model with these node ends (strictly
/// ascending, last = N) and arity `k` (`2..=MAX_K`). `None` if the
/// arguments are inconsistent (`lo >= hi`, `hi > N`, k out of range).
pub fn dissection(lo: u64, hi: u64, node_ends: &[u64], k: u32) -> Option<Dissection> {
    let n = *node_ends.last()?;
    if lo >= hi || hi > n || !(2..=super::MAX_K).contains(&k) {
        return None;
    }
    if hi == lo + 1 {
        return Some(Dissection::OneStep);
    }
    let i0 = node_ends.partition_point(|&e| e <= lo);
    let i1 = node_ends.partition_point(|&e| e < hi);
    if i0 >= i1 {
        // Stage 2: ceil-spaced steps, so every piece has at most ceil(L/k).
        let piece = u128::from((hi - lo).div_ceil(u64::from(k)));
        let pts = (1..u128::from(k))
            .map(|i| u128::from(lo) + i * piece)
            .filter(|&p| p < u128::from(hi))
            .map(|p| p as u64)
            .collect();
        return Some(Dissection::Stage2(pts));
    }
    // Stage 1: items are the nodes between lo and hi (lo, hi are boundaries
    // in a game; partial nodes at the ends are treated as items anyway).
    let inner = &node_ends[i0..i1];
    let count = inner.len() + 1;
    let item = |j: usize| -> (u64, u64) {
        let a = if j == 0 { lo } else { inner[j - 1] };
        let b = if j == inner.len() { hi } else { inner[j] };
        (a, b)
    };
    let mid = |j: usize| {
        let (a, b) = item(j);
        u128::from(a) + u128::from(b)
    };
    let (two_n, kk) = (2 * u128::from(n), u128::from(k));
    let (x, y) = (mid(0), mid(count - 1));
    // First digit where the first and last midpoints differ (x < y < 2N, so
    // within ceil(log_k 2N) + 1 digits).
    let mut d = 1;
    while digit(x, two_n, kk, d) == digit(y, two_n, kk, d) {
        d += 1;
        if d > 130 {
            return None;
        }
    }
    let key = |j: usize| digit(mid(j), two_n, kk, d);
    let mut pts = Vec::new();
    let (first, last) = (key(0), key(count - 1));
    for c in first + 1..=last {
        // First item whose digit is >= c; its start is a point.
        let (mut l, mut h) = (0usize, count);
        while l < h {
            let m = (l + h) / 2;
            if key(m) >= c {
                h = m;
            } else {
                l = m + 1;
            }
        }
        let p = item(l).0;
        if l > 0 && pts.last() != Some(&p) {
            pts.push(p);
        }
    }
    Some(Dissection::Stage1(pts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Worst case over the disputed position: every sub-interval may be the
    /// one the challenger picks.
    /// `full`: recurse through stage 2 too (else its closed form).
    fn worst(lo: u64, hi: u64, ends: &[u64], k: u32, full: bool) -> u32 {
        match dissection(lo, hi, ends, k).unwrap() {
            Dissection::OneStep => 0,
            Dissection::Stage2(_) if !full => ceil_log(hi - lo, k),
            d => {
                let p = d.points();
                assert!(!p.is_empty() && p.len() < k as usize, "{lo} {hi} {p:?}");
                let mut e = vec![lo];
                e.extend_from_slice(p);
                e.push(hi);
                assert!(e.windows(2).all(|w| w[0] < w[1]), "{e:?}");
                1 + e
                    .windows(2)
                    .map(|w| worst(w[0], w[1], ends, k, full))
                    .max()
                    .unwrap()
            }
        }
    }

    #[test]
    fn one_six_one_needs_more_than_log_plus_one() {
        let ends = [1, 7, 8];
        assert_eq!(worst(0, 8, &ends, 2, true), 5);
        assert_eq!(ceil_log(8, 2) + 1, 4);
        assert!(5 <= round_bound(8, 2));
    }

    #[test]
    fn single_node_is_pure_stage_two() {
        assert_eq!(worst(0, 1000, &[1000], 2, true), 10);
        assert_eq!(worst(0, 1000, &[1000], 10, true), 3);
        assert_eq!(
            dissection(0, 10, &[10], 4),
            Some(Dissection::Stage2(vec![3, 6, 9]))
        );
    }

    #[test]
    fn stage_one_points_are_boundaries() {
        let ends = [3, 5, 9, 20, 21];
        match dissection(0, 21, &ends, 3).unwrap() {
            Dissection::Stage1(p) => assert!(p.iter().all(|x| ends.contains(x)), "{p:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inconsistent_arguments_are_refused() {
        assert_eq!(dissection(5, 5, &[10], 2), None);
        assert_eq!(dissection(0, 11, &[10], 2), None);
        assert_eq!(dissection(0, 10, &[10], 1), None);
        assert_eq!(dissection(0, 10, &[10], 17), None);
        assert_eq!(dissection(0, 10, &[], 2), None);
    }

    #[test]
    fn stage_two_takes_ceil_log_rounds() {
        for k in 2..=16 {
            for len in 1..300 {
                assert_eq!(
                    worst(0, len, &[len], k, true),
                    ceil_log(len, k),
                    "k={k} len={len}"
                );
            }
        }
        let big = u64::MAX - 1;
        let d = dissection(0, big, &[big], 16).unwrap();
        assert_eq!(d.points().len(), 15);
        assert!(d.points().windows(2).all(|w| w[0] < w[1]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn random_layouts_respect_the_bound(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![1u64..4, 1u64..60, 1u64..3000], 1..24),
            k in 2u32..=16,
        ) {
            let mut ends = Vec::new();
            let mut s = 0;
            for z in sizes { s += z; ends.push(s); }
            let r = worst(0, s, &ends, k, false);
            proptest::prop_assert!(r <= round_bound(s, k), "{ends:?} k={k}: {r}");
            proptest::prop_assert!(r <= ceil_log(s, k) + 2);
        }
    }
}
