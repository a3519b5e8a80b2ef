"""Train the teacher, the student, or the distilled student (T-SNet).

    python -m training.train teacher --out runs/teacher
    python -m training.train student --out runs/student
    python -m training.train distill --teacher runs/teacher/best.pt --out runs/tsnet

Defaults are the paper's recipe: SGD (momentum 0.9, weight decay 1e-4), lr 0.01,
ReduceLROnPlateau(factor 0.1, patience 3) on validation accuracy, batch 128, dropout 0.5,
distillation T=8, a=0.4. The run folder gets ``last.pt`` (every epoch, written atomically),
``best.pt`` (best validation accuracy), ``log.jsonl`` (one line per epoch), ``config.json`` and, with
``--keep-epochs``, ``epN.pt`` for every epoch.
``--resume`` continues a run from ``last.pt``: a killed run loses at most the epoch in progress.
``--ema DECAY`` keeps an exponential moving average of the weights (updated every step); it is what
is validated and what the checkpoints' ``model`` holds, with the raw weights in ``train_model``.
Each save first keeps the checkpoint it replaces as ``prev.pt``; if ``last.pt`` is corrupt
(unreadable, or failing its content digest) ``--resume`` says so, moves it aside to
``last.pt.corrupt`` and continues from ``prev.pt`` (see RELIABILITY.md).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pyfer.atomic import atomic_write, make_folders, open_for_writing, write_file
from pyfer.evaluate import label_metrics
from pyfer.preprocess import EMOTIONS, PreprocessSpec
from training.checkpoint import CheckpointError, load_checkpoint, load_for_resume, read_log, save_checkpoint
from training.cli import StopSignals, error_lines
from training.data import (AUGMENTS, DEFAULT_DATA, FaceSet, augment, check_source, clahe_crops, is_split_source,
                           label_index, load_dataset, to_model_input)
from training.models import (ARCHITECTURES, SHUFFLENETV2_WIDTHS, STEMS, ModelSpec, collapse_overparam,
                             count_parameters, overparameterize, student_spec)
from training.predict import load_model, predict_logits
from training.sam import sharpness_probe

ARCH_OF_MODE = {"teacher": "effresnet18", "student": "shufflenetv2", "distill": "shufflenetv2"}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            T: float, alpha: float, label_smoothing: float = 0.0, standardize: bool = False) -> torch.Tensor:
    """T-SNet loss: alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(q_1, target).

    p_T / q_T are the teacher / student softmax at temperature T. ``target`` is class indices or
    a (B, C) target distribution (FERPlus vote shares).
    """
    return recipe_loss(student_logits, target, teacher_softmax(teacher_logits, T, standardize), T, alpha,
                       label_smoothing, standardize=standardize)


def zscore(logits: torch.Tensor) -> torch.Tensor:
    """Each row's logits less their mean, over their standard deviation."""
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + 1e-7)


def teacher_softmax(teacher_logits: torch.Tensor, T: float, standardize: bool = False) -> torch.Tensor:
    """The teacher's answer as the KL term reads it: softmax(logits / T), z-scored first if asked."""
    return F.softmax((zscore(teacher_logits) if standardize else teacher_logits) / T, 1)


def decoupled_kl(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor,
                 target_class: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p || q) split as in decoupled KD (Zhao et al., CVPR 2022), per face.

    TCKD is the KL between the binary (target class, the rest) distributions; NCKD is the KL
    between the distributions over the non-target classes alone. KL = TCKD + (1 - p_target) * NCKD,
    so with a confident teacher the non-target part, the "dark knowledge", is weighted down.
    """
    mask = F.one_hot(target_class, teacher_probs.shape[1]).bool()
    log_q_target = student_log_probs[mask]
    log_q_rest = torch.logsumexp(student_log_probs.masked_fill(mask, float("-inf")), 1)
    p_target = teacher_probs[mask]
    p_rest = (1 - p_target).clamp_min(1e-12)
    tckd = torch.xlogy(p_target, p_target) - p_target * log_q_target \
        + torch.xlogy(p_rest, p_rest) - p_rest * log_q_rest
    p_hat = (teacher_probs / p_rest[:, None]).masked_fill(mask, 0.0)
    log_q_hat = (student_log_probs - log_q_rest[:, None]).masked_fill(mask, 0.0)
    nckd = (torch.xlogy(p_hat, p_hat) - p_hat * log_q_hat).sum(1)
    return tckd, nckd


def similarity_kd(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung and Mori, ICCV 2019) on pooled features: each side's (B, B)
    Gram matrix over the batch, rows L2-normalised; the mean squared difference of the two.
    It asks the student to find the same faces alike as the teacher does, in its own feature space
    (no projection: the widths may differ), which carries more per batch than 8 logits a face."""
    def gram(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.flatten(1) @ f.flatten(1).T, dim=1)

    return (gram(student_features) - gram(teacher_features)).pow(2).mean()


