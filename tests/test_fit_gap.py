"""training.fit_gap: the student-against-teacher figures (the data loading is load_framed's,
tested with the framing)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from training.fit_gap import compare


def faces(labels, votes):
    return SimpleNamespace(labels=np.asarray(labels), targets=np.asarray(votes, dtype=np.float32))


def test_a_student_equal_to_its_teacher_has_no_gap():
    teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
    r = compare(teacher, teacher.clone(), faces([0, 1], np.eye(3)[[0, 1]]), T=8.0)
    assert r["KL x T^2"] == pytest.approx(0.0, abs=1e-6)
    assert r["top-1 agreement"] == 1.0 and r["accuracy"] == 1.0


def test_the_gap_grows_with_disagreement_and_is_scaled_by_t_squared():
    teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
    swapped = teacher[:, [1, 0, 2]]  # the top two classes exchanged on every face
    f = faces([0, 1], [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    r8, r1 = compare(teacher, swapped, f, T=8.0), compare(teacher, swapped, f, T=1.0)
    assert r8["top-1 agreement"] == 0.0 and r8["accuracy"] == 0.0
    assert r8["KL x T^2"] > 0
    # at high T, KL shrinks as 1/T^2 (logit matching): the T^2 factor keeps it comparable
    assert 0.2 * r1["KL x T^2"] < r8["KL x T^2"] < 2 * r1["KL x T^2"]
    # the soft cross-entropy is against the vote shares: face 0 is split, so it costs the same both ways
    same = compare(teacher, teacher, f, T=8.0)
    assert r8["soft CE"] > same["soft CE"]
