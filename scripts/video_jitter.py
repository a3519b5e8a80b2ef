"""How much a video's face boxes shake, how far they lag a moving face, and how often a face is
missed, with and without the tracker's box filter (pyfer.video.IoUTracker, a 1€ filter).

    python scripts/video_jitter.py [--sfew ../shared/data/sfew_train] [--faces 40] [--frames 90]
                                   [--sweep] [--plot results/video_jitter/boxes.png]

Clips: SFEW film faces (shuffled with seed 0), each pasted at 120-200 px wide into a 640x480
frame of smooth random texture, filmed at 30 frames/s for --frames frames with sensor noise
(sigma 3 gray levels) and JPEG at quality 80 per frame, in two motions: *still* (the face does not
move: whatever the box does is the detector's wobble) and *moving* (side to side, 0.3 face widths
each way at 0.5 Hz, sub-pixel: a head turning to look around). The detector runs once per frame
(``Recognizer.predict``, real YuNet); the trackers are then replayed on the same detections.

Per clip, the box centre's error against the true motion (after removing the clip's median offset,
so a detector's constant framing does not count) and the box width's log are measured:
- *jitter*: RMS of the error's frame-to-frame change, % of the face width (what the eye sees
  shake; the width's changes likewise, in %);
- *error*: RMS of the error itself, % of the face width (lag counts here).
Medians over clips. ``--sweep`` also tries other filter settings.
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pyfer.atomic import save_figure
from pyfer import Recognizer
from pyfer.video import IoUTracker

REPO = Path(__file__).resolve().parents[1]
FPS = 30.0
SIZE = (640, 480)


def texture(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour background (a room out of focus): no face-like structure."""
    small = rng.integers(40, 220, (6, 8, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC), (0, 0), 8)


def patch(face: np.ndarray, width: int) -> np.ndarray:
    """``face`` at ``width`` px with a 25% edge-replicated surround (a head with some context)."""
    h = round(face.shape[0] * width / face.shape[1])
    pad = width // 4
    return cv2.copyMakeBorder(cv2.resize(face, (width, h), interpolation=cv2.INTER_AREA), pad, pad, pad, pad,
                              cv2.BORDER_REPLICATE)


def scene(face: np.ndarray, width: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """The frame at rest: ``face`` at ``width`` px in its surround, centred a bit off the middle;
    returns it and the face's centre."""
    canvas = texture(rng)
    p = patch(face, width)
    h = p.shape[0] - 2 * (width // 4)
    x = int((SIZE[0] - width) / 2 + rng.integers(-40, 41))
    y = int((SIZE[1] - h) / 2 + rng.integers(-30, 31))
    pad = width // 4
    canvas[y - pad:y - pad + p.shape[0], x - pad:x - pad + p.shape[1]] = p  # (inside the frame up to 200 px)
    return canvas, (x + width / 2, y + h / 2)


def noisy_jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's frame of ``img``: sensor noise (sigma 3 gray levels), then JPEG at quality 80."""
    noisy = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_COLOR)


def offset(motion: str, i: int, width: int) -> float:
    """The face's sideways displacement in frame ``i`` (px)."""
    return 0.0 if motion == "still" else 0.3 * width * np.sin(2 * np.pi * 0.5 * i / FPS)


def shifted(base: np.ndarray, dx: float) -> np.ndarray:
    """``base`` moved ``dx`` px sideways (sub-pixel), edges reflected."""
    return cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, 0]]), SIZE, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def frame(base: np.ndarray, dx: float, rng: np.random.Generator) -> np.ndarray:
    return noisy_jpeg(shifted(base, dx), rng)


def detect_clip(rec: Recognizer, face: np.ndarray, width: int, motion: str, frames: int, seed: int):
    """Per frame: the faces predict finds, and the true centre of the pasted face."""
    rng = np.random.default_rng(seed)
    base, (cx, cy) = scene(face, width, rng)
    out = []
    for i in range(frames):
        dx = offset(motion, i, width)
        out.append((rec.predict(frame(base, dx, rng)), (cx + dx, cy)))
    return out


