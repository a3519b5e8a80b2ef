"""pyfer.preprocess against fixed values: what the network is fed must match what it was trained
on. A review's hand mutations (session 48) showed that a BGR/RGB swap in ``to_gray``, a wrong
normalization and a resize without area averaging passed every other test: those compare a
function with itself, or gray input with colour input to 2e-3."""
from __future__ import annotations

import numpy as np
import pytest

from pyfer.preprocess import PreprocessSpec, normalize, resize_face, to_gray


def test_to_gray_reads_blue_green_red_order():
    """OpenCV's BGR weights: blue 0.114, red 0.299 (RGB order would swap the two)."""
    blue = np.full((4, 4, 3), (255, 0, 0), np.uint8)
    red = np.full((4, 4, 3), (0, 0, 255), np.uint8)
    assert (to_gray(blue) == 29).all() and (to_gray(red) == 76).all()
    blue_opaque = np.full((4, 4, 4), (255, 0, 0, 255), np.uint8)
    assert (to_gray(blue_opaque) == 29).all()
    assert to_gray(np.full((4, 4, 1), 9, np.uint8)).shape == (4, 4)


def test_normalize_maps_the_byte_range_as_training_does():
    """0 and 255 -> -1 and 1 at the shipped mean/std 0.5/0.5; another mean/std as
    ``training.data.to_model_input`` maps it."""
    ends = normalize(np.array([[[0, 255]]], np.uint8), PreprocessSpec(input_size=8))
    assert ends.shape == (1, 1, 1, 2) and np.allclose(ends.ravel(), [-1.0, 1.0], atol=1e-6)
    spec = PreprocessSpec(input_size=8, mean=0.4, std=0.3)
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    want = (x.astype(np.float64) / 255.0 - 0.4) / 0.3
    assert np.allclose(normalize(x, spec)[:, 0], want, atol=1e-5)


def test_normalize_matches_the_training_input():
    torch = pytest.importorskip("torch")
    from training.data import to_model_input

    spec = PreprocessSpec(input_size=16, mean=0.4, std=0.3)
    x = np.random.default_rng(1).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    want = to_model_input(torch.from_numpy(x[:, None]), spec).numpy()
    assert np.allclose(normalize(x, spec), want, atol=1e-6)


def test_resize_face_averages_when_it_shrinks():
    """Every 4th column white, shrunk 4x: each output pixel averages one white column in four
    (INTER_AREA: 63.75); sampling (INTER_LINEAR) reads between columns 1 and 2 of each four and
    gives black."""
    stripes = np.zeros((256, 256), np.uint8)
    stripes[:, ::4] = 255
    small = resize_face(stripes, 64)
    assert small.shape == (64, 64)
    assert np.abs(small.astype(float) - 63.75).max() < 1
    # growing a small crop interpolates (no blocks): a 2-pixel ramp gives values in between
    assert len(np.unique(resize_face(np.array([[0, 255], [0, 255]], np.uint8), 8))) > 2
