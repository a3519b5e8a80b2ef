"""Grad-CAM figure like the paper's Fig. 6: image | teacher CAM | student CAM.

    python -m training.gradcam --teacher models/teacher_s11_fp16.safetensors \
        --student pyfer/models/tsnet_student.safetensors --n 8 --out results/gradcam.jpg

CAMs come from the maintained ``grad-cam`` package, taken at the last feature block of each
network (the teacher's FFE in layer4, the student's conv5), for the class each model predicts.
Images are ``--n`` validation faces drawn one class after another (seeded; classes the data lacks,
such as SFEW's contempt, are skipped), cut as the student was trained on them (``--framing``):
the faces ``predict`` gives it.
"""
from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

from pyfer.atomic import make_folders, save_figure
from pyfer.facenorm import FaceFraming
from pyfer.preprocess import EMOTIONS
from training.cli import reported_errors, run_tool
from training.data import DEFAULT_DATA, load_dataset
from training.evaluate import recorded_framing
from training.framing import load_framed
from training.predict import load_model


def _import_gradcam():
    """Import pytorch_grad_cam. It imports torchvision for helpers we do not use; the torchvision
    wheels on PyPI fail to import beside the pinned CPU torch ('torchvision::nms does not exist'),
    so in that case the three names it imports at module level are given placeholders."""
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        tv = types.ModuleType("torchvision")
        tf = types.ModuleType("torchvision.transforms")
        tff = types.ModuleType("torchvision.transforms.functional")

        def unavailable(*_a, **_k):
            raise RuntimeError("torchvision is unavailable in this environment")

        tf.Compose = tf.Normalize = tf.ToTensor = unavailable
        tff.resize = unavailable
        tv.transforms, tf.functional = tf, tff
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tf,
                            "torchvision.transforms.functional": tff})
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return GradCAM, ClassifierOutputTarget


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    return model.layer4[-1] if hasattr(model, "layer4") else model.conv5


def cams(model, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N, H, W) in [0, 1] for the predicted classes, and those classes."""
    GradCAM, ClassifierOutputTarget = _import_gradcam()
    model = model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    with GradCAM(model=model, target_layers=[target_layer(model)]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in pred])
    return maps, pred


def pick_examples(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random faces, one class after another among the classes ``labels`` holds (SFEW and
    RAF-DB have no contempt)."""
    rng = np.random.default_rng(seed)
    present = np.unique(labels)
    return np.array([rng.choice(np.flatnonzero(labels == present[i % len(present)])) for i in range(n)])


def figure(images, labels, t_maps, t_pred, s_maps, s_pred, out: Path) -> None:
    """The grid: each face, then its teacher and student CAMs, titled with what each model
    predicted (a cross marks a prediction that is not the label). ``inferno`` (dark to bright,
    in order, also in greyscale; jet was neither), with a colour bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    fig = Figure(figsize=(1.6 * n + 0.8, 5.4))
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(3, n)).reshape(3, n)
    shown = None
    for j in range(n):
        def said(who: str, pred: int) -> str:
            return f"{who}: {EMOTIONS[pred]}" + ("" if pred == labels[j] else " \u2717")
        rows = [(None, f"label: {EMOTIONS[labels[j]]}"), (t_maps[j], said("teacher", t_pred[j])),
                (s_maps[j], said("student", s_pred[j]))]
        for i, (cam, title) in enumerate(rows):
            ax = axes[i, j]
            ax.imshow(images[j], cmap="gray")
            if cam is not None:
                shown = ax.imshow(cam, cmap="inferno", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    for i, name in enumerate(["image", "teacher CAM", "student CAM"]):
        axes[i, 0].text(-0.15, 0.5, name, transform=axes[i, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if shown is not None:
        bar = fig.colorbar(shown, cax=fig.add_axes((0.945, 0.1, 0.012, 0.55)))
        bar.solids.set_alpha(1)  # (the scale itself, not the see-through overlay)
        bar.set_label("relative importance (Grad-CAM)", fontsize=8)
    save_figure(fig, out, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=8, help="how many faces (rows), at least 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--framing", choices=("auto", "frame", "align", "box"), default="auto",
                    help="how both models' faces are cut: auto (default), as the student records it trained, "
                         "which is what predict gives it; frame: the data set's own crops")
    ap.add_argument("--out", default="gradcam.jpg")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n must be at least 1, got {args.n}")
    out = Path(args.out)
    with reported_errors():
        make_folders(out.parent)  # before the work, not after it
        teacher, _, prep = load_model(args.teacher)
        student, _, sprep = load_model(args.student)
        if prep != sprep:
            raise ValueError(f"teacher and student preprocess differently: {prep} vs {sprep}")
        mode = (recorded_framing(args.student) or "frame") if args.framing == "auto" else args.framing
        data = (load_dataset(args.data, prep, "valid") if mode == "frame"
                else load_framed(args.data, prep, "valid", FaceFraming(mode=mode)))
    print(f"faces: {args.data} valid, framed by {mode}", flush=True)
    idx = pick_examples(data.labels, args.n, args.seed)
    images = data.images[idx]
    x = torch.from_numpy((images.astype(np.float32) / 255 - prep.mean) / prep.std).unsqueeze(1)
    t_maps, t_pred = cams(teacher.float(), x)
    s_maps, s_pred = cams(student.float(), x)
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        figure(images, data.labels[idx], t_maps, t_pred, s_maps, s_pred, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_tool(main)
