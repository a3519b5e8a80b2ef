"""How well a Recognizer reads your own labelled faces (``pyfer evaluate``).

Labelled images come as a folder with one subfolder per expression (``happy/``, ``angry/``, ...)
or as a CSV file with ``path`` and ``label`` columns, paths relative to the CSV's folder. Labels
are pyfer's class names or their common forms (``happy``, ``angry``, ``sad``, ``surprised``,
``scared``, ...). Every image goes through ``Recognizer.predict`` as an application runs it: the
first face (the largest, sure faces first) is the answer, and an image where no face is found counts as wrong
(the "no face" column of the confusion matrix).

Metrics are computed here with numpy, not scikit-learn, which the wheel does not depend on;
tests/test_evaluate_cli.py checks them against scikit-learn's. The training tools read manifests
and label names through this module too (training/data.py), and score epochs with
:func:`label_metrics`.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from pyfer.files import image_files, without_annotated_copies

NO_FACE = "no face"
# common names of the expressions -> pyfer's class names (FERPlus's)
LABEL_SYNONYMS = {
    "angry": "anger", "mad": "anger",
    "contemptuous": "contempt",
    "disgusted": "disgust",
    "afraid": "fear", "fearful": "fear", "scared": "fear",
    "happy": "happiness", "joy": "happiness", "smile": "happiness", "smiling": "happiness",
    "calm": "neutral", "neutrality": "neutral",
    "sad": "sadness",
    "surprised": "surprise",
}


def class_of(label: str, class_names: Sequence[str]) -> Optional[int]:
    """The index in ``class_names`` that ``label`` names (case and spaces allowed; a model's own
    class name before a common name), or None."""
    key = label.strip().lower().replace(" ", "_")
    lowered = [c.lower() for c in class_names]
    for name in (key, LABEL_SYNONYMS.get(key)):
        if name in lowered:
            return lowered.index(name)
    return None


def labelled_images(source: str | Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    """(image path, class index) of a class-per-subfolder folder (the images ``pyfer predict -r``
    would read in each: annotated copies pyfer wrote left out) or a ``path,label`` CSV file. ValueError, naming them, for labels that are
    no class of the model."""
    source = Path(source)
    if source.is_dir():  # hidden folders (.git) skipped; a zip's __MACOSX holds only hidden ._ files
        raw = [(p, sub.name) for sub in sorted(source.iterdir()) if sub.is_dir() and not sub.name.startswith(".")
               for p in without_annotated_copies(image_files(sub, recursive=True))[0]]
        if not raw:
            raise ValueError(f"{source} has no images in class subfolders (expected e.g. {source}/happy/1.jpg)")
    elif source.is_file():
        raw = [(path, label) for path, label, _ in read_labels_csv(source)]
    else:
        raise FileNotFoundError(f"no folder or CSV file at {source}")
    classes = {label: class_of(label, class_names) for label in {label for _, label in raw}}
    unknown = sorted(label for label, c in classes.items() if c is None)
    if unknown:
        raise ValueError(f"{source}: labels {unknown} are none of the model's classes {list(class_names)} "
                         f"(or their common names: {', '.join(sorted(LABEL_SYNONYMS))})")
    return [(path, index) for path, label in raw if (index := classes[label]) is not None]


def read_labels_csv(source: Path, root: Optional[Path] = None) -> list[tuple[Path, str, int]]:
    """(path, label, line number) of each row of a UTF-8 CSV whose header has ``path`` and
    ``label`` columns (any order and case); paths relative to ``root`` (default: the CSV's
    folder). ValueError naming the file and line."""
    root = source.parent if root is None else root
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise ValueError(f"{source}:1: expected a 'path,label' header (any order, any case), "
                                 f"got {header or 'none'}")
            at_path, at_label = header.index("path"), header.index("label")
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                if len(row) <= max(at_path, at_label) or not row[at_label].strip():
                    raise ValueError(f"{source}:{reader.line_num}: no label")
                rows.append((root / row[at_path], row[at_label], reader.line_num))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source} is not a UTF-8 CSV file ({exc.reason} at byte {exc.start}); "
                         "save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise ValueError(f"{source}:{reader.line_num}: {exc}") from None
    if not rows:
        raise ValueError(f"{source} lists no images")
    return rows


def spread(items: Sequence, n: int) -> list:
    """``n`` of ``items`` at evenly spaced positions, first and last included (all of them when
    there are no more than ``n``): a sample that keeps every class of a list sorted by class."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
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
        "per_class_recall": recall,
        "confusion": {"rows": [class_names[c] for c in present], "columns": list(class_names) + [NO_FACE],
                      "counts": confusion[present].tolist()},
    }


def _class_index(label, class_names: Sequence[str]) -> int:
    """A label of ``evaluate``'s items as a class index: an index, or a name ``class_of`` knows."""
    if isinstance(label, str):
        index = class_of(label, class_names)
        if index is None:
            raise ValueError(f"label {label!r} is no class of the model ({', '.join(class_names)})")
        return index
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < len(class_names):
        return int(label)
    raise ValueError(f"label {label!r} is neither a class name nor a class index 0-{len(class_names) - 1}")


