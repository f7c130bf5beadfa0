"""The Python guest SDK natively: params, batch views and checks, the test harness, and the
component glue (with a stand-in for componentize-py's `Err`)."""

import dataclasses
import math
import random
import sys
import types
import typing
import unittest

from rtscore_guest import Batch, NoParams, ParamsError, Scorer, export_scorer, parse_params
from rtscore_guest.decay import exp_decay, expected_decay, lambda_for_half_life
from rtscore_guest.math import finite_or, log_volume, safe_div, wilson_lower_bound
from rtscore_guest.testing import BatchBuilder, Number
from rtscore_guest.time import MS_PER_HOUR, hours_to_ms, ms_to_hours


@dataclasses.dataclass
class P:
    gravity: float = 0.0
    name: str = ""
    tags: typing.List[str] = dataclasses.field(default_factory=list)
    limit: typing.Optional[int] = None


class Count(Scorer):
    def score_item(self, item):
        return item.weighted_count()


class Whole(Scorer):
    def score(self, batch):
        n = len(batch)
        return [i.weighted_count() / n for i in batch.items()]


class Neither(Scorer):
    pass


def raw():
    return (
        BatchBuilder()
        .weight("view", 1.0)
        .weight("click", 2.0)
        .event("a", "view", 1_000, 3)
        .event("a", "click", 61_000, 1)
        .event("b", "share", 5_000, 2)
        .feature("b", "price", 9.5)
        .feature_text("a", "brand", "acme")
        .build()
        .raw
    )


class ParamsTest(unittest.TestCase):
    def test_default_when_absent_or_null(self):
        self.assertEqual(parse_params(P, ""), P())
        self.assertEqual(parse_params(P, " null "), P())
        self.assertEqual(parse_params(P, "{}"), P())
        self.assertEqual(parse_params(P, '{"gravity": 1}').gravity, 1.0)
        self.assertEqual(parse_params(P, '{"tags": ["x"], "limit": 3}'), P(tags=["x"], limit=3))

    def test_errors_name_the_input(self):
        with self.assertRaisesRegex(ParamsError, "gravty"):
            parse_params(P, '{"gravty": 1.5}')
        with self.assertRaisesRegex(ParamsError, "unknown field"):
            parse_params(NoParams, '{"x": 1}')
        with self.assertRaisesRegex(ParamsError, "gravity"):
            parse_params(P, '{"gravity": true}')
        with self.assertRaisesRegex(ParamsError, "tags"):
            parse_params(P, '{"tags": [1]}')
        with self.assertRaisesRegex(ParamsError, "expected an object"):
            parse_params(P, "[1]")
        with self.assertRaises(ParamsError):
            parse_params(P, "{")


class BatchTest(unittest.TestCase):
    def test_context_and_features(self):
        ctx = BatchBuilder().slide_ms(300_000).top_n(7).tenant("t1").scenario("s1").build().raw
        b = Batch(ctx)
        self.assertEqual((b.slide_ms, b.top_n, b.tenant_id, b.scenario_id), (300_000, 7, "t1", "s1"))
        b = Batch(raw())
        items = b.items()
        self.assertEqual((items[0].id, items[1].id), ("a", "b"))
        self.assertEqual(b.item_ids(), ["a", "b"])
        self.assertEqual((items[0].feature("price"), items[1].feature("price")), (0.0, 9.5))
        self.assertEqual((items[0].feature_text("brand"), items[1].feature_text("brand")), ("acme", ""))
        self.assertIsNone(items[0].feature("brand"), "a text feature is not a number")
        self.assertIsNone(items[0].feature("nope"))
        self.assertEqual(b.feature("price").numbers, [0.0, 9.5])
        self.assertEqual(len(b.features), 2)

    def test_views_follow_the_csr_layout(self):
        b = Batch(raw())
        self.assertEqual(len(b), 2)
        items = b.items()
        self.assertEqual(items[0].count(), 4)
        self.assertEqual(items[0].weighted_count(), 5.0)
        self.assertEqual(items[1].weighted_count(), 0.0, "share is not weighted")
        self.assertIsNone(items[1].mean_age_ms())
        click = b.action_index("click")
        self.assertEqual(items[0].count_of(click), 1)
        self.assertEqual(items[0].mean_age_ms(), (3.0 * 1_000.0 + 61_000.0) / 4.0)
        self.assertEqual(b.weight_of("share"), 0.0)
        self.assertIsNone(b.item(2))

    def test_unicode_ids_are_byte_slices(self):
        r = BatchBuilder().item("é").item("ü-2").build().raw
        self.assertEqual(r.item_id_ends, [2, 6])
        self.assertEqual(Batch(r).item_ids(), ["é", "ü-2"])

    def test_the_whole_window_pass_scores_like_row_by_row(self):
        rng = random.Random(7)
        for lam in (0.0, 0.1, 3.0, 200.0):
            bb = BatchBuilder().decay_lambda(lam).weights({"a": 1.0, "b": 2.5, "c": 0.0, "d": -0.75})
            for k in range(50):
                for _ in range(rng.randrange(0, 8)):
                    bb.event(f"i{k}", rng.choice("abcde"), rng.randrange(0, 3_600_000), rng.randrange(1, 60))
            b = Batch(bb.build().raw)
            by_rows = []
            for item in b.items():
                s = 0.0
                for r in item.rows():
                    if r.weight != 0.0:
                        s += r.decayed(lam)
                by_rows.append(s)
            self.assertEqual(b.decayed_scores(), by_rows, f"λ {lam}")
            self.assertEqual([i.decayed_score() for i in b.items()], by_rows)

    def test_malformed_layouts_are_errors(self):
        cases = [
            (lambda r: setattr(r, "item_offsets", [0, 5]), "end at 5"),
            (lambda r: r.row_action.__setitem__(0, 99), "99"),
            (lambda r: setattr(r, "item_offsets", [0, 2, 1, 3]), "decrease"),
            (lambda r: r.weights.pop(), "weights"),
            (lambda r: r.row_count.pop(), "differ"),
            (lambda r: setattr(r, "item_offsets", []), "start at 0"),
            (lambda r: r.item_id_ends.pop(), "1 item ids for 2 items"),
            (lambda r: r.item_id_ends.__setitem__(0, 99), "not a slice"),
            (lambda r: (setattr(r, "item_ids", "é"), setattr(r, "item_id_ends", [1, 2])), "boundary|slice"),
            (lambda r: setattr(r.features[0], "values", Number([1.0])), '"price" has 1 values'),
        ]
        for spoil, msg in cases:
            r = raw()
            spoil(r)
            with self.assertRaisesRegex(ValueError, msg):
                Batch(r)


