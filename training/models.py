"""PyTorch reference models of T-SNet: the ShuffleNetV2 student and the EFF-ResNet18 teacher.

Every convolution is wrapped in :class:`ConvBN` (conv, BatchNorm, optional ReLU). Export folds
each BatchNorm into its convolution (``fold_batchnorm``), so an exported file holds, per ConvBN,
``<path>.conv.weight`` (OIHW) and ``<path>.conv.bias``; ``training.export.from_safetensors`` rebuilds the same
module tree with ``folded=True`` and loads those tensors strictly. The C++ engine reads the same
names, so the tensor names below are part of the export format (see ``training/export.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn
import torch.nn.functional as F

Stem = Literal["imagenet", "small"]
STEMS = ("imagenet", "small")
NUM_FFE_GROUPS = 4


class ConvBN(nn.Module):
    """conv -> BatchNorm -> optional ReLU. With ``folded=True`` the BN is absent and the conv has a bias."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = True, folded: bool = False, padding: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding,
                              groups=groups, bias=folded)
        self.bn = nn.Identity() if folded else nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------------
# Student: ShuffleNetV2 1.0x
# ----------------------------------------------------------------------------------------------
class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (Ma et al., 2018).

    stride 1 (basic): split channels in halves (x1, x2); out = shuffle(concat(x1, branch2(x2))).
    stride 2 (down-sampling): out = shuffle(concat(branch1(x), branch2(x))).
    branch1 = dw3x3/s2+BN, 1x1+BN+ReLU; branch2 = 1x1+BN+ReLU, dw3x3/s+BN, 1x1+BN+ReLU.
    """

    def __init__(self, cin: int, cout: int, stride: int, folded: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if cout % 2:
            raise ValueError(f"output channels must be even, got {cout}")
        half = cout // 2
        if stride == 1 and cin != cout:
            raise ValueError("a basic (stride 1) unit needs cin == cout")
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                ConvBN(cin, cin, 3, 2, groups=cin, relu=False, folded=folded),
                ConvBN(cin, half, 1, folded=folded),
            )
        b2_in = cin if stride == 2 else half
        self.branch2 = nn.Sequential(
            ConvBN(b2_in, half, 1, folded=folded),
            ConvBN(half, half, 3, stride, groups=half, relu=False, folded=folded),
            ConvBN(half, half, 1, folded=folded),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


# ShuffleNetV2's widths by multiplier (Ma et al. 2018, Table 5): stem, stages 2-4, conv5
SHUFFLENETV2_WIDTHS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def check_stage_table(widths: tuple[int, ...], repeats: tuple[int, ...]) -> None:
    """ShuffleNetV2's stage table: ``widths`` = (stem, one per stage, conv5), ``repeats`` = units
    per stage. A stage's width must be even: its units split the channels in halves."""
    if not repeats or not all(isinstance(r, int) and r >= 1 for r in repeats):
        raise ValueError(f"repeats must be one or more units per stage (ints >= 1), got {repeats!r}")
    if len(widths) != len(repeats) + 2 or not all(isinstance(c, int) and c >= 1 for c in widths):
        raise ValueError(f"widths must be {len(repeats) + 2} ints >= 1 (stem, {len(repeats)} stages, conv5) "
                         f"for {len(repeats)} stages, got {widths!r}")
    odd = [c for c in widths[1:-1] if c % 2]
    if odd:
        raise ValueError(f"stage widths must be even (each unit splits its channels in halves), got {odd}")


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 for grayscale faces, built from a stage table (1.0x by default).

    stem: 3x3 conv (stride 2 for ``imagenet``, stride 1 for ``small``) + BN + ReLU + 3x3/2 max-pool;
    stages 2, 3, ... of ``repeats`` units (4, 8, 4; the first unit of each stage down-samples) at
    ``widths[1:-1]``; conv5 1x1 to ``widths[-1]``; global average pool; dropout; linear classifier.
    """

    STAGE_REPEATS = (4, 8, 4)
    STAGE_WIDTHS = SHUFFLENETV2_WIDTHS[1.0]

    def __init__(self, num_classes: int = 8, in_channels: int = 1, stem: Stem = "small",
                 dropout: float = 0.5, folded: bool = False, widths: Sequence[int] | None = None,
                 repeats: Sequence[int] | None = None):
        super().__init__()
        _check_common(num_classes, in_channels, stem, dropout)
        w = tuple(self.STAGE_WIDTHS if widths is None else widths)
        reps = tuple(self.STAGE_REPEATS if repeats is None else repeats)
        check_stage_table(w, reps)
        self.stem = ConvBN(in_channels, w[0], 3, 2 if stem == "imagenet" else 1, folded=folded)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage_names = [f"stage{i + 2}" for i in range(len(reps))]  # torchvision's names: stage2, ...
        cin = w[0]
        for name, n_units, cout in zip(self.stage_names, reps, w[1:-1]):
            units = [ShuffleUnit(cin, cout, 2, folded)]
            units += [ShuffleUnit(cout, cout, 1, folded) for _ in range(n_units - 1)]
            self.add_module(name, nn.Sequential(*units))
            cin = cout
        self.conv5 = ConvBN(cin, w[-1], 1, folded=folded)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.conv5(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.fc(self.dropout(x))


# ----------------------------------------------------------------------------------------------
# Teacher: EFF-ResNet18
# ----------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet basic block: 3x3+BN+ReLU, 3x3+BN, plus identity or 1x1/s+BN shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, folded: bool = False):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride, folded=folded)
        self.conv2 = ConvBN(cout, cout, 3, relu=False, folded=folded)
        self.shortcut = (ConvBN(cin, cout, 1, stride, relu=False, folded=folded)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class FFE(nn.Module):
    """Fine-grained Feature Extraction module (T-SNet), a symmetric Res2Net-style block.

    Choices where the method is open (documented here, mirrored by the C++ engine):

    - ``conv_in``: 3x3 conv cin->cout with the stage's stride, + BN + ReLU.
    - Its output is split into n=4 groups X_1..X_4 of cout/4 channels.
    - Left chain, i = 1..n:  Y_i^L = P_i^L(X_i + Y_{i-1}^L), with Y_0^L = 0.
    - Right chain, i = n..1: Y_i^R = P_i^R(X_i + Y_{i+1}^R), with Y_{n+1}^R = 0.
      Each P is a 3x3 conv (cout/4 -> cout/4) + BN + ReLU.
    - Y_i = Y_i^L + Y_i^R, concatenated in group order.
    - ``conv_out``: 3x3 conv cout->cout + BN (no ReLU), like a BasicBlock's second conv.
    - Residual: + shortcut(x) (1x1/stride conv + BN when the shape changes, else identity), ReLU.

    In EFF-ResNet18 an FFE module takes the place of the second basic block of ResNet18's layer3
    and layer4 (the first block keeps the stride-2 down-sampling), giving ~12.7M parameters in
    all (paper: 11.8M; the paper does not say how its modules are wired).
    """

    def __init__(self, cin: int, cout: int, stride: int = 2, groups: int = NUM_FFE_GROUPS,
                 folded: bool = False):
        super().__init__()
        if cout % groups:
            raise ValueError(f"FFE output channels ({cout}) must divide into {groups} groups")
        width = cout // groups
        self.groups = groups
        self.conv_in = ConvBN(cin, cout, 3, stride, folded=folded)
        self.left = nn.ModuleList(ConvBN(width, width, 3, folded=folded) for _ in range(groups))
        self.right = nn.ModuleList(ConvBN(width, width, 3, folded=folded) for _ in range(groups))
        self.conv_out = ConvBN(cout, cout, 3, relu=False, folded=folded)
        self.shortcut = (ConvBN(cin, cout, 1, stride, relu=False, folded=folded)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.conv_in(x).chunk(self.groups, dim=1)
        left, right = [None] * self.groups, [None] * self.groups
        prev = None
        for i in range(self.groups):
            prev = self.left[i](xs[i] if prev is None else xs[i] + prev)
            left[i] = prev
        prev = None
        for i in reversed(range(self.groups)):
            prev = self.right[i](xs[i] if prev is None else xs[i] + prev)
            right[i] = prev
        y = torch.cat([l + r for l, r in zip(left, right)], dim=1)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv_out(y) + identity)


class EffResNet18(nn.Module):
    """EFF-ResNet18: ResNet18 stem, layer1 (64), layer2 (128, /2), layer3 = down-sampling basic
    block + FFE (256, /2), layer4 = down-sampling basic block + FFE (512, /2), global average pool,
    dropout, linear classifier.

    stem ``imagenet``: 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (ResNet18 as published).
    stem ``small``: 3x3/1 conv + BN + ReLU + 3x3/2 max-pool, for 48-64 px faces (keeps 4x the
    spatial resolution through the network).
    """

    def __init__(self, num_classes: int = 8, in_channels: int = 1, stem: Stem = "small",
                 dropout: float = 0.5, folded: bool = False):
        super().__init__()
        _check_common(num_classes, in_channels, stem, dropout)
        if stem == "imagenet":
            self.stem = ConvBN(in_channels, 64, 7, 2, folded=folded)
        else:
            self.stem = ConvBN(in_channels, 64, 3, 1, folded=folded)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1, folded), BasicBlock(64, 64, 1, folded))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2, folded), BasicBlock(128, 128, 1, folded))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2, folded), FFE(256, 256, 1, folded=folded))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2, folded), FFE(512, 512, 1, folded=folded))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer2(self.layer1(x))
        return self.layer4(self.layer3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.fc(self.dropout(x))


# ----------------------------------------------------------------------------------------------
# Face-pretrained teacher: dlib's face-recognition ResNet
# ----------------------------------------------------------------------------------------------
class FaceResidual(nn.Module):
    """dlib's residual block: 3x3 conv+BN, ReLU, 3x3 conv+BN, + shortcut, ReLU. A down-sampling block's
    first conv has stride 2 and no padding; its shortcut is a 2x2 average pool, zero-padded to
    the output's channels, and the output is zero-padded to the shortcut's size when they differ."""

    def __init__(self, cin: int, cout: int, down: bool, folded: bool = False):
        super().__init__()
        self.down = down
        self.conv1 = ConvBN(cin, cout, 3, 2 if down else 1, folded=folded, padding=0 if down else 1)
        self.conv2 = ConvBN(cout, cout, 3, relu=False, folded=folded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            out = F.pad(out, (0, x.shape[-1] - out.shape[-1], 0, x.shape[-2] - out.shape[-2]))
            x = F.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))
        return F.relu(out + x)


class FaceResNet(nn.Module):
    """The face-recognition ResNet of dlib (``dlib_face_recognition_resnet_model_v1``, trained by
    dlib on about 3M faces), as a teacher backbone pretrained on faces; ``training.pretrained``
    loads its weights. The paper pretrains its teacher on MS-Celeb-1M, which is not available here.

    The face is resized to the 150 px dlib was trained at; then a 7x7/2 conv (grayscale: the RGB
    filters summed) + BN + ReLU, a 3x3/2 max-pool, residual stages of 32 (x3), 64 (x4), 128 (x3)
    and 256 (x4) channels (``STAGES``: each stage but the first opens with a down-sampling block;
    the last one ends with a second), global average pool, dropout, linear classifier. dlib froze
    its BatchNorms into per-channel affines; they are BatchNorms again here (``--pretrained``
    measures their statistics on the training faces, as for an export: ``unfold_batchnorm``),
    since without them SGD's steps are many times the size of the pretrained weights. ``stem`` is
    accepted for the common constructor and ignored. It runs in PyTorch only (a training
    teacher): the engine does not know this architecture.
    """

    INPUT_SIZE = 150
    # (block name in dlib/face-api.js, output channels, down-sampling)
    STAGES = (("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
              ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
              ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
              ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
              ("conv256_down_out", 256, True))

    def __init__(self, num_classes: int = 8, in_channels: int = 1, stem: Stem = "small",
                 dropout: float = 0.5, folded: bool = False):
        super().__init__()
        _check_common(num_classes, in_channels, stem, dropout)
        self.stem = ConvBN(in_channels, 32, 7, 2, folded=folded, padding=0)
        blocks, cin = [], 32
        for _, cout, down in self.STAGES:
            blocks.append(FaceResidual(cin, cout, down, folded))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(256, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.INPUT_SIZE or x.shape[-2] != self.INPUT_SIZE:
            x = F.interpolate(x, size=(self.INPUT_SIZE, self.INPUT_SIZE), mode="bilinear", align_corners=False)
        return self.blocks(F.max_pool2d(self.stem(x), 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.fc(self.dropout(x))


def _check_common(num_classes: int, in_channels: int, stem: str, dropout: float) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 (grayscale) or 3, got {in_channels!r}")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


# ----------------------------------------------------------------------------------------------
# Builders, folding, export round trip
# ----------------------------------------------------------------------------------------------
ARCHITECTURES = {"shufflenetv2": ShuffleNetV2, "effresnet18": EffResNet18, "faceresnet": FaceResNet}


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a model; stored in checkpoints and exported metadata.

    ``widths`` and ``repeats``: ShuffleNetV2's stage table (``ShuffleNetV2``; None: 1.0x, (4, 8, 4)
    units), e.g. ``widths=SHUFFLENETV2_WIDTHS[0.5]``. None for the default, so that a 1.0x model's
    export reads as before (its checkpoint stores null; older ones lack the keys)."""

    arch: str
    num_classes: int = 8
    in_channels: int = 1
    stem: str = "small"
    widths: tuple[int, ...] | None = None
    repeats: tuple[int, ...] | None = None

    def __post_init__(self):
        for field in ("widths", "repeats"):
            value = getattr(self, field)
            if value is not None:  # a checkpoint's or a file's JSON gives lists
                object.__setattr__(self, field, tuple(value))
        if (self.widths is not None or self.repeats is not None) and self.arch != "shufflenetv2":
            raise ValueError(f"widths and repeats are ShuffleNetV2's stage table; {self.arch} has none")

    def build(self, folded: bool = False, dropout: float = 0.5) -> nn.Module:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; known: {sorted(ARCHITECTURES)}")
        table = {} if self.arch != "shufflenetv2" else {"widths": self.widths, "repeats": self.repeats}
        return ARCHITECTURES[self.arch](self.num_classes, self.in_channels, self.stem,
                                        dropout=dropout, folded=folded, **table)

    def describe(self) -> str:
        """In words, for messages: arch, stem, classes, channels and any stage table."""
        table = "".join(f", {f} {getattr(self, f)}" for f in ("widths", "repeats") if getattr(self, f) is not None)
        return f"{self.arch} ({self.stem} stem, {self.num_classes} classes, {self.in_channels} channels{table})"

    def load(self, state: dict, where: str | Path, folded: bool = False) -> nn.Module:
        """The model built with the weights ``state`` (eval mode); a ValueError naming ``where``
        when they are another network's (torch's own error lists every key, over many lines)."""
        model = self.build(folded=folded)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        reshaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or reshaped:
            first = (missing + unexpected + reshaped)[0]
            raise ValueError(f"{where}: the weights do not fit {self.describe()}: {len(missing)} missing, "
                             f"{len(unexpected)} unexpected, {len(reshaped)} of another shape (first: {first})")
        model.load_state_dict(state)
        return model.eval()


