import unittest

from app import WatchHeat, completion
from rtscore_guest.decay import exp_decay
from rtscore_guest.testing import BatchBuilder


def batch():
    return (
        BatchBuilder()
        .weights({"view": 1.0, "like": 2.0})
        # Same traffic on both; "full" is watched to the end, "skipped" for a tenth.
        .events([("full", "view", 60_000, 4), ("full", "like", 60_000, 1)])
        .events([("skipped", "view", 60_000, 4), ("skipped", "like", 60_000, 1)])
        .events([("unknown", "view", 60_000, 4)])
        .feature("full", "watch_ms", 4.0 * 30_000.0)
        .feature("full", "duration_ms", 30_000.0)
        .feature("skipped", "watch_ms", 4.0 * 3_000.0)
        .feature("skipped", "duration_ms", 30_000.0)
        .build()
    )


class WatchHeatTest(unittest.TestCase):
    def test_completion_multiplies_the_built_in_heat(self):
        b = batch()
        scores = b.run(WatchHeat, '{"completion_weight": 1.0}')
        base = b.run(WatchHeat, '{"completion_weight": 0}')
        self.assertAlmostEqual(scores[0], 2.0 * base[0], delta=1e-9)
        self.assertAlmostEqual(scores[1], 1.1 * base[1], delta=1e-9)
        self.assertEqual(scores[2], base[2], "no duration known: the built-in heat")

    def test_completion_is_clamped_and_zero_when_unknown(self):
        self.assertEqual(completion(10.0, 0, 5.0), 0.0)
        self.assertEqual(completion(10.0, 1, 0.0), 0.0)
        self.assertEqual(completion(10.0, 1, 5.0), 1.0, "rewatches count as full completion")
        self.assertAlmostEqual(completion(5.0, 2, 5.0), 0.5, delta=1e-12)

    def test_without_declared_features_it_is_the_built_in_formula(self):
        b = BatchBuilder().weights({"view": 1.0}).events([("a", "view", 1_000, 3)]).build()
        expected = 3.0 * exp_decay(0.1, 1_000.0)
        self.assertLess(abs(b.run(WatchHeat, "null")[0] - expected) / expected, 1e-6)

    def test_params_are_checked(self):
        b = BatchBuilder().build()
        with self.assertRaisesRegex(ValueError, "completion_weight"):
            b.run(WatchHeat, '{"completion_weight": -1}')
        with self.assertRaisesRegex(ValueError, "completion_wieght"):
            b.run(WatchHeat, '{"completion_wieght": 1}')
        with self.assertRaisesRegex(ValueError, "expected float"):
            b.run(WatchHeat, '{"completion_weight": "1"}')


if __name__ == "__main__":
    unittest.main()
