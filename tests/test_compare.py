"""training.compare: the paired bootstrap that says whether one candidate beats another beyond the
noise of 3,191 + 860 faces."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from training.compare import paired_bootstrap  # noqa: E402


def _sets(n_a=400, n_b=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = {"FERPlus valid": rng.integers(0, 8, n_a), "SFEW": rng.integers(0, 7, n_b)}
    logits = {k: rng.normal(size=(len(v), 8)) for k, v in labels.items()}
    return logits, labels


def test_a_model_against_itself_differs_by_nothing():
    logits, labels = _sets()
    for a, b, diff, low, high, p in paired_bootstrap(logits, logits, labels, 200).values():
        assert a == b and diff == low == high == 0 and p == 0


def test_a_model_that_fixes_faces_is_ahead_and_its_interval_excludes_zero():
    logits, labels = _sets()
    better = {k: v.copy() for k, v in logits.items()}
    for k, y in labels.items():  # B answers a third more faces right than chance
        fix = np.arange(len(y)) % 3 == 0
        better[k][fix, y[fix]] += 10
    result = paired_bootstrap(logits, better, labels, 300)
    for name in ("FERPlus valid accuracy", "SFEW accuracy", "worst ratio to target"):
        a, b, diff, low, high, p = result[name]
        assert diff > 0 and low > 0 and p == 1.0
        assert low <= diff <= high


def test_a_small_difference_on_few_faces_is_not_called_a_win():
    """Two faces more right out of 200: the interval must straddle zero."""
    logits, labels = _sets()
    pred = logits["SFEW"].argmax(1)
    wrong = np.flatnonzero(pred != labels["SFEW"])[:2]
    better = {k: v.copy() for k, v in logits.items()}
    better["SFEW"][wrong, labels["SFEW"][wrong]] += 10
    a, b, diff, low, high, p = paired_bootstrap(logits, better, labels, 500)["SFEW accuracy"]
    assert diff == pytest.approx(2 / 200)
    assert low <= 0 < high


def test_cli_refuses_a_missing_model_and_too_few_resamples(tmp_path, capsys):
    from training.compare import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.safetensors"), str(tmp_path / "b.pt")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: no such model file") and err.count("\n") == 1, err
    with pytest.raises(SystemExit, match="resamples"):
        main(["a", "b", "--resamples", "10"])
