"""Read-only views over a window batch (WIT ``window-batch``): the window, its items, and each
item's rows, as in the Rust SDK. The batch's layout is checked once, on entry
(:meth:`Batch.__init__`), so the views below never index out of range."""

import math

from .decay import expected_decay
from .time import MS_PER_HOUR


def _is_number_column(values):
    # WIT `feature-values` arrives as `FeatureValues_Number` / `FeatureValues_Text` in a
    # component and as `types.Number` / `types.Text` natively: both carry `.value`.
    return type(values).__name__.endswith("Number")


def _rises(xs):
    return all(a <= b for a, b in zip(xs, xs[1:]))


class Batch:
    """One emitted window of one scenario, checked on entry.

    The window's fields are properties (``batch.decay_lambda``, ``batch.top_n``, ...); what is
    computed is a method (``batch.decayed_scores()``, ``batch.items()``, ...).
    """

    __slots__ = ("raw", "_len", "_decayed", "_ids", "_ascii")

    def __init__(self, raw):
        rows = len(raw.row_action)
        if not (len(raw.row_count) == len(raw.row_age_mean_ms) == len(raw.row_age_var_ms2) == rows):
            raise ValueError(
                f"row columns differ in length: action {rows}, count {len(raw.row_count)}, "
                f"age mean {len(raw.row_age_mean_ms)}, age var {len(raw.row_age_var_ms2)}"
            )
        if len(raw.weights) != len(raw.actions):
            raise ValueError(f"{len(raw.weights)} weights for {len(raw.actions)} actions")
        offsets = raw.item_offsets
        if not offsets or offsets[0] != 0:
            raise ValueError(f"item offsets must start at 0, got {offsets[0] if offsets else None}")
        if not _rises(offsets):
            a, b = next((a, b) for a, b in zip(offsets, offsets[1:]) if a > b)
            raise ValueError(f"item offsets decrease: {a} then {b}")
        if offsets[-1] != rows:
            raise ValueError(f"item offsets end at {offsets[-1]}, but there are {rows} rows")
        if rows and max(raw.row_action) >= len(raw.actions):
            a = max(raw.row_action)
            raise ValueError(f"row action index {a} out of range ({len(raw.actions)} actions)")
        items = len(offsets) - 1
        ends = raw.item_id_ends
        if len(ends) != items:
            raise ValueError(f"{len(ends)} item ids for {items} items")
        ids = raw.item_ids
        self._ascii = ids.isascii()
        # Ends are byte offsets into the UTF-8 id string.
        self._ids = ids if self._ascii else ids.encode("utf-8")
        if not (_rises(ends) and (not ends or ends[-1] <= len(self._ids))):
            start = 0
            for k, end in enumerate(ends):
                if end < start or end > len(self._ids):
                    raise ValueError(f"item id {k} ends at byte {end}: not a slice of the {len(self._ids)} id bytes")
                start = end
        if not self._ascii:
            start = 0
            for k, end in enumerate(ends):
                try:
                    self._ids[start:end].decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"item id {k} ends at byte {end}: not on a character boundary") from None
                start = end
        for c in raw.features:
            n = len(c.values.value)
            if n != items:
                raise ValueError(f'feature "{c.name}" has {n} values for {items} items')
        self.raw = raw
        self._len = items
        self._decayed = None

    # --- the window -------------------------------------------------------------------------

    @property
    def window_start_ms(self):
        """Start of the window (epoch ms, inclusive)."""
        return self.raw.window_start_ms

    @property
    def window_end_ms(self):
        """End of the window (epoch ms, exclusive): the time ages are measured from."""
        return self.raw.window_end_ms

    @property
    def window_ms(self):
        """Window length in milliseconds."""
        return self.raw.window_end_ms - self.raw.window_start_ms

    @property
    def decay_lambda(self):
        """The scenario's ``decay_lambda``, per hour."""
        return self.raw.decay_lambda

    @property
    def actions(self):
        """Action names; :attr:`Row.action_index` indexes this list."""
        return self.raw.actions

    @property
    def weights(self):
        """The scenario's weight per action index."""
        return self.raw.weights

    @property
    def slide_ms(self):
        """The window's slide in ms: a window ends every ``slide_ms``."""
        return self.raw.slide_ms

    @property
    def top_n(self):
        """The scenario's ``top_n``: how many items its hot list keeps."""
        return self.raw.top_n

    @property
    def tenant_id(self):
        return self.raw.tenant_id

    @property
    def scenario_id(self):
        return self.raw.scenario_id

    @property
    def features(self):
        """The declared feature columns (``name``, ``values``), in declaration order."""
        return self.raw.features

    def __len__(self):
        """Number of items."""
        return self._len

    def row_len(self):
        """Number of rows over all items."""
        return len(self.raw.row_action)

    def item_id(self, k):
        """Item ``k``'s id ("" when out of range)."""
        if not 0 <= k < self._len:
            return ""
        ends = self.raw.item_id_ends
        start = ends[k - 1] if k else 0
        s = self._ids[start : ends[k]]
        return s if self._ascii else s.decode("utf-8")

    def item_ids(self):
        """Item ids, in item order."""
        return [self.item_id(k) for k in range(self._len)]

    def feature(self, name):
        """A declared feature's column by name (``None`` when the scenario does not declare it).
        Look it up once per window and index it per item."""
        for c in self.raw.features:
            if c.name == name:
                return Feature(c.values)
        return None

    def action_index(self, name):
        """Index of an action name in this window (``None`` when absent): resolve names once per
        window, compare indexes per row."""
        try:
            return self.raw.actions.index(name)
        except ValueError:
            return None

    def weight_of(self, name):
        """The scenario's weight for an action name (0 when it does not weight it)."""
        i = self.action_index(name)
        return 0.0 if i is None else self.raw.weights[i]

    def decayed_scores(self):
        """Every item's :meth:`Item.decayed_score`, in item order: the built-in hot score
        (DESIGN §4), ``Σ weight · count · E[exp(-λ·age)]``, in one pass over the row columns
        (computed once per window; the list is shared, do not modify it)."""
        if self._decayed is not None:
            return self._decayed
        raw = self.raw
        k = raw.decay_lambda / MS_PER_HOUR
        neg_k, half_k2 = -k, 0.5 * k * k
        weights, exp = raw.weights, math.exp
        try:
            terms = [
                (weights[a] * c * (exp(neg_k * m) * (1.0 + half_k2 * v)) if weights[a] != 0.0 else 0.0)
                for a, c, m, v in zip(raw.row_action, raw.row_count, raw.row_age_mean_ms, raw.row_age_var_ms2)
            ]
        except OverflowError:
            # Only a negative age overflows; row by row, where `exp` gives infinity.
            terms = [
                (weights[a] * c * expected_decay(raw.decay_lambda, m, v) if weights[a] != 0.0 else 0.0)
                for a, c, m, v in zip(raw.row_action, raw.row_count, raw.row_age_mean_ms, raw.row_age_var_ms2)
            ]
        offsets = raw.item_offsets
        out = []
        append = out.append
        for s, e in zip(offsets, offsets[1:]):
            total = 0.0
            for t in terms[s:e]:
                total += t
            append(total)
        self._decayed = out
        return out

    def items(self):
        """The items, in the order scores are expected."""
        return [Item(self, k) for k in range(self._len)]

    def item(self, k):
        """Item ``k``, or ``None`` when out of range."""
        return Item(self, k) if 0 <= k < self._len else None

    def _row(self, r):
        raw = self.raw
        a = raw.row_action[r]
        return Row(a, raw.actions[a], raw.weights[a], raw.row_count[r], raw.row_age_mean_ms[r], raw.row_age_var_ms2[r])