def recipe_loss(student_logits: torch.Tensor, target: torch.Tensor, teacher_probs: torch.Tensor | None,
                T: float, alpha: float, label_smoothing: float = 0.0,
                logit_shift: torch.Tensor | None = None, standardize: bool = False,
                dkd_beta: float = 0.0, label_shift: torch.Tensor | None = None) -> torch.Tensor:
    """The T-SNet loss with the generalization recipe's extensions.

    ``teacher_probs``: the teacher's softmax at temperature T (None: plain cross-entropy); given as
    probabilities so that mixup can mix two teachers' answers. ``logit_shift`` = tau * log(prior)
    is added to the student's logits in both terms (logit adjustment, Menon et al., ICLR 2021): the
    student's raw logits then learn the class-balanced posterior, and what it learns from the
    teacher is the teacher's answer with the training prior divided out. ``standardize`` z-scores
    the student's logits in the KL term (logit standardization, Sun et al., CVPR 2024; the caller
    z-scores the teacher's, ``teacher_softmax``): a small student then matches the teacher's logit
    relations without having to match their scale. ``dkd_beta`` > 0 replaces the KL term by decoupled
    KD, TCKD + dkd_beta * NCKD (``decoupled_kl``), the target class being the target's top class.
    ``label_shift`` replaces ``logit_shift`` in the label term only: under class-aware sampling the
    labels come with the sampled prior, while the teacher's answer for a face stays the same.
    """
    z = student_logits if logit_shift is None else student_logits + logit_shift
    z_label = z if label_shift is None else student_logits + label_shift
    ce = F.cross_entropy(z_label, target, label_smoothing=label_smoothing)
    if teacher_probs is None:
        return ce
    log_q = F.log_softmax((zscore(z) if standardize else z) / T, 1)
    if dkd_beta > 0:
        tckd, nckd = decoupled_kl(log_q, teacher_probs, target if target.ndim == 1 else target.argmax(1))
        kl = (tckd + dkd_beta * nckd).mean()
    else:
        kl = F.kl_div(log_q, teacher_probs, reduction="batchmean")
    return alpha * T * T * kl + (1 - alpha) * ce


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=sorted(ARCH_OF_MODE))
    ap.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    ap.add_argument("--arch", choices=sorted(ARCHITECTURES),
                    help="the model to train (default: effresnet18 for teacher, shufflenetv2 otherwise)")
    ap.add_argument("--pretrained", help="start from these pretrained weights (a state dict .safetensors "
                    "without the classifier, e.g. from python -m training.pretrained)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="ferplus:DIR, rafdb:DIR or a manifest CSV")
    ap.add_argument("--val-data", help="validation source when --data is a manifest (CSV)")
    ap.add_argument("--teacher", help="teacher checkpoint (.pt) or export (.safetensors), for distill")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--stem", choices=STEMS, default="small")
    ap.add_argument("--width", type=float, choices=sorted(SHUFFLENETV2_WIDTHS), default=1.0,
                    help="ShuffleNetV2's width multiplier (its stage table: training.models.SHUFFLENETV2_WIDTHS; "
                         "the engine runs each); 1.0: the shipped student's")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--plateau-factor", type=float, default=0.1)
    ap.add_argument("--plateau-patience", type=int, default=3)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--T", type=float, default=8.0, help="distillation temperature")
    ap.add_argument("--alpha", type=float, default=0.4, help="weight of the distillation term")
    ap.add_argument("--kd-standardize", action="store_true",
                    help="z-score the teacher's and the student's logits before the temperature (logit "
                         "standardization, Sun et al., CVPR 2024): match relations, not scale")
    ap.add_argument("--dkd-beta", type=float, default=0.0, metavar="BETA",
                    help="decoupled KD (Zhao et al., CVPR 2022): the KL term as TCKD + BETA * NCKD, the "
                         "target class being the label's top class (0: the plain KL)")
    ap.add_argument("--feature-kd", type=float, default=0.0, metavar="WEIGHT",
                    help="add WEIGHT x similarity-preserving KD on the pooled features (distill, live teacher)")
    ap.add_argument("--peer", type=float, default=0.0, metavar="W",
                    help="average the live teacher's answers with face-api.js's expression model's "
                         "(training.peer; W its share, on the 7 classes it knows; 0: off)")
    ap.add_argument("--soft-labels", action="store_true",
                    help="train on the FERPlus vote distribution (the 'probability' mode)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--augment", choices=sorted(AUGMENTS), default="basic",
                    help="augmentation preset: basic, or robust (gamma, blur, noise, low-res, JPEG, occlusion)")
    ap.add_argument("--framing", choices=("frame", "align", "box"), default="frame",
                    help="frame: the data set's crops as given; align/box: re-framed from each image by "
                         "pyfer.facenorm.normalize_face on YuNet's detection, as at inference")
    ap.add_argument("--balance", type=float, default=0.0, metavar="TAU",
                    help="logit-adjusted loss: add TAU * log(train prior) to the logits while training")
    ap.add_argument("--sample-power", type=float, default=1.0, metavar="P",
                    help="class-aware sampling: each epoch draws as many faces as the training set holds, a "
                         "face of class c with probability proportional to prior(c)^(P-1), so that classes "
                         "come in proportion to prior^P (1: every face once, 0.5: square-root, 0: balanced)")
    ap.add_argument("--train-protocol", choices=("majority", "plurality"), default="majority",
                    help="which FERPlus training faces: majority (Barsoum et al.'s protocol, 25,045), or "
                         "plurality: also the 3,340 whose top vote is an emotion without a majority (best "
                         "with --soft-labels). Validation always uses the majority protocol")
    ap.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA)")
    ap.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                    help="CutMix (Yun et al. 2019): a box of another face pasted in, of area 1 - lam with lam from "
                         "Beta(ALPHA, ALPHA), targets mixed by the pasted area. With --mixup too, each batch "
                         "takes one of the two, evenly")
    ap.add_argument("--mixstyle", type=float, default=0.0, metavar="P",
                    help="MixStyle: with probability P a batch, mix the feature statistics of paired faces "
                         "after the early stages (training only; the network is unchanged). 0: off")
    ap.add_argument("--mixstyle-alpha", type=float, default=0.1, metavar="ALPHA",
                    help="MixStyle's mixing weights ~ Beta(ALPHA, ALPHA)")
    ap.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                    help="sharpness-aware minimization with radius RHO (two passes a step). 0: off")
    ap.add_argument("--init", help="start from these weights (a checkpoint .pt or an export .safetensors)")
    ap.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau")
    ap.add_argument("--keep-epochs", action="store_true",
                    help="also keep each epoch's checkpoint as epN.pt (to score every epoch afterwards)")
    ap.add_argument("--student-clahe", metavar="CLIP/TILES",
                    help="experimental: the student trains and validates on CLAHE-equalized crops "
                         "(e.g. 2/4) while a live teacher answers on the same view unequalized; "
                         "the export does not record it yet, so such a model is not for shipping")
    ap.add_argument("--overparam", type=int, default=0, metavar="K",
                    help="train an over-parameterized network that folds back into the plain one (MobileOne/"
                         "RepVGG branches): every conv but the stem becomes K convs of its shape, a 1x1 (for 3x3) "
                         "and an identity BatchNorm (where shapes allow), summed; checkpoints and exports hold "
                         "the folded network (0: off)")
    ap.add_argument("--overparam-scale", type=float, default=0.0, metavar="S",
                    help="BatchNorm scale the extra branches of --overparam start with: 0 starts from exactly "
                         "the --init network; above 0 (e.g. 0.1) the branches start live, with a small jolt")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="validate and save an exponential moving average of the weights (e.g. 0.998; "
                         "0: off)")
    ap.add_argument("--teacher-cache", action="store_true",
                    help="distill from the teacher's answers on each clean training face (averaged with "
                         "its mirror), computed once. Default: the teacher answers on every augmented, "
                         "mixed batch the student sees (in pyfer's engine for a .safetensors teacher on CPU)")
    ap.add_argument("--teacher-views", type=int, default=0, metavar="K",
                    help="replay K fixed augmented, mixed epochs: epoch e repeats the draws of epoch e mod K, "
                         "so the live teacher answers only in the first K epochs and its answers are kept "
                         "(teacher_views.pt) for the rest. Cheaper epochs, fewer distinct views (0: off)")
    ap.add_argument("--val2", help="second-domain evaluation set (a manifest CSV, e.g. SFEW train): "
                                   "reported each epoch; best.pt is chosen by the sum of both accuracies")
    ap.add_argument("--tta", action="store_true", help="validate with horizontal-flip averaging")
    ap.add_argument("--classes", help="comma-separated class names: train and validate on these only "
                    "(quick experiments; the model keeps all 8 outputs)")
    ap.add_argument("--train-limit", type=int, help="use a stratified subset of N training images (0: all)")
    ap.add_argument("--train-sample", choices=("stratified", "random"), default="stratified",
                    help="how --train-limit picks: stratified (rare classes first) or random (the data's own prior)")
    ap.add_argument("--val-limit", type=int,
                    help="use a stratified subset of N validation images, and of N --val2 images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true",
                    help="bfloat16 autocast (CUDA, or a CPU with AVX512-BF16/AMX: 2.2-2.4x faster teacher "
                         "steps on Zen 5, scripts/bench_train_step.py)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt (a folder with no checkpoint yet: start it)")
    ap.add_argument("--overwrite", action="store_true",
                    help="start a new run in an --out folder that already holds one (its checkpoints and log are replaced)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Linux /proc/cpuinfo flags; False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def check_args(args: argparse.Namespace) -> None:
    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("--epochs and --batch-size must be >= 1")
    if args.lr <= 0 or args.weight_decay < 0 or not 0 <= args.momentum < 1:
        raise SystemExit("--lr must be > 0, --weight-decay >= 0 and --momentum in [0, 1)")
    if (args.train_limit or 0) < 0 or (args.val_limit or 0) < 0:
        raise SystemExit("--train-limit and --val-limit must be >= 0 (0: all faces)")
    if args.resume and args.overwrite:
        raise SystemExit("--resume continues the run in --out and --overwrite replaces it: use one")
    if args.mode == "distill" and not args.teacher:
        raise SystemExit("distill needs --teacher (a teacher checkpoint or .safetensors export)")
    if not 0.0 <= args.alpha <= 1.0 or args.T <= 0:
        raise SystemExit("--alpha must be in [0, 1] and --T > 0")
    if args.mixup < 0 or args.cutmix < 0 or args.balance < 0 or args.dkd_beta < 0:
        raise SystemExit("--mixup, --cutmix, --balance and --dkd-beta must be >= 0")
    if not is_split_source(args.data) and Path(args.data).is_dir():  # (ferplus: forgotten: not a manifest at all)
        raise SystemExit(f"--data {args.data} is a folder, not a manifest CSV: give ferplus:{args.data} (the FER+ "
                         f"release layout) or rafdb:{args.data}")
    if not args.val_data and not is_split_source(args.data):
        raise SystemExit(f"--data {args.data} is a manifest, which has no validation split: give --val-data "
                         "(else the run would validate, and choose best.pt, on its own training faces; a run "
                         "begun that way before session 31 cannot be resumed: start it again)")
    if args.train_protocol != "majority" and not args.data.startswith("ferplus:"):
        raise SystemExit(f"--train-protocol {args.train_protocol} is for FERPlus data (ferplus:DIR), not {args.data!r}")
    if not 0.0 <= args.sample_power <= 1.0:
        raise SystemExit("--sample-power must be in [0, 1] (1: every face once an epoch)")
    if not 0.0 <= args.ema < 1.0:
        raise SystemExit("--ema must be in [0, 1) (0: off)")
    if args.overparam < 0:
        raise SystemExit("--overparam must be >= 0 (0: off)")
    if args.overparam_scale < 0 or (args.overparam_scale and not args.overparam):
        raise SystemExit("--overparam-scale must be >= 0, and is for --overparam")
    if args.overparam and args.ema:
        raise SystemExit("--overparam and --ema cannot be combined yet: use one")
    train_device(args.device)
    if args.classes:
        for c in args.classes.split(","):
            label_index(c, "--classes")
    if args.teacher_cache and args.mode != "distill":
        raise SystemExit("--teacher-cache is for distill")
    if args.teacher_views < 0:
        raise SystemExit("--teacher-views must be >= 0 (0: off)")
    if args.teacher_views and (args.mode != "distill" or args.teacher_cache):
        raise SystemExit("--teacher-views is for distill with a live teacher (no --teacher-cache)")
    if args.feature_kd < 0:
        raise SystemExit("--feature-kd must be >= 0 (0: off)")
    if args.feature_kd and (args.mode != "distill" or args.teacher_cache):
        raise SystemExit("--feature-kd is for distill with a live teacher (no --teacher-cache)")
    if not 0 <= args.peer < 1:
        raise SystemExit("--peer must be in [0, 1) (0: off)")
    if args.peer and (args.mode != "distill" or args.teacher_cache or args.feature_kd):
        raise SystemExit("--peer is for distill with a live teacher's logits (no --teacher-cache, no --feature-kd)")
    if not 0.0 <= args.mixstyle <= 1.0 or args.mixstyle_alpha <= 0:
        raise SystemExit("--mixstyle must be in [0, 1] (0: off) and --mixstyle-alpha > 0")
    if args.sam < 0:
        raise SystemExit("--sam must be >= 0 (0: off)")
    if args.pretrained and args.init:
        raise SystemExit("--pretrained and --init both give starting weights: use one")
    if args.student_clahe:
        parse_clahe(args.student_clahe)
        if args.teacher_cache:
            raise SystemExit("--student-clahe needs a live teacher (no --teacher-cache)")


def parse_clahe(setting: str) -> tuple[float, int]:
    """'CLIP/TILES' -> (clip limit > 0, tiles >= 1), or a clear error."""
    try:
        clip, tiles = setting.split("/")
        clip, tiles = float(clip), int(tiles)
    except ValueError:
        raise SystemExit(f"--student-clahe takes CLIP/TILES such as 2/4, got {setting!r}") from None
    if clip <= 0 or tiles < 1:
        raise SystemExit(f"--student-clahe: the clip limit must be > 0 and tiles >= 1, got {setting!r}")
    return clip, tiles


def load_split(source: str, prep: PreprocessSpec, split: str, framing: str, protocol: str = "majority") -> FaceSet:
    if framing == "frame":
        return load_dataset(source, prep, split, protocol=protocol)
    from pyfer.facenorm import FaceFraming
    from training.framing import load_framed

    return load_framed(source, prep, split, FaceFraming(mode=framing), protocol)


def load_data(args: argparse.Namespace, prep: PreprocessSpec) -> tuple[FaceSet, FaceSet, FaceSet | None]:
    """Training, validation and (``--val2``) second-domain sets, subset as the flags ask. Only the
    training faces follow ``--train-protocol``: every model is measured on the majority protocol."""
    train_set = load_split(args.data, prep, "train", args.framing, args.train_protocol)
    val_set = load_split(args.val_data or args.data, prep, "valid", args.framing)
    val2_set = load_split(args.val2, prep, "valid", args.framing) if args.val2 else None
    if args.classes:
        keep = [label_index(c, "--classes") for c in args.classes.split(",")]
        train_set = train_set.subset(np.flatnonzero(np.isin(train_set.labels, keep)))
        val_set = val_set.subset(np.flatnonzero(np.isin(val_set.labels, keep)))
    if args.train_limit and args.train_sample == "random":  # keeps the class imbalance
        pick = np.random.default_rng(args.seed).permutation(len(train_set))[:args.train_limit]
        train_set = train_set.subset(np.sort(pick))
    elif args.train_limit:
        train_set = stratified_subset(train_set, args.train_limit, args.seed)
    if args.val_limit:  # both evaluation sets: a quick run should be quick at either
        val_set = stratified_subset(val_set, args.val_limit, args.seed)
        if val2_set is not None:
            val2_set = stratified_subset(val2_set, args.val_limit, args.seed)
    return train_set, val_set, val2_set


def read_weights(path: str, flag: str):
    """``load_model`` for a path given on the command line: a missing, damaged or foreign file
    is a one-line error naming the flag, not a traceback."""
    from safetensors import SafetensorError

    try:
        return load_model(path)
    except (OSError, ValueError, SafetensorError) as exc:  # CheckpointError is a ValueError
        raise SystemExit(f"{flag} {path}: cannot load a pyfer model from it: {exc}") from None


def train_device(name: str) -> torch.device:
    """``--device``, refused in one line where torch has no such device or this machine no GPU."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name} was asked for but no CUDA GPU is available")
    return device


def load_teacher(path: str, prep: PreprocessSpec, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The teacher in eval mode, and the input size it was trained at (which may differ from the
    student's: :class:`AtInputSize` then resizes what it is shown)."""
    teacher, _, tprep = read_weights(path, "--teacher")
    if replace(tprep, input_size=prep.input_size) != prep:
        raise SystemExit(f"teacher preprocessing {tprep} differs from the student's {prep}")
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, tprep.input_size


class AtInputSize:
    """A teacher trained at ``size`` px answering on a student's batch at another size: the batch is
    resized (bilinear, antialiased) first. Normalisation is affine, so resizing the normalised
    batch equals normalising the resized faces."""

    def __init__(self, teacher, size: int):
        self.teacher, self.size = teacher, size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.teacher(x)

    def eval(self):  # predict_logits puts models in eval mode; the teacher already is
        return self

    def logits(self, features: torch.Tensor) -> torch.Tensor:  # a FeatureTeacher's classifier
        return self.teacher.logits(features)


class FeatureTeacher:
    """The teacher's pooled penultimate features (``--feature-kd``); ``logits`` applies its classifier.

    An export on the CPU runs in pyfer's engine as a copy whose classifier is the identity
    (``features_export``): the engine's "logits" are then the features, at the engine's speed."""

    def __init__(self, teacher: torch.nn.Module, path: str, out: Path, threads: int | None, device: torch.device):
        self.fc = teacher.fc
        if str(path).endswith(".safetensors") and device.type == "cpu":
            self.run = EngineTeacher(str(features_export(path, out / "teacher_features.safetensors")), threads)
        else:
            self.run = lambda x: teacher.features(x).mean((2, 3))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.to(self.fc.weight.dtype))


