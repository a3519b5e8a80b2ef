"""scripts/ensemble_score.py: the averaging and the choice of shift (the scoring itself is
training.prior_shift's, tested there)."""
import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location(
    "ensemble_score", Path(__file__).resolve().parents[1] / "scripts" / "ensemble_score.py")
ensemble_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ensemble_score)


def test_log_softmax_normalizes_and_keeps_the_order():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    lp = ensemble_score.log_softmax(z)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0)
    assert (lp.argmax(1) == z.argmax(1)).all() and np.isfinite(lp).all()


def test_best_shift_undoes_a_baked_in_prior_shift():
    rng = np.random.default_rng(0)
    log_prior = np.log(np.array([0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02]))
    labels = {k: rng.integers(0, 8, 400) for k in ("FERPlus valid", "SFEW")}
    # right answers by a margin of 1, then a shift of -2 baked in: the rare classes win everywhere
    logits = {k: np.eye(8)[y] - 2.0 * log_prior for k, y in labels.items()}
    shift, row = ensemble_score.best_shift(logits, labels, log_prior, [-1.0, 0.0, 1.0, 2.0, 3.0])
    assert shift == 2.0 and row["FERPlus valid accuracy"] == 1.0
    _, unshifted = ensemble_score.best_shift(logits, labels, log_prior, [0.0])
    assert unshifted["FERPlus valid accuracy"] < 0.5
