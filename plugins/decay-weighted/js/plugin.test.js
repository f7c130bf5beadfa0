import assert from "node:assert/strict";
import { test } from "node:test";

import { Batch, decay } from "../../../guest-sdk-js/src/index.js";
import { BatchBuilder } from "../../../guest-sdk-js/src/testing.js";
import { DecayWeighted } from "./plugin.js";

test("matches the per-event formula", () => {
  const lambda = 0.7;
  const batch = new BatchBuilder()
    .lambda(lambda)
    .weights({ view: 1, click: 2 })
    .events([["a", "view", 5_000, 1], ["a", "view", 35_000, 1], ["a", "click", 3_600_000, 2], ["b", "like", 1_000, 9]])
    .build();
  const scores = batch.run(DecayWeighted, "null");
  const expectedA = decay.expDecay(lambda, 5_000) + decay.expDecay(lambda, 35_000) + 2 * 2 * decay.expDecay(lambda, 3_600_000);
  assert.ok(Math.abs(scores[0] - expectedA) / expectedA < 1e-6, `${scores[0]} vs ${expectedA}`);
  assert.equal(scores[1], 0, "like is not weighted");
});

test("scores the same as item by item", () => {
  const batch = new BatchBuilder()
    .lambda(3)
    .weights([["view", 1], ["click", 2.5], ["share", 0]])
    .events([["a", "view", 5_000, 1], ["a", "click", 900_000, 3], ["a", "share", 10, 2], ["b", "view", 59_000, 7], ["c", "share", 1, 1]])
    .build();
  const scores = batch.run(DecayWeighted, "null");
  const byRows = new Batch(batch.raw).items().map((i) => i.rows().filter((r) => r.weight !== 0).reduce((s, r) => s + r.decayed(3), 0));
  assert.deepEqual(scores, byRows);
});

test("rejects params it does not take", () => {
  const batch = new BatchBuilder().build();
  assert.deepEqual(batch.run(DecayWeighted, "{}"), []);
  assert.throws(() => batch.run(DecayWeighted, '{"lambda": 2}'), /lambda/);
});
