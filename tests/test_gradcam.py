"""training.gradcam on data that lacks a class (SFEW and RAF-DB have no contempt)."""
from __future__ import annotations

import numpy as np
import pytest

from pyfer.preprocess import EMOTIONS, PreprocessSpec
from training.gradcam import pick_examples


def test_examples_cycle_through_the_classes_present_only():
    labels = np.repeat(np.arange(7), 3)  # no contempt
    picked = pick_examples(labels, 9, seed=0)
    assert labels[picked].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1]


def test_examples_of_a_set_with_every_class_take_one_class_after_another():
    labels = np.repeat(np.arange(len(EMOTIONS)), 2)
    assert labels[pick_examples(labels, 8, seed=3)].tolist() == list(range(8))


def test_figure_from_a_manifest_without_contempt(tiny_sets, tmp_path, one_torch_thread):
    import importlib.util

    if importlib.util.find_spec("pytorch_grad_cam") is None:  # importing it here would break on torchvision
        pytest.skip("the grad-cam package is not installed")
    pytest.importorskip("matplotlib")
    import torch

    from training.export import export_model
    from training.gradcam import main
    from training.models import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    student = export_model(spec.build(), spec, PreprocessSpec(), tmp_path / "s.safetensors")
    main(["--teacher", str(student), "--student", str(student), "--data", str(tiny_sets[1]), "--n", "8",
          "--out", str(tmp_path / "cam.jpg")])
    assert (tmp_path / "cam.jpg").stat().st_size > 10_000
