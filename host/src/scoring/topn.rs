//! Top-N selection: items with score > 0, by score descending then item id ascending.

use std::cmp::Ordering;

/// Order of a hot list: higher score first, ties broken by item id so results are deterministic.
pub fn hot_order(a: &(f64, &str), b: &(f64, &str)) -> Ordering {
    b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then_with(|| a.1.cmp(b.1))
}

/// Selects the `n` best `(score, item)` pairs with score > 0, in hot-list order.
pub fn top_n<'a>(scored: impl IntoIterator<Item = (f64, &'a str)>, n: usize) -> Vec<(f64, &'a str)> {
    let mut v: Vec<(f64, &str)> = scored.into_iter().filter(|(s, _)| *s > 0.0).collect();
    if v.len() > n {
        v.select_nth_unstable_by(n - 1, hot_order);
        v.truncate(n);
    }
    v.sort_unstable_by(hot_order);
    v
}

/// Like [`top_n`] over `scores[k]` for item `k`, naming items (`name(k)`) only where scores tie
/// at the cut or in the final order: selecting on `(f64, u32)` pairs instead of `(f64, &str)`
/// keeps the tens of thousands of candidates of a large window in cache. Returns `(score, k)`.
pub fn top_n_indexed<'a>(scores: &[f64], n: usize, name: impl Fn(usize) -> &'a str) -> Vec<(f64, usize)> {
    let mut v: Vec<(f64, u32)> = scores.iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(k, &s)| (s, k as u32)).collect();
    if v.len() > n {
        if n == 0 {
            return Vec::new();
        }
        // Scores are finite and positive here, so `total_cmp` orders them as `hot_order` does.
        v.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        let cut = v[n - 1].0;
        // Every item above the cut is in; of those at the cut, the smallest ids fill the rest.
        let mut ties: Vec<(f64, u32)> = v.iter().filter(|p| p.0 == cut).copied().collect();
        v.retain(|p| p.0 > cut);
        ties.sort_unstable_by(|a, b| name(a.1 as usize).cmp(name(b.1 as usize)));
        ties.truncate(n - v.len());
        v.extend(ties);
    }
    v.sort_unstable_by(|a, b| hot_order(&(a.0, name(a.1 as usize)), &(b.0, name(b.1 as usize))));
    v.into_iter().map(|(s, k)| (s, k as usize)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ties_break_by_item_id_and_zero_is_dropped() {
        let got = top_n(vec![(1.0, "b"), (2.0, "c"), (1.0, "a"), (0.0, "z"), (-1.0, "y")], 10);
        assert_eq!(got, vec![(2.0, "c"), (1.0, "a"), (1.0, "b")]);
    }

    proptest! {
        #[test]
        fn equals_full_sort_prefix(scores in proptest::collection::vec(-5i32..50, 0..200), n in 1usize..50) {
            let ids: Vec<String> = (0..scores.len()).map(|i| format!("i{i}")).collect();
            let pairs: Vec<(f64, &str)> = scores.iter().zip(&ids).map(|(s, id)| (f64::from(*s), id.as_str())).collect();
            let mut full: Vec<_> = pairs.iter().copied().filter(|p| p.0 > 0.0).collect();
            full.sort_by(hot_order);
            full.truncate(n);
            prop_assert_eq!(top_n(pairs.clone(), n), full.clone());
            let scores: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let by_index: Vec<(f64, &str)> = top_n_indexed(&scores, n, |k| pairs[k].1).into_iter().map(|(s, k)| (s, pairs[k].1)).collect();
            prop_assert_eq!(by_index, full);
        }
    }
}