def evaluate(rec, items: Sequence[tuple[Path, int | str]], transform: Optional[Callable] = None,
             progress: bool = True, desc: str = "evaluate") -> dict:
    """Run ``rec.predict`` on every image of ``items`` ((path, class index or name), as from
    :func:`labelled_images`) and score the first face. ``transform(path)`` may give the image to
    run instead of the path (scripts/eval_frontend.py rotates faces or sets them in large photos).
    Unreadable images are listed under ``"unreadable"`` and left out of the scores; ``"per_image"``
    holds each scored image's path, label, answer ("no face" when none) and its confidence."""
    from tqdm import tqdm

    from pyfer.recognizer import image_errors

    names = list(rec.class_names)
    items = [(path, _class_index(label, names)) for path, label in items]
    if not items:
        raise ValueError("no images to evaluate")
    y_true, y_pred, y_surest, unreadable, per_image = [], [], [], [], []
    stage: dict[str, list] = {}
    several = 0
    t0 = time.perf_counter()
    for path, label in tqdm(items, desc=desc, unit="img", mininterval=2.0, disable=not progress):
        try:
            faces = rec.predict(transform(path) if transform else path)
        except image_errors() as exc:  # missing, unreadable or not an image: as predict reports them
            unreadable.append(f"{path}: {exc}")
            continue
        for k, v in rec.last_timings.items():
            stage.setdefault(k, []).append(v)
        y_true.append(label)
        several += len(faces) > 1
        if faces:  # predict's first face; the face of highest detection score, for comparison
            surest = max(faces, key=lambda f: f.detection_score or 0.0)
            y_pred.append(names.index(faces[0].label))
            y_surest.append(names.index(surest.label))
        else:
            y_pred.append(-1)
            y_surest.append(-1)
        per_image.append({"path": str(path), "label": names[label], "predicted": faces[0].label if faces else NO_FACE,
                          "confidence": round(faces[0].confidence, 6) if faces else None, "faces": len(faces)})
    if not y_true:
        raise ValueError(f"none of the {len(items)} images could be read (first: {unreadable[0]})")
    truth, predicted, surest_predicted = np.array(y_true), np.array(y_pred), np.array(y_surest)
    found = predicted >= 0
    return {"images": len(truth), "detected": int(found.sum()), "detection_rate": float(found.mean()),
            **label_metrics(truth, predicted, names),
            "accuracy_detected": float(np.mean(truth[found] == predicted[found])) if found.any() else None,
            "several_faces": int(several),
            "accuracy_surest_face": float(np.mean(truth == surest_predicted)),
            "median_ms": {k: float(np.median(v)) * 1e3 for k, v in stage.items()},
            "seconds": time.perf_counter() - t0,
            "unreadable": unreadable,
            "per_image": per_image}


def plot_confusion(counts, row_names: Sequence[str], column_names: Sequence[str], path: str | Path,
                   title: str = "") -> None:
    """The confusion matrix drawn into ``path`` (PNG, PDF or SVG by its suffix), each row
    normalised (its recall on the diagonal), counts under the shares and each row's count by its
    name (a share of 7 images is not one of 1,000). Needs matplotlib (the ``train`` extra, or
    ``pip install matplotlib``); leaves pyplot and the caller's backend alone."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pyfer.atomic import save_figure

    cm = np.asarray(counts, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(2.2 + 0.7 * len(column_names), 1.8 + 0.6 * len(row_names)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cmap = colormaps["Blues"]  # (light to dark: it reads in greyscale too)
    im = ax.imshow(norm, cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(len(column_names)), column_names, rotation=45, ha="right")
    ax.set_yticks(range(len(row_names)), [f"{n} (n={int(k)})" for n, k in zip(row_names, cm.sum(1))])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(row_names)):
        for j in range(len(column_names)):
            r, g, b, _ = cmap(norm[i, j])  # white text where the cell is dark enough for it
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    if column_names and column_names[-1] == NO_FACE:  # (images without a face: set apart)
        ax.axvline(len(column_names) - 1.5, color="black", linewidth=1)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    diagonal = list(row_names) == list(column_names[:len(row_names)])  # (rows: only the classes present)
    bar.set_label("share of the true class" + (" (recall on the diagonal)" if diagonal else ""), fontsize=8)
    ax.set_title(title or "confusion matrix (row-normalised)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=130, bbox_inches="tight")  # whole or not at all, as every replaced output


def report(result: dict) -> str:
    """``evaluate``'s result as text: the headline numbers, per-class recall and the confusion
    matrix (the unreadable images are the caller's to report)."""
    n, found = result["images"], result["detected"]
    lines = [f"{n} images, a face found in {found} ({found / n:.1%})",
             f"accuracy {result['accuracy']:.1%} (an image without a face counts as wrong)"
             + (f"; {result['accuracy_detected']:.1%} on the {found} with a face" if found else ""),
             f"macro recall {result['macro_recall']:.1%} over {len(result['per_class_recall'])} classes", ""]
    conf = result["confusion"]
    cols = conf["columns"]
    corner = "true \\ predicted"
    width = max(len(c) for c in conf["rows"] + [corner]) + 1
    col = max(len(c) for c in cols) + 2  # whole names: "happiness_mild" beside "happiness_extreme"
    lines.append(corner.ljust(width) + "".join(c.rjust(col) for c in cols) + "recall".rjust(col))
    for name, row in zip(conf["rows"], conf["counts"]):
        lines.append(name.ljust(width) + "".join(str(v).rjust(col) for v in row)
                     + f"{result['per_class_recall'][name]:.1%}".rjust(col))
    if result["unreadable"]:
        lines += ["", f"{len(result['unreadable'])} image(s) could not be read and are left out"]
    return "\n".join(lines)
