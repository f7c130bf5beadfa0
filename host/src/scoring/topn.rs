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
            prop_assert_eq!(top_n(pairs, n), full);
        }
    }
}
