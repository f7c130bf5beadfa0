// The JavaScript guest SDK natively: params, batch views and checks, the test harness, and the
// component glue.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Batch, NoParams, ParamsError, Scorer, decay, exportScorer, parseParams } from "../src/index.js";
import { BatchBuilder } from "../src/testing.js";

const P = { gravity: 0, name: "", tags: ["x"], extra: null };

class Count extends Scorer {
  scoreItem(item) {
    return item.weightedCount();
  }
}
class Whole extends Scorer {
  score(batch) {
    return batch.items().map((i) => i.weightedCount() / batch.length);
  }
}
class Neither extends Scorer {}

const raw = () =>
  new BatchBuilder()
    .weight("view", 1)
    .weight("click", 2)
    .event("a", "view", 1_000, 3)
    .event("a", "click", 61_000, 1)
    .event("b", "share", 5_000, 2)
    .feature("b", "price", 9.5)
    .featureText("a", "brand", "acme")
    .build().raw;

test("params default when absent or null and are typed", () => {
  assert.deepEqual(parseParams(P, ""), P);
  assert.deepEqual(parseParams(P, " null "), P);
  assert.deepEqual(parseParams(P, "{}"), P);
  assert.equal(parseParams(P, '{"gravity": 1.5}').gravity, 1.5);
  assert.deepEqual(parseParams(P, '{"tags": ["y", "z"], "extra": {"a": 1}}').tags, ["y", "z"]);
  assert.ok(Object.isFrozen(parseParams(P, "{}")));
});

test("params errors name the input", () => {
  assert.throws(() => parseParams(P, '{"gravty": 1.5}'), (e) => e instanceof ParamsError && /gravty/.test(e.message));
  assert.throws(() => parseParams(NoParams, '{"x": 1}'), /unknown field/);
  assert.throws(() => parseParams(P, '{"gravity": true}'), /gravity/);
  assert.throws(() => parseParams(P, '{"tags": [1]}'), /tags\[0\]/);
  assert.throws(() => parseParams(P, "[1]"), /expected an object/);
  assert.throws(() => parseParams(P, "{"), ParamsError);
});

test("context and features", () => {
  const b = new Batch(new BatchBuilder().slideMs(300_000).topN(7).tenant("t1").scenario("s1").build().raw);
  assert.deepEqual([b.slideMs, b.topN, b.tenantId, b.scenarioId], [300_000, 7, "t1", "s1"]);
  const batch = new Batch(raw());
  const items = batch.items();
  assert.deepEqual([items[0].id, items[1].id], ["a", "b"]);
  assert.deepEqual(batch.itemIds(), ["a", "b"]);
  assert.deepEqual([items[0].feature("price"), items[1].feature("price")], [0, 9.5]);
  assert.deepEqual([items[0].featureText("brand"), items[1].featureText("brand")], ["acme", ""]);
  assert.equal(items[0].feature("brand"), null, "a text feature is not a number");
  assert.equal(items[0].feature("nope"), null);
  assert.deepEqual(batch.feature("price").numbers, [0, 9.5]);
  assert.equal(batch.windowMs, 3_600_000);
});

test("views follow the CSR layout", () => {
  const b = new Batch(raw());
  assert.equal(b.length, 2);
  const items = b.items();
  assert.equal(items[0].count(), 4);
  assert.equal(items[0].weightedCount(), 5);
  assert.equal(items[1].weightedCount(), 0, "share is not weighted");
  assert.equal(items[1].meanAgeMs(), null);
  assert.equal(items[0].countOf(b.actionIndex("click")), 1);
  assert.equal(items[0].meanAgeMs(), (3 * 1_000 + 61_000) / 4);
  assert.equal(b.weightOf("share"), 0);
  assert.equal(b.item(2), null);
});

test("unicode ids are byte slices", () => {
  const r = new BatchBuilder().item("é").item("ü-2").build().raw;
  assert.deepEqual(r.itemIdEnds, [2, 6]);
  assert.deepEqual(new Batch(r).itemIds(), ["é", "ü-2"]);
});

test("the whole-window pass scores like row by row", () => {
  let s = 7;
  const rnd = (n) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
  for (const lambda of [0, 0.1, 3, 200]) {
    const bb = new BatchBuilder().lambda(lambda).weights({ a: 1, b: 2.5, c: 0, d: -0.75 });
    for (let k = 0; k < 50; k++) for (let j = rnd(8); j > 0; j--) bb.event(`i${k}`, "abcde"[rnd(5)], rnd(3_600_000), 1 + rnd(59));
    const b = new Batch(bb.build().raw);
    const byRows = b.items().map((i) => i.rows().reduce((t, r) => (r.weight !== 0 ? t + r.decayed(lambda) : t), 0));
    assert.deepEqual(b.decayedScores(), byRows, `λ ${lambda}`);
    assert.deepEqual(b.items().map((i) => i.decayedScore()), byRows);
  }
});

