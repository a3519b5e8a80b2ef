"""The training tools given a weights file that is missing, not a safetensors or checkpoint file, cut
short, damaged (failing its data checksum), not a pyfer model, or another network's: one ``error: ...`` line naming it, exit status 2
(training.cli.reported_errors), never a traceback. Every tool fails on the weights before reading
any data."""
from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

from conftest import REPO
from pyfer.preprocess import EMOTIONS, PreprocessSpec
from training.checkpoint import save_checkpoint
from training.export import export_model, read_metadata
from training.models import ModelSpec

STUDENT = ModelSpec("shufflenetv2")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict:
    from safetensors.torch import load_file, save_file

    d = tmp_path_factory.mktemp("bad")
    good = export_model(STUDENT.build(), STUDENT, PreprocessSpec(), d / "good.safetensors")
    meta = read_metadata(good)
    (d / "text.safetensors").write_text("not weights at all\n")
    (d / "cut.safetensors").write_bytes(good.read_bytes()[:3_000_000])  # head -c 3000000
    damaged = bytearray(good.read_bytes())
    damaged[-1] ^= 0x10  # a bit of the data flipped: only the checksum tells
    (d / "damaged.safetensors").write_bytes(bytes(damaged))
    save_file(load_file(str(good)), str(d / "other_arch.safetensors"),
              metadata={"pyfer": json.dumps({**meta, "arch": "effresnet18"})})
    ck = d / "good.pt"
    save_checkpoint({"model": STUDENT.build().state_dict(), "model_spec": dataclasses.asdict(STUDENT),
                     "preprocess": PreprocessSpec().to_dict()}, ck)
    (d / "text.pt").write_text("not a checkpoint\n")
    (d / "cut.pt").write_bytes(ck.read_bytes()[:3_000_000])
    save_checkpoint({"model": STUDENT.build().state_dict(), "model_spec": {"arch": "effresnet18"},
                     "preprocess": PreprocessSpec().to_dict()}, d / "other_arch.pt")
    # 7 classes (FER2013's, no contempt): the tools read outputs as the 8 FERPlus classes by index,
    # and scored such a model wrongly without a word (a model that always said happiness: accuracy 0)
    seven = ModelSpec("shufflenetv2", 7)
    export_model(seven.build(), seven, PreprocessSpec(), d / "seven_classes.safetensors", class_names=EMOTIONS[:7])
    save_checkpoint({"model": seven.build().state_dict(), "model_spec": dataclasses.asdict(seven),
                     "preprocess": PreprocessSpec().to_dict()}, d / "seven_classes.pt")
    return {"missing": d / "missing.safetensors", "text": d / "text.safetensors", "cut": d / "cut.safetensors",
            "damaged": d / "damaged.safetensors",
            "not pyfer": REPO / "pyfer" / "models" / "yunet.safetensors",
            "other arch": d / "other_arch.safetensors", "missing .pt": d / "missing.pt", "text .pt": d / "text.pt",
            "cut .pt": d / "cut.pt", "other arch .pt": d / "other_arch.pt",
            "other classes": d / "seven_classes.safetensors", "other classes .pt": d / "seven_classes.pt"}


def arguments(tool: str, weights: str, tmp_path) -> list[str]:
    return {"prior_shift": ["--weights", weights, "--out", str(tmp_path / "out")],
            "fit_gap": ["--teacher", weights, "--students", weights, "--out", str(tmp_path / "out")],
            "gradcam": ["--teacher", weights, "--student", weights, "--out", str(tmp_path / "out.jpg")],
            "evaluate": ["--weights", weights, "--data", f"ferplus:{tmp_path}"],
            "export": [weights, str(tmp_path / "out.safetensors")]}[tool]


BAD = ["missing", "text", "cut", "damaged", "not pyfer", "other arch", "missing .pt", "text .pt", "cut .pt", "other arch .pt",
       "other classes", "other classes .pt"]


@pytest.mark.parametrize("tool,which", [(tool, which) for tool in ("prior_shift", "fit_gap", "gradcam", "evaluate")
                                        for which in BAD] + [("export", which) for which in BAD if ".pt" in which])
def test_bad_weights_are_one_error_line(tool, which, bad_files, tmp_path, capsys):
    weights = bad_files[which]
    main = importlib.import_module(f"training.{tool}").main
    with pytest.raises(SystemExit) as exc:
        main(arguments(tool, str(weights), tmp_path))
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and weights.name in err, err


@pytest.mark.parametrize("which", ["other arch", "other arch .pt"])
def test_another_networks_weights_are_told_in_one_line(which, bad_files):
    from training.predict import load_model

    with pytest.raises(ValueError, match=r"the weights do not fit effresnet18 \(small stem, 8 classes, 1 channels\): "
                                         r"\d+ missing, \d+ unexpected, \d+ of another shape \(first: ") as exc:
        load_model(bad_files[which])
    assert "\n" not in str(exc.value)
    load_model(bad_files[which].with_name("good" + bad_files[which].suffix))  # the same file with its own arch loads