def features_export(path: str, out: Path) -> Path:
    """A copy of the export ``path`` whose classifier is the identity: it outputs the pooled features."""
    from pyfer.weights_file import read_checked, save_checked

    tensors, file_meta = read_checked(path)
    meta = json.loads(file_meta["pyfer"])
    width = tensors["fc.weight"].shape[1]
    tensors["fc.weight"] = np.eye(width, dtype=tensors["fc.weight"].dtype)
    tensors["fc.bias"] = np.zeros(width, dtype=tensors["fc.bias"].dtype)
    meta.update(num_classes=width, class_names=[f"feature{i}" for i in range(width)])
    meta.pop("logit_adjustment", None)
    return save_checked(tensors, out, {"pyfer": json.dumps(meta)})


class EngineTeacher:
    """An exported teacher (.safetensors) run by pyfer's C++ engine: the same logits as its PyTorch
    rebuild (to ~1e-6), 2.3x faster on one CPU core (a batch of 128 EFF-ResNet18 faces: 1.87 s
    against 4.25 s, AMD EPYC Zen 3, ``scripts/bench_compare.py TEACHER --batches 128``), which makes
    a teacher pass on every augmented batch affordable."""

    def __init__(self, path: str, threads: int | None):
        from pyfer.engine import Engine

        self.engine = Engine(str(path), threads=threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.engine.forward(x.detach().float().contiguous().numpy()))