class HarnessTest(unittest.TestCase):
    def test_events_in_one_minute_cell_share_a_row(self):
        b = (
            BatchBuilder()
            .weight("view", 1.0)
            .event("a", "view", 10_000, 1)
            .event("a", "view", 40_000, 1)
            .event("a", "view", 70_000, 2)
            .event("b", "click", 1_000, 1)
            .build()
        )
        self.assertEqual(b.item_ids, ["a", "b"])
        self.assertEqual(b.raw.item_offsets, [0, 2, 3])
        self.assertEqual(b.raw.row_count, [2, 2, 1])
        self.assertEqual((b.raw.row_age_mean_ms[1], b.raw.row_age_var_ms2[1]), (25_000.0, 225_000_000.0))
        self.assertEqual((b.raw.actions, b.raw.weights), (["view", "click"], [1.0, 0.0]))

    def test_a_scorer_writes_score_or_score_item(self):
        b = BatchBuilder().weight("view", 1.0).event("a", "view", 0, 3).event("b", "view", 0, 1).build()
        self.assertEqual(b.run(Whole), [1.5, 0.5])
        self.assertEqual(b.run(Count), [3.0, 1.0])
        self.assertEqual(b.scores(Count), [("a", 3.0), ("b", 1.0)])
        self.assertEqual(b.score_of(Count, "null", "b"), 1.0)
        with self.assertRaisesRegex(NotImplementedError, "implement `score_item`"):
            b.run(Neither)

    def test_the_hosts_rules_are_checked(self):
        class Short(Scorer):
            def score(self, batch):
                return [1.0]

        class Nan(Scorer):
            def score_item(self, item):
                return math.nan

        b = BatchBuilder().item("a").item("b").build()
        with self.assertRaisesRegex(ValueError, "1 scores for 2 items"):
            b.run(Short)
        with self.assertRaisesRegex(ValueError, "not finite"):
            b.run(Nan)


class Err(Exception):
    """componentize-py's `Err`, as the component raises it."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class ExportTest(unittest.TestCase):
    def setUp(self):
        sys.modules["componentize_py_types"] = types.SimpleNamespace(Err=Err)

    def tearDown(self):
        del sys.modules["componentize_py_types"]

    def test_configure_then_score_as_the_host_calls_them(self):
        class Checked(Scorer):
            Params = P

            def __init__(self, p):
                if p.gravity < 0:
                    raise ValueError(f"gravity must be >= 0, got {p.gravity}")
                self.p = p

            def score_item(self, item):
                if item.id == "boom":
                    raise ZeroDivisionError("division by zero")
                return item.weighted_count() * self.p.gravity

        world = export_scorer(Checked)
        b = BatchBuilder().weight("view", 1.0).event("a", "view", 0, 2).build()
        with self.assertRaisesRegex(Err, "before configure"):
            world().score(b.raw)
        with self.assertRaisesRegex(Err, "gravity must be >= 0"):
            world().configure('{"gravity": -1}')
        with self.assertRaisesRegex(Err, "unknown field `gravty`"):
            world().configure('{"gravty": 1}')
        world().configure('{"gravity": 2}')
        self.assertEqual(world().score(b.raw), [4.0], "the configured scorer outlives the WitWorld object")
        boom = BatchBuilder().item("boom").build()
        with self.assertRaisesRegex(Err, r"ZeroDivisionError: division by zero \(at score_item, line \d+\)"):
            world().score(boom.raw)
        bad = b.raw
        bad.item_offsets = [0, 5]
        with self.assertRaisesRegex(Err, "end at 5"):
            world().score(bad)


class HelpersTest(unittest.TestCase):
    def test_decay_and_time(self):
        lam = lambda_for_half_life(2.0)
        self.assertAlmostEqual(exp_decay(lam, 2.0 * MS_PER_HOUR), 0.5, delta=1e-12)
        self.assertEqual(expected_decay(0.3, 1_234.0, 0.0), exp_decay(0.3, 1_234.0))
        self.assertEqual(exp_decay(1.0, -1e15), math.inf, "overflow is infinity, not an exception")
        self.assertEqual(ms_to_hours(hours_to_ms(2.5)), 2.5)

    def test_math(self):
        self.assertEqual(safe_div(1.0, 0.0), 0.0)
        self.assertEqual(safe_div(6.0, 3.0), 2.0)
        self.assertEqual(safe_div(1e308, 1e-300), 0.0)
        self.assertLess(abs(wilson_lower_bound(5.0, 10.0, 1.96) - 0.236593), 1e-5)
        self.assertEqual(wilson_lower_bound(3.0, 0.0, 1.96), 0.0)
        self.assertEqual(log_volume(-1.0), 0.0)
        self.assertEqual(finite_or(math.nan, 0.0), 0.0)


if __name__ == "__main__":
    unittest.main()
