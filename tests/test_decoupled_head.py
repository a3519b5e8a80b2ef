"""scripts/decoupled_head.py: tau-normalisation, the re-trained head and the choice of shift (the
scoring itself is training.prior_shift's, tested there)."""
import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location(
    "decoupled_head", Path(__file__).resolve().parents[1] / "scripts" / "decoupled_head.py")
decoupled_head = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decoupled_head)

LOG_PRIOR = np.log(np.array([0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02]))


def test_tau_normalisation_is_the_identity_at_zero_and_gives_unit_rows_at_one():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(8, 16)) * np.arange(1, 9)[:, None], rng.normal(size=8)
    W0, b0 = decoupled_head.tau_normalized(W, b, 0.0, keep_bias=True)
    np.testing.assert_allclose(W0, W)
    np.testing.assert_allclose(b0, b)
    W1, b1 = decoupled_head.tau_normalized(W, b, 1.0, keep_bias=True)
    np.testing.assert_allclose(np.linalg.norm(W1, axis=1), 1.0)
    np.testing.assert_allclose(b1, b / np.linalg.norm(W, axis=1))
    assert not decoupled_head.tau_normalized(W, b, 0.5, keep_bias=False)[1].any()


def synthetic_features(n=800, dim=16, seed=0):
    """Features that are the class's one-hot code (plus noise) in their first 8 dimensions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    x = rng.normal(scale=0.3, size=(n, dim)).astype(np.float32)
    x[np.arange(n), labels] += 3.0
    return x, labels, np.eye(8, dtype=np.float32)[labels]


def test_the_retrained_head_starts_from_the_given_one_and_learns_the_classes():
    x, labels, targets = synthetic_features()
    feats = {"W": np.zeros((8, x.shape[1]), np.float32), "b": np.zeros(8, np.float32),
             "train": (x, labels, targets), "train augmented": [x + 0.1]}
    W, b = decoupled_head.retrained_head(feats, LOG_PRIOR, balance=1.0, epochs=0, lr=1e-2)
    assert not W.any() and not b.any()
    W, b = decoupled_head.retrained_head(feats, LOG_PRIOR, balance=1.0, epochs=20, lr=1e-2)
    assert ((x @ W.T + b).argmax(1) == labels).mean() > 0.95


def test_best_row_undoes_a_baked_in_prior_shift():
    x, labels, _ = synthetic_features()
    feats = {"FERPlus valid": (x, labels, None), "SFEW": (x, labels, None)}
    W = np.zeros((8, x.shape[1]))
    W[:, :8] = np.eye(8)
    b = -3.0 * LOG_PRIOR    # a shift of -3 baked in: the rare classes win where features are weak
    shift, row = decoupled_head.best_row(feats, W, b, LOG_PRIOR, [0.0, 1.0, 3.0])
    assert shift == 3.0 and row["FERPlus valid accuracy"] > 0.95
    _, unshifted = decoupled_head.best_row(feats, W, b, LOG_PRIOR, [0.0])
    assert unshifted["FERPlus valid accuracy"] < row["FERPlus valid accuracy"]


def test_the_tau_normalised_copy_changes_only_the_head_and_keeps_the_baked_shift(tmp_path):
    from safetensors import safe_open

    from pyfer.weights_file import CHECKSUM_KEYS
    from training.export import baked_prior_shift

    src = Path(__file__).resolve().parents[1] / "models" / "teacher_s11_fp16.safetensors"
    out = tmp_path / "tau.safetensors"
    decoupled_head.write_tau_normalized(str(src), 0.5, str(out))
    with safe_open(str(src), "np") as a, safe_open(str(out), "np") as b:
        copied = {k: v for k, v in b.metadata().items() if k not in CHECKSUM_KEYS}  # the copy's own checksums
        assert copied == a.metadata() and set(CHECKSUM_KEYS) <= b.metadata().keys() and set(a.keys()) == set(b.keys())
        for k in a.keys():
            if not k.startswith("fc."):
                np.testing.assert_array_equal(a.get_tensor(k), b.get_tensor(k))
        norms = np.linalg.norm(a.get_tensor("fc.weight").astype(np.float64), axis=1)
        np.testing.assert_allclose(np.linalg.norm(b.get_tensor("fc.weight").astype(np.float64), axis=1),
                                   np.sqrt(norms), rtol=2e-3)
        np.testing.assert_allclose(b.get_tensor("fc.bias"), baked_prior_shift(str(src)), rtol=2e-3)


def test_writing_a_copy_needs_exports(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="exports"):
        decoupled_head.main(["--weights", "runs/x/best.pt", "--write-tau-normalized", "0.5",
                             "--out", str(tmp_path / "t.safetensors")])