def student_spec(width: float = 1.0, num_classes: int = 8, in_channels: int = 1, stem: Stem = "small") -> ModelSpec:
    """The ModelSpec of a ShuffleNetV2 student of multiplier ``width`` (SHUFFLENETV2_WIDTHS)."""
    if width not in SHUFFLENETV2_WIDTHS:
        raise ValueError(f"width must be one of {sorted(SHUFFLENETV2_WIDTHS)}, got {width!r}")
    return ModelSpec("shufflenetv2", num_classes, in_channels, stem,
                     widths=None if width == 1.0 else SHUFFLENETV2_WIDTHS[width])


def build_student(num_classes: int = 8, in_channels: int = 1, stem: Stem = "small",
                  width: float = 1.0) -> ShuffleNetV2:
    """ShuffleNetV2 student: 1.0x by default (about 1.26M parameters with 8 classes); ``width``
    0.5, 1.5 or 2.0 for the other multipliers of SHUFFLENETV2_WIDTHS."""
    return student_spec(width, num_classes, in_channels, stem).build()  # type: ignore[return-value]


def build_teacher(num_classes: int = 8, in_channels: int = 1, stem: Stem = "small") -> EffResNet18:
    """EFF-ResNet18 teacher (about 12.7M parameters with 8 classes)."""
    return EffResNet18(num_classes, in_channels, stem)


