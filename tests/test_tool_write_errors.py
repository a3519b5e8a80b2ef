"""The training tools' outputs that cannot be written (here: --out under a regular file) end a tool
as bad input does: one ``error: ...`` line naming the path and exit status 2, not a traceback; the
tools that work long check the output's folder before the work, not after it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from conftest import REPO  # noqa: E402


@pytest.fixture
def blocker(tmp_path):
    """A regular file where an output's folder would be."""
    path = tmp_path / "blocker"
    path.write_text("not a folder")
    return path


def told_in_one_line(code, err: str, path) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and str(path) in errors[0], err


def fails_naming(capsys, main, argv, path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    told_in_one_line(exc.value.code, capsys.readouterr().err, path)


@pytest.mark.parametrize("tool", ["ablation", "recipe_ablation"])
def test_an_ablation_table_that_cannot_be_written(tool, blocker):
    """As run from the shell (python -m), where a traceback would show."""
    done = subprocess.run([sys.executable, "-m", f"training.{tool}", "--table-only", "--out", str(blocker / "grid")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    told_in_one_line(done.returncode, done.stderr, blocker)


def test_a_leaderboard_that_cannot_be_written(tmp_path, blocker, capsys):
    from training.leaderboard import main

    row = {"shift": 0.4, "FERPlus valid accuracy": 0.8, "FERPlus valid macro recall": 0.7,
           "SFEW accuracy": 0.5, "SFEW macro recall": 0.4, "worst ratio to target": 0.95}
    (tmp_path / "prior_shift_a.json").write_text(json.dumps({"weights": "runs/a/ep1.pt", "rows": [row]}))
    fails_naming(capsys, main, ["--results", str(tmp_path), "--out", str(blocker / "board")], blocker)


@pytest.fixture
def scoring(tiny_sets, tmp_path, monkeypatch, one_torch_thread):
    """A random student exported, and prior_shift.framed_logits standing in (no YuNet) on fixed
    logits, counting its calls: (the export, the calls, the ``--data``/``--val2`` flags)."""
    import torch

    from pyfer.preprocess import PreprocessSpec
    from training import compare, prior_shift
    from training.export import export_model
    from training.models import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    weights = str(export_model(spec.build(), spec, PreprocessSpec(48), tmp_path / "s.safetensors"))
    calls = []

    def framed_logits(weights, data, val2, framing="align"):
        calls.append(weights)
        rng = np.random.default_rng(0)
        labels = {"FERPlus valid": np.arange(32) % 8, "SFEW": np.arange(28) % 7}
        return {k: rng.normal(size=(len(y), 8)) for k, y in labels.items()}, labels

    for module in (compare, prior_shift):
        monkeypatch.setattr(module, "framed_logits", framed_logits)
    data, manifest = tiny_sets
    return weights, calls, ["--data", data, "--val2", str(manifest)]


def test_compare_checks_its_output_before_the_work(scoring, blocker, capsys):
    from training.compare import main

    weights, calls, flags = scoring
    fails_naming(capsys, main, [weights, weights, *flags, "--resamples", "100", "--out", str(blocker / "cmp")],
                 blocker)
    assert calls == []


def test_prior_shift_checks_its_output_before_the_work(scoring, blocker, capsys):
    from training.prior_shift import main

    weights, calls, flags = scoring
    fails_naming(capsys, main, ["--weights", weights, *flags, "--shifts", "0", "0.5", "--out", str(blocker / "ps")],
                 blocker)
    assert calls == []


def test_report_results_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    """A result that cannot be written once the models are scored (here: a folder where
    metrics.json goes) is one line too (report checked its --out folder before the work already)."""
    from pyfer.preprocess import EMOTIONS
    from training import report

    def evaluate(weights, source, split="valid", tta=False, latency=True, limit=None):
        return {"n": 7, "accuracy": 0.5, "macro_precision": 0.4, "macro_recall": 0.45, "auc": None,
                "per_class_recall": {c: 0.5 for c in EMOTIONS}, "confusion": [[1] * 8 for _ in range(8)],
                "params": 1, "macs": 1, "framing": "frame", "cpu_latency_ms": 1.0}

    monkeypatch.setattr(report, "evaluate", evaluate)
    blocked = tmp_path / "out" / "metrics.json"
    blocked.mkdir(parents=True)
    fails_naming(capsys, report.main, ["--data", "sfew.csv", "--sfew", "", "--out", str(blocked.parent),
                                       "--runs", str(tmp_path / "runs")], blocked)


@pytest.mark.parametrize("tool, argv, message", [
    ("train", ["student", "--epochs", "0"], "--epochs and --batch-size must be >= 1"),
    ("compare", ["--resamples", "5", "a.json", "b.json"], "--resamples must be >= 100"),
    ("ablation", [], "--teacher is required"),
])
def test_a_tool_refusing_its_arguments_says_error(tool, argv, message, tmp_path):
    """A check of the arguments that stops a tool (``SystemExit("...")``) reads as every other bad
    input from the shell: one ``error:`` line and status 2, where Python's own exit gives the bare
    message and status 1, as a crash would."""
    done = subprocess.run([sys.executable, "-m", f"training.{tool}", *argv, "--out", str(tmp_path / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), \
        (done.returncode, done.stderr)
    assert list(tmp_path.iterdir()) == []