def teacher_identity(path) -> str:
    """What cached teacher answers are keyed on: the teacher file's contents, not its path, so that
    a run resumed with its teacher moved (``--teacher`` at a new path) keeps its cached answers,
    and a different file at the old path does not reuse them."""
    from pyfer.engine import file_sha256

    return f"sha256:{file_sha256(path)[:16]}"


def teacher_cache_keys(args, train_set: FaceSet, kind: str) -> tuple[str, ...]:
    """The keys cached teacher answers are kept under (``kind``: "logits" for teacher_logits.pt,
    "views" for teacher_views.pt): everything that decides them, the teacher by its contents.
    The first is what is written; the second, the same with the teacher's path as runs before
    session 30 wrote it, is still accepted, so that those runs resume without answering again
    (such a folder, as before, cannot tell a teacher file replaced at the same path)."""
    def key(teacher: str) -> str:
        if kind == "logits":
            return f"{teacher}|{args.framing}|{len(train_set)}|{train_set.names[0]}"
        return json.dumps([teacher, args.framing, len(train_set), train_set.names[0], args.seed, args.augment,
                           args.mixup, args.input_size, args.student_clahe]
                          # keys of runs without these options stay as they were
                          + ([args.sample_power] if args.sample_power != 1.0 else [])
                          + ([f"cutmix {args.cutmix}"] if args.cutmix else [])
                          + (["features"] if args.feature_kd else []))

    return key(teacher_identity(args.teacher)), key(str(args.teacher))


def load_cache(path: Path) -> dict | None:
    """A teacher cache of this run folder (a dict with "key" and "logits"), or None where there is
    none or it cannot be read (damaged, not a dict, objects other than tensors): then it is
    computed again, with a note, instead of stopping the run."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(saved, dict) and isinstance(saved.get("logits"), torch.Tensor):
            return saved
        why = "not a teacher cache"
    except Exception as e:  # torch raises many types for damaged files
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    print(f"{path} cannot be read ({why}): computing it again", file=sys.stderr)
    return None


def cached_teacher_logits(args, teacher, x_train: torch.Tensor, prep: PreprocessSpec, out: Path,
                          keys: tuple[str, ...], amp: bool) -> torch.Tensor:
    """The teacher's logits on every training face, computed once per run folder
    (``teacher_logits.pt``, kept for --resume). An exported teacher (.safetensors) runs in pyfer's
    own engine, which is several times faster than PyTorch on the CPU (BENCHMARKS.md)."""
    path = out / "teacher_logits.pt"
    saved = load_cache(path)
    if saved is not None:
        if saved.get("key") in keys and len(saved["logits"]) == len(x_train):
            return saved["logits"].to(x_train.device)
        print(f"{path} holds another teacher's or data's answers: computing them again", file=sys.stderr)
    from tqdm import tqdm

    if args.quiet:  # no bar: a line, since this pass can take minutes
        print(f"teacher logits on {len(x_train)} training faces, once (kept in {path})", flush=True)
    batches = range(0, len(x_train), 256)
    if str(args.teacher).endswith(".safetensors") and x_train.device.type == "cpu":
        engine = EngineTeacher(args.teacher, args.threads)
        if isinstance(teacher, AtInputSize):
            engine = AtInputSize(engine, teacher.size)
        parts = [engine(to_model_input(x_train[i:i + 256], prep))
                 for i in tqdm(batches, desc="teacher logits (pyfer engine, once)", disable=args.quiet)]
        logits = torch.cat(parts).float()
    else:
        logits = predict_logits(teacher, x_train, prep, batch=256, amp=amp,
                                progress=None if args.quiet else "teacher logits (once)")
    with atomic_write(path, binary=True) as f:
        torch.save({"key": keys[0], "logits": logits.cpu()}, f)
    return logits.to(x_train.device)


class TeacherViews:
    """The live teacher's logits on K fixed augmented, mixed epochs (``--teacher-views K``).

    Epoch e replays the draws (batch order, augmentation, mixup) of epoch ``e % K``, so from epoch K
    on the student sees batches the teacher has already answered, and the teacher is skipped. Logits
    are kept as (K, batches, batch size, classes or feature width) float32 in ``teacher_views.pt`` beside the
    checkpoints, only for complete epochs, keyed on everything that decides the draws."""

    def __init__(self, k: int, n_batches: int, batch_size: int, n_classes: int, path: Path,
                 keys: str | tuple[str, ...]):
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.k, self.path, self.key = k, path, keys[0]  # saved under the first; any one is accepted
        self.logits = torch.zeros(k, n_batches, batch_size, n_classes)
        self.filled = [False] * k
        saved = load_cache(path)
        if saved is not None:
            if saved.get("key") in keys and saved["logits"].shape == self.logits.shape:
                self.logits, self.filled = saved["logits"], list(saved["filled"])
            else:
                print(f"{path} holds views of another teacher or recipe: they are taught again", file=sys.stderr)

    def draw(self, epoch: int) -> int:
        return epoch % self.k

    def epoch_done(self, epoch: int) -> None:
        """Keep this epoch's answers (on disk too) the first time its draws have been taught."""
        if not self.filled[self.draw(epoch)]:
            self.filled[self.draw(epoch)] = True
            self.save()

    def save(self) -> None:
        with atomic_write(self.path, binary=True) as f:
            torch.save({"key": self.key, "logits": self.logits, "filled": self.filled}, f)


def load_init(args, spec: ModelSpec, prep: PreprocessSpec):
    """``--init``'s model, its checkpoint (None for an export) and whether it is an export; refused
    in one line when it is not this run's network."""
    is_export = str(args.init).endswith(".safetensors")
    try:
        init_ckpt = None if is_export else load_checkpoint(args.init)
    except (OSError, CheckpointError) as exc:
        raise SystemExit(f"--init {args.init}: {exc}") from None
    init, ispec, iprep = read_weights(args.init, "--init") if is_export else init_ckpt.build_model()
    if ispec != spec:
        raise SystemExit(f"--init {args.init} holds another network, {ispec.describe()}; this run builds {spec.describe()}")
    # the input size may change: the weights do not depend on it (global average pooling), and
    # an export's BatchNorm statistics are measured again at the new size
    if replace(iprep, input_size=prep.input_size) != prep:
        raise SystemExit(f"--init {args.init} was trained on input {iprep}, unlike this run's {prep}")
    return init, init_ckpt, is_export


def load_pretrained(args, spec: ModelSpec) -> torch.nn.Module:
    """``--pretrained``'s folded network (its classifier left as built); refused in one line when the
    file is not one or does not fit this run's network."""
    from pyfer.weights_file import read_checked

    folded = spec.build(folded=True, dropout=args.dropout)
    try:
        tensors, _ = read_checked(args.pretrained)
    except (OSError, ValueError) as exc:  # unreadable, not safetensors, damaged
        raise SystemExit(f"--pretrained: {exc}") from None
    try:
        missing, unexpected = folded.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()},
                                                     strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise SystemExit(f"--pretrained {args.pretrained} does not fit {spec.arch}: {exc}") from None
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise SystemExit(f"--pretrained {args.pretrained} does not fit {spec.arch}: "
                         f"missing {missing}, unexpected {unexpected}")
    return folded


