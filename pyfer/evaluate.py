"""How well a Recognizer reads your own labelled faces (``pyfer evaluate``).

Labelled images come as a folder with one subfolder per expression (``happy/``, ``angry/``, ...)
or as a CSV file with ``path`` and ``label`` columns, paths relative to the CSV's folder. Labels
are pyfer's class names or their common forms (``happy``, ``angry``, ``sad``, ``surprised``,
``scared``, ...). Every image goes through ``Recognizer.predict`` as an application runs it: the
first face (the largest) is the answer, and an image where no face is found counts as wrong
(the "no face" column of the confusion matrix).

Metrics are computed here with numpy, not scikit-learn, which the wheel does not depend on;
tests/test_evaluate_cli.py checks them against scikit-learn's.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

NO_FACE = "no face"
# common names of the expressions -> pyfer's class names (FERPlus's)
LABEL_SYNONYMS = {
    "angry": "anger", "mad": "anger",
    "contemptuous": "contempt",
    "disgusted": "disgust",
    "afraid": "fear", "fearful": "fear", "scared": "fear",
    "happy": "happiness", "joy": "happiness", "smile": "happiness", "smiling": "happiness",
    "calm": "neutral",
    "sad": "sadness",
    "surprised": "surprise",
}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


def class_of(label: str, class_names: Sequence[str]) -> Optional[int]:
    """The index in ``class_names`` that ``label`` names (case, spaces and synonyms allowed), or None."""
    key = label.strip().lower().replace(" ", "_")
    key = LABEL_SYNONYMS.get(key, key)
    return class_names.index(key) if key in class_names else None


def labelled_images(source: str | Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    """(image path, class index) of a class-per-subfolder folder or a ``path,label`` CSV file.
    ValueError, naming them, for labels that are no class of the model."""
    source = Path(source)
    if source.is_dir():
        raw = [(p, sub.name) for sub in sorted(source.iterdir()) if sub.is_dir()
               for p in sorted(sub.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not raw:
            raise ValueError(f"{source} has no images in class subfolders (expected e.g. {source}/happy/1.jpg)")
    elif source.is_file():
        with open(source, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{source}: a CSV needs 'path' and 'label' columns, got {reader.fieldnames}")
            raw = [(source.parent / row["path"], row["label"] or "") for row in reader]
        if not raw:
            raise ValueError(f"{source} lists no images")
    else:
        raise FileNotFoundError(f"no folder or CSV file at {source}")
    unknown = sorted({label for _, label in raw if class_of(label, class_names) is None})
    if unknown:
        raise ValueError(f"labels {unknown} are none of the model's classes {list(class_names)} "
                         f"(or their common names: {', '.join(sorted(LABEL_SYNONYMS))})")
    return [(path, class_of(label, class_names)) for path, label in raw]


def scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro recall over the classes present, per-class recall and the confusion matrix
    (rows: true classes present; columns: every class, then "no face", for a prediction of -1)."""
    present = sorted(set(y_true.tolist()))
    k = len(class_names)
    confusion = np.zeros((k, k + 1), np.int64)
    np.add.at(confusion, (y_true, np.where(y_pred < 0, k, y_pred)), 1)
    recall = {class_names[c]: float(confusion[c, c] / confusion[c].sum()) for c in present}
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_recall": float(np.mean(list(recall.values()))),
        "recall_per_class": recall,
        "confusion": {"rows": [class_names[c] for c in present], "columns": list(class_names) + [NO_FACE],
                      "counts": confusion[present].tolist()},
    }


def evaluate(rec, items: Sequence[tuple[Path, int]], transform: Optional[Callable] = None,
             progress: bool = True, desc: str = "evaluate") -> dict:
    """Run ``rec.predict`` on every image of ``items`` ((path, class index), as from
    :func:`labelled_images`) and score the first face. ``transform(path)`` may give the image to
    run instead of the path (scripts/eval_frontend.py rotates faces or sets them in large photos).
    Unreadable images are listed under ``"unreadable"`` and left out of the scores."""
    from tqdm import tqdm

    names = list(rec.class_names)
    y_true, y_pred, y_surest, unreadable = [], [], [], []
    stage: dict[str, list] = {}
    several = 0
    t0 = time.perf_counter()
    for path, label in tqdm(items, desc=desc, unit="img", mininterval=2.0, disable=not progress):
        try:
            faces = rec.predict(transform(path) if transform else path)
        except (OSError, ValueError) as exc:  # missing, unreadable or not an image
            unreadable.append(f"{path}: {exc}")
            continue
        for k, v in rec.last_timings.items():
            stage.setdefault(k, []).append(v)
        y_true.append(label)
        several += len(faces) > 1
        # predict puts the largest face first; the face of highest detection score, for comparison
        surest = max(faces, key=lambda f: f.detection_score or 0.0) if faces else None
        y_pred.append(names.index(faces[0].label) if faces else -1)
        y_surest.append(names.index(surest.label) if faces else -1)
    if not y_true:
        raise ValueError(f"none of the {len(items)} images could be read (first: {unreadable[0]})")
    y_true, y_pred, y_surest = np.array(y_true), np.array(y_pred), np.array(y_surest)
    found = y_pred >= 0
    result = {"images": len(y_true), "detected": int(found.sum()), "detection_rate": float(found.mean()),
              **scores(y_true, y_pred, names),
              "accuracy_detected": float(np.mean(y_true[found] == y_pred[found])) if found.any() else None,
              "several_faces": int(several),
              "accuracy_surest_face": float(np.mean(y_true == y_surest)),
              "median_ms": {k: float(np.median(v)) * 1e3 for k, v in stage.items()},
              "seconds": time.perf_counter() - t0,
              "unreadable": unreadable}
    return result


def report(result: dict) -> str:
    """``evaluate``'s result as text: the headline numbers, per-class recall and the confusion matrix."""
    n, found = result["images"], result["detected"]
    lines = [f"{n} images, a face found in {found} ({found / n:.1%})",
             f"accuracy {result['accuracy']:.1%} (an image without a face counts as wrong)"
             + (f"; {result['accuracy_detected']:.1%} on the {found} with a face" if found else ""),
             f"macro recall {result['macro_recall']:.1%} over {len(result['recall_per_class'])} classes", ""]
    conf = result["confusion"]
    cols = conf["columns"]
    corner = "true \\ predicted"
    width = max(len(c) for c in conf["rows"] + [corner]) + 1
    lines.append(corner.ljust(width) + "".join(c[:9].rjust(10) for c in cols) + "    recall")
    for name, row in zip(conf["rows"], conf["counts"]):
        lines.append(name.ljust(width) + "".join(str(v).rjust(10) for v in row)
                     + f"{result['recall_per_class'][name]:10.1%}")
    if result["unreadable"]:
        lines += ["", f"{len(result['unreadable'])} image(s) could not be read and are left out:"]
        lines += [f"  {u}" for u in result["unreadable"][:10]]
        if len(result["unreadable"]) > 10:
            lines.append(f"  ... and {len(result['unreadable']) - 10} more")
    return "\n".join(lines)
