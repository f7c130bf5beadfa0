"""watch-heat (video) in Python: the built-in heat, raised by how much of its videos people
watch (the Rust version is ../src/lib.rs).

``score = decayed_score · (1 + completion_weight · completion)``, where ``completion`` is the
mean share of the video watched per view, ``watch / (views · duration)`` clamped to 0..=1. Two
declared features feed it (their names are params): a ``sum`` of ``watch_time_ms`` over views
and a ``max`` of ``props.duration_ms``. An item without a known duration or without views
scores its built-in heat alone."""

import dataclasses
import math

from rtscore_guest import Scorer, export_scorer


@dataclasses.dataclass
class Params:
    #: How much full completion multiplies the heat by, on top of 1: 1.0 doubles it.
    completion_weight: float = 1.0
    #: The action whose events carry the watch time.
    view_action: str = "view"
    #: The declared `sum` feature of watch time, ms.
    watch_feature: str = "watch_ms"
    #: The declared `max` feature of the video's duration, ms.
    duration_feature: str = "duration_ms"


def completion(watch_ms, views, duration_ms):
    """Mean share of the video watched per view, in 0..=1; 0 when unknown."""
    if views == 0 or duration_ms <= 0.0:
        return 0.0
    return min(max(watch_ms / (views * duration_ms), 0.0), 1.0)


class WatchHeat(Scorer):
    Params = Params

    def __init__(self, p):
        if not (math.isfinite(p.completion_weight) and 0.0 <= p.completion_weight <= 100.0):
            raise ValueError(f"completion_weight must be in 0..=100, got {p.completion_weight}")
        self.p = p

    def score(self, batch):
        # Resolved once per window; a scenario that declares neither feature scores like the
        # built-in formula.
        watch = batch.feature(self.p.watch_feature)
        duration = batch.feature(self.p.duration_feature)
        watch = watch.numbers if watch else None
        duration = duration.numbers if duration else None
        view = batch.action_index(self.p.view_action)
        heat = batch.decayed_scores()
        weight = self.p.completion_weight
        out = []
        for item in batch.items():
            k = item.index
            views = 0 if view is None else item.count_of(view)
            c = completion(watch[k], views, duration[k]) if watch is not None and duration is not None else 0.0
            out.append(heat[k] * (1.0 + weight * c))
        return out


WitWorld = export_scorer(WatchHeat)