def initial_model(args, spec: ModelSpec, prep: PreprocessSpec, x_train: torch.Tensor) -> torch.nn.Module:
    """A fresh model, or (``--init``) one that starts from trained weights: a checkpoint, or an
    export whose folded BatchNorms are rebuilt from the training images' statistics."""
    if args.pretrained:
        from training.models import unfold_batchnorm

        folded = load_pretrained(args, spec)
        # the pretrained convs come folded (with their BatchNorms frozen in): BatchNorms measured
        # on the training faces make them trainable again without changing what they compute
        sample = x_train[torch.from_numpy(np.random.default_rng(args.seed).permutation(len(x_train))[:2048])]
        return unfold_batchnorm(folded, spec, to_model_input(sample.cpu(), prep), dropout=args.dropout)
    if not args.init:
        return spec.build(dropout=args.dropout)
    init, init_ckpt, is_export = load_init(args, spec, prep)
    from training.models import fold_batchnorm, unfold_batchnorm

    if not is_export:
        if not init_ckpt.state.get("overparam"):
            model = spec.build(dropout=args.dropout)
            model.load_state_dict(init.state_dict())
            return model
        # an --overparam run keeps the network it folds into, whose BatchNorms are identities (the
        # batch statistics of training would jolt it): measured again, as for an export
        init = fold_batchnorm(init, spec)
    else:
        from training.export import baked_prior_shift

        # an export with a prior shift baked into its bias: take it out, so that training goes on
        # from the raw logits the loss was written for (the shift is chosen again after training)
        baked = baked_prior_shift(args.init)
        if baked is not None:
            with torch.no_grad():
                init.fc.bias.sub_(torch.as_tensor(baked, dtype=init.fc.bias.dtype))
    sample = x_train[torch.from_numpy(np.random.default_rng(args.seed).permutation(len(x_train))[:2048])]
    return unfold_batchnorm(init, spec, to_model_input(sample.cpu(), prep), dropout=args.dropout)


# flags a resumed run may change: where it runs and what it prints, not what it learns
CHANGEABLE_ON_RESUME = {"out", "threads", "device", "amp", "keep_epochs"}
# the same files may sit elsewhere on another machine (a GPU machine reads .cache/ferplus)
MOVABLE_ON_RESUME = {"data", "val_data", "val2", "teacher", "init", "pretrained"}


def check_resume_config(ck, config: dict) -> None:
    """Refuse to go on with a recipe other than the checkpoint's: the run would silently become a
    mix of two (its config.json would claim the new one)."""
    saved = ck.state.get("config")
    if saved is None:  # checkpoints from before the config was kept in them
        return
    defaults = {a.dest: a.default for a in build_parser()._actions}  # flags added since the run began

    def setting(cfg: dict, k: str):
        v = cfg.get(k, defaults.get(k))
        return None if k in ("train_limit", "val_limit") and not v else v  # 0 and absent: all faces

    # a moved teacher is fine, another one is not (runs from before session 31 kept no identity)
    was_teacher, now_teacher = saved.get("teacher_identity"), config.get("teacher_identity")
    if was_teacher and now_teacher and was_teacher != now_teacher:
        raise SystemExit(f"--resume: --teacher {config['teacher']} is not the teacher {ck.path} was trained with "
                         f"(contents {now_teacher}, the run's {was_teacher}). Resume with the run's own teacher, "
                         f"or start a new run folder with --init {ck.path}")
    changed = {k: (setting(saved, k), setting(config, k)) for k in config
               if k not in CHANGEABLE_ON_RESUME and k != "teacher_identity" and setting(saved, k) != setting(config, k)}
    for k in sorted(set(changed) & MOVABLE_ON_RESUME):
        was, now = changed[k]
        if k in ("val2", "val_data") and (was is None) != (now is None):
            continue  # not a move: another validation set, so best.pt's record would not compare
        changed.pop(k)
        flag = f"--{k.replace('_', '-')}"
        if k in ("init", "pretrained"):
            print(f"--resume: {flag} is not read (the checkpoint holds the weights)", file=sys.stderr, flush=True)
        else:
            print(f"--resume: {flag} is {now} (the run began with {was}): the same files are assumed",
                  file=sys.stderr, flush=True)
    if "epochs" in changed and config["schedule"] == "plateau":
        changed.pop("epochs")  # the plateau schedule does not depend on the run's length
    if not changed:
        return
    listed = ", ".join(f"--{k.replace('_', '-')} {was!r} -> {now!r}" for k, (was, now) in sorted(changed.items()))
    why = (" (the cosine schedule spans --epochs: resuming with another count would restart or cut it)"
           if "epochs" in changed else "")
    if "val2" in changed or "val_data" in changed:
        why += (" (best.pt is chosen on the validation sets the run began with: valid + val2 accuracy with "
                "--val2, valid alone without; its best so far would not compare)")
    raise SystemExit(f"--resume: {ck.path} was trained with other flags: {listed}{why}. Resume with the run's "
                     f"own flags (its config.json), or start a new run folder with --init {ck.path}")


