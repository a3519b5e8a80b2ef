"""The ``pyfer`` command (also ``python -m pyfer``).

    pyfer predict IMAGE... [--json] [--out annotated.jpg]
    pyfer video SOURCE [--out annotated.mp4] [--jsonl faces.jsonl|-] [--max-frames N]
    pyfer bench ...                 (see pyfer bench --help)
    pyfer info
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped student)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (if the engine was built with CUDA)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all cores)")
    p.add_argument("--detector", default="haar", choices=["haar", "mediapipe", "none"],
                   help="face detector; 'none' treats each whole image as one face")


def _recognizer(args):
    from pyfer.recognizer import Recognizer

    return Recognizer(args.weights, device=args.device, threads=args.threads,
                      detector=None if args.detector == "none" else args.detector)


def _predict(args) -> int:
    import cv2

    from pyfer.recognizer import load_image
    from pyfer.video import draw_faces

    if args.out and len(args.images) > 1:
        raise SystemExit("pyfer predict: --out takes a single IMAGE")
    rec = _recognizer(args)
    status = 0
    for path in args.images:
        try:
            image = load_image(path)
            faces = rec.predict(image)
        except (OSError, ValueError, TypeError) as e:
            print(f"pyfer predict: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"image": str(path), "faces": [f.to_dict() for f in faces]}))
        else:
            print(f"{path}: {len(faces)} face(s)")
            for f in faces:
                top = sorted(f.scores.items(), key=lambda kv: -kv[1])[:3]
                print(f"  box={f.box} {f.label} ({f.confidence:.2f})  " + "  ".join(f"{k}={v:.2f}" for k, v in top))
            if args.verbose:
                print("  time (ms): " + "  ".join(f"{k}={v * 1e3:.1f}" for k, v in rec.last_timings.items()))
        if args.out:
            if not cv2.imwrite(str(args.out), draw_faces(image, faces)):
                raise SystemExit(f"pyfer predict: cannot write {args.out}")
            if not args.json:
                print(f"wrote {args.out}")
    return status


def _video(args) -> int:
    from pyfer.video import process_video

    if not args.out and not args.jsonl:
        raise SystemExit("pyfer video: give --out and/or --jsonl")
    rec = _recognizer(args)
    sink = None
    if args.jsonl == "-":
        sink = sys.stdout
    elif args.jsonl:
        sink = open(args.jsonl, "w")
    try:
        stats = process_video(args.source, rec, out=args.out, jsonl=sink, max_frames=args.max_frames,
                              progress=not args.no_progress)
    finally:
        if sink is not None and sink is not sys.stdout:
            sink.close()
    print(f"{stats['frames']} frames, {stats['faces']} faces in {stats['seconds']:.1f} s: {stats['fps']:.1f} fps",
          file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def info_dict(weights: Optional[str] = None) -> dict:
    import pyfer

    d: dict = {"pyfer": pyfer.__version__}
    try:
        d["build"] = pyfer.build_info()
    except Exception as e:  # engine not built: still report the rest
        d["build"] = f"unavailable: {e}"
    try:
        path = Path(weights) if weights else pyfer.default_weights_path()
        d["weights"] = {"path": str(path), "sha256": _sha256(path)}
    except OSError as e:
        d["weights"] = f"unavailable: {e}"
    import cv2

    d["opencv"] = cv2.__version__
    return d


def _info(args) -> int:
    d = info_dict(args.weights)
    if args.json:
        print(json.dumps(d))
        return 0
    b, w = d["build"], d["weights"]
    print(f"pyfer {d['pyfer']} (OpenCV {d['opencv']})")
    if isinstance(b, dict):
        isa = b.get("isa", {})
        isa = isa.get("selected", isa) if isinstance(isa, dict) else isa
        print(f"engine: isa {isa}, cuda {b.get('cuda')}, compiler {b.get('compiler', '?')}")
    else:
        print(f"engine: {b}")
    if isinstance(w, dict):
        print(f"weights: {w['path']}\nsha256: {w['sha256']}")
    else:
        print(f"weights: {w}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":  # owned by pyfer.bench, which parses its own arguments
        from pyfer.bench import main as bench_main

        return bench_main(argv[1:]) or 0
    ap = argparse.ArgumentParser(prog="pyfer", description="Facial expression recognition (8 FERPlus classes).")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("predict", help="recognize expressions in images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.add_argument("--out", help="write the annotated image here (single IMAGE)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the time per stage")
    _add_model_args(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("video", help="recognize expressions in a video file or camera")
    p.add_argument("source", help="a video file, or a camera index such as 0")
    p.add_argument("--out", help="annotated output video (.mp4)")
    p.add_argument("--jsonl", help="JSON lines per frame to this file, or - for stdout")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    _add_model_args(p)
    p.set_defaults(func=_video)

    sub.add_parser("bench", help="engine/pipeline benchmarks (pyfer bench --help)")

    p = sub.add_parser("info", help="version, build (ISA, CUDA), weights path and sha256")
    p.add_argument("--weights")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"pyfer {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
