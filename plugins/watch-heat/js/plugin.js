// watch-heat (video) in JavaScript: the built-in heat, raised by how much of its videos people
// watch (the Rust version is ../src/lib.rs).
//
// `score = decayedScore · (1 + completion_weight · completion)`, where `completion` is the mean
// share of the video watched per view, `watch / (views · duration)` clamped to 0..=1. Two
// declared features feed it (their names are params): a `sum` of `watch_time_ms` over views and
// a `max` of `props.duration_ms`. An item without a known duration or without views scores its
// built-in heat alone.

import { Scorer, exportScorer } from "../../../guest-sdk-js/src/index.js";

/** Mean share of the video watched per view, in 0..=1; 0 when unknown. */
export function completion(watchMs, views, durationMs) {
  if (views === 0 || durationMs <= 0) return 0;
  return Math.min(Math.max(watchMs / (views * durationMs), 0), 1);
}

export class WatchHeat extends Scorer {
  static Params = {
    // How much full completion multiplies the heat by, on top of 1: 1.0 doubles it.
    completion_weight: 1.0,
    // The action whose events carry the watch time.
    view_action: "view",
    // The declared `sum` feature of watch time, ms.
    watch_feature: "watch_ms",
    // The declared `max` feature of the video's duration, ms.
    duration_feature: "duration_ms",
  };

  constructor(p) {
    super(p);
    if (!(p.completion_weight >= 0 && p.completion_weight <= 100)) {
      throw new Error(`completion_weight must be in 0..=100, got ${p.completion_weight}`);
    }
  }

  score(batch) {
    const p = this.params;
    // Resolved once per window; a scenario that declares neither feature scores like the
    // built-in formula.
    const watch = batch.feature(p.watch_feature)?.numbers ?? null;
    const duration = batch.feature(p.duration_feature)?.numbers ?? null;
    const view = batch.actionIndex(p.view_action);
    const heat = batch.decayedScores();
    return batch.items().map((item) => {
      const k = item.index;
      const views = view === null ? 0 : item.countOf(view);
      const c = watch && duration ? completion(watch[k], views, duration[k]) : 0;
      return heat[k] * (1 + p.completion_weight * c);
    });
  }
}

export const { configure, score } = exportScorer(WatchHeat);