@contextlib.contextmanager
def hold_run_folder(out: Path):
    """An exclusive lock on ``out`` while training (released by the OS if the process dies): two
    runs writing one folder would interleave their checkpoints and log."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with os.fdopen(open_for_writing(out / ".lock"), "w") as f:  # (not through a link planted there)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{out} is being trained by another process right now; wait for it or choose "
                             "another --out") from None
        yield


def trained_files(out: Path) -> list[Path]:
    """What a run folder holds of trained work: what ``--overwrite`` replaces and a new run must not
    silently train over (an empty log is a run stopped before its first epoch)."""
    named = [out / n for n in ("last.pt", "prev.pt", "best.pt")] + sorted(out.glob("ep*.pt"))
    log = out / "log.jsonl"
    return [p for p in named if p.exists()] + ([log] if log.is_file() and log.stat().st_size else [])


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file, not a run folder")
    check_args(args)
    # --resume on a folder without checkpoints starts the run: the same nohup command line both
    # starts a long run and continues it after a stop
    fresh = not (out / "last.pt").exists() and not (out / "prev.pt").exists()
    if not fresh and not args.resume and not args.overwrite:
        raise SystemExit(f"{out} holds a run already (last.pt): continue it with --resume, or replace it "
                         "with --overwrite")
    kept = trained_files(out) if out.is_dir() else []
    if fresh and kept and not args.overwrite:
        raise SystemExit(f"{out} holds a run's files ({', '.join(p.name for p in kept)}) but no last.pt or prev.pt "
                         "to resume from: replace them with --overwrite, or start from one with --init FILE "
                         "in a new folder")
    if args.overwrite:  # checked now: the deletion itself waits until every input has loaded
        inputs = {Path(f).resolve(): flag for flag, f in (("--teacher", args.teacher), ("--init", args.init),
                                                          ("--pretrained", args.pretrained)) if f}
        for p in kept:
            if p.resolve() in inputs:
                raise SystemExit(f"{inputs[p.resolve()]} {p} is a file --overwrite would delete: copy it out of "
                                 f"{out} first, or choose another --out")
    if not out.exists():  # (a folder that is there already holds the run's files, or the user's)
        check_inputs_exist(args)
    make_folders(out)
    with hold_run_folder(out):
        return train_in(out, args, fresh)


def check_inputs_exist(args: argparse.Namespace) -> None:
    """Before a new run folder is made: a missing model file or data source is refused with the
    error its loader would give later, and ``--init``, ``--pretrained`` and ``--teacher`` are
    loaded, so a mistyped path or a wrong file leaves no empty folder behind (also a label file or
    manifest that is there but may not be read; an image that cannot be read fails later, with
    its file name)."""
    files = [("--init", args.init), ("--pretrained", args.pretrained)]
    if args.mode == "distill":  # (only distill reads --teacher)
        files.append(("--teacher", args.teacher))
    for flag, f in files:  # (a folder given as --init or --teacher goes on to its loader, which names it)
        if f and not (Path(f).exists() if flag != "--pretrained" else Path(f).is_file()):
            raise SystemExit(f"{flag} {f}: cannot load a pyfer model from it: no such file")
    # loaded once here too (a second or less): a file that is not the model it should be is
    # refused before the folder is made, as a missing one is
    spec, prep = run_spec(args)
    if args.init:
        load_init(args, spec, prep)
    if args.pretrained:
        load_pretrained(args, spec)
    if args.mode == "distill":
        load_teacher(args.teacher, prep, torch.device("cpu"))
    check_source(args.data, "train")
    check_source(args.val_data or args.data, "valid")
    if args.val2:
        check_source(args.val2, "valid")


def run_spec(args: argparse.Namespace) -> tuple[ModelSpec, PreprocessSpec]:
    """The network this run trains, and its input."""
    arch = args.arch or ARCH_OF_MODE[args.mode]
    if args.width != 1.0 and arch != "shufflenetv2":
        raise SystemExit(f"--width is ShuffleNetV2's multiplier; {arch} has none")
    spec = student_spec(args.width, stem=args.stem) if arch == "shufflenetv2" else ModelSpec(arch, stem=args.stem)
    return spec, PreprocessSpec(args.input_size)


def lr_schedule(opt, args):
    """``--schedule``: cosine annealing over ``--epochs``, or (plateau) the rate cut by
    ``--plateau-factor`` once validation accuracy, which should rise, has not risen for
    ``--plateau-patience`` epochs (``mode="max"``: with "min" every improving epoch would count
    as a stall)."""
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=args.plateau_factor,
                                                      patience=args.plateau_patience)


def train_in(out: Path, args: argparse.Namespace, fresh: bool) -> dict:
    """``run`` once the run folder is checked and held."""
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "quiet", "overwrite")}
    if args.mode == "distill" and Path(args.teacher).is_file():  # a missing one fails below, with its flag
        config["teacher_identity"] = teacher_identity(args.teacher)
    resume_from = None
    if args.resume and fresh:
        print(f"--resume: no checkpoint in {out} yet: starting a new run", flush=True)
    elif args.resume:
        try:
            resume_from = load_for_resume(out)
        except (FileNotFoundError, CheckpointError) as exc:
            raise SystemExit(f"--resume: {exc}") from None
        check_resume_config(resume_from[0], config)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = train_device(args.device)
    spec, prep = run_spec(args)
    if resume_from is not None and resume_from[0].spec != spec:
        raise SystemExit(f"--resume: {resume_from[0].path} holds a {resume_from[0].spec.describe()}, and this run "
                         f"builds a {spec.describe()}")
    # the teacher before the data: a wrong --teacher fails in a second, not after decoding
    teacher, teacher_size = load_teacher(args.teacher, prep, device) if args.mode == "distill" else (None, 0)
    train_set, val_set, val2_set = load_data(args, prep)
    if len(train_set) < args.batch_size:
        raise SystemExit(f"{len(train_set)} training faces are fewer than one batch (--batch-size "
                         f"{args.batch_size}): no step would run")

    x_teacher = None  # the teacher's own view of each training face, where it differs from the student's
    if args.student_clahe:
        clip, tiles = parse_clahe(args.student_clahe)
        x_teacher = torch.from_numpy(train_set.images).unsqueeze(1).to(device)
        train_set, val_set = (replace(d, images=clahe_crops(d.images, clip, tiles)) for d in (train_set, val_set))
        if val2_set is not None:
            val2_set = replace(val2_set, images=clahe_crops(val2_set.images, clip, tiles))
    x_train = torch.from_numpy(train_set.images).unsqueeze(1).to(device)
    y_train = torch.from_numpy(train_set.labels).to(device)
    t_train = torch.from_numpy(train_set.targets).to(device)
    torch.manual_seed(args.seed)
    # resumed, the checkpoint holds the weights: --init/--pretrained are not read (and may be gone)
    model = initial_model(args, spec, prep, x_train) if resume_from is None else spec.build(dropout=args.dropout)
    if args.overparam:
        model = overparameterize(model, args.overparam, branch_scale=args.overparam_scale)
    mixstyle = None
    if args.mixstyle:
        from training.mixstyle import EARLY_STAGES, MixStyle

        if spec.arch not in EARLY_STAGES:
            raise SystemExit(f"--mixstyle: no early stages are listed for {spec.arch}; known: {sorted(EARLY_STAGES)}")
        mixstyle = MixStyle(args.mixstyle, args.mixstyle_alpha)
        mixstyle.attach(model, spec.arch)
    # channels_last on CPU too: student steps 1.21x and bf16 teacher steps 1.21x faster on Zen 4
    # (scripts/bench_train_step.py --layouts, RESULTS.md session 29)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    sched = lr_schedule(opt, args)
    ema = weight_average(model, args.ema) if args.ema else None
    if teacher is not None and args.feature_kd:
        teacher = FeatureTeacher(teacher, args.teacher, out, args.threads or 1, device)
    elif teacher is not None and not args.teacher_cache and str(args.teacher).endswith(".safetensors") \
            and device.type == "cpu":
        teacher = EngineTeacher(args.teacher, args.threads or 1)
    if teacher is not None and teacher_size != prep.input_size:
        teacher = AtInputSize(teacher, teacher_size)
    if args.peer:
        from training.peer import PeerMix

        peer = PeerMix(args.peer, prep, device)
    else:
        peer = None

    start_epoch, best_score, best_epoch, history = 0, -1.0, -1, []
    if resume_from is not None:
        start_epoch, best_score, best_epoch, history = resume_state(out, resume_from, args.mode, model, opt, sched,
                                                                    ema, device, args.overparam)
        if start_epoch >= args.epochs:
            print(f"nothing to train: {out} has run {start_epoch} epoch(s), --epochs is {args.epochs} "
                  "(give more to go on)", flush=True)
    else:
        if args.overwrite:  # only now that every input has loaded: a typo must not cost the old run
            for old in trained_files(out):  # no epoch of it may pass for one of the new (caches are keyed)
                old.unlink(missing_ok=True)
        write_file((out / "log.jsonl"), "")
    write_file((out / "config.json"), json.dumps(config, indent=2))

    amp = args.amp
    if amp and device.type == "cpu" and not cpu_has_bf16():
        print("warning: --amp on a CPU without AVX512-BF16 or AMX: bf16 is emulated and slower than fp32",
              file=sys.stderr, flush=True)
    eval_amp = amp and device.type == "cuda"  # on CPU, validate in fp32 as the engine runs
    teacher_logits = None
    if teacher is not None and args.teacher_cache:
        teacher_logits = cached_teacher_logits(args, teacher, x_train, prep, out,
                                               teacher_cache_keys(args, train_set, "logits"), amp)
    prior = np.maximum(train_set.class_counts(), 1) / len(train_set)
    shift = (args.balance * torch.log(torch.as_tensor(prior, dtype=torch.float32))).to(device) \
        if args.balance else None
    views = None
    if teacher is not None and args.teacher_views:
        # with --feature-kd the views keep the teacher's features (its logits follow from them)
        width = teacher.fc.in_features if args.feature_kd else t_train.shape[1]
        views = TeacherViews(args.teacher_views, len(train_set) // args.batch_size, args.batch_size,
                             width, out / "teacher_views.pt", teacher_cache_keys(args, train_set, "views"))
    folds_to = f", folding to {count_parameters(collapse_overparam(model, spec)):,}" if args.overparam else ""
    print(f"{args.mode}: {spec.arch} ({count_parameters(model):,} params{folds_to}), {len(train_set)} train / "
          f"{len(val_set)} valid images at {prep.input_size}px on {device}", flush=True)

    summary = {}
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        train_loss, train_acc = train_epoch(args, epoch, model, opt, prep, x_train, y_train, t_train,
                                            teacher, teacher_logits, shift, amp, ema, x_teacher, views, peer,
                                            mixstyle)
        if views is not None:
            views.epoch_done(epoch)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc}
        judged = model if ema is None else ema.module
        if args.overparam:  # judged, kept and exported as the plain network it folds into
            judged = collapse_overparam(model, spec, args.dropout)
        record.update(evaluate_epoch(judged, prep, val_set, device, args.tta, eval_amp, "val"))
        if val2_set is not None:
            record.update(evaluate_epoch(judged, prep, val2_set, device, args.tta, eval_amp, "val2"))
        score = record["val_accuracy"] + record.get("val2_accuracy", 0.0)
        epoch_lr = opt.param_groups[0]["lr"]  # what this epoch trained with, before the step below
        if args.schedule == "cosine":
            sched.step()
        else:
            sched.step(record["val_accuracy"])
        improved = score > best_score
        if improved:
            best_score, best_epoch = score, epoch
        record.update(lr=epoch_lr, seconds=time.time() - t0)
        history.append(record)
        state = {"mode": args.mode, "epoch": epoch, "model": judged.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "best_val_accuracy": best_score, "best_epoch": best_epoch,
                 "model_spec": asdict(spec), "preprocess": prep.to_dict(), "config": config, "log": history}
        state["rng"] = torch.get_rng_state()  # dropout's: a resumed run draws the same masks
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        if ema is not None or args.overparam:
            state["train_model"] = model.state_dict()
        if args.overparam:
            state["overparam"] = args.overparam
        if args.framing != "frame":
            from pyfer.facenorm import FaceFraming

            state["framing"] = FaceFraming(mode=args.framing).to_dict()
        save_checkpoint(state, out / "last.pt", keep_previous=True)
        if args.keep_epochs:
            save_checkpoint(state, out / f"ep{epoch + 1}.pt")
        if improved:
            save_checkpoint(state, out / "best.pt")
        with os.fdopen(open_for_writing(out / "log.jsonl", append=True), "a") as f:
            f.write(json.dumps(record) + "\n")
        second = (f" val2 {record['val2_accuracy']:.4f} (macro recall {record['val2_macro_recall']:.4f})"
                  if val2_set is not None else "")
        print(f"epoch {epoch + 1}/{args.epochs} loss {train_loss:.4f} train {train_acc:.4f} "
              f"val {record['val_accuracy']:.4f} (macro recall {record['val_macro_recall']:.4f}){second} "
              f"best @ {best_epoch + 1} lr {record['lr']:.2g} {record['seconds']:.1f}s", flush=True)
        summary = record
    # best_score is what chose best.pt (the checkpoints' "best_val_accuracy"): with --val2 the sum of both accuracies
    best = next((r for r in history if r["epoch"] == best_epoch + 1), {})
    summary.update(best_val_accuracy=best.get("val_accuracy"), best_score=best_score,
                   best_epoch=best_epoch + 1, run=str(out))
    return summary


def weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and BatchNorm statistics, started at
    its current weights (with ``--init``: the initial model)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.n_averaged.fill_(1)  # the copy counts as the first average: the next update already blends
    return ema


def resume_state(out: Path, resume_from, mode: str, model, opt, sched, ema=None,
                 device: torch.device = torch.device("cpu"), overparam: int = 0) -> tuple[int, float, int, list]:
    """Load the checkpoint ``load_for_resume(out)`` gave, ``(checkpoint, note)``, into the model,
    optimizer and scheduler (and the weight average, with ``--ema``; the over-parameterized network,
    with ``--overparam``); the log is rewritten to match the checkpoint."""
    ck, note = resume_from
    if note:
        print(note, file=sys.stderr, flush=True)
    ckpt = ck.state
    if ckpt["mode"] != mode:
        raise SystemExit(f"--resume: {ck.path} is a {ckpt['mode']!r} run, not {mode!r}")
    if ckpt.get("overparam", 0) != overparam:
        raise SystemExit(f"--resume: {ck.path} was saved with --overparam {ckpt.get('overparam', 0)}; "
                         "resume it with the same")
    saved_ema = "train_model" in ckpt and not overparam
    if ema is not None and not saved_ema:
        raise SystemExit(f"--resume: {ck.path} was saved without --ema; resume it without --ema")
    if ema is None and saved_ema:
        raise SystemExit(f"--resume: {ck.path} was saved with --ema; resume it with --ema")
    model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
    if ema is not None:
        ema.module.load_state_dict(ckpt["model"])
    repair_best(out, ck)
    if "rng" in ckpt:  # checkpoints from before session 10 lack it
        torch.set_rng_state(ckpt["rng"])
    if "cuda_rng" in ckpt and device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    start_epoch = ckpt["epoch"] + 1
    # drops lines of epochs after the checkpoint (a fallback to prev.pt) and restores one lost
    # to a kill between the checkpoint and the log write
    history = list(ckpt.get("log", []))
    if not history:  # a checkpoint from before the log was kept in it
        history = [r for r in read_log(out / "log.jsonl") if r.get("epoch", 0) <= start_epoch]
    write_file((out / "log.jsonl"), "".join(json.dumps(r) + "\n" for r in history))
    print(f"resuming {mode} from {ck.path} after epoch {start_epoch}", flush=True)
    return start_epoch, ckpt["best_val_accuracy"], ckpt["best_epoch"], history


def repair_best(out: Path, ck) -> None:
    """best.pt is written after last.pt: a stop or a full disk between the two left last.pt naming
    its own epoch the best while best.pt held an older one, and no later epoch rewrote it unless it
    did better (a helper's review, session 47). The resumed checkpoint is then the best: it is
    written as best.pt over an older epoch's or a missing one. A best.pt of a later epoch is kept:
    after a fall back to prev.pt it is the run's best, which the resumed one must beat."""
    state = ck.state
    if state["best_epoch"] != state["epoch"]:
        return
    best = out / "best.pt"
    try:
        held = load_checkpoint(best).state.get("epoch")
    except (FileNotFoundError, CheckpointError):
        held = None
    if held is None or held < state["epoch"]:
        save_checkpoint(state, best)
        was = "was missing or unreadable" if held is None else f"held epoch {held + 1}"
        print(f"note: {best} {was}; rewritten from {ck.path.name} (epoch {state['epoch'] + 1}, the best so far)",
              file=sys.stderr, flush=True)


def epoch_order(labels: np.ndarray, seed: int, draw: int, power: float = 1.0) -> np.ndarray:
    """The faces of one epoch, in order. ``power`` 1: a permutation (every face once). Below 1:
    len(labels) draws with replacement, a face of class c with probability proportional to
    prior(c)^(power-1), so class c makes up prior(c)^power of the draws (normalized): rare classes
    come more often, each of their faces several times an epoch."""
    rng = np.random.default_rng([seed, draw])
    if power == 1.0:
        return rng.permutation(len(labels))
    counts = np.bincount(labels)
    weight = (counts[labels] / len(labels)) ** (power - 1.0)
    return rng.choice(len(labels), size=len(labels), replace=True, p=weight / weight.sum())


def sampled_label_shift(shift: torch.Tensor | None, power: float) -> torch.Tensor | None:
    """The label term's logit adjustment under class-aware sampling. Drawn with classes in proportion
    to prior^power, a face's label distribution is its natural one times prior^(power-1), so the raw
    logits stay the class-balanced posterior with power * tau * log(prior) in the label term; the
    teacher's answer is not resampled and keeps the full shift."""
    return None if shift is None or power == 1.0 else power * shift


def batch_mixer(mixup: float, cutmix: float, rng: np.random.Generator) -> tuple[str, float] | None:
    """This batch's mixing, ("mixup" or "cutmix", lam), or None. With both on, a fair coin picks;
    with one, no coin is drawn, so mixup-only runs draw exactly what they drew before --cutmix."""
    if mixup > 0 and cutmix > 0:
        kind = "cutmix" if rng.random() < 0.5 else "mixup"
    elif mixup > 0 or cutmix > 0:
        kind = "mixup" if mixup > 0 else "cutmix"
    else:
        return None
    alpha = mixup if kind == "mixup" else cutmix
    return kind, float(rng.beta(alpha, alpha))


def cutmix_box(lam: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """CutMix's box as fractions of the image (top, bottom, left, right): sides sqrt(1 - lam) of the
    image's, centred anywhere and clipped at the edges, so the pasted area is at most 1 - lam.
    Fractions, so that a teacher view of another size gets the same region."""
    side = math.sqrt(1.0 - lam)
    cy, cx = rng.random(), rng.random()
    return (max(cy - side / 2, 0.0), min(cy + side / 2, 1.0), max(cx - side / 2, 0.0), min(cx + side / 2, 1.0))


def paste_box(x: torch.Tensor, other: torch.Tensor, box: tuple[float, float, float, float]) -> tuple[torch.Tensor, float]:
    """``x`` (N, C, H, W) with ``box`` cut from ``other``, and the share of each image still ``x``'s
    (the weight of x's targets: the clipped box's real area, not the drawn lam)."""
    h, w = x.shape[-2:]
    top, bottom, left, right = (round(box[0] * h), round(box[1] * h), round(box[2] * w), round(box[3] * w))
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (h * w)


def train_epoch(args, epoch: int, model, opt, prep: PreprocessSpec, x_train, y_train, t_train,
                teacher, teacher_logits, shift, amp: bool, ema=None, x_teacher=None,
                views: TeacherViews | None = None, peer=None, mixstyle=None) -> tuple[float, float]:
    from tqdm import tqdm

    device = x_train.device
    model.train()
    # per-epoch seeds: a resumed run sees exactly the batches it would have seen; with --teacher-views
    # the epoch replays the draws of an earlier one
    draw = views.draw(epoch) if views is not None else epoch
    replay = views is not None and views.filled[draw]
    order = torch.from_numpy(epoch_order(y_train.cpu().numpy(), args.seed, draw, args.sample_power)).to(device)
    label_shift = sampled_label_shift(shift, args.sample_power)
    gen = torch.Generator(device=device).manual_seed(args.seed * 100003 + draw)
    mix_rng = np.random.default_rng([args.seed, draw, 7])
    if mixstyle is not None:  # by epoch, not draw: replayed views need not replay its mixing
        mixstyle.reseed(args.seed, epoch, 13)
    aug = AUGMENTS[args.augment]
    n_classes = t_train.shape[1]
    n_batches = len(order) // args.batch_size  # drop the ragged last batch (BatchNorm)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
               disable=args.quiet, mininterval=2.0)
    for b in bar:
        idx = order[b * args.batch_size:(b + 1) * args.batch_size]
        xb = x_train[idx]
        if x_teacher is not None:  # the teacher's view: the same draws of every augmentation
            state = gen.get_state()
            xt = to_model_input(x_teacher[idx], prep) if args.no_augment else augment(x_teacher[idx], prep, aug, gen)
            gen.set_state(state)
        x = to_model_input(xb, prep) if args.no_augment else augment(xb, prep, aug, gen)
        x = x.contiguous(memory_format=torch.channels_last)
        if x_teacher is None:
            xt = x
        target = t_train[idx] if args.soft_labels else y_train[idx]
        # cached answers are for the clean face, so mixup mixes them; a live teacher instead
        # answers on exactly the (mixed, augmented) view the student sees: consistent teaching
        t_probs = teacher_softmax(teacher_logits[idx], args.T, args.kd_standardize) \
            if teacher_logits is not None else None
        mixer = batch_mixer(args.mixup, args.cutmix, mix_rng)
        if mixer is not None:  # mix images, targets and cached answers alike
            kind, lam = mixer
            perm = torch.from_numpy(mix_rng.permutation(len(idx))).to(device)
            if kind == "mixup":
                x = lam * x + (1 - lam) * x[perm]
                xt = x if x_teacher is None else lam * xt + (1 - lam) * xt[perm]
            else:
                box = cutmix_box(lam, mix_rng)
                x, lam = paste_box(x, x[perm], box)
                xt = x if x_teacher is None else paste_box(xt, xt[perm], box)[0]
            if target.ndim == 1:
                target = F.one_hot(target, n_classes).float()
            target = lam * target + (1 - lam) * target[perm]
            if t_probs is not None:
                t_probs = lam * t_probs + (1 - lam) * t_probs[perm]
        t_out = None  # the live or replayed teacher's answer: logits, or features with --feature-kd
        if replay:
            t_out = views.logits[draw, b].to(device)
        elif teacher is not None and teacher_logits is None:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                t_out = teacher(xt).float()
            if views is not None:
                views.logits[draw, b] = t_out.cpu()
        if t_out is not None and peer is not None:  # the views keep the teacher's own answers
            t_out = peer(t_out, xt)
        if t_out is not None:
            t_features = t_out if args.feature_kd else None
            if args.feature_kd:
                with torch.no_grad():
                    t_out = teacher.logits(t_out).float()
            t_probs = teacher_softmax(t_out, args.T, args.kd_standardize)

        def batch_loss() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if args.feature_kd:
                    s_features = model.features(x).mean((2, 3))
                    logits = model.fc(model.dropout(s_features)).float()
                else:
                    logits = model(x).float()
                loss = recipe_loss(logits, target, t_probs, args.T, args.alpha, args.label_smoothing, shift,
                                   args.kd_standardize, args.dkd_beta, label_shift)
                if args.feature_kd:
                    loss = loss + args.feature_kd * similarity_kd(s_features.float(), t_features)
            return loss, logits

        loss, logits = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.sam:  # the step takes the gradients at the worst weights within radius rho
            with sharpness_probe(model, args.sam):
                opt.zero_grad(set_to_none=True)
                batch_loss()[0].backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == y_train[idx]).sum().item()
        seen += len(idx)
        if b % 20 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate_epoch(model, prep: PreprocessSpec, data: FaceSet, device, tta: bool, amp: bool, name: str) -> dict:
    x = torch.from_numpy(data.images).unsqueeze(1).to(device)
    logits = predict_logits(model, x, prep, tta=tta, amp=amp).cpu()
    y = torch.from_numpy(data.labels)
    pred = logits.argmax(1)
    return {f"{name}_loss": F.cross_entropy(logits, y).item(),
            f"{name}_accuracy": (pred == y).float().mean().item(),
            f"{name}_macro_recall": label_metrics(data.labels, pred.numpy(), EMOTIONS)["macro_recall"]}


