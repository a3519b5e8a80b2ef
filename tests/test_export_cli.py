"""python -m training.export on a checkpoint: the class prior comes from the data the checkpoint
trained on (a GPU machine has FERPlus in .cache/ferplus, not in ../shared), and is only required
with --prior-shift."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import REPO, TINY_TRAIN_LABELS
from pyfer.preprocess import PreprocessSpec
from training.checkpoint import load_checkpoint, save_checkpoint
from training.export import main, read_metadata
from training.models import ModelSpec


def checkpoint(path, data: str, num_classes: int = 8):
    spec = ModelSpec("shufflenetv2", num_classes=num_classes)
    save_checkpoint({"model": spec.build().state_dict(), "model_spec": dataclasses.asdict(spec),
                     "preprocess": PreprocessSpec(48).to_dict(), "config": {"data": data}}, path)
    return path


def test_the_prior_comes_from_the_checkpoints_own_data(tiny_sets, tmp_path):
    ck = checkpoint(tmp_path / "last.pt", tiny_sets[0])
    main([str(ck), str(tmp_path / "s.safetensors")])
    stored = read_metadata(tmp_path / "s.safetensors")["logit_adjustment"]["class_prior"]
    assert stored == pytest.approx(np.bincount(TINY_TRAIN_LABELS) / len(TINY_TRAIN_LABELS))


def test_a_run_made_elsewhere_takes_the_prior_from_this_machines_default_place(tiny_sets, tmp_path, monkeypatch):
    monkeypatch.setattr("training.export.DEFAULT_DATA_ROOT", tiny_sets[0].partition(":")[2])
    ck = checkpoint(tmp_path / "last.pt", "ferplus:.cache/ferplus_on_the_gpu_machine")
    main([str(ck), str(tmp_path / "s.safetensors"), "--prior-shift", "0.4"])
    stored = read_metadata(tmp_path / "s.safetensors")["logit_adjustment"]["class_prior"]
    assert stored == pytest.approx(np.bincount(TINY_TRAIN_LABELS) / len(TINY_TRAIN_LABELS))


@pytest.fixture
def no_default_data(tmp_path, monkeypatch):
    monkeypatch.setattr("training.export.DEFAULT_DATA_ROOT", str(tmp_path / "no_shared_here"))


def test_without_its_data_the_export_is_written_without_a_prior_and_says_so(tmp_path, capsys, no_default_data):
    ck = checkpoint(tmp_path / "last.pt", f"ferplus:{tmp_path / 'not_here'}")
    main([str(ck), str(tmp_path / "s.safetensors")])
    assert "logit_adjustment" not in read_metadata(tmp_path / "s.safetensors")
    assert "warning: no class prior" in capsys.readouterr().err


def test_prior_shift_without_the_data_is_one_error_line(tmp_path, capsys, no_default_data):
    ck = checkpoint(tmp_path / "last.pt", f"ferplus:{tmp_path / 'not_here'}")
    with pytest.raises(SystemExit) as exc:
        main([str(ck), str(tmp_path / "s.safetensors"), "--prior-shift", "0.4"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: --prior-shift needs") and err.count("\n") == 1, err
    assert not (tmp_path / "s.safetensors").exists()


def test_the_long_gpu_run_brings_back_the_best_checkpoint_too():
    """scripts/gpu_distill_long.sh: the device's run folder is lost with the machine."""
    script = (REPO / "scripts" / "gpu_distill_long.sh").read_text()
    copy = [line for line in script.splitlines() if line.startswith("cp ") and '"$OUT/"' in line]
    assert len(copy) == 1 and '"$run/last.pt"' in copy[0] and '"$run/best.pt"' in copy[0], copy


