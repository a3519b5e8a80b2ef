"""What the annotated video's type costs in ``pyfer video``: frames per second of the whole run
(decode, detection, expressions, drawing, encoding) writing .mp4 (mp4v) against .webm (VP8, which
web browsers play), side by side in interleaved rounds.

    python scripts/video_codec_cost.py [--frames 90] [--rounds 3] [--sizes 640x480 1280x720]

The clip: examples/astronaut.png scaled to each size and moved 3 px a frame (one face), written
once as mp4v. Prints each type's median frames per second over the rounds and its ratio to .mp4.
One engine thread, as on a laptop core that the encoder shares.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from pyfer import Recognizer
from pyfer.video import process_video

REPO = Path(__file__).resolve().parents[1]
TYPES = (".mp4", ".webm")


def make_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    base = cv2.resize(cv2.imread(str(REPO / "examples" / "astronaut.png")), (size[1], size[1]))
    canvas = np.full((size[1], size[0], 3), 90, np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, size)
    for t in range(frames):
        frame = canvas.copy()
        x = min(3 * t, size[0] - size[1])
        frame[:, x:x + size[1]] = base
        writer.write(frame)
    writer.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], metavar="WxH")
    args = ap.parse_args()
    rec = Recognizer(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sizes:
            size = tuple(int(v) for v in spec.split("x"))
            clip = make_clip(Path(tmp) / f"clip{spec}.mp4", size, args.frames)  # type: ignore[arg-type]
            fps: dict[str, list[float]] = {t: [] for t in TYPES}
            for _ in range(args.rounds):
                for ext in TYPES:
                    stats = process_video(clip, rec, out=Path(tmp) / f"out{ext}", progress=False)
                    assert stats["frames"] == args.frames, stats
                    fps[ext].append(stats["fps"])
            base = statistics.median(fps[TYPES[0]])
            for ext in TYPES:
                med = statistics.median(fps[ext])
                print(f"{spec} {ext:5s} median {med:6.1f} frames/s over {args.rounds} rounds "
                      f"({', '.join(f'{v:.1f}' for v in fps[ext])}); x{med / base:.2f} of .mp4", flush=True)
    print(f"python {sys.version.split()[0]}, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
