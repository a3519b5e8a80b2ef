"""The research tools' bookkeeping: training.prior_shift and training.evaluate score a shift as the
total the scores carry (an export's baked shift taken out first, so it agrees with its checkpoint),
evaluate's --confusion-png, --json and framing default, and training.report's bad input, Table II
count and missing run logs."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from pyfer.preprocess import EMOTIONS, PreprocessSpec  # noqa: E402
from training import evaluate as evaluate_tool, prior_shift, report  # noqa: E402
from training.data import ferplus_prior, load_dataset  # noqa: E402
from training.export import export_model  # noqa: E402
from training.models import ModelSpec  # noqa: E402

BAKED = 3.0  # large, so that a shift counted twice changes the predictions


def _export(path, **kw):
    """The same random student every time, exported to ``path``."""
    import torch

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    return str(export_model(spec.build(), spec, PreprocessSpec(48), path, **kw))


@pytest.fixture
def twin_exports(tiny_sets, tmp_path, one_torch_thread):
    """One student exported twice with the tiny training prior: raw, and with BAKED baked in."""
    prior = ferplus_prior(tiny_sets[0].partition(":")[2])
    return (_export(tmp_path / "raw.safetensors", class_prior=prior),
            _export(tmp_path / "baked.safetensors", class_prior=prior, prior_shift=BAKED))


def _noise_logits(weights, data, val2, framing="align"):
    """prior_shift.framed_logits standing in (no YuNet): the model's real flip-averaged logits on
    fixed noise faces, so an export's baked bias is in them as it would be."""
    import torch

    from training.predict import load_model, predict_logits

    model, _, prep = load_model(weights)
    rng = np.random.default_rng(1)
    # more neutral faces than others: the shift's favourite class changes the metrics
    labels = {"FERPlus valid": np.r_[np.zeros(8, int), np.arange(32) % 8],
              "SFEW": np.r_[np.zeros(7, int), np.arange(28) % 7]}
    logits = {k: predict_logits(model, torch.from_numpy(rng.integers(0, 256, (len(y), 1, 48, 48), np.uint8)),
                                prep, tta=True).numpy() for k, y in labels.items()}
    return logits, labels


def test_prior_shift_scores_an_export_at_the_total_shift(tiny_sets, twin_exports, tmp_path, monkeypatch,
                                                         one_torch_thread):
    data, manifest = tiny_sets
    raw, baked = twin_exports
    monkeypatch.setattr(prior_shift, "framed_logits", _noise_logits)
    shifts = [0.0, BAKED]
    results = {}
    for name, w in (("raw", raw), ("baked", baked)):
        prior_shift.main(["--weights", w, "--data", data, "--val2", str(manifest), "--out", str(tmp_path / name),
                          "--shifts", *map(str, shifts)])
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    # without a baked shift the numbers are the old ones: logits + shift * log prior
    logits, labels = _noise_logits(raw, data, manifest)
    log_prior = np.log(ferplus_prior(data.partition(":")[2]))
    assert results["raw"]["rows"] == [{"shift": s, **prior_shift.scores(logits, labels, s * log_prior)}
                                      for s in shifts]
    metrics_at = [{k: v for k, v in row.items() if k != "shift"} for row in results["raw"]["rows"]]
    assert metrics_at[0] != metrics_at[1], "the shift must matter for this test"
    # the baked export agrees with the raw one at every shift, and says what it carries
    for got, want in zip(results["baked"]["rows"], results["raw"]["rows"]):
        assert got == pytest.approx(want)
    assert results["baked"]["baked_shift"] == BAKED and "baked_shift" not in results["raw"]
    assert f"prior shift of {BAKED:g} baked in" in (tmp_path / "baked.md").read_text()


def _scored(weights, data, shift=None) -> dict:
    """Accuracy and recall per class (not AUC: a random model ranks noise faces by rounding)."""
    m = evaluate_tool.evaluate(weights, data, latency=False, prior_shift=shift)
    return {"accuracy": m["accuracy"], **m["per_class_recall"]}


def test_evaluate_scores_an_export_at_the_total_shift(tiny_sets, twin_exports):
    data, _ = tiny_sets
    raw, baked = twin_exports
    assert _scored(raw, data, 0.0) != _scored(raw, data, BAKED), "the shift must matter for this test"
    for shift in (0.0, BAKED):
        assert _scored(baked, data, shift) == pytest.approx(_scored(raw, data, shift))
    # no --prior-shift: as the weights answer, which is at their baked shift
    assert _scored(baked, data) == pytest.approx(_scored(raw, data, BAKED))
    m = evaluate_tool.evaluate(baked, data, latency=False)
    assert m["prior_shift"] == m["baked_shift"] == BAKED


