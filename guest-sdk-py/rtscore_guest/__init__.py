"""Guest SDK for rtscore scoring plugins written in Python.

The same shape as the Rust SDK (``guest-sdk/``): a plugin is a :class:`Scorer` subclass whose
parameters are a typed object (a dataclass, ``Params``), with one scoring function, per item
(:meth:`Scorer.score_item`) or per window (:meth:`Scorer.score`); it is exported with
:func:`export_scorer` and built into a WebAssembly component of WIT world
``rtscore:scoring/scorer@0.2.0`` by componentize-py (``scripts/build-plugins.sh``)::

    from rtscore_guest import NoParams, Scorer, export_scorer

    class DecayWeighted(Scorer):
        Params = NoParams

        def score_item(self, item):
            return item.decayed_score()

    WitWorld = export_scorer(DecayWeighted)

The same class runs natively in unit tests through :mod:`rtscore_guest.testing`, without
compiling anything (``python3 -m unittest``). Nothing here imports the component bindings at
import time, so the SDK is plain Python off the component too.
"""

from .batch import Batch, Feature, Item, Row
from .params import NoParams, ParamsError, parse_params
from .scorer import Scorer, build_scorer, export_scorer, run_scorer

#: The ``rtscore:scoring`` package version this SDK builds plugins against.
WIT_VERSION = "0.2.0"

__all__ = [
    "WIT_VERSION",
    "Batch",
    "Feature",
    "Item",
    "NoParams",
    "ParamsError",
    "Row",
    "Scorer",
    "build_scorer",
    "export_scorer",
    "parse_params",
    "run_scorer",
]
