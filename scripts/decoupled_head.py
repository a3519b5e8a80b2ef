"""Is it the student's classifier, not its features, that gives up the rare classes? (issue 13)

Kang et al. (ICLR 2020, "Decoupling representation and classifier for long-tailed recognition")
found that a network trained on imbalanced data often has good features and a biased linear
classifier, and that fixing the classifier alone recovers much of the rare classes. Two such fixes,
on the fixed pooled features of an export (faces framed as at inference, mirror averaged):

- tau-normalisation: each class's weight row divided by its norm to the power tau (its bias
  scaled alike, or dropped);
- classifier re-training (cRT): a new linear head, started from the export's, trained on the
  features of FERPlus train (each face clean and in ``--views`` robust-augmented views), on the
  vote distributions, with the logit-adjusted loss of training (a balance x log prior added to
  the logits, as ``training.train --balance``, so that the raw logits stay the balanced posterior).

Every head is scored by the selection rule of ``training.prior_shift`` at its best added prior
shift over ``--shifts`` (the export's baked shift is taken out first, so a shift here is the
whole shift). Writes ``<out>.md``.

    python scripts/decoupled_head.py --weights pyfer/models/tsnet_student.safetensors \\
        --out results/decoupled_head_student

``--write-tau-normalized TAU`` instead writes a copy of the export with its head tau-normalised
(no learned bias, the baked prior shift kept) to ``--out``: a teacher to distil from.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyfer.atomic import write_file  # noqa: E402
from training.cli import output_path  # noqa: E402
from training.data import AUGMENTS, DEFAULT_DATA, augment, ferplus_prior  # noqa: E402
from training.export import baked_prior_shift  # noqa: E402
from training.prior_shift import TARGETS, best_shift, format_cells  # noqa: E402

# (balance, epochs, learning rate) of each re-trained head; AdamW, batch 512, weight decay 1e-4
CRT_RUNS = [(1.0, 2, 1e-3), (1.0, 5, 1e-3), (1.0, 10, 3e-4), (0.5, 5, 1e-3), (1.5, 5, 1e-3)]


def pooled_features(weights: str, data: str, val2: str, views: int, seed: int = 0) -> dict:
    """The export's classifier and its pooled features: of FERPlus valid and SFEW (mirror averaged),
    and of FERPlus train, clean (mirror averaged) and in ``views`` robust-augmented views."""
    import torch
    from tqdm import tqdm

    from pyfer.facenorm import FaceFraming
    from training.framing import load_framed
    from training.predict import load_model, predict_logits

    model, _, prep = load_model(weights)
    baked = baked_prior_shift(weights)
    out = {"W": model.fc.weight.detach().numpy().copy(),
           "b": model.fc.bias.detach().numpy() - (0 if baked is None else baked.astype(np.float32))}
    model.fc = torch.nn.Identity()  # so that the model's output is the pooled features
    model.eval()
    for name, source, split in (("FERPlus valid", data, "valid"), ("SFEW", val2, "valid"), ("train", data, "train")):
        faces = load_framed(source, prep, split, FaceFraming())
        x = torch.from_numpy(faces.images).unsqueeze(1)
        out[name] = (predict_logits(model, x, prep, tta=True).numpy(), faces.labels, faces.targets)
        if name == "train":
            train = x  # the clean faces, for the augmented views below
    gen = torch.Generator().manual_seed(seed)
    augmented = []
    with torch.no_grad():
        for v in range(views):
            augmented.append(np.concatenate([model(augment(train[i:i + 512], prep, AUGMENTS["robust"], gen)).numpy()
                                             for i in tqdm(range(0, len(train), 512), desc=f"augmented view {v + 1}/{views}")]))
    out["train augmented"] = augmented
    return out


def tau_normalized(W: np.ndarray, b: np.ndarray, tau: float, keep_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each class's weight row (and bias, if kept) divided by the row's norm to the power ``tau``."""
    scale = np.linalg.norm(W, axis=1) ** tau
    return W / scale[:, None], (b / scale if keep_bias else np.zeros_like(b))


