"""The best offline peer, scored on pyfer's two selection sets: face-api.js's expression model.

Issue 13's hidden panel found that "a small 2019 browser model" beats pyfer on 4 of its 6 sets.
That model is face-api.js's ``FaceExpressionNet`` (MIT; 7 classes, no contempt; 112 px RGB;
324k weights). It ships, as TensorFlow.js weights, in the npm package ``@vladmandic/face-api``,
which ``training.pretrained.fetch_face_api`` fetches. This module runs it in PyTorch
(``FaceExpressionNet``: the same layers, TensorFlow's "same" padding, checked against
TensorFlow.js's own output in ``tests/test_peer.py``) and scores it as pyfer's models are scored:
faces framed by ``normalize_face`` (at 112 px for the peer), flip averaging, FERPlus valid and SFEW
train, issue 13's four targets.

``--with MODEL`` also scores a pyfer model beside it, on the faces both know (FERPlus without its
contempt faces), and averages the two (log-probabilities, the peer's share ``--peer-weights``;
contempt from the pyfer model) at each average's best prior shift: is the peer a second teacher?

    python -m training.peer --with pyfer/models/tsnet_student.safetensors \\
        models/teacher_s11_fp16.safetensors --zooms 0.8 0.9 1.0 1.1 1.2 1.3 --train-check \\
        --out results/peer_faceapi

``--zooms`` frames the peer's faces tighter (above 1) or looser than pyfer's landmark template and
keeps the best framing by the rule: the peer was trained on its own detector's crops, so it gets
its framing tuned on these sets (pyfer's models do not).

``--train-check`` also scores every model on FERPlus train. A model scores far higher on faces it
learned than on new ones: pyfer's models learned train. A peer that scores alike on train and valid,
and lower than pyfer's models on both, learned neither by heart (they are FER2013's training and
PublicTest faces, relabelled by FERPlus), so distilling from it does not bring valid's labels into
training.

Writes ``<out>.md`` (tables) and ``<out>.png`` (per-class recall, the peer beside each model).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyfer.atomic import make_folders, save_figure, write_file
from pyfer.preprocess import EMOTIONS

FACE_API_CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
AS_EMOTION = {"neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger",
              "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
FACE_API_MEAN_RGB = (122.782, 117.001, 104.298)  # its input: (pixel - mean_c) / 255
INPUT_SIZE = 112
ABSENT_LOGIT = -1e4  # contempt, which the peer does not know
REPO = Path(__file__).resolve().parents[1]


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "same" padding: the output has ceil(size / stride) positions and the odd pixel
    of padding goes at the bottom / right. At stride 2 on an even size that is (0, 1), not
    PyTorch's symmetric (1, 1), which would shift every later feature by one pixel."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SeparableConv(nn.Module):
    """A 3x3 depthwise conv (no bias), then a pointwise conv with bias."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(tf_same_pad(x, 3, self.stride)))