def network_description(model: nn.Module) -> dict:
    """The network as the C++ engine reads it: the ``network`` key of the export metadata
    (csrc/core/network.hpp). Derived from the module tree, so it describes exactly what was built:
    the stem conv, every block in forward order (kind, module path, channels, stride) and the
    width of conv5 (0: none). The engine builds each block's convs (names, shapes) from its kind."""
    stem = model.stem.conv
    blocks = []
    for name, m in model.named_modules():
        if isinstance(m, ShuffleUnit):
            half = m.branch2[2].conv.out_channels
            cin = m.branch1[0].conv.in_channels if m.stride == 2 else 2 * half
            kind = "shuffle_down" if m.stride == 2 else "shuffle_basic"
            blocks.append({"kind": kind, "name": name, "cin": cin, "cout": 2 * half, "stride": m.stride})
        elif isinstance(m, (BasicBlock, FFE)):
            first = m.conv1.conv if isinstance(m, BasicBlock) else m.conv_in.conv
            if isinstance(m, FFE) and m.groups != NUM_FFE_GROUPS:
                raise ValueError(f"{name}: the engine runs FFE modules of {NUM_FFE_GROUPS} groups, not {m.groups}")
            blocks.append({"kind": "basic" if isinstance(m, BasicBlock) else "ffe", "name": name,
                           "cin": first.in_channels, "cout": first.out_channels, "stride": first.stride[0]})
    conv5 = getattr(model, "conv5", None)
    return {"stem": {"cout": stem.out_channels, "k": stem.kernel_size[0], "stride": stem.stride[0]},
            "blocks": blocks, "conv5": conv5.conv.out_channels if conv5 is not None else 0}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bn_folded(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of the conv ``weight`` followed by ``bn`` in eval mode, as one conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def set_identity_batchnorm(bn: nn.BatchNorm2d, bias: torch.Tensor) -> None:
    """Make ``bn`` compute x + ``bias`` in eval mode (statistics 0 and 1 - eps, scale 1)."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every BatchNorm folded into its conv."""
    folded = spec.build(folded=True).eval()
    src = dict(model.named_modules())
    for name, module in folded.named_modules():
        if isinstance(module, ConvBN):
            weight, bias = bn_folded(src[name].conv.weight, src[name].bn)
            module.conv.weight.copy_(weight)
            module.conv.bias.copy_(bias)
    folded.fc.load_state_dict(model.fc.state_dict())
    return folded


@torch.no_grad()
def unfold_batchnorm(folded: nn.Module, spec: ModelSpec, images: torch.Tensor, dropout: float = 0.5) -> nn.Module:
    """A trainable model (with BatchNorm) that computes what the folded export ``folded`` does.

    Each BN gets the mean and variance of its conv's output over ``images`` (model-ready float
    input) as running statistics, and weight = std, bias = mean + the folded bias: eval mode
    reproduces the export exactly, and train mode nearly (batch statistics are close to these),
    so fine-tuning starts from the exported model's behaviour rather than from a jolt.
    """
    model = spec.build(dropout=dropout).eval()
    src = dict(folded.named_modules())
    stats: dict[str, list] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, ConvBN):
            module.conv.weight.copy_(src[name].conv.weight)
            set_identity_batchnorm(module.bn, src[name].conv.bias)  # for now

            def hook(mod, _inp, out, name=name):
                z = out.double()
                stats.setdefault(name, []).append((z.mean((0, 2, 3)), (z * z).mean((0, 2, 3)), len(z)))
            hooks.append(module.conv.register_forward_hook(hook))
    model.fc.load_state_dict(folded.fc.state_dict())
    for i in range(0, len(images), 256):
        model(images[i:i + 256])
    for h in hooks:
        h.remove()
    for name, module in model.named_modules():
        if isinstance(module, ConvBN):
            n = sum(k for _, _, k in stats[name])
            mean = sum(m * k for m, _, k in stats[name]) / n
            var = (sum(q * k for _, q, k in stats[name]) / n - mean ** 2).clamp_min(0)
            std = torch.sqrt(var + module.bn.eps)
            module.bn.running_mean.copy_(mean)
            module.bn.running_var.copy_(var)
            module.bn.weight.copy_(std)
            module.bn.bias.add_(mean)
    return model