def write_tau_normalized(weights: str, tau: float, out: str) -> None:
    """A copy of an export whose head is tau-normalised without its learned bias; the baked prior
    shift stays, so the copy answers on the same footing as the original (e.g. as a teacher)."""
    from pyfer.weights_file import read_checked, save_checked

    tensors, metadata = read_checked(weights)
    W, dtype = tensors["fc.weight"].astype(np.float64), tensors["fc.weight"].dtype
    W, bias = tau_normalized(W, np.zeros(len(W)), tau, keep_bias=False)
    baked = baked_prior_shift(weights)
    tensors["fc.weight"] = W.astype(dtype)
    tensors["fc.bias"] = (bias if baked is None else baked).astype(dtype)  # the learned bias is dropped
    save_checked(tensors, out, metadata)


def retrained_head(feats: dict, log_prior: np.ndarray, balance: float, epochs: int, lr: float,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A linear head started from ``feats["W"], feats["b"]`` and trained on ``feats["train"]``'s
    features (and its augmented views) against its target distributions."""
    import torch

    torch.manual_seed(seed)
    clean, _, targets = feats["train"]
    x = torch.from_numpy(np.concatenate([clean, *feats["train augmented"]]))
    t = torch.from_numpy(np.tile(targets, (1 + len(feats["train augmented"]), 1)))
    adjust = torch.as_tensor(balance * log_prior, dtype=torch.float32)
    head = torch.nn.Linear(x.shape[1], len(log_prior))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(feats["W"]))
        head.bias.copy_(torch.from_numpy(feats["b"]))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(512):
            loss = -(t[idx] * torch.log_softmax(head(x[idx]) + adjust, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.weight.detach().numpy(), head.bias.detach().numpy()


def best_row(feats: dict, W: np.ndarray, b: np.ndarray, log_prior: np.ndarray, shifts) -> tuple[float, dict]:
    logits = {k: feats[k][0] @ W.T + b for k in ("FERPlus valid", "SFEW")}
    return best_shift(logits, {k: feats[k][1] for k in logits}, log_prior, shifts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="an export (.safetensors) or a checkpoint")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--views", type=int, default=4, help="robust-augmented views of each training face")
    ap.add_argument("--shifts", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(-2, 11)])
    ap.add_argument("--out", required=True, help="writes OUT.md; with --write-tau-normalized, the new export itself")
    ap.add_argument("--write-tau-normalized", type=float, metavar="TAU",
                    help="only write a copy of the export with its head tau-normalised (no bias) to --out")
    args = ap.parse_args(argv)
    if args.views < 0:
        sys.exit(f"--views must be >= 0, got {args.views}")
    if args.write_tau_normalized is not None:
        if not args.weights.endswith(".safetensors") or not args.out.endswith(".safetensors"):
            sys.exit("--write-tau-normalized reads and writes exports (.safetensors)")
        write_tau_normalized(args.weights, args.write_tau_normalized, args.out)
        return

    feats = pooled_features(args.weights, args.data, args.val2, args.views)
    log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))
    W, b = feats["W"], feats["b"]
    norms = np.linalg.norm(W, axis=1)
    heads = [("the export's head", W, b)]
    for tau in (0.25, 0.5, 0.75, 1.0):
        heads += [(f"tau-norm {tau}, bias scaled", *tau_normalized(W, b, tau, keep_bias=True)),
                  (f"tau-norm {tau}, no bias", *tau_normalized(W, b, tau, keep_bias=False))]
    for balance, epochs, lr in CRT_RUNS:
        heads.append((f"cRT: balance {balance}, {epochs} epochs, lr {lr:g}",
                      *retrained_head(feats, log_prior, balance, epochs, lr)))

    cols = list(TARGETS) + ["worst ratio to target"]
    md = [f"`{args.weights}`: pooled features fixed; {args.views} robust-augmented views of each FERPlus "
          f"train face for cRT. Class weight norms of the export's head: "
          + ", ".join(f"{n:.3f}" for n in norms), "",
          "| head | shift | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, Wh, bh in heads:
        shift, row = best_row(feats, Wh, bh, log_prior, args.shifts)
        md.append(f"| {name} | {shift:g} | " + " | ".join(format_cells(row)) + " |")
        print(md[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_file(output_path(args.out, ".md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
