//! How two rankings of the same items compare: top-K overlap (Jaccard, share in common),
//! rank-biased overlap, and the relative score drift of the items in both. Shadow evaluation
//! (`pipeline::shadow`) compares a candidate's hot list with the live one this way, and
//! backtests (`backtest::diff`) compare two runs. A ranking is `(item, score)` pairs in
//! hot-list order.

use std::collections::{BTreeMap, BTreeSet};

/// Jaccard similarity of the first `k` items.
pub fn jaccard_at(a: &[(String, f64)], b: &[(String, f64)], k: usize) -> f64 {
    let sa: BTreeSet<&str> = a.iter().take(k).map(|x| x.0.as_str()).collect();
    let sb: BTreeSet<&str> = b.iter().take(k).map(|x| x.0.as_str()).collect();
    let union = sa.union(&sb).count();
    if union == 0 { 1.0 } else { sa.intersection(&sb).count() as f64 / union as f64 }
}

/// Extrapolated rank-biased overlap (Webber et al. 2010) of the first `k` items, persistence
/// `p`: 1 for identical rankings, 0 for disjoint ones; agreement at the top weighs most.
pub fn rbo_at(a: &[(String, f64)], b: &[(String, f64)], k: usize, p: f64) -> f64 {
    let depth = k.min(a.len().max(b.len()));
    if depth == 0 {
        return 1.0;
    }
    // overlap = |A[..d] ∩ B[..d]|, updated as each depth adds one item from either list.
    let (mut seen_a, mut seen_b) = (BTreeSet::new(), BTreeSet::new());
    let mut overlap = 0usize;
    let mut sum = 0.0;
    for d in 1..=depth {
        let (x, y) = (a.get(d - 1).map(|i| i.0.as_str()), b.get(d - 1).map(|i| i.0.as_str()));
        if x.is_some() && x == y {
            overlap += 1;
        } else {
            overlap += usize::from(x.is_some_and(|x| seen_b.contains(x))) + usize::from(y.is_some_and(|y| seen_a.contains(y)));
        }
        seen_a.extend(x);
        seen_b.extend(y);
        sum += overlap as f64 / d as f64 * p.powi(d as i32);
    }
    let x_k = overlap as f64 / depth as f64;
    x_k * p.powi(depth as i32) + (1.0 - p) / p * sum
}

/// Share of the first `k` items the two lists have in common: `|A_k ∩ B_k| / max(|A_k|, |B_k|)`,
/// 1 when both are empty.
pub fn overlap_at(a: &[(String, f64)], b: &[(String, f64)], k: usize) -> f64 {
    let sa: BTreeSet<&str> = a.iter().take(k).map(|x| x.0.as_str()).collect();
    let sb: BTreeSet<&str> = b.iter().take(k).map(|x| x.0.as_str()).collect();
    let depth = sa.len().max(sb.len());
    if depth == 0 { 1.0 } else { sa.intersection(&sb).count() as f64 / depth as f64 }
}

/// Relative score drift `|b - a| / |a|` of the items in both lists' first `k`, in A's order.
pub fn drift_ratios(a: &[(String, f64)], b: &[(String, f64)], k: usize) -> Vec<f64> {
    let tb: BTreeMap<&str, f64> = b.iter().take(k).map(|(i, s)| (i.as_str(), *s)).collect();
    a.iter().take(k).filter_map(|(i, sa)| tb.get(i.as_str()).map(|sb| (sb - sa).abs() / sa.abs().max(1e-12))).collect()
}

/// The `q` quantile (nearest rank) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<(String, f64)> {
        items.iter().enumerate().map(|(i, s)| (s.to_string(), 10.0 - i as f64)).collect()
    }

    #[test]
    fn identical_lists_agree_fully() {
        let a = list(&["a", "b", "c"]);
        assert_eq!(jaccard_at(&a, &a, 10), 1.0);
        assert!((rbo_at(&a, &a, 10, 0.9) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn disjoint_lists_do_not_agree_and_top_swaps_cost_more() {
        let (a, b) = (list(&["a", "b", "c"]), list(&["x", "y", "z"]));
        assert_eq!(jaccard_at(&a, &b, 10), 0.0);
        assert_eq!(rbo_at(&a, &b, 10, 0.9), 0.0);
        let top_swap = rbo_at(&list(&["a", "b", "c", "d"]), &list(&["x", "b", "c", "d"]), 4, 0.9);
        let tail_swap = rbo_at(&list(&["a", "b", "c", "d"]), &list(&["a", "b", "c", "x"]), 4, 0.9);
        assert!(top_swap < tail_swap, "{top_swap} vs {tail_swap}");
    }

    #[test]
    fn overlap_and_drift_of_two_lists() {
        let (a, b) = (list(&["a", "b", "c", "d"]), list(&["b", "a", "x"]));
        assert_eq!(overlap_at(&a, &b, 3), 2.0 / 3.0);
        assert_eq!(overlap_at(&[], &[], 3), 1.0);
        assert_eq!(drift_ratios(&a, &b, 3), vec![1.0 / 10.0, 1.0 / 9.0]);
    }
}
