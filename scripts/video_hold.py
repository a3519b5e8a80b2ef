"""What the annotated video shows while the detector misses a face: the tracker's held boxes
(pyfer.video.IoUTracker.held, ``hold_seconds``) against none.

    python scripts/video_hold.py [--sfew ../shared/data/sfew_train] [--faces 40]

Clips as in scripts/video_jitter.py (SFEW film faces 120-200 px wide in 640x480 frames of smooth
texture, 30 frames/s, sensor noise and JPEG per frame), the face moving side to side (0.3 face
widths each way at 0.5 Hz), 90 frames. A hand (a flat block 1.2 times the face's size, of the
face's mean colour, or with ``--hand light`` a light skin tone) hides the face for 2 frames from
frame 20, 4 from frame 40 and 8 from frame 60, and for good from frame 80 (the person turned away
or left). The detector runs once per frame (``Recognizer.predict``,
real YuNet); the trackers are replayed on the same detections, with scene cuts looked for and
acted on as ``process_video`` does. Per setting:
- *hidden, boxed*: of the frames where the hand hides the face, by how long it has been hidden,
  the share with a box drawn over the face (found or held);
- *box error*: the median distance of those boxes' centres from the face's true centre (after the
  clip's median detector offset), % of the face width;
- *shown faces missed*: visible frames with no box over the face (the detector's own misses);
- *boxes after it left*: frames with a box in the 10 frames after the face is gone for good.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from video_jitter import FPS, SIZE, noisy_jpeg, offset, scene, sfew_paths, shifted  # (the same clips: scripts/)

from pyfer import Recognizer
from pyfer.video import IoUTracker, is_scene_cut, scene_thumbnail

REPO = Path(__file__).resolve().parents[1]
FRAMES = 90
HIDDEN = [(20, 2), (40, 4), (60, 8)]  # (first frame, frames) the hand hides the face
GONE = 80  # from here on the face is hidden for good
LIGHT_SKIN = (120, 150, 200)  # BGR


def hidden_for(i: int) -> int:
    """How many frames the face has been hidden in frame ``i`` (1 = the first; 0 = visible)."""
    for start, n in HIDDEN:
        if start <= i < start + n:
            return i - start + 1
    return i - GONE + 1 if i >= GONE else 0


def clip(rec: Recognizer, face: np.ndarray, width: int, seed: int, hand: str):
    """Per frame: (faces predict finds, the face's true centre, its thumbnail for scene cuts)."""
    rng = np.random.default_rng(seed)
    base, (cx, cy) = scene(face, width, rng)
    height = face.shape[0] * width / face.shape[1]
    out = []
    for i in range(FRAMES):
        dx = offset("moving", i, width)
        img = shifted(base, dx)
        if hidden_for(i):  # a hand, a bit larger than the face
            x0, y0 = int(cx + dx - 0.6 * width), int(cy - 0.6 * height)
            x1, y1 = x0 + int(1.2 * width), y0 + int(1.2 * height)
            skin = img[max(0, y0):y1, max(0, x0):x1].reshape(-1, 3).mean(0) if hand == "mean" else LIGHT_SKIN
            cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(c) for c in skin), -1)
        img = noisy_jpeg(img, rng)
        out.append((rec.predict(img), (cx + dx, cy), scene_thumbnail(img)))
    return out


def replay(detections, tracker: IoUTracker, width: int) -> dict:
    """Run ``tracker`` over one clip as process_video does (scene cuts reset it); per frame, the
    centre of the box drawn over the face (found or held), or None."""
    drawn, cuts, thumb = [], 0, None
    for i, (faces, truth, now) in enumerate(detections):
        if thumb is not None and is_scene_cut(thumb, now):
            cuts += 1
            tracker.reset()
        thumb = now
        shown = tracker.update(faces, i / FPS) + tracker.held((SIZE[1], SIZE[0], 3))
        near = [f.box for _, f in shown if abs(f.box[0] + f.box[2] / 2 - truth[0]) < width / 2]
        drawn.append(None if not near else (near[0][0] + near[0][2] / 2, near[0][1] + near[0][3] / 2))
    seen = [np.subtract(c, t) for c, (_, t, _) in zip(drawn, detections) if c is not None]
    bias = np.median(seen, axis=0) if seen else np.zeros(2)
    error = [float(np.hypot(*(np.subtract(c, t) - bias))) / width if c is not None else None
             for c, (_, t, _) in zip(drawn, detections)]
    return {"error": error, "cuts": cuts}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sfew", type=Path, default=REPO.parent / "shared" / "data" / "sfew_train")
    ap.add_argument("--faces", type=int, default=40)
    ap.add_argument("--hand", choices=("mean", "light"), default="mean",
                    help="the hand's colour: the face's own mean (default) or a light skin tone, which on the "
                         "darker film faces is a scene cut (a new track)")
    args = ap.parse_args(argv)
    if args.faces < 1:
        ap.error("--faces must be at least 1")
    paths = sfew_paths(args.sfew)
    rec = Recognizer(threads=1)
    cv2.setNumThreads(1)
    clips = []
    for k, path in enumerate(tqdm(paths[:args.faces], desc="clips", unit="face")):
        face = cv2.imread(str(path), cv2.IMREAD_COLOR)
        width = 120 + 80 * k // max(1, args.faces - 1)
        clips.append((width, clip(rec, face, width, seed=k, hand=args.hand)))
    default = IoUTracker().hold_seconds
    settings = {"none (hold_seconds=0, --no-smoothing)": 0.0, "0.1 s": 0.1, f"{default:g} s (default)": default,
                "0.33 s": 1 / 3}
    print(f"{len(clips)} SFEW faces, {FRAMES} frames each at {FPS:g} frames/s, moving; a hand ({args.hand}) hides "
          "each face for 2, 4 and 8 frames, then for good\n")
    print("| held boxes | hidden 1-2 frames: boxed | 3-4 frames | 5-6 frames | 7-8 frames | box error (% width) | "
          "shown faces missed | boxes after it left (of 10 frames) | scene cuts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, hold in settings.items():
        runs = [replay(d, IoUTracker(hold_seconds=hold), w) for w, d in clips]
        cells = []
        for lo, hi in ((1, 2), (3, 4), (5, 6), (7, 8)):
            boxed = [e is not None for r in runs for i, e in enumerate(r["error"])
                     if i < GONE and lo <= hidden_for(i) <= hi]
            cells.append(f"{100 * np.mean(boxed):.0f}%")
        hidden_errors = [100 * e for r in runs for i, e in enumerate(r["error"])
                         if i < GONE and hidden_for(i) and e is not None]
        missed = np.mean([e is None for r in runs for i, e in enumerate(r["error"]) if not hidden_for(i)])
        after = np.mean([sum(e is not None for e in r["error"][GONE:]) for r in runs])
        error = f"{np.median(hidden_errors):.1f}" if hidden_errors else "-"
        print(f"| {name} | {' | '.join(cells)} | {error} | {100 * missed:.2f}% | {after:.1f} | "
              f"{sum(r['cuts'] for r in runs)} |")


if __name__ == "__main__":
    main()
