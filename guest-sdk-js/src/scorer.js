// The scorer base class and its export as the component's `configure` and `score`.

import { Batch } from "./batch.js";
import { NoParams, parseParams } from "./params.js";

/** A scoring formula. One instance is built per plugin instance from the scenario's
 * `plugin.params` (read against `static Params`, an object of defaults that types each field),
 * then scores every emitted window of that scenario.
 *
 * Write exactly one of `scoreItem(item)` (one item at a time, the simple case) and
 * `score(batch)` (the whole window, for formulas that look across items). The constructor
 * receives the parsed params; throw there to reject them (the host reports the message and
 * keeps scoring with the last good module or the built-in formula). */
export class Scorer {
  static Params = NoParams;

  constructor(params) {
    this.params = params;
  }

  /** The score of one item. Scores `<= 0` keep the item off the hot list; NaN or infinite
   * scores make the host reject the whole window. */
  scoreItem(_item) {
    throw new Error("rtscore guest Scorer: implement `scoreItem` (one item) or `score` (the whole window)");
  }

  /** One score per item of the batch, in item order (an array). Throw to reject the window
   * (the host falls back for it). */
  score(batch) {
    return batch.items().map((item) => this.scoreItem(item));
  }
}

/** Builds a scorer from `plugin.params` JSON, as the host's `configure` call does. */
export function buildScorer(cls, paramsJson) {
  return new cls(parseParams(cls.Params, paramsJson));
}

/** Runs a scorer on a raw batch, as the host's `score` call does: checks the batch layout,
 * then collects one score per item. */
export function runScorer(scorer, raw) {
  return Array.from(scorer.score(new Batch(raw)));
}

function message(e) {
  if (e instanceof Error) return e.name && e.name !== "Error" ? `${e.name}: ${e.message}` : e.message;
  return String(e);
}

/** Exports `cls` (a `Scorer` subclass) as the component's interface. In the plugin's entry
 * module (the one componentize-js builds):
 *
 *   export const { configure, score } = exportScorer(MyScorer);
 *
 * `configure` builds the scorer (an error rejects the reference); `score` runs it. An exception
 * in the formula becomes the call's error string (the host falls back for that window and counts
 * a `guest_error`) rather than a trap. */
export function exportScorer(cls) {
  // One configured scorer per component instance: the host never shares an instance between
  // scenarios.
  let scorer = null;
  return {
    configure(paramsJson) {
      try {
        scorer = buildScorer(cls, paramsJson);
      } catch (e) {
        // A thrown value is the `err` of WIT `result<_, string>`.
        throw message(e);
      }
    },
    score(batch) {
      if (scorer === null) throw "score called before configure";
      try {
        return runScorer(scorer, batch);
      } catch (e) {
        throw message(e);
      }
    },
  };
}
