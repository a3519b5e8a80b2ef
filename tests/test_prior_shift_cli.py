"""python -m training.prior_shift end to end on tiny sets: --out is a stem (a dot in it is no
suffix) and must be given (its old default overwrote the committed results/prior_shift.*)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.export import export_model  # noqa: E402
from training.models import ModelSpec  # noqa: E402
from training.prior_shift import main  # noqa: E402


@pytest.fixture
def student(tmp_path):
    import torch

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    return export_model(spec.build(), spec, PreprocessSpec(48), tmp_path / "student.safetensors")


def test_a_dotted_out_keeps_its_whole_name(tiny_sets, student, tmp_path, one_torch_thread):
    data, manifest = tiny_sets
    out = tmp_path / "prior_shift_lr0.002_e2"
    main(["--weights", str(student), "--data", data, "--val2", str(manifest), "--shifts", "0", "0.5",
          "--out", str(out)])
    for suffix in (".md", ".json", ".png"):
        assert (tmp_path / f"prior_shift_lr0.002_e2{suffix}").is_file(), suffix
        assert not (tmp_path / f"prior_shift_lr0{suffix}").exists(), suffix
    rows = json.loads((tmp_path / "prior_shift_lr0.002_e2.json").read_text())["rows"]
    assert [r["shift"] for r in rows] == [0, 0.5]


def test_out_is_required(student, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--weights", str(student)])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err