class Feature:
    """One declared feature's values, one per item in item order (see :meth:`Batch.feature`)."""

    __slots__ = ("numbers", "texts")

    def __init__(self, values):
        number = _is_number_column(values)
        #: The numbers of a ``sum``, ``max`` or ``distinct`` feature (0 for an item no event
        #: contributed to); ``None`` for a text feature.
        self.numbers = values.value if number else None
        #: The strings of a ``last`` feature ("" when none); ``None`` for a numeric one.
        self.texts = None if number else values.value


class Item:
    """One item of the window: its rows are its (one-minute bucket, action) cells."""

    __slots__ = ("batch", "index", "_start", "_end")

    def __init__(self, batch, index):
        self.batch = batch
        #: Position of the item in the window (and of its score in the output).
        self.index = index
        offsets = batch.raw.item_offsets
        self._start, self._end = offsets[index], offsets[index + 1]

    @property
    def id(self):
        """The item's id."""
        return self.batch.item_id(self.index)

    @property
    def decay_lambda(self):
        return self.batch.raw.decay_lambda

    def feature(self, name):
        """The item's value of a numeric declared feature; ``None`` when the scenario declares no
        numeric feature of that name."""
        f = self.batch.feature(name)
        return None if f is None or f.numbers is None else f.numbers[self.index]

    def feature_text(self, name):
        """The item's value of a text declared feature (``last``); ``None`` when the scenario
        declares no text feature of that name."""
        f = self.batch.feature(name)
        return None if f is None or f.texts is None else f.texts[self.index]

    def rows(self):
        """The item's rows: one per (one-minute bucket, action) that holds events."""
        row = self.batch._row
        return [row(r) for r in range(self._start, self._end)]

    def row_len(self):
        return self._end - self._start

    def count(self):
        """Number of events of the item, all actions."""
        return sum(self.batch.raw.row_count[self._start : self._end])

    def count_of(self, action_index):
        """Number of events of one action (by index, see :meth:`Batch.action_index`)."""
        raw = self.batch.raw
        s, e = self._start, self._end
        return sum(c for a, c in zip(raw.row_action[s:e], raw.row_count[s:e]) if a == action_index)

    def weighted_count(self):
        """``Σ weight · count``: the undecayed weighted event count."""
        raw = self.batch.raw
        s, e = self._start, self._end
        w = raw.weights
        total = 0.0
        for a, c in zip(raw.row_action[s:e], raw.row_count[s:e]):
            total += w[a] * c
        return total

    def decayed_score(self):
        """The built-in hot score (DESIGN §4): ``Σ weight · count · E[exp(-λ·age)]``. The first
        call computes every item's score of the window at once (:meth:`Batch.decayed_scores`)."""
        return self.batch.decayed_scores()[self.index]

    def mean_age_ms(self):
        """Mean age (ms) of the item's weighted events (nonzero weight), each event counted once;
        ``None`` when it has none."""
        n = total = 0.0
        for r in self.rows():
            if r.weight != 0.0:
                n += r.count
                total += r.count * r.age_mean_ms
        return total / n if n > 0 else None


class Row:
    """One (one-minute bucket, action) cell of an item: how many events, and their age moments."""

    __slots__ = ("action_index", "action", "weight", "count", "age_mean_ms", "age_var_ms2")

    def __init__(self, action_index, action, weight, count, age_mean_ms, age_var_ms2):
        self.action_index = action_index
        self.action = action
        self.weight = weight
        self.count = count
        #: Mean event age, ``window_end_ms - ts``, in ms.
        self.age_mean_ms = age_mean_ms
        #: Variance of the event ages, in ms² (0 for a single event).
        self.age_var_ms2 = age_var_ms2

    def weighted_count(self):
        """``weight · count``."""
        return self.weight * self.count

    def expected_decay(self, lambda_per_hour):
        """``E[exp(-λ·age)]`` over the row's events, λ per hour."""
        return expected_decay(lambda_per_hour, self.age_mean_ms, self.age_var_ms2)

    def decayed(self, lambda_per_hour):
        """``weight · count · E[exp(-λ·age)]``: the row's share of the built-in score."""
        return self.weight * self.count * self.expected_decay(lambda_per_hour)

    def __eq__(self, other):
        return isinstance(other, Row) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return "Row(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__) + ")"