test("malformed layouts are errors", () => {
  const cases = [
    [(r) => (r.itemOffsets = [0, 5]), /end at 5/],
    [(r) => (r.rowAction[0] = 99), /99/],
    [(r) => (r.itemOffsets = [0, 2, 1, 3]), /decrease/],
    [(r) => r.weights.pop(), /weights/],
    [(r) => r.rowCount.pop(), /differ/],
    [(r) => (r.itemOffsets = []), /start at 0/],
    [(r) => r.itemIdEnds.pop(), /1 item ids for 2 items/],
    [(r) => (r.itemIdEnds[0] = 99), /not a slice/],
    [(r) => ((r.itemIds = "é"), (r.itemIdEnds = [1, 2])), /boundary|slice/],
    [(r) => (r.features[0].values = { tag: "number", val: [1] }), /"price" has 1 values/],
  ];
  for (const [spoil, msg] of cases) {
    const r = raw();
    spoil(r);
    assert.throws(() => new Batch(r), msg);
  }
});

test("events in one minute cell share a row", () => {
  const b = new BatchBuilder()
    .weight("view", 1)
    .event("a", "view", 10_000, 1)
    .event("a", "view", 40_000, 1)
    .event("a", "view", 70_000, 2)
    .event("b", "click", 1_000, 1)
    .build();
  assert.deepEqual(b.itemIds, ["a", "b"]);
  assert.deepEqual(b.raw.itemOffsets, [0, 2, 3]);
  assert.deepEqual(b.raw.rowCount, [2, 2, 1]);
  assert.deepEqual([b.raw.rowAgeMeanMs[1], b.raw.rowAgeVarMs2[1]], [25_000, 225_000_000]);
  assert.deepEqual([b.raw.actions, b.raw.weights], [["view", "click"], [1, 0]]);
});

test("a scorer writes score or scoreItem, and the host's rules are checked", () => {
  const b = new BatchBuilder().weight("view", 1).event("a", "view", 0, 3).event("b", "view", 0, 1).build();
  assert.deepEqual(b.run(Whole), [1.5, 0.5]);
  assert.deepEqual(b.scores(Count), [["a", 3], ["b", 1]]);
  assert.equal(b.scoreOf(Count, "null", "b"), 1);
  assert.throws(() => b.run(Neither), /implement `scoreItem`/);
  class Short extends Scorer {
    score() {
      return [1];
    }
  }
  class Nan extends Scorer {
    scoreItem() {
      return NaN;
    }
  }
  assert.throws(() => b.run(Short), /1 scores for 2 items/);
  assert.throws(() => b.run(Nan), /not finite/);
});

test("configure then score as the host calls them", () => {
  class Checked extends Scorer {
    static Params = { gravity: 0 };
    constructor(p) {
      super(p);
      if (p.gravity < 0) throw new Error(`gravity must be >= 0, got ${p.gravity}`);
    }
    scoreItem(item) {
      if (item.id === "boom") throw new TypeError("boom");
      return item.weightedCount() * this.params.gravity;
    }
  }
  const world = exportScorer(Checked);
  const b = new BatchBuilder().weight("view", 1).event("a", "view", 0, 2).build();
  // A thrown string is WIT `err`.
  assert.throws(() => world.score(b.raw), (e) => e === "score called before configure");
  assert.throws(() => world.configure('{"gravity": -1}'), (e) => e === "gravity must be >= 0, got -1");
  assert.throws(() => world.configure('{"gravty": 1}'), (e) => typeof e === "string" && /unknown field `gravty`/.test(e));
  world.configure('{"gravity": 2}');
  assert.deepEqual(world.score(b.raw), [4]);
  assert.throws(() => world.score(new BatchBuilder().item("boom").build().raw), (e) => e === "TypeError: boom");
  const bad = b.raw;
  bad.itemOffsets = [0, 5];
  assert.throws(() => world.score(bad), (e) => typeof e === "string" && /end at 5/.test(e));
});

test("helpers", () => {
  assert.ok(Math.abs(decay.expDecay(decay.lambdaForHalfLife(2), 2 * decay.MS_PER_HOUR) - 0.5) < 1e-12);
  assert.equal(decay.expectedDecay(0.3, 1_234, 0), decay.expDecay(0.3, 1_234));
  assert.equal(decay.safeDiv(1, 0), 0);
  assert.ok(Math.abs(decay.wilsonLowerBound(5, 10, 1.96) - 0.236593) < 1e-5);
  assert.equal(decay.logVolume(-1), 0);
  assert.equal(decay.finiteOr(NaN, 0), 0);
});
