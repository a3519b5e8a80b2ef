"""Measure the FERPlus framing in YuNet's terms: where its five landmarks and its box fall in the
48x48 training frames. The medians are pyfer.facenorm.FaceFraming's defaults, so a FERPlus image
maps back onto (nearly) its own frame and real photos are framed like the training images.

    python -m training.calibrate_framing --split valid
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from pyfer.yunet import YuNetDetector
from training.cli import reported_errors, run_tool
from training.data import DEFAULT_DATA_ROOT, ferplus_raw


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=DEFAULT_DATA_ROOT, help="FERPlus release folder")
    ap.add_argument("--split", default="valid")
    args = ap.parse_args(argv)

    with reported_errors():  # bad data, and a cache that cannot be written: one line
        raw, _ = ferplus_raw(args.root, args.split)
    det = YuNetDetector()
    lms, boxes, missed = [], [], 0
    for img in tqdm(raw, desc=f"YuNet on FERPlus {args.split}"):
        found = det(img)
        if not found:
            missed += 1
            continue
        best = max(found, key=lambda d: d.score)
        s = float(img.shape[0])
        lms.append(best.landmarks / s)
        x, y, w, h = best.box
        boxes.append((max(w, h) / s, (x + w / 2) / s - 0.5, (y + h / 2) / s - 0.5, w / s, h / s))
    lms = np.median(np.stack(lms), 0)
    b = np.median(np.asarray(boxes), 0)
    side = max(b[3], b[4])
    print(json.dumps({
        "images": len(raw), "found": len(raw) - missed, "detection_rate": round(1 - missed / len(raw), 4),
        "template": np.round(lms, 4).tolist(),
        # the crop is 1 frame: box_scale = frame / box side; box_shift = -(box centre offset) / box side
        "box_scale": round(1 / b[0], 4),
        "box_shift": [round(-b[1] / b[3], 4), round(-b[2] / b[4], 4)],
        "median_box_side_over_frame": round(float(side), 4),
    }, indent=1))


if __name__ == "__main__":
    run_tool(main)
