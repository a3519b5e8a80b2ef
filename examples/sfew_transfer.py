"""Transfer check of a pyfer model on SFEW 2.0 (train split, 860 aligned film faces).

    python examples/sfew_transfer.py [--weights W.safetensors] [--data ../shared/data/sfew_train]
                                     [--margins 0 0.1] [--limit N]

Reports, over the 8 FERPlus classes (SFEW has no contempt; its manifest already uses pyfer's names):
- classify: accuracy of ``Recognizer.classify`` on the dataset's aligned crops as given (and on
  their centred square);
- predict: accuracy of ``Recognizer.predict`` with the Haar detector (the largest face; an image
  without a detection counts as wrong), and the detection rate;
- the same Haar boxes re-cropped (``pyfer.detect.crop_face``) with each margin in ``--margins``,
  with and without Haar eye levelling (``EyeAligner``), on the images as given and rotated by up
  to ``--roll`` degrees: how the Haar path's margin and alignment choice were measured.

The current default front end (YuNet, landmark alignment) is measured by
``scripts/eval_frontend.py`` (docs/recognizer.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
try:
    import pyfer  # noqa: F401
except ImportError:  # run from a source checkout (in-place build) without installing
    import sys

    sys.path.insert(0, str(REPO))


def roll(img: np.ndarray, angle: float) -> np.ndarray:
    """Pad by 30% (edge-replicated) and rotate about the centre: a tilted head with context."""
    import cv2

    p = int(0.3 * min(img.shape[:2]))
    img = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def main(argv=None) -> dict:
    import pyfer
    from pyfer.detect import DEFAULT_MARGIN, EyeAligner, crop_face
    from pyfer.preprocess import to_gray
    from pyfer.recognizer import load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="default: the shipped student")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sfew_train"))
    ap.add_argument("--margins", type=float, nargs="*", default=[-0.05, 0.0, 0.05, 0.1, 0.2])
    ap.add_argument("--limit", type=int, default=0, help="use every k-th image so that about N are used")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--roll", type=float, default=20.0, help="max random rotation (degrees) for the rolled sweep")
    args = ap.parse_args(argv)

    root = Path(args.data)
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    if args.limit and args.limit < len(rows):
        rows = rows[:: max(1, len(rows) // args.limit)][: args.limit]
    rec = pyfer.Recognizer(args.weights, threads=args.threads, detector="haar")
    names = list(rec.class_names)
    y = np.array([names.index(r["label"]) for r in rows])
    images = [load_image(root / r["path"]) for r in rows]
    n = len(rows)

    def acc(pred: np.ndarray) -> float:
        return float((pred == y).mean())

    res: dict = {"images": n, "weights": str(rec.weights_path)}
    res["classify_acc"] = acc(rec.classify(images).argmax(1))
    # the crops are 143x181: also without squashing, the centred 143x143 square
    sq = [im[(im.shape[0] - im.shape[1]) // 2:][: im.shape[1]] for im in images]
    res["classify_acc_square"] = acc(rec.classify(sq).argmax(1))

    # predict with detection (defaults), remembering each image's surest box for the sweeps
    t = time.perf_counter()
    faces = rec.predict_batch(images)
    res["predict_s_per_image"] = (time.perf_counter() - t) / n
    found = np.array([bool(f) for f in faces])
    pred = np.array([names.index(f[0].label) if f else -1 for f in faces])
    res["detection_rate"] = float(found.mean())
    res["predict_acc"] = acc(pred)
    res["predict_acc_detected"] = float((pred == y)[found].mean()) if found.any() else 0.0
    res["defaults"] = {"detector": "haar", "margin": DEFAULT_MARGIN, "align": False}

    # sweeps over the detected boxes only (same images for every setting); "rolled": every image
    # first rotated by a random angle in [-roll, roll] degrees (SFEW faces are already levelled,
    # so this is where eye alignment can show what it does)
    rng = np.random.default_rng(0)
    rolled = [roll(img, a) for img, a in zip(images, rng.uniform(-args.roll, args.roll, n))]
    aligner = EyeAligner()
    for name, imgs in (("as_given", images), ("rolled", rolled)):
        grays = [to_gray(img) for img in imgs]
        boxes = [rec.detect(img)[:1] for img in imgs]  # the largest Haar box
        idx = [i for i in range(n) if boxes[i]]
        sweep = {"images": len(idx)}
        for align in (False, True):
            angles = {i: aligner.angle(grays[i], boxes[i][0][0]) if align else 0.0 for i in idx}
            for m in (args.margins if name == "as_given" else [DEFAULT_MARGIN]):
                crops = [crop_face(grays[i], boxes[i][0][0], m, angles[i]) for i in idx]
                p = rec.classify(crops).argmax(1)
                sweep[f"margin={m:+.2f} align={align}"] = float((p == y[idx]).mean())
        res[f"sweep_acc_on_detected_{name}"] = sweep
    # per-class recall of predict (all images)
    res["predict_recall_per_class"] = {names[c]: float((pred[y == c] == c).mean()) for c in np.unique(y)}
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
