"""Train the teacher, the student, or the distilled student (T-SNet).

    python -m training.train teacher --out runs/teacher
    python -m training.train student --out runs/student
    python -m training.train distill --teacher runs/teacher/best.pt --out runs/tsnet

Defaults are the paper's recipe: SGD (momentum 0.9, weight decay 1e-4), lr 0.01,
ReduceLROnPlateau(factor 0.1, patience 3) on validation accuracy, batch 128, dropout 0.5,
distillation T=8, a=0.4. The run folder gets ``last.pt`` (every epoch, written atomically),
``best.pt`` (best validation accuracy), ``log.jsonl`` (one line per epoch) and ``config.json``.
``--resume`` continues a run from ``last.pt``: a killed run loses at most the epoch in progress.
Each save first keeps the checkpoint it replaces as ``prev.pt``; if ``last.pt`` is corrupt
(unreadable, or failing its content digest) ``--resume`` says so, moves it aside to
``last.pt.corrupt`` and continues from ``prev.pt`` (see RELIABILITY.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pyfer.preprocess import PreprocessSpec
from training.checkpoint import CheckpointError, load_for_resume, load_model, save_checkpoint
from training.data import DEFAULT_DATA, AugmentSpec, FaceSet, augment, load_dataset, to_model_input
from training.models import STEMS, ModelSpec, count_parameters

ARCH_OF_MODE = {"teacher": "effresnet18", "student": "shufflenetv2", "distill": "shufflenetv2"}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            T: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """T-SNet loss: alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(q_1, target).

    p_T / q_T are the teacher / student softmax at temperature T. ``target`` is class indices or
    a (B, C) target distribution (FERPlus vote shares).
    """
    kl = F.kl_div(F.log_softmax(student_logits / T, 1), F.log_softmax(teacher_logits / T, 1),
                  reduction="batchmean", log_target=True)
    ce = F.cross_entropy(student_logits, target, label_smoothing=label_smoothing)
    return alpha * T * T * kl + (1 - alpha) * ce


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=sorted(ARCH_OF_MODE))
    ap.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="ferplus:DIR, rafdb:DIR or a manifest CSV")
    ap.add_argument("--val-data", help="validation source when --data is a manifest (CSV)")
    ap.add_argument("--teacher", help="teacher checkpoint (.pt) or export (.safetensors), for distill")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--stem", choices=STEMS, default="small")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--plateau-factor", type=float, default=0.1)
    ap.add_argument("--plateau-patience", type=int, default=3)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--T", type=float, default=8.0, help="distillation temperature")
    ap.add_argument("--alpha", type=float, default=0.4, help="weight of the distillation term")
    ap.add_argument("--soft-labels", action="store_true",
                    help="train on the FERPlus vote distribution (the 'probability' mode)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--tta", action="store_true", help="validate with horizontal-flip averaging")
    ap.add_argument("--classes", help="comma-separated class names: train and validate on these only "
                    "(quick experiments; the model keeps all 8 outputs)")
    ap.add_argument("--train-limit", type=int, help="use a stratified subset of N training images")
    ap.add_argument("--val-limit", type=int, help="use a stratified subset of N validation images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def stratified_subset(data: FaceSet, n: int, seed: int) -> FaceSet:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    # round-robin over classes so that rare classes are represented
    by_class = [order[data.labels[order] == c] for c in range(data.targets.shape[1])]
    picked, i = [], 0
    while len(picked) < min(n, len(data)):
        for idx in by_class:
            if i < len(idx) and len(picked) < n:
                picked.append(idx[i])
        i += 1
    return data.subset(np.sort(picked))


@torch.no_grad()
def predict_logits(model, images_u8: torch.Tensor, prep: PreprocessSpec, batch: int = 512,
                   tta: bool = False, amp: bool = False) -> torch.Tensor:
    """Logits for uint8 (N, 1, S, S) images on the model's device (eval mode)."""
    model.eval()
    outs = []
    for i in range(0, len(images_u8), batch):
        x = to_model_input(images_u8[i:i + batch], prep)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            y = model(x).float()
            if tta:
                y = (y + model(x.flip(3)).float()) / 2
        outs.append(y)
    return torch.cat(outs)


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA GPU is available")
    if args.mode == "distill" and not args.teacher:
        raise SystemExit("distill needs --teacher (a teacher checkpoint or .safetensors export)")
    if not 0.0 <= args.alpha <= 1.0 or args.T <= 0:
        raise SystemExit("--alpha must be in [0, 1] and --T > 0")

    prep = PreprocessSpec(args.input_size)
    spec = ModelSpec(ARCH_OF_MODE[args.mode], stem=args.stem)
    train_set = load_dataset(args.data, prep, "train")
    val_set = load_dataset(args.val_data or args.data, prep, "valid")
    if args.classes:
        from training.data import label_index

        keep = [label_index(c, "--classes") for c in args.classes.split(",")]
        train_set = train_set.subset(np.flatnonzero(np.isin(train_set.labels, keep)))
        val_set = val_set.subset(np.flatnonzero(np.isin(val_set.labels, keep)))
    if args.train_limit:
        train_set = stratified_subset(train_set, args.train_limit, args.seed)
    if args.val_limit:
        val_set = stratified_subset(val_set, args.val_limit, args.seed)

    torch.manual_seed(args.seed)
    model = spec.build(dropout=args.dropout).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=args.plateau_factor,
                                                       patience=args.plateau_patience)
    teacher = None
    if args.mode == "distill":
        teacher, tspec, tprep = load_model(args.teacher)
        if tprep != prep:
            raise SystemExit(f"teacher preprocessing {tprep} differs from the student's {prep}")
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    config = {k: v for k, v in vars(args).items() if k not in ("resume", "quiet")}
    start_epoch, best_acc, best_epoch = 0, -1.0, -1
    last = out / "last.pt"
    history: list[dict] = []  # one record per finished epoch, also kept in the checkpoint
    if args.resume:
        try:
            ck, note = load_for_resume(out)
        except (FileNotFoundError, CheckpointError) as exc:
            raise SystemExit(f"--resume: {exc}") from None
        if note:
            print(note, file=sys.stderr, flush=True)
        ckpt = ck.state
        if ckpt["mode"] != args.mode:
            raise SystemExit(f"--resume: {ck.path} is a {ckpt['mode']!r} run, not {args.mode!r}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, best_acc, best_epoch = ckpt["epoch"] + 1, ckpt["best_val_accuracy"], ckpt["best_epoch"]
        # the log is rewritten to match the checkpoint: drops lines of epochs after it (a fallback
        # to prev.pt) and restores one lost to a kill between the checkpoint and the log write
        history = list(ckpt.get("log", []))
        if not history and (out / "log.jsonl").is_file():  # a checkpoint from before the log was kept in it
            lines = [ln for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
            history = [r for r in map(_json_or_none, lines) if isinstance(r, dict) and r.get("epoch", 0) <= start_epoch]
        (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        print(f"resuming {args.mode} from {ck.path} after epoch {start_epoch}", flush=True)
    else:
        (out / "log.jsonl").write_text("")
    (out / "config.json").write_text(json.dumps(config, indent=2))

    x_train = torch.from_numpy(train_set.images).unsqueeze(1).to(device)
    y_train = torch.from_numpy(train_set.labels).to(device)
    t_train = torch.from_numpy(train_set.targets).to(device)
    x_val = torch.from_numpy(val_set.images).unsqueeze(1).to(device)
    y_val = torch.from_numpy(val_set.labels)
    aug = AugmentSpec()
    amp = args.amp and device.type == "cuda"
    print(f"{args.mode}: {spec.arch} ({count_parameters(model):,} params), {len(train_set)} train / "
          f"{len(val_set)} valid images at {prep.input_size}px on {device}", flush=True)

    from tqdm import tqdm

    summary = {}
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        model.train()
        # per-epoch seeds: a resumed run sees exactly the batches it would have seen
        order = torch.from_numpy(np.random.default_rng([args.seed, epoch]).permutation(len(train_set))).to(device)
        gen = torch.Generator(device=device).manual_seed(args.seed * 100003 + epoch)
        n_batches = len(order) // args.batch_size  # drop the ragged last batch (BatchNorm)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                   disable=args.quiet, mininterval=2.0)
        for b in bar:
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            xb = x_train[idx]
            x = to_model_input(xb, prep) if args.no_augment else augment(xb, prep, aug, gen)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            target = t_train[idx] if args.soft_labels else y_train[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x).float()
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x).float()
                    loss = kd_loss(logits, t_logits, target, args.T, args.alpha, args.label_smoothing)
                else:
                    loss = F.cross_entropy(logits, target, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y_train[idx]).sum().item()
            seen += len(idx)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        val_logits = predict_logits(model, x_val, prep, tta=args.tta, amp=amp).cpu()
        val_acc = (val_logits.argmax(1) == y_val).float().mean().item()
        val_loss = F.cross_entropy(val_logits, y_val).item()
        sched.step(val_acc)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch = val_acc, epoch
        record = {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1),
                  "train_accuracy": correct / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc,
                  "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        history.append(record)
        state = {"mode": args.mode, "epoch": epoch, "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "best_val_accuracy": best_acc, "best_epoch": best_epoch,
                 "model_spec": asdict(spec), "preprocess": prep.to_dict(), "config": config, "log": history}
        save_checkpoint(state, last, keep_previous=True)
        if improved:
            save_checkpoint(state, out / "best.pt")
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"epoch {epoch + 1}/{args.epochs} loss {record['train_loss']:.4f} "
              f"train {record['train_accuracy']:.4f} val {val_acc:.4f} (best {best_acc:.4f} @ {best_epoch + 1}) "
              f"lr {record['lr']:.2g} {record['seconds']:.1f}s", flush=True)
        summary = record
    summary.update(best_val_accuracy=best_acc, best_epoch=best_epoch + 1, run=str(out))
    return summary


def main(argv=None) -> None:
    from training.checkpoint import CheckpointError
    from training.data import DataError

    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (DataError, CheckpointError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
