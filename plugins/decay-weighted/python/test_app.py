import unittest

from app import DecayWeighted
from rtscore_guest import Batch
from rtscore_guest.decay import exp_decay
from rtscore_guest.params import ParamsError
from rtscore_guest.testing import BatchBuilder


class DecayWeightedTest(unittest.TestCase):
    def test_matches_the_per_event_formula(self):
        lam = 0.7
        batch = (
            BatchBuilder()
            .decay_lambda(lam)
            .weights({"view": 1.0, "click": 2.0})
            .events([("a", "view", 5_000, 1), ("a", "view", 35_000, 1), ("a", "click", 3_600_000, 2), ("b", "like", 1_000, 9)])
            .build()
        )
        scores = batch.run(DecayWeighted, "null")
        expected_a = exp_decay(lam, 5_000.0) + exp_decay(lam, 35_000.0) + 2.0 * 2.0 * exp_decay(lam, 3_600_000.0)
        self.assertLess(abs(scores[0] - expected_a) / expected_a, 1e-6)
        self.assertEqual(scores[1], 0.0, "like is not weighted")

    def test_scores_the_same_as_item_by_item(self):
        batch = (
            BatchBuilder()
            .decay_lambda(3.0)
            .weights([("view", 1.0), ("click", 2.5), ("share", 0.0)])
            .events([("a", "view", 5_000, 1), ("a", "click", 900_000, 3), ("a", "share", 10, 2), ("b", "view", 59_000, 7), ("c", "share", 1, 1)])
            .build()
        )
        scores = batch.run(DecayWeighted, "null")
        lam = batch.raw.decay_lambda
        by_rows = [sum(r.decayed(lam) for r in item.rows() if r.weight != 0.0) for item in Batch(batch.raw).items()]
        self.assertEqual(scores, by_rows)

    def test_rejects_params_it_does_not_take(self):
        batch = BatchBuilder().build()
        self.assertEqual(batch.run(DecayWeighted, "{}"), [])
        with self.assertRaisesRegex(ParamsError, "lambda"):
            batch.run(DecayWeighted, '{"lambda": 2}')


if __name__ == "__main__":
    unittest.main()
