"""training.crop_tta: the views frame faces as described, and the tool runs end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from pyfer.facenorm import FaceFraming  # noqa: E402
from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.crop_tta import main, paired_bootstrap, view_framing, views  # noqa: E402
from training.export import export_model  # noqa: E402
from training.models import ModelSpec  # noqa: E402


def test_a_zoom_spreads_the_landmarks_about_the_centre_and_an_offset_moves_them():
    base = FaceFraming()
    t = np.asarray(base.template)
    np.testing.assert_allclose(view_framing(base).template, t)
    zoomed = np.asarray(view_framing(base, 1.1).template)
    np.testing.assert_allclose(zoomed - 0.5, (t - 0.5) * 1.1)
    moved = np.asarray(view_framing(base, 1.0, 0.03, -0.02).template)
    np.testing.assert_allclose(moved, t + [0.03, -0.02])


def test_views_name_each_zoom_then_the_four_moves():
    v = views([0.9, 1.0], 0.03)
    assert list(v) == ["zoom 0.9", "zoom 1", "left 0.03", "right 0.03", "up 0.03", "down 0.03"]
    assert v["up 0.03"] == (1.0, 0.0, -0.03)
    assert list(views([1.0], 0)) == ["zoom 1"]


def test_the_bootstrap_sees_a_real_gain_and_no_gain():
    rng = np.random.default_rng(0)
    labels = {"FERPlus valid": rng.integers(0, 8, 400), "SFEW": rng.integers(0, 7, 200)}
    noise = {k: rng.normal(size=(len(v), 8)) for k, v in labels.items()}
    right = {k: noise[k] + 3 * np.eye(8)[labels[k]] for k in labels}
    gain = paired_bootstrap(noise, right, labels, rounds=50)
    assert gain["mean"] > 0.3 and gain["share_not_better"] == 0
    same = paired_bootstrap(noise, noise, labels, rounds=20)
    assert same["mean"] == 0 and same["share_not_better"] == 1


def test_end_to_end_on_tiny_sets(tiny_sets, tmp_path, one_torch_thread):
    import torch

    data, manifest = tiny_sets
    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    w = export_model(spec.build(), spec, PreprocessSpec(48), tmp_path / "s.safetensors")
    out = tmp_path / "crop_tta_s0.5"
    main(["--weights", str(w), "--data", data, "--val2", str(manifest), "--scales", "0.95", "1", "--offset", "0.03",
          "--shifts", "0", "0.5", "--bootstrap", "5", "--out", str(out)])
    rows = json.loads((tmp_path / "crop_tta_s0.5.json").read_text())[str(w)]
    assert list(rows) == ["zoom 0.95", "zoom 1", "left 0.03", "right 0.03", "up 0.03", "down 0.03",
                          "average of the zooms", "average of all views"]
    assert rows["average of all views"]["views"] == 6 and "bootstrap vs zoom 1" in rows["average of all views"]
    assert "| zoom 1 | 1 |" in (tmp_path / "crop_tta_s0.5.md").read_text()


def test_the_baseline_view_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["--weights", "w.safetensors", "--scales", "0.9", "1.1", "--out", "x"])
    assert "must include 1" in capsys.readouterr().err
