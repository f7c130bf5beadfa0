// decay-weighted in JavaScript: the built-in hot score of DESIGN §4 as a plugin,
// `Σ weight · count · E[exp(-λ·age)]`, weights and λ from the scenario (the Rust version is
// ../src/lib.rs). It scores the whole window in one call: `batch.decayedScores()` is one pass
// over the row columns.

import { Scorer, exportScorer } from "../../../guest-sdk-js/src/index.js";

export class DecayWeighted extends Scorer {
  score(batch) {
    return batch.decayedScores();
  }
}

export const { configure, score } = exportScorer(DecayWeighted);