def main(argv=None, rerun_hint: str | None = None) -> None:
    """``rerun_hint``: how to go on after a stop, for a tool that runs this one ("this ablation
    command": its own, which resumes by itself), in place of ``--resume``."""
    from training.data import DataError

    args = build_parser().parse_args(argv)
    before = _last_checkpoint_id(Path(args.out))
    with StopSignals() as stop:
        try:
            summary = run(args)
        except (DataError, CheckpointError, OSError) as exc:  # bad input or path; a bug keeps its traceback
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print(stop_message(Path(args.out), args.overwrite, before, rerun_hint), file=sys.stderr)
            raise SystemExit(stop.exit_status) from None
    print(json.dumps(summary))


def _last_checkpoint_id(out: Path):
    """Which last.pt the folder holds (a save writes a new file), or None."""
    try:
        st = (out / "last.pt").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def stop_message(out: Path, overwrite: bool, before, rerun_hint: str | None) -> str:
    """What a stopped run keeps and how to go on: ``before`` is ``_last_checkpoint_id`` at the start."""
    if overwrite and _last_checkpoint_id(out) == before:  # (what is there, if anything, is the old run's)
        return (f"interrupted before the first epoch of the new run in {out} was saved: "
                f"{rerun_hint or 'the same command'} starts it again")
    if (out / "last.pt").is_file() or (out / "prev.pt").is_file():
        again = rerun_hint or ("the same command with --resume in place of --overwrite" if overwrite
                               else "the same command and --resume")
        return f"interrupted: {out} keeps every finished epoch; continue with {again}"
    return (f"interrupted before the first epoch of {out} finished: no epoch to keep; "
            f"{rerun_hint or 'the same command'} starts it again")


if __name__ == "__main__":
    with error_lines():
        main()