class DenseBlock(nn.Module):
    """Four convs, each fed the ReLU of the sum of the outputs before it; the first halves the size
    (a plain 3x3 conv on the RGB input, a separable one after)."""

    def __init__(self, cin: int, cout: int, first: bool):
        super().__init__()
        self.first = first
        self.conv0 = nn.Conv2d(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.convs = nn.ModuleList(SeparableConv(cout, cout, 1) for _ in range(3))

    def forward(self, x):
        out = F.relu(self.conv0(tf_same_pad(x, 3, 2)) if self.first else self.conv0(x))
        total = out
        for conv in self.convs:
            total = total + conv(F.relu(total))
        return F.relu(total)


class FaceExpressionNet(nn.Module):
    """face-api.js's expression model: RGB pixels (N, 3, 112, 112) in 0-255 -> 7 logits in
    ``FACE_API_CLASSES`` order."""

    WIDTHS = (32, 64, 128, 256)

    def __init__(self):
        super().__init__()
        cins = (3,) + self.WIDTHS[:-1]
        self.dense = nn.ModuleList(DenseBlock(cin, cout, i == 0) for i, (cin, cout) in enumerate(zip(cins, self.WIDTHS)))
        self.fc = nn.Linear(self.WIDTHS[-1], len(FACE_API_CLASSES))
        self.register_buffer("mean", torch.tensor(FACE_API_MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb):
        x = (rgb - self.mean) / 255
        for block in self.dense:
            x = block(x)
        return self.fc(F.avg_pool2d(x, 7, 2).flatten(1))


def face_api_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``FaceExpressionNet``'s state dict from face-api.js's arrays (TensorFlow.js layouts: filters
    (kh, kw, in, out), depthwise (kh, kw, in, 1), fc (in, out))."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    state = {}
    for i in range(len(FaceExpressionNet.WIDTHS)):
        src, dst = f"dense{i}/", f"dense.{i}."
        if i == 0:
            state[dst + "conv0.weight"] = t[src + "conv0/filters"].permute(3, 2, 0, 1)
            state[dst + "conv0.bias"] = t[src + "conv0/bias"]
        for j in range(4):
            if i == 0 and j == 0:
                continue
            into = dst + ("conv0." if j == 0 else f"convs.{j - 1}.")
            state[into + "depthwise.weight"] = t[f"{src}conv{j}/depthwise_filter"].permute(2, 3, 0, 1)
            state[into + "pointwise.weight"] = t[f"{src}conv{j}/pointwise_filter"].permute(3, 2, 0, 1)
            state[into + "pointwise.bias"] = t[f"{src}conv{j}/bias"]
    state["fc.weight"] = t["fc/weights"].T
    state["fc.bias"] = t["fc/bias"]
    return {k: v.float().contiguous() for k, v in state.items()}


def load_face_api_expression() -> FaceExpressionNet:
    """The peer with its published weights (fetched from npm once, then from the cache)."""
    from training.pretrained import fetch_face_api, read_tfjs_weights

    net = FaceExpressionNet()
    net.load_state_dict(face_api_state(read_tfjs_weights(*fetch_face_api("face_expression_model"))))
    return net.eval()


def in_emotion_order(logits7: torch.Tensor) -> torch.Tensor:
    """The peer's (N, 7) logits as (N, 8) in ``EMOTIONS`` order, ``ABSENT_LOGIT`` for contempt."""
    column = {AS_EMOTION[name]: j for j, name in enumerate(FACE_API_CLASSES)}
    out = logits7.new_full((len(logits7), len(EMOTIONS)), ABSENT_LOGIT)
    for c, emotion in enumerate(EMOTIONS):
        if emotion in column:
            out[:, c] = logits7[:, column[emotion]]
    return out


def as_peer_input(gray: torch.Tensor) -> torch.Tensor:
    """Gray pixels (N, 1 or none, S, S) in 0-255 -> the peer's RGB (N, 3, 112, 112): gray is the
    same value in R, G and B; other sizes are resized (bilinear)."""
    x = gray.float().reshape(len(gray), 1, *gray.shape[-2:])
    if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1)


@torch.no_grad()
def peer_logits(net: FaceExpressionNet, gray_u8: np.ndarray, batch: int = 256) -> np.ndarray:
    """Flip-averaged logits for gray uint8 faces (N, S, S), as (N, 8) in ``EMOTIONS`` order."""
    out = []
    for i in range(0, len(gray_u8), batch):
        x = as_peer_input(torch.from_numpy(np.asarray(gray_u8[i:i + batch])))
        out.append(in_emotion_order((net(x) + net(x.flip(3))) / 2))
    return torch.cat(out).numpy()


def averaged(model_logits: torch.Tensor, peer: torch.Tensor, peer_weight: float) -> torch.Tensor:
    """Log-probabilities of a pyfer model averaged with the peer's on the classes the peer knows
    (the peer's own softmax over those); the other classes keep the model's."""
    known = peer[0] > ABSENT_LOGIT
    mix = torch.log_softmax(model_logits.float(), 1)
    mix[:, known] = (1 - peer_weight) * mix[:, known] + peer_weight * torch.log_softmax(peer[:, known].float(), 1)
    return mix


class PeerMix:
    """The peer as a second teacher in distillation (``train.py --peer W``): a teacher's answers on a
    normalised batch, averaged with the peer's answers on the same faces. The peer is fixed, so a
    replayed epoch (``--teacher-views``) gets the same targets as the live one."""

    def __init__(self, weight: float, prep, device: torch.device):
        self.weight, self.prep = weight, prep
        self.net = load_face_api_expression().to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, teacher_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.float() * self.prep.std + self.prep.mean) * 255
        return averaged(teacher_logits, in_emotion_order(self.net(as_peer_input(pixels))), self.weight)


