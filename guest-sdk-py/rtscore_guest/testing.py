"""Native test harness: build a window from ``(item, action, age_ms, count)`` events (plus the
window context and declared feature values, if the scorer reads them) and run a scorer on it
exactly as the host would, without compiling to WebAssembly::

    batch = BatchBuilder().weight("click", 2.0).event("item-1", "click", 30_000, 3).build()
    assert batch.run(Count, "null") == [6.0]

The batch is built the way the host builds one: events grouped per item (first-seen order),
then per (one-minute bucket, action) with the count, mean and variance of their ages.
"""

import math

from .scorer import build_scorer, run_scorer
from .time import MS_PER_MINUTE

#: A window end used when a test does not choose one (2026-01-01T00:00:00Z).
DEFAULT_WINDOW_END_MS = 1_767_225_600_000


class Number:
    """WIT ``feature-values::number``, as the component bindings give it (``.value``)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is Number and other.value == self.value

    def __repr__(self):
        return f"Number({self.value!r})"


class Text:
    """WIT ``feature-values::text``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is Text and other.value == self.value

    def __repr__(self):
        return f"Text({self.value!r})"


class FeatureColumn:
    """WIT ``feature-column``."""

    __slots__ = ("name", "values")

    def __init__(self, name, values):
        self.name, self.values = name, values


class RawBatch:
    """WIT ``window-batch`` with the field names the component bindings use."""

    FIELDS = (
        "window_start_ms",
        "window_end_ms",
        "actions",
        "weights",
        "decay_lambda",
        "item_offsets",
        "row_action",
        "row_count",
        "row_age_mean_ms",
        "row_age_var_ms2",
        "item_ids",
        "item_id_ends",
        "slide_ms",
        "top_n",
        "tenant_id",
        "scenario_id",
        "features",
    )
    __slots__ = FIELDS

    def __init__(self, **fields):
        for f in self.FIELDS:
            setattr(self, f, fields[f])


