"""The scorer base class and its export as the component's ``configure`` and ``score``."""

import traceback

from .batch import Batch
from .params import NoParams, parse_params


class Scorer:
    """A scoring formula. One instance is built per plugin instance from the scenario's
    ``plugin.params`` (read into ``Params``, a dataclass), then scores every emitted window of
    that scenario.

    Write exactly one of :meth:`score_item` (one item at a time, the simple case) and
    :meth:`score` (the whole window, for formulas that look across items).

    ``__init__`` receives the parsed params; raise ``ValueError`` (or any exception) there to
    reject them: the host reports the message and keeps scoring with the last good module or the
    built-in formula.
    """

    #: The parameters' dataclass; missing fields take their defaults, unknown ones are refused.
    Params = NoParams

    def __init__(self, params):
        self.params = params

    def score_item(self, item):
        """The score of one :class:`~rtscore_guest.batch.Item`. Scores ``<= 0`` keep the item off
        the hot list; NaN or infinite scores make the host reject the whole window."""
        raise NotImplementedError("rtscore_guest.Scorer: implement `score_item` (one item) or `score` (the whole window)")

    def score(self, batch):
        """One score per item of the :class:`~rtscore_guest.batch.Batch`, in item order (a
        list). Raise to reject the window (the host falls back for it)."""
        score_item = self.score_item
        return [score_item(item) for item in batch.items()]


def build_scorer(cls, params_json):
    """Builds a scorer from ``plugin.params`` JSON, as the host's ``configure`` call does."""
    return cls(parse_params(cls.Params, params_json))


def run_scorer(scorer, raw):
    """Runs a scorer on a raw batch, as the host's ``score`` call does: checks the batch
    layout, then collects one score per item (as floats)."""
    out = scorer.score(Batch(raw))
    return out if isinstance(out, list) else list(out)


def _message(e):
    """An exception as the one line the host quotes."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def export_scorer(cls):
    """Exports ``cls`` (a :class:`Scorer` subclass) as the component's interface: assign the
    result to ``WitWorld`` in the plugin's ``app.py`` (the module componentize-py builds)::

        WitWorld = export_scorer(MyScorer)

    ``configure`` builds the scorer (an error rejects the reference); ``score`` runs it. An
    exception in the formula is returned as the call's error string with its last frame (the
    host falls back for that window and counts a ``guest_error``) rather than trapping."""
    # One configured scorer per component instance: the host never shares an instance between
    # scenarios. Module state, as componentize-py may make a new `WitWorld` per call.
    state = {}
    try:
        import wit_world  # noqa: PLC0415  (only inside the component build)

        bases = (wit_world.WitWorld,)
    except ImportError:
        bases = ()

    def _err(msg):
        from componentize_py_types import Err  # noqa: PLC0415

        return Err(msg)

    def configure(self, params_json):
        try:
            state["scorer"] = build_scorer(cls, params_json)
        except Exception as e:  # noqa: BLE001  (any error rejects the params)
            raise _err(_message(e)) from None

    def score(self, batch):
        scorer = state.get("scorer")
        if scorer is None:
            raise _err("score called before configure")
        try:
            return run_scorer(scorer, batch)
        except Exception as e:  # noqa: BLE001
            frame = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" (at {frame[0].name}, line {frame[0].lineno})" if frame else ""
            raise _err(_message(e) + where) from None

    return type("WitWorld", bases, {"configure": configure, "score": score, "__module__": cls.__module__})
