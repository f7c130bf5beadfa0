// Native test harness: build a window from `(item, action, ageMs, count)` events (plus the
// window context and declared feature values) and run a scorer on it exactly as the host would,
// without compiling to WebAssembly:
//
//   const batch = new BatchBuilder().weight("click", 2).event("item-1", "click", 30_000, 3).build();
//   assert.deepEqual(batch.run(Count, "null"), [6]);
//
// The batch is built the way the host builds one: events grouped per item (first-seen order),
// then per (one-minute bucket, action) with the count, mean and variance of their ages. Its
// fields have the shapes the component bindings give them (s64 as BigInt, feature values as
// `{tag, val}`).

import { MS_PER_MINUTE } from "./decay.js";
import { buildScorer, runScorer } from "./scorer.js";

/** A window end used when a test does not choose one (2026-01-01T00:00:00Z). */
export const DEFAULT_WINDOW_END_MS = 1_767_225_600_000;

export class BatchBuilder {
  constructor() {
    this._start = DEFAULT_WINDOW_END_MS - 60 * 60_000;
    this._end = DEFAULT_WINDOW_END_MS;
    this._lambda = 0.1;
    this._actions = [];
    this._weights = [];
    this._items = []; // [id, [[action, ageMs, count]]]
    this._slideMs = 60_000;
    this._topN = 100;
    this._tenant = "tenant";
    this._scenario = "scenario";
    this._features = []; // [name, kind, [[item, value]]]
  }

  window(startMs, endMs) {
    this._start = startMs;
    this._end = endMs;
    return this;
  }
  /** The scenario's `decay_lambda`, per hour. */
  lambda(perHour) {
    this._lambda = perHour;
    return this;
  }
  slideMs(ms) {
    this._slideMs = ms;
    return this;
  }
  topN(n) {
    this._topN = n;
    return this;
  }
  tenant(id) {
    this._tenant = id;
    return this;
  }
  scenario(id) {
    this._scenario = id;
    return this;
  }
  /** An item with no events (yet): items are in first-mention order. */
  item(id) {
    this._itemIndex(id);
    return this;
  }
  /** The scenario's weight for `action` (actions never weighted weigh 0). */
  weight(action, w) {
    this._weights[this._action(action)] = w;
    return this;
  }
  /** Several weights: an object or `[action, weight]` pairs. */
  weights(ws) {
    for (const [a, w] of Array.isArray(ws) ? ws : Object.entries(ws)) this.weight(a, w);
    return this;
  }
  /** `count` events of `action` on `item`, each `ageMs` before the window end. */
  event(item, action, ageMs, count = 1) {
    const a = this._action(action);
    this._items[this._itemIndex(item)][1].push([a, ageMs, count]);
    return this;
  }
  /** Many `[item, action, ageMs, count]` events. */
  events(evs) {
    for (const e of evs) this.event(...e);
    return this;
  }
  /** `item`'s value of the numeric declared feature `name` (others get 0). */
  feature(item, name, value) {
    this._column(name, "number").push([this._itemIndex(item), value]);
    return this;
  }
  /** `item`'s value of the text declared feature `name` (others get ""). */
  featureText(item, name, value) {
    this._column(name, "text").push([this._itemIndex(item), value]);
    return this;
  }

  _column(name, kind) {
    const f = this._features.find(([n]) => n === name);
    if (f) {
      if (f[1] !== kind) throw new Error(`feature ${name} was declared as ${f[1]}`);
      return f[2];
    }
    this._features.push([name, kind, []]);
    return this._features[this._features.length - 1][2];
  }
  _itemIndex(id) {
    const k = this._items.findIndex(([i]) => i === id);
    if (k >= 0) return k;
    this._items.push([id, []]);
    return this._items.length - 1;
  }
  _action(name) {
    let i = this._actions.indexOf(name);
    if (i < 0) {
      this._actions.push(name);
      this._weights.push(0);
      i = this._actions.length - 1;
    }
    return i;
  }