class BatchBuilder:
    """Builds a window batch. A 60-minute window sliding by 1 minute ending at
    :data:`DEFAULT_WINDOW_END_MS`, λ = 0.1 per hour, no actions, ``top_n`` 100, tenant
    ``tenant``, scenario ``scenario``, no features, unless set. Every setter returns the
    builder."""

    def __init__(self):
        self._start = DEFAULT_WINDOW_END_MS - 60 * 60_000
        self._end = DEFAULT_WINDOW_END_MS
        self._lambda = 0.1
        self._actions, self._weights = [], []
        self._items = []  # [(id, [(action index, age_ms, count)])]
        self._slide_ms, self._top_n = 60_000, 100
        self._tenant, self._scenario = "tenant", "scenario"
        self._features = []  # [(name, kind, [(item index, value)])]

    def window(self, start_ms, end_ms):
        self._start, self._end = start_ms, end_ms
        return self

    def decay_lambda(self, per_hour):
        """The scenario's ``decay_lambda``, per hour (``lambda`` is a Python keyword)."""
        self._lambda = per_hour
        return self

    def slide_ms(self, slide_ms):
        self._slide_ms = slide_ms
        return self

    def top_n(self, top_n):
        self._top_n = top_n
        return self

    def tenant(self, tenant_id):
        self._tenant = tenant_id
        return self

    def scenario(self, scenario_id):
        self._scenario = scenario_id
        return self

    def item(self, item):
        """An item with no events (yet): items are in first-mention order."""
        self._item_index(item)
        return self

    def weight(self, action, weight):
        """The scenario's weight for ``action`` (actions never weighted weigh 0)."""
        self._weights[self._action(action)] = float(weight)
        return self

    def weights(self, weights):
        """Several weights: a dict or ``(action, weight)`` pairs."""
        for a, w in weights.items() if isinstance(weights, dict) else weights:
            self.weight(a, w)
        return self

    def event(self, item, action, age_ms, count=1):
        """``count`` events of ``action`` on ``item``, each ``age_ms`` before the window end."""
        a = self._action(action)
        self._items[self._item_index(item)][1].append((a, age_ms, count))
        return self

    def events(self, events):
        """Many ``(item, action, age_ms, count)`` events."""
        for e in events:
            self.event(*e)
        return self

    def feature(self, item, name, value):
        """``item``'s value of the numeric declared feature ``name`` (others get 0)."""
        self._column(name, "number").append((self._item_index(item), float(value)))
        return self

    def feature_text(self, item, name, value):
        """``item``'s value of the text declared feature ``name`` (others get "")."""
        self._column(name, "text").append((self._item_index(item), value))
        return self

    def _column(self, name, kind):
        for n, k, values in self._features:
            if n == name:
                if k != kind:
                    raise ValueError(f"feature {name!r} was declared as {k}")
                return values
        self._features.append((name, kind, []))
        return self._features[-1][2]

    def _item_index(self, item):
        for k, (i, _) in enumerate(self._items):
            if i == item:
                return k
        self._items.append((item, []))
        return len(self._items) - 1

    def _action(self, name):
        if name not in self._actions:
            self._actions.append(name)
            self._weights.append(0.0)
        return self._actions.index(name)

    def build(self):
        """The batch (a :class:`TestBatch`), with the item ids in score order."""
        ids = [i for i, _ in self._items]
        ends, end = [], 0
        for i in ids:
            end += len(i.encode("utf-8"))
            ends.append(end)
        offsets, row_action, row_count, means, variances = [0], [], [], [], []
        bucket_ms = int(MS_PER_MINUTE)
        for _, events in self._items:
            cells = {}
            for a, age, n in events:
                cells.setdefault(((self._end - age) // bucket_ms, a), []).append((float(age), n))
            for (_, a), ages in sorted(cells.items()):
                n = float(sum(c for _, c in ages))
                mean = sum(x * c for x, c in ages) / n if n > 0 else 0.0
                var = sum(c * (x - mean) ** 2 for x, c in ages) / n if n > 0 else 0.0
                row_action.append(a)
                row_count.append(sum(c for _, c in ages))
                means.append(mean)
                variances.append(var)
            offsets.append(len(row_action))
        features = []
        for name, kind, values in self._features:
            col = [0.0 if kind == "number" else ""] * len(ids)
            for k, v in values:
                col[k] = v
            features.append(FeatureColumn(name, Number(col) if kind == "number" else Text(col)))
        raw = RawBatch(
            window_start_ms=self._start,
            window_end_ms=self._end,
            actions=list(self._actions),
            weights=list(self._weights),
            decay_lambda=float(self._lambda),
            item_offsets=offsets,
            row_action=row_action,
            row_count=row_count,
            row_age_mean_ms=means,
            row_age_var_ms2=variances,
            item_ids="".join(ids),
            item_id_ends=ends,
            slide_ms=self._slide_ms,
            top_n=self._top_n,
            tenant_id=self._tenant,
            scenario_id=self._scenario,
            features=features,
        )
        return TestBatch(raw, ids)


class TestBatch:
    """A built batch and the ids of its items (index ``k`` is the item of score ``k``)."""

    __test__ = False  # not a test case, for runners that collect by name

    def __init__(self, raw, item_ids):
        self.raw = raw
        self.item_ids = item_ids

    def run(self, cls, params_json="null"):
        """Configures ``cls`` from ``params_json`` and scores the batch, as the host's
        ``configure`` then ``score`` calls do, and checks the host's rules on the result: one
        finite score per item. Raises ``ValueError`` with the host's reason otherwise."""
        return self.run_scorer(build_scorer(cls, params_json))

    def run_scorer(self, scorer):
        """Like :meth:`run` with an already built scorer."""
        scores = run_scorer(scorer, self.raw)
        if len(scores) != len(self.item_ids):
            raise ValueError(f"{len(scores)} scores for {len(self.item_ids)} items (the host rejects this)")
        for i, s in enumerate(scores):
            if not isinstance(s, (int, float)) or isinstance(s, bool):
                raise ValueError(f"score {s!r} of item {self.item_ids[i]} is not a number (the host rejects this)")
            if not math.isfinite(s):
                raise ValueError(f"score {s} of item {self.item_ids[i]} is not finite (the host rejects this)")
        return [float(s) for s in scores]

    def scores(self, cls, params_json="null"):
        """``(item_id, score)`` pairs, in item order."""
        return list(zip(self.item_ids, self.run(cls, params_json)))

    def score_of(self, cls, params_json, item):
        """The score of one item by id."""
        if item not in self.item_ids:
            raise KeyError(f"no item {item} in the batch")
        return self.run(cls, params_json)[self.item_ids.index(item)]
