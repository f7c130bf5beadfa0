import assert from "node:assert/strict";
import { test } from "node:test";

import { decay } from "../../../guest-sdk-js/src/index.js";
import { BatchBuilder } from "../../../guest-sdk-js/src/testing.js";
import { WatchHeat, completion } from "./plugin.js";

const batch = () =>
  new BatchBuilder()
    .weights({ view: 1, like: 2 })
    // Same traffic on both; "full" is watched to the end, "skipped" for a tenth.
    .events([["full", "view", 60_000, 4], ["full", "like", 60_000, 1]])
    .events([["skipped", "view", 60_000, 4], ["skipped", "like", 60_000, 1]])
    .events([["unknown", "view", 60_000, 4]])
    .feature("full", "watch_ms", 4 * 30_000)
    .feature("full", "duration_ms", 30_000)
    .feature("skipped", "watch_ms", 4 * 3_000)
    .feature("skipped", "duration_ms", 30_000)
    .build();

test("completion multiplies the built-in heat", () => {
  const b = batch();
  const scores = b.run(WatchHeat, '{"completion_weight": 1.0}');
  const base = b.run(WatchHeat, '{"completion_weight": 0}');
  assert.ok(Math.abs(scores[0] - 2 * base[0]) < 1e-9, "full completion doubles");
  assert.ok(Math.abs(scores[1] - 1.1 * base[1]) < 1e-9, "a tenth adds a tenth");
  assert.equal(scores[2], base[2], "no duration known: the built-in heat");
});

test("completion is clamped and zero when unknown", () => {
  assert.equal(completion(10, 0, 5), 0);
  assert.equal(completion(10, 1, 0), 0);
  assert.equal(completion(10, 1, 5), 1, "rewatches count as full completion");
  assert.ok(Math.abs(completion(5, 2, 5) - 0.5) < 1e-12);
});

test("without declared features it is the built-in formula", () => {
  const b = new BatchBuilder().weights({ view: 1 }).events([["a", "view", 1_000, 3]]).build();
  const expected = 3 * decay.expDecay(0.1, 1_000);
  assert.ok(Math.abs(b.run(WatchHeat, "null")[0] - expected) / expected < 1e-6);
});

test("params are checked", () => {
  const b = new BatchBuilder().build();
  assert.throws(() => b.run(WatchHeat, '{"completion_weight": -1}'), /completion_weight must be in/);
  assert.throws(() => b.run(WatchHeat, '{"completion_wieght": 1}'), /unknown field `completion_wieght`/);
  assert.throws(() => b.run(WatchHeat, '{"completion_weight": "1"}'), /expected number/);
});
