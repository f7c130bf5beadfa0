// Read-only views over a window batch (WIT `window-batch`, with the field names the component
// bindings give it: `decayLambda`, `itemOffsets`, `rowAction`, ...): the window, its items, and
// each item's rows, as in the Rust SDK. The layout is checked once, on entry (`new Batch`), so
// the views never index out of range.

import { MS_PER_HOUR, expectedDecay } from "./decay.js";

function rises(xs) {
  for (let i = 1; i < xs.length; i++) if (xs[i - 1] > xs[i]) return false;
  return true;
}

function isAscii(s) {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s);
}

/** One emitted window of one scenario, checked on entry. The window's fields are properties
 * (`batch.decayLambda`, `batch.topN`, ...); what is computed is a method
 * (`batch.decayedScores()`, `batch.items()`, ...). */
export class Batch {
  constructor(raw) {
    const rows = raw.rowAction.length;
    if (raw.rowCount.length !== rows || raw.rowAgeMeanMs.length !== rows || raw.rowAgeVarMs2.length !== rows) {
      throw new Error(
        `row columns differ in length: action ${rows}, count ${raw.rowCount.length}, age mean ${raw.rowAgeMeanMs.length}, age var ${raw.rowAgeVarMs2.length}`,
      );
    }
    if (raw.weights.length !== raw.actions.length) throw new Error(`${raw.weights.length} weights for ${raw.actions.length} actions`);
    const offsets = raw.itemOffsets;
    if (!offsets.length || offsets[0] !== 0) throw new Error(`item offsets must start at 0, got ${offsets.length ? offsets[0] : "none"}`);
    if (!rises(offsets)) {
      let i = 1;
      while (offsets[i - 1] <= offsets[i]) i++;
      throw new Error(`item offsets decrease: ${offsets[i - 1]} then ${offsets[i]}`);
    }
    const last = offsets[offsets.length - 1];
    if (last !== rows) throw new Error(`item offsets end at ${last}, but there are ${rows} rows`);
    let maxAction = -1;
    for (let r = 0; r < rows; r++) if (raw.rowAction[r] > maxAction) maxAction = raw.rowAction[r];
    if (maxAction >= raw.actions.length) throw new Error(`row action index ${maxAction} out of range (${raw.actions.length} actions)`);
    const items = offsets.length - 1;
    const ends = raw.itemIdEnds;
    if (ends.length !== items) throw new Error(`${ends.length} item ids for ${items} items`);
    this._ascii = isAscii(raw.itemIds);
    // Ends are byte offsets into the UTF-8 id string.
    this._ids = this._ascii ? raw.itemIds : new TextEncoder().encode(raw.itemIds);
    let start = 0;
    for (let k = 0; k < items; k++) {
      const end = ends[k];
      if (end < start || end > this._ids.length) throw new Error(`item id ${k} ends at byte ${end}: not a slice of the ${this._ids.length} id bytes`);
      start = end;
    }
    if (!this._ascii) {
      const decoder = new TextDecoder("utf-8", { fatal: true });
      start = 0;
      for (let k = 0; k < items; k++) {
        try {
          decoder.decode(this._ids.subarray(start, ends[k]));
        } catch {
          throw new Error(`item id ${k} ends at byte ${ends[k]}: not on a character boundary`);
        }
        start = ends[k];
      }
    }
    for (const c of raw.features) {
      if (c.values.val.length !== items) throw new Error(`feature "${c.name}" has ${c.values.val.length} values for ${items} items`);
    }
    this.raw = raw;
    this.length = items;
    this._decayed = null;
  }

  /** Start of the window (epoch ms, inclusive). */
  get windowStartMs() {
    return Number(this.raw.windowStartMs);
  }
  /** End of the window (epoch ms, exclusive): the time ages are measured from. */
  get windowEndMs() {
    return Number(this.raw.windowEndMs);
  }
  /** Window length in milliseconds. */
  get windowMs() {
    return this.windowEndMs - this.windowStartMs;
  }
  /** The scenario's `decay_lambda`, per hour. */
  get decayLambda() {
    return this.raw.decayLambda;
  }
  /** Action names; a row's `actionIndex` indexes this list. */
  get actions() {
    return this.raw.actions;
  }
  /** The scenario's weight per action index. */
  get weights() {
    return this.raw.weights;
  }
  /** The window's slide in ms. */
  get slideMs() {
    return Number(this.raw.slideMs);
  }
  /** The scenario's `top_n`. */
  get topN() {
    return this.raw.topN;
  }
  get tenantId() {
    return this.raw.tenantId;
  }
  get scenarioId() {
    return this.raw.scenarioId;
  }
  /** The declared feature columns (`name`, `values`), in declaration order. */
  get features() {
    return this.raw.features;
  }

  /** Number of rows over all items. */
  rowLen() {
    return this.raw.rowAction.length;
  }

  /** Item `k`'s id ("" when out of range). */
  itemId(k) {
    if (!(k >= 0 && k < this.length)) return "";
    const ends = this.raw.itemIdEnds;
    const start = k ? ends[k - 1] : 0;
    return this._ascii ? this._ids.slice(start, ends[k]) : new TextDecoder().decode(this._ids.subarray(start, ends[k]));
  }

  /** Item ids, in item order. */
  itemIds() {
    return Array.from({ length: this.length }, (_, k) => this.itemId(k));
  }

  /** A declared feature's column by name (`null` when the scenario does not declare it): look
   * it up once per window and index it per item. */
  feature(name) {
    const c = this.raw.features.find((f) => f.name === name);
    return c ? new Feature(c.values) : null;
  }

  /** Index of an action name in this window (`null` when absent). */
  actionIndex(name) {
    const i = this.raw.actions.indexOf(name);
    return i < 0 ? null : i;
  }