class OverparamConvBN(nn.Module):
    """A :class:`ConvBN` over-parameterized for training only (MobileOne, Vasu et al., CVPR 2023;
    RepVGG, Ding et al., CVPR 2021): the sum of ``k`` conv+BN branches of the conv's own shape,
    a 1x1 conv+BN "scale" branch (kernels above 1) and a BN-only identity branch (where the conv
    could be the identity: as many outputs as inputs, stride 1), then the ReLU. Every branch is
    linear in eval mode, so the sum folds into one conv of the original shape (:meth:`fused`): the
    network trains with more weights and exports, and runs in the engine, unchanged.

    Built from a trained ConvBN, the first branch is that ConvBN and every other branch starts with
    the BatchNorm scale ``branch_scale``: at 0 the block first computes exactly what the ConvBN did
    (but from a converged network the branches may then barely grow); above 0 they start live, at
    the price of a small jolt."""

    def __init__(self, base: ConvBN, k: int, branch_scale: float = 0.0):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1 (branches of the conv's own shape), got {k}")
        conv = base.conv
        cin, cout, groups = conv.in_channels, conv.out_channels, conv.groups
        kernel, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        if conv.kernel_size[0] != conv.kernel_size[1] or padding != kernel // 2 or conv.bias is not None:
            raise ValueError("only square, 'same'-padded convs with a BatchNorm can be over-parameterized")
        self.relu = base.relu
        main = ConvBN(cin, cout, kernel, stride, groups, relu=False)
        main.load_state_dict(base.state_dict())
        extra = [ConvBN(cin, cout, kernel, stride, groups, relu=False) for _ in range(k - 1)]
        self.scale = ConvBN(cin, cout, 1, stride, groups, relu=False, padding=0) if kernel > 1 else None
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None
        self.branches = nn.ModuleList([main] + extra)
        with torch.no_grad():
            for branch in extra + [self.scale]:
                if branch is not None:
                    branch.bn.weight.fill_(branch_scale)
            if self.identity is not None:
                self.identity.weight.fill_(branch_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = sum(branch(x) for branch in self.branches)
        if self.scale is not None:
            y = y + self.scale(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y) if self.relu else y

    @torch.no_grad()
    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) of the one conv that computes what the branches sum to in eval mode."""
        main = self.branches[0].conv
        kernel, groups = main.kernel_size[0], main.groups
        weight = torch.zeros_like(main.weight)
        bias = torch.zeros(main.out_channels, dtype=weight.dtype)

        def add(w: torch.Tensor, bn: nn.BatchNorm2d) -> None:
            w, b = bn_folded(w, bn)
            pad = (kernel - w.shape[-1]) // 2
            weight.add_(F.pad(w, [pad] * 4))
            bias.add_(b)

        for branch in self.branches:
            add(branch.conv.weight, branch.bn)
        if self.scale is not None:
            add(self.scale.conv.weight, self.scale.bn)
        if self.identity is not None:
            per_group = main.in_channels // groups
            eye = torch.zeros(main.out_channels, per_group, 1, 1, dtype=weight.dtype)
            eye[torch.arange(main.out_channels), torch.arange(main.out_channels) % per_group] = 1.0
            add(eye, self.identity)
        return weight, bias


def overparameterize(model: nn.Module, k: int, skip: tuple[str, ...] = ("stem",),
                     branch_scale: float = 0.0) -> nn.Module:
    """Replace every :class:`ConvBN` of ``model`` but those named in ``skip`` (in place) by an
    :class:`OverparamConvBN` of ``k`` branches (that starts out computing the same thing with
    ``branch_scale`` 0); returns ``model``. The stem is skipped by default: it works on the
    full-resolution map, where extra branches cost more than in the rest of the student together
    (a training step 1.6x the plain one without it, 2.2x with it, on 2 Zen 4 cores at 64 px)."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            path = f"{name}.{child_name}" if name else child_name
            if isinstance(child, ConvBN) and path not in skip:
                setattr(module, child_name, OverparamConvBN(child, k, branch_scale))
    return model


@torch.no_grad()
def collapse_overparam(model: nn.Module, spec: ModelSpec, dropout: float = 0.5) -> nn.Module:
    """The plain ``spec`` network (eval mode) that computes what the over-parameterized ``model``
    computes in eval mode: each :class:`OverparamConvBN` becomes one conv whose BatchNorm is the
    identity plus the fused bias (so ``fold_batchnorm`` and the export take it as it is). Leaves
    torch's random stream as it was (building the network draws initial weights), so that
    validating a run does not change its dropout draws and a resumed run trains as one never stopped."""
    with torch.random.fork_rng(devices=[]):
        plain = spec.build(dropout=dropout).eval()
    src = dict(model.named_modules())
    for name, module in plain.named_modules():
        if isinstance(module, ConvBN):
            if isinstance(src[name], OverparamConvBN):
                weight, bias = src[name].fused()
                module.conv.weight.copy_(weight)
                set_identity_batchnorm(module.bn, bias)
            else:
                module.load_state_dict(src[name].state_dict())
    plain.fc.load_state_dict(model.fc.state_dict())
    return plain.to(next(model.parameters()).device)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0, fc_scale: float = 1.0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so that folding is
    really exercised) and scale the classifier (logits of order 1-10 with ``fc_scale=20``).
    For tests and golden data: the RNG sequence is part of ``tests/golden``."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5, generator=g)
            mod.running_var.uniform_(0.5, 2.0, generator=g)
            mod.weight.uniform_(0.5, 1.5, generator=g)
            mod.bias.uniform_(-0.3, 0.3, generator=g)
    if hasattr(model, "fc"):
        model.fc.weight.mul_(fc_scale)
    return model
