"""training.evaluate --prior-shift moves the logits by the prior of the data the model trained on:
the prior an export stores, else FERPlus train under --data, and only then the default FERPlus
(it used to read the default folder always, which on a GPU machine is not there)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.data import ferplus_prior  # noqa: E402
from training.evaluate import class_prior_for, evaluate  # noqa: E402
from training.export import export_model  # noqa: E402
from training.models import ModelSpec  # noqa: E402


def _export(path, **kw):
    import torch

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    return export_model(spec.build(), spec, PreprocessSpec(48), path, **kw)


def test_an_exports_stored_prior_wins(tiny_sets, tmp_path):
    data, _ = tiny_sets
    stored = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    w = _export(tmp_path / "s.safetensors", class_prior=stored, prior_shift=0.5)
    np.testing.assert_allclose(class_prior_for(str(w), data), stored)


def test_without_a_stored_prior_the_data_folders_prior(tiny_sets, tmp_path):
    data, manifest = tiny_sets
    w = _export(tmp_path / "s.safetensors")
    tiny = ferplus_prior(data.partition(":")[2])
    np.testing.assert_allclose(class_prior_for(str(w), data), tiny)
    # the shift reaches the scores: a strong shift towards the tiny set's most frequent class
    # predicts it for (almost) every face
    shifted = evaluate(str(w), data, latency=False, prior_shift=50.0)
    assert shifted["prior_shift"] == 50.0
    top = int(np.argmax(tiny))
    assert shifted["per_class_recall"][list(shifted["per_class_recall"])[top]] == 1.0


def test_a_class_the_training_set_lacks_gives_finite_scores(tiny_sets, tmp_path):
    """A zero prior would be log(0) = -inf: NaN probabilities after a negative shift."""
    import shutil

    data, _ = tiny_sets
    root = data.partition(":")[2]
    labels = (tmp_path / "ferplus" / "FER2013Train" / "label.csv")
    rows = [r for r in labels.read_text().splitlines() if not r.split(",")[-10 + 7] == "10"]  # no contempt
    labels.write_text("\n".join(rows) + "\n")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    assert ferplus_prior(root)[7] == 1e-6  # floored: prior_shift.py, compare, peer take its log as it is
    assert np.isfinite(np.log(ferplus_prior(root))).all()
    w = _export(tmp_path / "s.safetensors")
    m = evaluate(str(w), data, latency=False, prior_shift=-1.0)
    assert np.isfinite(m["accuracy"]) and np.isfinite(m["auc"])



def test_limit_scores_an_evenly_spread_sample_with_every_class_its_share(tiny_sets, tmp_path):
    """training.evaluate --limit (and training.report --limit): a sample spread over the set sorted by
    class, so that a rare class is not lost between the samples, and the metrics say of how many."""
    import cv2

    _, manifest = tiny_sets
    names = ["neutral"] * 3 + ["disgust"] + ["neutral"] * 7  # spread over this order: neutral only
    rows = ["path,label"]
    for i, name in enumerate(names):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((48, 48), 10 * i, np.uint8))
        rows.append(f"f{i}.png,{name}")
    rare = tmp_path / "rare.csv"
    rare.write_text("\n".join(rows) + "\n")
    w = _export(tmp_path / "s.safetensors")
    part = evaluate(str(w), str(rare), latency=False, limit=3)
    assert part["n"] == 3 and part["n_total"] == 11
    assert [c for c, r in part["per_class_recall"].items() if r is not None] == ["neutral", "disgust"]
    whole = evaluate(str(w), str(manifest), latency=False)
    assert whole["n"] == whole["n_total"] == 14