  /** The scenario's weight for an action name (0 when it does not weight it). */
  weightOf(name) {
    const i = this.actionIndex(name);
    return i === null ? 0 : this.raw.weights[i];
  }

  /** Every item's `decayedScore()`, in item order: the built-in hot score (DESIGN §4),
   * `Σ weight · count · E[exp(-λ·age)]`, in one pass over the row columns (computed once per
   * window; the array is shared, do not modify it). */
  decayedScores() {
    if (this._decayed) return this._decayed;
    const raw = this.raw;
    const k = raw.decayLambda / MS_PER_HOUR;
    const negK = -k;
    const halfK2 = 0.5 * k * k;
    const { weights, rowAction, rowCount, rowAgeMeanMs, rowAgeVarMs2, itemOffsets } = raw;
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i++) {
      let total = 0;
      for (let r = itemOffsets[i], e = itemOffsets[i + 1]; r < e; r++) {
        const w = weights[rowAction[r]];
        if (w !== 0) total += w * rowCount[r] * (Math.exp(negK * rowAgeMeanMs[r]) * (1 + halfK2 * rowAgeVarMs2[r]));
      }
      out[i] = total;
    }
    this._decayed = out;
    return out;
  }

  /** The items, in the order scores are expected. */
  items() {
    return Array.from({ length: this.length }, (_, k) => new Item(this, k));
  }

  /** Item `k`, or `null` when out of range. */
  item(k) {
    return k >= 0 && k < this.length ? new Item(this, k) : null;
  }

  _row(r) {
    const raw = this.raw;
    const a = raw.rowAction[r];
    return new Row(a, raw.actions[a], raw.weights[a], raw.rowCount[r], raw.rowAgeMeanMs[r], raw.rowAgeVarMs2[r]);
  }
}

/** One declared feature's values, one per item in item order (see `Batch.feature`). */
export class Feature {
  constructor(values) {
    /** The numbers of a `sum`, `max` or `distinct` feature; `null` for a text feature. */
    this.numbers = values.tag === "number" ? values.val : null;
    /** The strings of a `last` feature; `null` for a numeric one. */
    this.texts = values.tag === "text" ? values.val : null;
  }
}

/** One item of the window: its rows are its (one-minute bucket, action) cells. */
export class Item {
  constructor(batch, index) {
    this.batch = batch;
    /** Position of the item in the window (and of its score in the output). */
    this.index = index;
    this._start = batch.raw.itemOffsets[index];
    this._end = batch.raw.itemOffsets[index + 1];
  }

  /** The item's id. */
  get id() {
    return this.batch.itemId(this.index);
  }

  get decayLambda() {
    return this.batch.raw.decayLambda;
  }

  /** The item's value of a numeric declared feature; `null` when none of that name. */
  feature(name) {
    const f = this.batch.feature(name);
    return f && f.numbers ? f.numbers[this.index] : null;
  }

  /** The item's value of a text declared feature (`last`); `null` when none of that name. */
  featureText(name) {
    const f = this.batch.feature(name);
    return f && f.texts ? f.texts[this.index] : null;
  }

  /** The item's rows: one per (one-minute bucket, action) that holds events. */
  rows() {
    const out = [];
    for (let r = this._start; r < this._end; r++) out.push(this.batch._row(r));
    return out;
  }

  rowLen() {
    return this._end - this._start;
  }

  /** Number of events of the item, all actions. */
  count() {
    let n = 0;
    for (let r = this._start; r < this._end; r++) n += this.batch.raw.rowCount[r];
    return n;
  }

  /** Number of events of one action (by index, see `Batch.actionIndex`). */
  countOf(actionIndex) {
    const { rowAction, rowCount } = this.batch.raw;
    let n = 0;
    for (let r = this._start; r < this._end; r++) if (rowAction[r] === actionIndex) n += rowCount[r];
    return n;
  }

  /** `Σ weight · count`: the undecayed weighted event count. */
  weightedCount() {
    const { rowAction, rowCount, weights } = this.batch.raw;
    let s = 0;
    for (let r = this._start; r < this._end; r++) s += weights[rowAction[r]] * rowCount[r];
    return s;
  }

  /** The built-in hot score (DESIGN §4); the first call computes every item's score of the
   * window at once (`Batch.decayedScores`). */
  decayedScore() {
    return this.batch.decayedScores()[this.index];
  }

  /** Mean age (ms) of the item's weighted events (nonzero weight); `null` when it has none. */
  meanAgeMs() {
    let n = 0;
    let sum = 0;
    for (const r of this.rows()) {
      if (r.weight !== 0) {
        n += r.count;
        sum += r.count * r.ageMeanMs;
      }
    }
    return n > 0 ? sum / n : null;
  }
}

/** One (one-minute bucket, action) cell of an item: how many events, and their age moments. */
export class Row {
  constructor(actionIndex, action, weight, count, ageMeanMs, ageVarMs2) {
    this.actionIndex = actionIndex;
    this.action = action;
    this.weight = weight;
    this.count = count;
    /** Mean event age, `window_end_ms - ts`, in ms. */
    this.ageMeanMs = ageMeanMs;
    /** Variance of the event ages, in ms² (0 for a single event). */
    this.ageVarMs2 = ageVarMs2;
  }

  /** `weight · count`. */
  weightedCount() {
    return this.weight * this.count;
  }

  /** `E[exp(-λ·age)]` over the row's events, λ per hour. */
  expectedDecay(lambdaPerHour) {
    return expectedDecay(lambdaPerHour, this.ageMeanMs, this.ageVarMs2);
  }

  /** `weight · count · E[exp(-λ·age)]`: the row's share of the built-in score. */
  decayed(lambdaPerHour) {
    return this.weight * this.count * this.expectedDecay(lambdaPerHour);
  }
}
