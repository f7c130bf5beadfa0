// Guest SDK for rtscore scoring plugins written in JavaScript.
//
// The same shape as the Rust SDK (guest-sdk/): a plugin is a `Scorer` subclass whose params
// are a typed object (`static Params`, an object of defaults), with one scoring function, per
// item (`scoreItem`) or per window (`score`); it is exported with `exportScorer` and built into
// a WebAssembly component of WIT world `rtscore:scoring/scorer@0.2.0` by componentize-js
// (scripts/build-plugins.sh):
//
//   import { Scorer, exportScorer } from "../../../guest-sdk-js/src/index.js";
//
//   class DecayWeighted extends Scorer {
//     score(batch) {
//       return batch.decayedScores();
//     }
//   }
//
//   export const { configure, score } = exportScorer(DecayWeighted);
//
// The same class runs natively in unit tests through `testing.js` (`node --test`).

export { Batch, Feature, Item, Row } from "./batch.js";
export { NoParams, ParamsError, parseParams } from "./params.js";
export { Scorer, buildScorer, exportScorer, runScorer } from "./scorer.js";
export * as decay from "./decay.js";

/** The `rtscore:scoring` package version this SDK builds plugins against. */
export const WIT_VERSION = "0.2.0";