def zoomed(framing, zoom: float):
    """``framing`` with its landmark template spread (zoom > 1: a tighter crop) or drawn in about
    the crop's centre."""
    from dataclasses import replace

    return replace(framing, template=tuple((0.5 + (x - 0.5) * zoom, 0.5 + (y - 0.5) * zoom) for x, y in framing.template))


def plot_recalls(recalls: dict[str, dict], path: Path) -> None:
    """Per-class recall bars, one group per class, one bar per model; a panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(recalls.values())))
    fig, axes = plt.subplots(len(sets), 1, figsize=(10, 3.2 * len(sets)), squeeze=False)
    width = 0.8 / len(recalls)
    for ax, s in zip(axes[:, 0], sets):
        for m, (name, rec) in enumerate(recalls.items()):
            vals = [np.nan if rec[s][e] is None else 100 * rec[s][e] for e in EMOTIONS]
            ax.bar(np.arange(len(EMOTIONS)) + (m - (len(recalls) - 1) / 2) * width, vals, width, label=name)
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS)
        ax.set_ylim(0, 100)
        ax.set_ylabel("recall %")
        ax.set_title(s)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    from pyfer.facenorm import FaceFraming
    from pyfer.preprocess import PreprocessSpec
    from training.cli import output_path, reported_errors
    from training.data import DEFAULT_DATA, ferplus_prior
    from training.framing import load_framed
    from training.predict import load_model, predict_logits
    from training.prior_shift import TARGETS, best_shift, format_cells, framed_logits, metrics, \
        per_class_recall_table, scores

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with", dest="models", nargs="*", default=[], help="pyfer models (.safetensors or .pt) to score beside the peer")
    ap.add_argument("--peer-weights", type=float, nargs="*", default=[0.1, 0.2, 0.33, 0.5],
                    help="the peer's share in each average with a --with model")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--shifts", type=float, nargs="+", default=list(np.round(np.arange(-1.5, 1.01, 0.05), 2)))
    ap.add_argument("--zooms", type=float, nargs="+", default=[1.0],
                    help="frame the peer's faces at these zooms of pyfer's template (above 1: tighter) and "
                         "keep the best by the rule: the peer's framing is tuned on these sets, pyfer's is not")
    ap.add_argument("--train-check", action="store_true", help="also score every model on FERPlus train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "peer_faceapi"))
    args = ap.parse_args(argv)
    for m in args.models:
        if not Path(m).is_file():
            raise SystemExit(f"no such model: {m}")
    if any(not 0.5 <= z <= 2 for z in args.zooms):
        raise SystemExit("--zooms must lie in [0.5, 2]")
    if any(not 0 < w < 1 for w in args.peer_weights):
        raise SystemExit("--peer-weights must lie strictly between 0 and 1")
    torch.set_num_threads(args.threads)
    with reported_errors():
        make_folders(Path(args.out).parent)  # before the work, not after it

    prep = PreprocessSpec(INPUT_SIZE)
    net = load_face_api_expression()
    no_bias = np.zeros(len(EMOTIONS))
    cols = list(TARGETS) + ["worst ratio to target"]
    head = ["| model | shift | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    by_zoom, zoom_rows = {}, ["| peer's framing | shift | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for zoom in args.zooms:
        framing = zoomed(FaceFraming(mode="align"), zoom)
        sets = {"FERPlus valid": load_framed(args.data, prep, "valid", framing),
                "SFEW": load_framed(args.val2, prep, "valid", framing)}
        labels = {k: s.labels for k, s in sets.items()}
        logits = {k: peer_logits(net, s.images) for k, s in sets.items()}
        row = scores(logits, labels, no_bias)
        by_zoom[zoom] = (row["worst ratio to target"], framing, logits)
        zoom_rows.append(f"| template x {zoom:.2f} | none | " + " | ".join(format_cells(row)) + " |")
    zoom = max(by_zoom, key=lambda z: by_zoom[z][0])
    _, framing, peer = by_zoom[zoom]
    log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))
    known = labels["FERPlus valid"] != EMOTIONS.index("contempt")

    alone = list(head)
    seven = ["| model | FERPlus valid accuracy | FERPlus valid macro recall |", "|---|---|---|"]
    per_class, recalls = [], {}

    def describe(name: str, short: str, logits: dict) -> None:
        """One model's rows in the as-shipped, 7-class and per-class tables."""
        alone.append(f"| {name} | none | " + " | ".join(format_cells(scores(logits, labels, no_bias))) + " |")
        seven.append(f"| {name} | " + " | ".join(
            f"{100 * v:.2f}" for v in metrics(labels["FERPlus valid"][known], logits["FERPlus valid"][known])) + " |")
        table, recalls[short] = per_class_recall_table(logits, labels, no_bias)
        per_class.append(f"**{name}**, no shift:\n\n{table}")

    describe("face-api.js expression net (peer)", "face-api.js (peer)", peer)
    mixes, model_logits = list(head), {}
    for m in args.models:
        name = f"`{Path(m).name}`"
        logits, _ = framed_logits(m, args.data, args.val2)
        model_logits[m] = logits
        describe(name, Path(m).name, logits)
        for w in [0.0] + list(args.peer_weights):
            mix = {k: averaged(torch.from_numpy(logits[k]), torch.from_numpy(peer[k]), w).numpy() for k in labels}
            shift, row = best_shift(mix, labels, log_prior, args.shifts)
            mixes.append(f"| {name} + {w:.2f} x peer | {shift:+.2f} | " + " | ".join(format_cells(row)) + " |")

    train_rows = []
    if args.train_check:
        train = load_framed(args.data, prep, "train", framing)
        on_valid = metrics(labels["FERPlus valid"], peer["FERPlus valid"])[0]
        on_train = metrics(train.labels, peer_logits(net, train.images))[0]
        train_rows = ["| model | FERPlus train accuracy | FERPlus valid accuracy |", "|---|---|---|",
                      f"| face-api.js expression net (peer) | {100 * on_train:.2f} | {100 * on_valid:.2f} |"]
        for m in args.models:
            model, _, model_prep = load_model(m)
            framed = load_framed(args.data, model_prep, "train", FaceFraming(mode="align"))
            logits = predict_logits(model, torch.from_numpy(framed.images).unsqueeze(1), model_prep, tta=True).numpy()
            train_rows.append(f"| `{Path(m).name}` | {100 * metrics(framed.labels, logits)[0]:.2f} | "
                              f"{100 * metrics(labels['FERPlus valid'], model_logits[m]['FERPlus valid'])[0]:.2f} |")

    from training.evaluate import count_macs

    size = (f"The peer: {sum(p.numel() for p in net.parameters()):,} parameters, "
            f"{count_macs(net, INPUT_SIZE, 3) / 1e6:.1f}M MACs at {INPUT_SIZE}x{INPUT_SIZE} RGB.")
    text = "\n".join(
        [size, ""]
        + ([f"## The peer's framing (best: template x {zoom:.2f}, used below)", "", *zoom_rows, ""] if len(args.zooms) > 1 else [])
        + ["## The peer and pyfer's models, each as it ships (no prior shift)", "", *alone, "",
         "## FERPlus valid without its contempt faces (the 7 classes the peer knows)", "", *seven, "",
         "## Per-class recall (%)", "", "\n\n".join(per_class), ""]
        + (["## The peer as a second teacher: averages at their best prior shift", "", *mixes, ""] if args.models else [])
        + (["## FERPlus train against valid (flip averaging, no prior shift)", "", *train_rows, ""] if train_rows else []))
    md, png = output_path(args.out, ".md"), output_path(args.out, ".png")
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        write_file(md, text)
        plot_recalls(recalls, png)
    print(text)
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    from training.cli import run_tool

    run_tool(main)