def replay(detections, tracker: IoUTracker, width: int) -> dict:
    """Run ``tracker`` over one clip's detections; the clip's jitter and error (see the module)."""
    centres, truths, widths, points, missed = [], [], [], [], 0
    for i, (faces, truth) in enumerate(detections):
        tracked = tracker.update(faces, i / FPS)
        near = [f for _, f in tracked if abs(f.box[0] + f.box[2] / 2 - truth[0]) < width / 2]
        if not near:
            missed += 1
            continue
        x, y, w, h = near[0].box
        centres.append((x + w / 2, y + h / 2))
        truths.append(truth)
        widths.append(w)
        points.append(np.array(near[0].landmarks or [(np.nan, np.nan)] * 5) - np.array(truth))
    if len(centres) < 10:
        return {"missed": missed / len(detections)}
    err = np.array(centres) - np.array(truths)
    err -= np.median(err, axis=0)
    step = np.diff(err, axis=0)
    point_step = np.diff(np.array(points), axis=0)  # (against the true motion, like the centre)
    return {"jitter": 100 * float(np.sqrt((step ** 2).sum(1).mean())) / width,
            "size_jitter": 100 * float(np.sqrt((np.diff(np.log(widths)) ** 2).mean())),
            "landmark_jitter": 100 * float(np.sqrt((point_step ** 2).sum(2).mean())) / width,
            "error": 100 * float(np.sqrt((err ** 2).sum(1).mean())) / width,
            "missed": missed / len(detections)}


def sfew_paths(sfew: Path) -> list[Path]:
    """The SFEW images, shuffled with seed 0 (exits with a message if the set is not there)."""
    manifest = sfew / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"no SFEW manifest at {manifest} (--sfew)")
    with open(manifest, newline="") as fh:
        paths = [sfew / r["path"] for r in csv.DictReader(fh)]
    random.Random(0).shuffle(paths)
    return paths


def settings(sweep: bool) -> dict:
    default = IoUTracker()
    out = {"detector's boxes (--no-smoothing)": dict(smooth_geometry=False),
           f"1€ min_cutoff {default.min_cutoff:g}, beta {default.beta:g} (default)": {}}
    if sweep:
        for mc in (0.1, 0.3, 1.0):
            for beta in (1.0, 3.0, 10.0, 30.0):
                out[f"1€ min_cutoff {mc:g}, beta {beta:g}"] = dict(min_cutoff=mc, beta=beta)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sfew", type=Path, default=REPO.parent / "shared" / "data" / "sfew_train")
    ap.add_argument("--faces", type=int, default=40)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--sweep", action="store_true", help="also try a grid of filter settings")
    ap.add_argument("--plot", type=Path, help="PNG: a still and a moving clip's box centre, raw and filtered")
    args = ap.parse_args(argv)
    paths = sfew_paths(args.sfew)
    rec = Recognizer(threads=1)
    cv2.setNumThreads(1)
    clips = []  # (motion, width, detections)
    for k, path in enumerate(tqdm(paths[:args.faces], desc="clips", unit="face")):
        face = cv2.imread(str(path), cv2.IMREAD_COLOR)
        width = 120 + 80 * k // max(1, args.faces - 1)
        for motion in ("still", "moving"):
            clips.append((motion, width, detect_clip(rec, face, width, motion, args.frames, seed=k)))
    print(f"{args.faces} SFEW faces, {args.frames} frames each at {FPS:g} frames/s; medians over clips "
          "(jitter and error in % of the face width)\n")
    print("| boxes | still: jitter | still: size jitter | still: landmark jitter | moving: jitter | "
          "moving: landmark jitter | moving: error | frames missed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw in settings(args.sweep).items():
        rows = {m: [replay(d, IoUTracker(**kw), w) for mm, w, d in clips if mm == m] for m in ("still", "moving")}

        def med(m, key):
            return float(np.median([r[key] for r in rows[m] if key in r]))

        missed = np.mean([r["missed"] for m in rows for r in rows[m]])
        print(f"| {name} | {med('still', 'jitter'):.2f} | {med('still', 'size_jitter'):.2f} | "
              f"{med('still', 'landmark_jitter'):.2f} | {med('moving', 'jitter'):.2f} | "
              f"{med('moving', 'landmark_jitter'):.2f} | {med('moving', 'error'):.2f} | {100 * missed:.2f}% |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        for ax, motion in zip(axes, ("still", "moving")):
            _, width, det = next(c for c in clips if c[0] == motion)
            t = np.arange(len(det)) / FPS
            ax.plot(t, [tr[0] for _, tr in det], "k--", lw=1, label="true centre")
            for name, kw in settings(False).items():
                tracker = IoUTracker(**kw)
                xs = []
                for i, (faces, _) in enumerate(det):
                    tracked = tracker.update(faces, i / FPS)
                    xs.append(tracked[0][1].box[0] + tracked[0][1].box[2] / 2 if tracked else np.nan)
                ax.plot(t, xs, lw=1, label=name)
            ax.set_xlabel("seconds")
            ax.set_ylabel("box centre x (px)")
            ax.set_title(f"a {width} px face, {motion}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, args.plot, dpi=110)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
