"""decay-weighted in Python: the built-in hot score of DESIGN §4 as a plugin,
``Σ weight · count · E[exp(-λ·age)]``, weights and λ from the scenario (the Rust version is
../src/lib.rs). It scores the whole window in one call: ``batch.decayed_scores()`` is one pass
over the row columns."""

from rtscore_guest import NoParams, Scorer, export_scorer


class DecayWeighted(Scorer):
    Params = NoParams

    def score(self, batch):
        return batch.decayed_scores()


WitWorld = export_scorer(DecayWeighted)
