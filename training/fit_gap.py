"""Does a student underfit its teacher, or fail to generalize? (issue 13)

Scores each student against the teacher on the same faces twice: on a random sample of the
training faces and on FERPlus valid (framed as at inference, no flip). If the student's distance
from the teacher is as large on faces it trained on as on faces it never saw, the gap is one of
fit (capacity or optimization), and regularizers aimed at generalization cannot close it.

    python -m training.fit_gap --teacher models/teacher_s11_fp16.safetensors \\
        --students pyfer/models/tsnet_student.safetensors --out results/fit_gap

Columns: accuracy against the majority label (raw logits: a prior shift baked into an export is
taken out), the soft cross-entropy against the FERPlus vote shares, KL(teacher || student) at
temperature T times T^2 (the distillation term of the loss), and how often the two agree on the
top class. Writes ``<out>.md``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pyfer.atomic import make_folders, write_file
from pyfer.facenorm import FaceFraming
from training.cli import output_path, reported_errors, run_tool
from training.data import DEFAULT_DATA
from training.export import baked_prior_shift
from training.framing import load_framed
from training.predict import load_model, predict_logits


def raw_logits(weights: str, faces_at) -> tuple[torch.Tensor, object]:
    """A model's logits on the faces ``faces_at(input size)`` gives, without any baked prior shift."""
    model, _, prep = load_model(weights)
    faces = faces_at(prep)
    logits = predict_logits(model.float(), torch.from_numpy(faces.images).unsqueeze(1), prep)
    baked = baked_prior_shift(weights)
    if baked is not None:
        logits -= torch.as_tensor(baked, dtype=logits.dtype)
    return logits, faces


def compare(teacher: torch.Tensor, student: torch.Tensor, faces, T: float) -> dict:
    y = torch.from_numpy(faces.labels)
    votes = torch.from_numpy(faces.targets).float()
    return {"accuracy": (student.argmax(1) == y).float().mean().item(),
            "soft CE": -(votes * F.log_softmax(student, 1)).sum(1).mean().item(),
            "KL x T^2": T * T * F.kl_div(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1),
                                         reduction="batchmean").item(),
            "top-1 agreement": (student.argmax(1) == teacher.argmax(1)).float().mean().item()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--students", nargs="+", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--train-sample", type=int, default=4000, help="training faces to score (random, seed 0)")
    ap.add_argument("--T", type=float, default=8.0)
    ap.add_argument("--out", required=True, help="writes OUT.md")
    args = ap.parse_args(argv)
    if args.train_sample < 1:
        raise SystemExit("--train-sample must be >= 1")
    out = output_path(args.out, ".md")
    with reported_errors():
        make_folders(out.parent)  # before the work, not after it

    loaded = {}  # (split, input size) -> faces: each split framed once per size

    def faces_at(split: str):
        def load(prep):
            if (split, prep.input_size) not in loaded:
                faces = load_framed(args.data, prep, split, FaceFraming(mode="align"))
                if split == "train":  # the same random faces at every size
                    faces = faces.subset(np.sort(np.random.default_rng(0).permutation(len(faces))[:args.train_sample]))
                loaded[split, prep.input_size] = faces
            return loaded[split, prep.input_size]
        return load

    lines = ["| model | faces | accuracy % | soft CE | KL x T^2 | top-1 agreement % |", "|---|---|---|---|---|---|"]
    for split in ("train", "valid"):
        with reported_errors():
            teacher, faces = raw_logits(args.teacher, faces_at(split))
        name = f"{len(faces)} training" if split == "train" else "FERPlus valid"
        itself = compare(teacher, teacher, faces, args.T)
        lines.append(f"| teacher {Path(args.teacher).name} | {name} | {100 * itself['accuracy']:.2f} | "
                     f"{itself['soft CE']:.3f} | - | - |")
        for weights in args.students:
            with reported_errors():
                student, sfaces = raw_logits(weights, faces_at(split))
            if not np.array_equal(sfaces.labels, faces.labels):
                raise SystemExit(f"{weights}: its faces do not line up with the teacher's")
            r = compare(teacher, student, faces, args.T)
            lines.append(f"| {weights} | {name} | {100 * r['accuracy']:.2f} | {r['soft CE']:.3f} | "
                         f"{r['KL x T^2']:.3f} | {100 * r['top-1 agreement']:.2f} |")
    text = "\n".join(lines)
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        write_file(out, text + "\n")
    print(text)


if __name__ == "__main__":
    run_tool(main)