  /** The batch (a `TestBatch`), with the item ids in score order. */
  build() {
    const ids = this._items.map(([i]) => i);
    const encoder = new TextEncoder();
    const itemIdEnds = [];
    let end = 0;
    for (const i of ids) {
      end += encoder.encode(i).length;
      itemIdEnds.push(end);
    }
    const itemOffsets = [0];
    const rowAction = [];
    const rowCount = [];
    const rowAgeMeanMs = [];
    const rowAgeVarMs2 = [];
    for (const [, events] of this._items) {
      const cells = new Map();
      for (const [a, age, n] of events) {
        const bucket = Math.floor((this._end - age) / MS_PER_MINUTE);
        const key = `${bucket}:${a}`;
        if (!cells.has(key)) cells.set(key, { bucket, a, ages: [] });
        cells.get(key).ages.push([age, n]);
      }
      const sorted = [...cells.values()].sort((x, y) => x.bucket - y.bucket || x.a - y.a);
      for (const { a, ages } of sorted) {
        const n = ages.reduce((s, [, c]) => s + c, 0);
        const mean = n > 0 ? ages.reduce((s, [x, c]) => s + x * c, 0) / n : 0;
        const variance = n > 0 ? ages.reduce((s, [x, c]) => s + c * (x - mean) ** 2, 0) / n : 0;
        rowAction.push(a);
        rowCount.push(n);
        rowAgeMeanMs.push(mean);
        rowAgeVarMs2.push(variance);
      }
      itemOffsets.push(rowAction.length);
    }
    const features = this._features.map(([name, kind, values]) => {
      const col = new Array(ids.length).fill(kind === "number" ? 0 : "");
      for (const [k, v] of values) col[k] = v;
      return { name, values: { tag: kind, val: col } };
    });
    const raw = {
      windowStartMs: BigInt(this._start),
      windowEndMs: BigInt(this._end),
      actions: [...this._actions],
      weights: [...this._weights],
      decayLambda: this._lambda,
      itemOffsets,
      rowAction,
      rowCount,
      rowAgeMeanMs,
      rowAgeVarMs2,
      itemIds: ids.join(""),
      itemIdEnds,
      slideMs: BigInt(this._slideMs),
      topN: this._topN,
      tenantId: this._tenant,
      scenarioId: this._scenario,
      features,
    };
    return new TestBatch(raw, ids);
  }
}

/** A built batch and the ids of its items (index `k` is the item of score `k`). */
export class TestBatch {
  constructor(raw, itemIds) {
    this.raw = raw;
    this.itemIds = itemIds;
  }

  /** Configures `cls` from `paramsJson` and scores the batch, as the host's `configure` then
   * `score` calls do, and checks the host's rules on the result: one finite score per item.
   * Throws with the host's reason otherwise. */
  run(cls, paramsJson = "null") {
    return this.runScorer(buildScorer(cls, paramsJson));
  }

  /** Like `run` with an already built scorer. */
  runScorer(scorer) {
    const scores = runScorer(scorer, this.raw);
    if (scores.length !== this.itemIds.length) throw new Error(`${scores.length} scores for ${this.itemIds.length} items (the host rejects this)`);
    scores.forEach((s, i) => {
      if (typeof s !== "number") throw new Error(`score ${s} of item ${this.itemIds[i]} is not a number (the host rejects this)`);
      if (!Number.isFinite(s)) throw new Error(`score ${s} of item ${this.itemIds[i]} is not finite (the host rejects this)`);
    });
    return scores;
  }

  /** `[itemId, score]` pairs, in item order. */
  scores(cls, paramsJson = "null") {
    const s = this.run(cls, paramsJson);
    return this.itemIds.map((id, k) => [id, s[k]]);
  }

  /** The score of one item by id. */
  scoreOf(cls, paramsJson, item) {
    const k = this.itemIds.indexOf(item);
    if (k < 0) throw new Error(`no item ${item} in the batch`);
    return this.run(cls, paramsJson)[k];
  }
}