def test_the_source_counts_epochs_from_one_and_names_the_selection_score(tmp_path, no_default_data):
    """A checkpoint saved after the 4th epoch (state epoch 3) with a --val2 score (a sum of two
    accuracies) must not export as "epoch 3, best_val_accuracy 1.16"."""
    ck = checkpoint(tmp_path / "last.pt", f"ferplus:{tmp_path / 'not_here'}")
    state = load_checkpoint(ck).state
    save_checkpoint({**state, "mode": "distill", "epoch": 3, "best_val_accuracy": 1.16, "best_epoch": 2}, ck)
    main([str(ck), str(tmp_path / "s.safetensors")])
    source = read_metadata(tmp_path / "s.safetensors")["source"]
    assert source["epochs_trained"] == 4 and source["selection_score"] == 1.16 and source["selected_epoch"] == 3
    assert source["mode"] == "distill"
    assert "epoch" not in source and "best_val_accuracy" not in source


def test_class_names_name_the_outputs_and_must_match_their_count(tmp_path, capsys, no_default_data):
    ck = checkpoint(tmp_path / "last.pt", f"ferplus:{tmp_path / 'not_here'}", num_classes=3)
    out = tmp_path / "s.safetensors"
    for extra, says in (([], "a model of 3 classes, and the default names are the 8"),
                        (["--class-names", "calm,glad"], "--class-names gives 2"),
                        (["--class-names", "calm,,cross"], "an empty name")):
        with pytest.raises(SystemExit) as exc:
            main([str(ck), str(out), *extra])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and says in err and err.count("\n") == 1, err
        assert not out.exists()
    main([str(ck), str(out), "--class-names", "calm, glad,cross"])
    assert read_metadata(out)["class_names"] == ["calm", "glad", "cross"]


def test_a_baked_prior_shift_is_the_recognizers_shift_added_in_advance(tmp_path):
    """Exported at prior_shift 0.5, the classifier's bias is the unshifted one plus 0.5 x log prior
    (the prior stored normalised): Recognizer at the same total shift gives the same scores either
    way, and at shift 0 the baked one's scores are the unshifted model's."""
    import torch

    from pyfer import Recognizer
    from training.export import export_model
    from training.models import fold_batchnorm

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    model = spec.build().eval()
    counts = np.array([30, 25, 10, 9, 8, 4, 3, 1], np.float64)  # frequencies, not summing to 1
    plain = export_model(model, spec, PreprocessSpec(48), tmp_path / "plain.safetensors", class_prior=counts)
    baked = export_model(model, spec, PreprocessSpec(48), tmp_path / "baked.safetensors", class_prior=counts,
                         prior_shift=0.5)
    stored = read_metadata(baked)["logit_adjustment"]
    assert sum(stored["class_prior"]) == pytest.approx(1.0) and stored["prior_shift"] == 0.5
    from safetensors.numpy import load_file

    bias = {p: load_file(str(p))["fc.bias"] for p in (plain, baked)}
    assert bias[baked] - bias[plain] == pytest.approx(0.5 * np.log(counts / counts.sum()), abs=1e-5)
    assert np.allclose(fold_batchnorm(model, spec).fc.bias.detach().numpy(), bias[plain], atol=1e-6)
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), np.uint8)

    def scores(path, shift):
        return Recognizer(path, detector=None, prior_shift=shift).classify(faces)

    assert np.allclose(scores(baked, None), scores(plain, 0.5), atol=1e-5)
    assert np.allclose(scores(baked, 0.0), scores(plain, None), atol=1e-5)


def test_a_checkpoint_carries_no_baked_shift(tmp_path):
    """A checkpoint's logits are raw: its baked shift is 0, and scoring it at a total shift adds
    all of it (the tools that sweep shifts read .pt files too)."""
    from training.export import baked_prior_shift, baked_shift, total_shift_offset

    ck = checkpoint(tmp_path / "last.pt", "ferplus:unused")
    log_prior = np.log(np.full(8, 1 / 8))
    assert baked_shift(ck) == 0.0 and baked_prior_shift(ck) is None
    assert total_shift_offset(ck, 0.3, log_prior) == pytest.approx(0.3 * log_prior)
