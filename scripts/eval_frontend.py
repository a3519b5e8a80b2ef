"""Measure the front end through ``Recognizer.predict``: detection rate, accuracy and macro recall
on FERPlus valid (majority protocol, 3,191 images) and SFEW train (860 film faces), per detector
and face framing, plus detection on the group photos of ``scripts/group_photos.py``.

    python scripts/eval_frontend.py                      # all configurations, all images
    python scripts/eval_frontend.py --limit 300 --configs yunet-align haar-crop
    python scripts/eval_frontend.py --json results.json  # also write the numbers as JSON

Each image goes through ``predict`` from its file, as a user's would (decode included). The face
taken is the first one returned (the largest, sure faces first); an image without a face counts as wrong for the
accuracy over all images and as the extra class "no face" for macro recall (the mean over the
data set's classes of the share of each class predicted right). Accuracy on the detected images
is given too. Configurations:

- ``yunet-align``: YuNet, faces aligned on their five landmarks (``FaceFraming`` mode "align");
- ``yunet-box``: YuNet, the box framing (mode "box", no rotation);
- ``haar-crop``: the Haar cascade and its square crop with a 0.05 margin (the pre-YuNet default);
- ``yunet-gray-align``: as ``yunet-align``, but YuNet sees the gray image (three equal channels),
  as it would if photos were decoded straight to gray to save the colour decode (docs/recognizer.md);
- ``yunet-align-noflip``: as ``yunet-align`` without the mirror image's logits (``flip=False``),
  which halves the expression engine's work;
- ``yunet-align-shift0`` / ``yunet-align-shift1``: as ``yunet-align`` with ``prior_shift`` 0 (the
  rare classes favoured) or 1 (the training prior kept in full) instead of the weights' own.

The framing parameters are the weights' own (metadata "framing"; ``FaceFraming()`` if absent).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from pyfer.atomic import write_file
from pyfer.bench import cpu_name
from pyfer.evaluate import spread

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
DATA = REPO.parent / "shared" / "data"

class LazyYuNet:
    """A YuNetDetector with these settings, loaded on first use; ``gray``: run on the image's gray
    version."""

    threads = 1  # YuNet's on the engine: set by main to --threads, as the Recognizer's

    def __init__(self, gray: bool = False, **settings):
        self.gray, self.settings, self._yunet = gray, settings, None

    def __call__(self, image):
        from pyfer.preprocess import to_gray
        from pyfer.yunet import YuNetDetector, default_backend

        if self._yunet is None:
            threads = self.threads if default_backend() == "engine" else None
            self._yunet = YuNetDetector(**self.settings, threads=threads)
        return self._yunet(to_gray(image) if self.gray else image)


CONFIGS = {
    "yunet-align": dict(detector="yunet", framing="align"),
    "yunet-box": dict(detector="yunet", framing="box"),
    "yunet-align-noflip": dict(detector="yunet", framing="align", flip=False),
    "yunet-align-shift0": dict(detector="yunet", framing="align", prior_shift=0.0),
    "yunet-align-shift1": dict(detector="yunet", framing="align", prior_shift=1.0),
    "haar-crop": dict(detector="haar"),
    "yunet-gray-align": dict(detector=LazyYuNet(gray=True), framing="align"),
    "yunet-tilted-align": dict(detector="yunet-tilted", framing="align"),
    # no turned pass (small images): what it buys
    "yunet-upright-align": dict(detector=LazyYuNet(rotations=()), framing="align"),
}


def ferplus_items(root: Path, limit: int | None) -> list[tuple[str, int]]:
    from training.data import FERPLUS_SPLITS, majority_protocol, read_ferplus_labels

    folder = root / FERPLUS_SPLITS["valid"]
    names, votes = read_ferplus_labels(folder / "label.csv")
    keep, labels, _ = majority_protocol(votes)
    items = [(str(folder / names[i]), int(labels[i])) for i in np.flatnonzero(keep)]
    return spread(items, limit) if limit else items


def sfew_items(root: Path, limit: int | None) -> list[tuple[Path, int]]:
    from pyfer.evaluate import labelled_images
    from pyfer.preprocess import EMOTIONS

    items = labelled_images(root / "manifest.csv", EMOTIONS)
    return spread(items, limit) if limit else items  # evenly: the manifest is sorted by class


def rotated(path: str, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """The image turned by a random angle in [-max_deg, max_deg] about its centre, edges
    replicated (a head rolled in the frame)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-max_deg, max_deg)), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def in_photo(img: np.ndarray, width: int, canvas: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The face crop enlarged to ``width`` px and blended (feathered oval) into a textured
    ``canvas`` (w, h) photo at a random place: a face of a big photo, where the detector's
    turned pass for small images does not run."""
    import cv2

    import group_photos

    cw, ch = canvas
    if width >= cw or width * img.shape[0] / img.shape[1] >= ch:
        raise SystemExit(f"--face-px {width} does not fit a {cw}x{ch} --canvas")
    photo = group_photos.background(ch, cw, rng)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[:, :, :3]
    patch = cv2.resize(bgr, (width, int(round(width * bgr.shape[0] / bgr.shape[1]))), interpolation=cv2.INTER_CUBIC)
    x = int(rng.integers(0, cw - patch.shape[1]))
    y = int(rng.integers(0, ch - patch.shape[0]))
    group_photos.blend(photo, patch, x, y)
    return photo


def evaluate_set(rec, items: list[tuple[str | Path, int]], desc: str, rotate: float = 0.0,
                 canvas: tuple[int, int] | None = None, face_px: int = 150) -> dict:
    """``pyfer.evaluate.evaluate`` (what ``pyfer evaluate`` runs), each face first rolled by up to
    ``rotate`` degrees and/or set into a ``canvas``-sized photo. Unreadable images are named on
    stderr."""
    import cv2

    from pyfer.evaluate import evaluate

    rng = np.random.default_rng(0)  # the same angles for every configuration

    def transform(path):
        image = rotated(path, rotate, rng) if rotate else path
        if canvas:
            img = image if rotate else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            image = in_photo(img, face_px, canvas, rng)
        return image

    result = evaluate(rec, items, transform if rotate or canvas else None, desc=desc)
    for why in result["unreadable"]:
        print(f"unreadable: {why}", file=sys.stderr)
    del result["per_image"]  # thousands of rows; the aggregates are what this script compares
    return result


def group_detection(rec) -> dict:
    import group_photos

    out: dict = {}
    for p in group_photos.build():
        faces = rec.predict(p.image)
        hit, extra = group_photos.match(p.faces, [f.box for f in faces])
        kind = p.name.rsplit("_", 1)[0] if p.name[-1].isdigit() else p.name
        g = out.setdefault(kind, {"faces": 0, "found": 0, "false_faces": 0, "missed": []})
        g["faces"] += len(hit)
        g["found"] += sum(hit)
        g["false_faces"] += extra
        g["missed"] += [f"{p.name}:{src}:{w}px" for ok, src, (_, _, w, _) in zip(hit, p.sources, p.faces) if not ok]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights file (default: the shipped student)")
    ap.add_argument("--configs", nargs="+", default=["yunet-align", "yunet-box", "haar-crop"], choices=list(CONFIGS))
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per data set")
    ap.add_argument("--no-groups", action="store_true", help="skip the group photos")
    ap.add_argument("--threads", type=int, default=1, help="threads of the engine, of YuNet on it and of OpenCV (default 1)")
    ap.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                    help="turn each image by a random angle in [-DEG, DEG] first (seeded; tests framing under roll)")
    ap.add_argument("--canvas", type=lambda v: tuple(int(x) for x in v.lower().split("x")), metavar="WxH",
                    help="blend each face (after --rotate), enlarged to --face-px wide, into a textured photo "
                         "of this size at a random place (a face of a big photo)")
    ap.add_argument("--face-px", type=int, default=150, help="the face's width in the --canvas photo (default 150)")
    ap.add_argument("--datasets", nargs="+", default=["ferplus_valid", "sfew_train"],
                    choices=["ferplus_valid", "sfew_train"])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import cv2

    import pyfer

    cv2.setNumThreads(args.threads)
    LazyYuNet.threads = args.threads
    fer = ferplus_items(DATA / "ferplus", args.limit)
    sfew = sfew_items(DATA / "sfew_train", args.limit)
    results: dict = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads, "rotate": args.rotate,
                     "canvas": args.canvas, "face_px": args.face_px if args.canvas else None,
                     "loadavg_start": round(os.getloadavg()[0], 2), "configs": {}}
    for name in args.configs:
        rec = pyfer.Recognizer(args.weights, threads=args.threads, **CONFIGS[name])
        r = {"framing": rec.framing.to_dict() if CONFIGS[name].get("framing") else {"margin": 0.05}}
        for ds, items in (("ferplus_valid", fer), ("sfew_train", sfew)):
            if ds in args.datasets:
                r[ds] = evaluate_set(rec, items, f"{name} {ds}", args.rotate, args.canvas, args.face_px)
        if not args.no_groups:
            r["group_photos"] = group_detection(rec)
        results["configs"][name] = r
        print(f"{name}: " + json.dumps({k: {m: round(v[m], 4) for m in ("detection_rate", "accuracy", "macro_recall")}
                                        for k, v in r.items() if k in ("ferplus_valid", "sfew_train")}),
              file=sys.stderr)
    results["loadavg_end"] = round(os.getloadavg()[0], 2)
    results["weights"] = str(rec.weights_path)

    print(f"\nCPU: {results['cpu']} ({results['cores']} cores), {args.threads} thread(s); rotate {args.rotate}; canvas {args.canvas}; "
          f"load average {results['loadavg_start']} -> {results['loadavg_end']}\n")
    print("| configuration | data set | detected | accuracy (all) | accuracy (detected) | macro recall "
          "| median ms: decode / detect / align / engine |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["configs"].items():
        for ds in args.datasets:
            m = r[ds]
            ms = " / ".join(f"{m['median_ms'][k]:.2f}" for k in ("decode", "detect", "align", "engine"))
            print(f"| {name} | {ds} ({m['images']}) | {m['detection_rate']:.2%} ({m['detected']}) "
                  f"| {m['accuracy']:.2%} | {m['accuracy_detected']:.2%} | {m['macro_recall']:.2%} | {ms} |")
    if not args.no_groups:
        print("\n| configuration | group photos | faces found | false faces | missed |")
        print("|---|---|---|---|---|")
        for name, r in results["configs"].items():
            for kind, g in r["group_photos"].items():
                print(f"| {name} | {kind} | {g['found']}/{g['faces']} | {g['false_faces']} | "
                      f"{', '.join(g['missed']) or '-'} |")
    if args.json:
        write_file(Path(args.json), json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