def test_evaluate_writes_the_confusion_png_into_a_new_folder(tiny_sets, twin_exports, tmp_path, capsys):
    data, _ = tiny_sets
    png = tmp_path / "new" / "folder" / "confusion.png"
    evaluate_tool.main(["--weights", twin_exports[0], "--data", data, "--no-latency", "--confusion-png", str(png)])
    assert png.stat().st_size > 1000


def test_evaluate_json_has_null_for_an_auc_it_cannot_compute(tiny_sets, twin_exports, tmp_path, capsys):
    """Two classes: no one-vs-rest AUC, and NaN is not JSON."""
    _, manifest = tiny_sets
    two = tmp_path / "two_classes.csv"
    rows = manifest.read_text().splitlines()
    two.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.endswith((",neutral", ",happy"))]) + "\n")
    evaluate_tool.main(["--weights", twin_exports[0], "--manifest", str(two), "--root", str(manifest.parent),
                        "--no-latency", "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = json.loads(last, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert m["n"] == 4 and m["auc"] is None and m["split"] is None  # a manifest has no split


@pytest.mark.parametrize("flag, recorded, used, noted", [
    ([], "align", "align", False),                         # auto: as the model trained
    ([], None, "frame", False),                            # auto, nothing recorded: the crops as given
    (["--framing", "frame"], "align", "frame", True),      # asked for another framing: scored so, with a note
    (["--framing", "align"], "align", "align", False),
])
def test_evaluate_frames_faces_as_the_model_trained_unless_told(tiny_sets, tmp_path, capsys, monkeypatch,
                                                                flag, recorded, used, noted):
    from pyfer.facenorm import FaceFraming

    data, _ = tiny_sets
    framing = FaceFraming(mode=recorded).to_dict() if recorded else None
    w = _export(tmp_path / "m.safetensors", framing=framing)
    seen = []  # the framings faces were re-framed with (YuNet on noise stood in for by the crops)
    monkeypatch.setattr("training.framing.load_framed",
                        lambda source, prep, split, framing: seen.append(framing.mode) or load_dataset(source, prep, split))
    evaluate_tool.main(["--weights", w, "--data", data, "--no-latency", "--json", *flag])
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert json.loads(out.splitlines()[-1])["framing"] == used and len(notes) == int(noted), (out, notes)
    assert seen == ([] if used == "frame" else [used])
    # the function, as training.report calls it, frames the same way
    assert evaluate_tool.evaluate(w, data, latency=False, framing=flag[-1] if flag else "auto")["framing"] == used


@pytest.fixture
def scored(monkeypatch):
    """report.evaluate standing in, counting its calls: every model scored on 7 faces of 2 classes."""
    calls = []

    def evaluate(weights, source, split="valid", tta=False, latency=True, limit=None):
        calls.append(weights)
        m = {"n": 7, "accuracy": 0.5, "macro_precision": 0.4, "macro_recall": 0.45, "auc": None,
             "per_class_recall": {c: (0.5 if c in ("neutral", "happiness") else None) for c in EMOTIONS},
             "confusion": [[0] * 8 for _ in range(8)], "params": 1_250_000, "macs": 45_000_000, "framing": "frame"}
        return {**m, "cpu_latency_ms": 10.0} if latency else m

    monkeypatch.setattr(report, "evaluate", evaluate)
    return calls


def test_report_tells_bad_data_in_one_line(tiny_sets, tmp_path, capsys):
    folder = tiny_sets[0].partition(":")[2]  # without its ferplus: prefix
    with pytest.raises(SystemExit) as exc:
        report.main(["--data", folder, "--sfew", "", "--out", str(tmp_path / "out"), "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("error: ") and f"give ferplus:{folder}" in err


def test_report_refuses_a_mistyped_sfew_before_the_work(scored, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--data", "sfew.csv", "--sfew", str(tmp_path / "sfew_trian" / "manifest.csv"),
                     "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and err[-1].startswith("error: no SFEW manifest at") and scored == []


def test_report_counts_table_ii_and_keeps_figures_it_has_no_logs_for(scored, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "curves.png").write_bytes(b"the curves drawn before")
    args = ["--data", "sfew.csv", "--sfew", "", "--out", str(out), "--runs", str(tmp_path / "runs")]
    report.main(args)
    tables = (out / "tables.md").read_text()
    assert "FERPlus valid (7 images)" in tables and "3,191" not in tables
    assert "| 45.0M | 50.00 | 50.00 | 40.00 | - | 10.00 ms |" in tables  # no AUC for two classes
    assert "## Table I:" not in tables  # none before, and no logs: no empty table
    assert (out / "curves.png").read_bytes() == b"the curves drawn before"
    err = capsys.readouterr().err
    assert f"curves.png kept as in {out} and no Table I drawn" in err and "teacher/log.jsonl" in err \
        and "ablation_T8_a0.6/log.jsonl" in err
    # a Table I drawn before (session 1's, whose logs are gone) survives a rerun, as does the figure
    drawn = "## Table I: (T, a) ablation\n\n| T \\ a | 0.2 |\n|---|---|\n| 4 | 75.15 (ep 8/9) |"
    (out / "tables.md").write_text(tables + "\n" + drawn + "\n")
    report.main(args)
    again = (out / "tables.md").read_text()
    assert again.count("## Table I:") == 1 and again.rstrip().endswith(drawn)


def test_compare_takes_shifts_as_totals(tiny_sets, twin_exports, tmp_path, monkeypatch, one_torch_thread):
    """training.compare of an export against itself unbaked: at the same total shift they are the
    same model (no difference at all); without shifts each answers as its weights do."""
    from training import compare

    data, manifest = tiny_sets
    raw, baked = twin_exports
    monkeypatch.setattr(compare, "framed_logits", _noise_logits)

    def run(*flags) -> dict:
        out = tmp_path / f"cmp{len(list(tmp_path.glob('cmp*.json')))}"
        compare.main([raw, baked, "--data", data, "--val2", str(manifest), "--resamples", "100",
                      "--out", str(out), *flags])
        return json.loads(out.with_suffix(".json").read_text())

    def diffs(result: dict) -> list:
        return [figure["diff"] for figure in result["figures"].values()]

    for shift in ("0", str(BAKED)):
        assert all(d == 0 for d in diffs(run("--shift-a", shift, "--shift-b", shift)))
    assert all(d == 0 for d in diffs(run("--shift-a", str(BAKED))))  # B as exported: at its baked shift
    assert any(d != 0 for d in diffs(run())), "the shift must matter for this test"


def test_evaluate_refuses_a_split_of_a_manifest(tiny_sets, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate_tool.main(["--weights", "unused.pt", "--manifest", str(tiny_sets[1]), "--split", "train"])
    assert exc.value.code == 2 and "a manifest has no splits" in capsys.readouterr().err


def test_compute_metrics_averages_over_the_classes_the_data_has():
    """SFEW has no contempt: perfect answers on 7 classes give macro recall and precision 1, not
    7/8; the absent class's recall is None. Against scikit-learn's own macro average over them."""
    from sklearn.metrics import recall_score

    labels = np.repeat(np.arange(7), 3)
    proba = np.full((len(labels), 8), 0.01)
    proba[np.arange(len(labels)), labels] = 0.9
    m = evaluate_tool.compute_metrics(labels, proba)
    assert m["accuracy"] == 1.0 and m["macro_recall"] == 1.0 and m["macro_precision"] == 1.0
    assert m["per_class_recall"]["contempt"] is None
    proba[:3] = proba[3:6]  # neutral read as happiness
    m = evaluate_tool.compute_metrics(labels, proba)
    assert m["macro_recall"] == pytest.approx(recall_score(labels, proba.argmax(1), average="macro")) == 6 / 7


def test_predict_logits_tta_averages_the_mirror_image_left_to_right():
    """A model that is not mirror-symmetric: tta gives (m(x) + m(x mirrored left-right)) / 2."""
    import torch

    from training.predict import predict_logits

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 8, 8))
    prep = PreprocessSpec(input_size=8)
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    got = predict_logits(model, x, prep, tta=True)
    inputs = (x.float() / 255 - prep.mean) / prep.std
    with torch.no_grad():
        want = (model(inputs) + model(inputs.flip(3))) / 2
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, predict_logits(model, x, prep), atol=1e-3)  # the mirror matters here
