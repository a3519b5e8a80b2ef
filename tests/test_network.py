"""The network description (csrc/core/network.hpp): export writes it into the metadata
("network", training.models.network_description), the engine builds every layer from it, files
without it (exported before) are described from arch + stem, and a bad description is refused.
FLOPs are counted from it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("pyfer._engine")

from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from torch import nn  # noqa: E402

import pyfer  # noqa: E402
from test_engine import make_export, rel_err, torch_logits  # noqa: E402
from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.export import export_model, from_safetensors  # noqa: E402
from training.models import (FFE, SHUFFLENETV2_WIDTHS, BasicBlock, ConvBN, ModelSpec, ShuffleNetV2,  # noqa: E402
                             network_description, randomize_batchnorm)

REPO = Path(__file__).resolve().parents[1]
# exported before the network description existed (the arch + stem fallback)
SHIPPED = [REPO / "models" / "tsnet_student_session1.safetensors", REPO / "models" / "teacher_effresnet18_fp16.safetensors"]
TOL = 1e-4


def read(path):
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["pyfer"])


def write(path, tensors, meta):
    save_file(tensors, str(path), metadata={"pyfer": json.dumps(meta)})
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("net")
    return {(a, s): make_export(root / f"{a}_{s}.safetensors", a, s, 48, seed=3)
            for a in ("shufflenetv2", "effresnet18") for s in ("small", "imagenet")}


@pytest.mark.parametrize("arch", ["shufflenetv2", "effresnet18"])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_export_writes_the_description_and_it_matches_the_fallback(exports, tmp_path, arch, stem):
    path = exports[(arch, stem)]
    tensors, meta = read(path)
    net = meta["network"]
    assert net["blocks"][0]["name"] == ("stage2.0" if arch == "shufflenetv2" else "layer1.0")
    assert net["conv5"] == (1024 if arch == "shufflenetv2" else 0)
    old = write(tmp_path / "old.safetensors", tensors, {k: v for k, v in meta.items() if k != "network"})
    x = np.random.default_rng(0).standard_normal((3, 1, 48, 48)).astype(np.float32)
    a, b = pyfer.Engine(path, threads=1), pyfer.Engine(old, threads=1)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # same description, same packing
    assert a.info()["gflops_per_image"] == b.info()["gflops_per_image"]


@pytest.mark.parametrize("path", SHIPPED, ids=["student", "teacher"])
def test_shipped_weights_still_load(path):
    if not path.is_file():
        pytest.skip(f"{path} not present")
    _, meta = read(path)
    assert "network" not in meta  # exported before the description: arch + stem fallback
    eng = pyfer.Engine(path, threads=1)
    x = np.random.default_rng(1).standard_normal((2, 1, 64, 64)).astype(np.float32)
    assert rel_err(eng.forward(x), torch_logits(path, x)) <= TOL


def conv_flops(model, size):
    """Dense multiply-add FLOPs (x2) of every conv and the classifier, from forward hooks."""
    total = [0.0]

    def hook(m, inp, out):
        total[0] += 2.0 * out.shape[2] * out.shape[3] * m.out_channels * (m.in_channels // m.groups) * \
            m.kernel_size[0] * m.kernel_size[1]
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size))
    for h in hs:
        h.remove()
    return total[0] + 2.0 * model.fc.in_features * model.fc.out_features


@pytest.mark.parametrize("arch", ["shufflenetv2", "effresnet18"])
def test_flops_come_from_the_description(exports, arch):
    path = exports[(arch, "imagenet")]
    got = pyfer.Engine(path).info()["gflops_per_image"] * 1e9
    assert got == pytest.approx(conv_flops(from_safetensors(path), 48), rel=1e-9)
    prof = pyfer.Engine(path, threads=1).profile(np.zeros((1, 1, 48, 48), np.float32), reps=1)
    assert sum(b["flops"] for b in prof) == pytest.approx(got, rel=1e-9)


class TinyShuffle(ShuffleNetV2):  # a variant the engine has no code for: only its description
    STAGE_REPEATS = (2, 1, 3)
    STAGE_WIDTHS = (16, 32, 48, 64, 96)


class OneChannelDepthwise(ShuffleNetV2):
    """Depthwise convs of one channel, whose groups == 1 as a dense conv's: the stem has 1 channel
    (stage 2's down unit filters it in branch1) and stage 2 has 2 (half width 1 in branch2)."""
    STAGE_REPEATS = (2, 1, 1)
    STAGE_WIDTHS = (1, 2, 4, 6, 16)


class TinyRes(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBN(1, 16, 3, 1, folded=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 24, 2, True), FFE(24, 24, 1, folded=True),
                                    BasicBlock(24, 20, 1, True))
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        x = self.layer1(self.maxpool(self.stem(x)))
        return self.fc(x.mean((2, 3)))


TINY_NETWORKS = ["shuffle", "res", "one-channel depthwise"]


def export_tiny(folder, which: str):
    """A network the engine has no code for, exported with its description (40 px, 5 classes):
    returns (path, the PyTorch model)."""
    torch.manual_seed(5)
    if which == "shuffle":
        model, arch = TinyShuffle(num_classes=5, stem="small", folded=True), "shufflenetv2"
    elif which == "one-channel depthwise":
        model, arch = OneChannelDepthwise(num_classes=5, stem="small", folded=True), "shufflenetv2"
    else:
        model, arch = TinyRes(), "effresnet18"
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    meta = {"format_version": 1, "arch": arch, "num_classes": 5, "in_channels": 1, "stem": "small",
            "preprocess": {"input_size": 40, "channels": 1, "mean": 0.5, "std": 0.5},
            "network": network_description(model)}
    path = write(Path(folder) / f"{which}.safetensors",
                 {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}, meta)
    return path, model


@pytest.mark.parametrize("which", TINY_NETWORKS)
def test_a_new_network_runs_from_its_description(tmp_path, which):
    path, model = export_tiny(tmp_path, which)
    x = np.random.default_rng(2).standard_normal((3, 1, 40, 40)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for isa in ("portable", "auto", "ref"):
        eng = pyfer.Engine(path, threads=1, isa=isa)
        assert rel_err(eng.forward(x), want) <= TOL, isa
        # an image's logits do not depend on the others in its batch (a skipped conv's stale buffer would)
        np.testing.assert_array_equal(eng.forward(x[:1])[0], eng.forward(x)[0], err_msg=isa)
    assert pyfer.Engine(path).info()["gflops_per_image"] * 1e9 == pytest.approx(conv_flops(model, 40), rel=1e-9)


BAD = {
    "unknown kind": lambda n: n["blocks"][1].update(kind="conv"),
    "chain broken": lambda n: n["blocks"][1].update(cin=100),
    "basic unit stride": lambda n: n["blocks"][1].update(stride=2),
    "odd width": lambda n: n["blocks"][0].update(cout=115),
    "bad name": lambda n: n["blocks"][0].update(name="stage2/0"),
    "reserved name": lambda n: n["blocks"][0].update(name="fc"),
    "duplicate name": lambda n: n["blocks"][1].update(name=n["blocks"][2]["name"]),
    "teacher block in a student": lambda n: n["blocks"][1].update(kind="basic"),
    "no conv5": lambda n: n.update(conv5=0),
    "stem stride": lambda n: n["stem"].update(stride=2),
    "stem even k": lambda n: n["stem"].update(k=4),
    "no blocks": lambda n: n.update(blocks=[]),
    "blocks not a list": lambda n: n.update(blocks={}),
    "cout not an int": lambda n: n["blocks"][0].update(cout="116"),
    "not an object": None,
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_description_is_refused(exports, tmp_path, case):
    tensors, meta = read(exports[("shufflenetv2", "small")])
    if BAD[case] is None:
        meta["network"] = [1, 2]
    else:
        BAD[case](meta["network"])
    p = write(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(ValueError, match=r"bad\.safetensors.*network"):
        pyfer.Engine(p)


def test_winograd_env_override_still_works(exports, tmp_path):
    """PYFER_WINOGRAD=0 (A/B timing) makes the planner run every 3x3 conv as implicit GEMM."""
    path = exports[("effresnet18", "small")]
    code = ("import numpy as np, pyfer, sys\n"
            f"e = pyfer.Engine({str(path)!r}, threads=1)\n"
            "x = np.random.default_rng(4).standard_normal((2, 1, 48, 48)).astype(np.float32)\n"
            "np.save(sys.argv[1], e.forward(x))\n")
    outs = {}
    for flag in ("0", "1"):
        outs[flag] = tmp_path / f"w{flag}.npy"
        r = subprocess.run([sys.executable, "-c", code, str(outs[flag])], env=dict(os.environ, PYFER_WINOGRAD=flag),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    a, b = np.load(outs["0"]), np.load(outs["1"])
    x = np.random.default_rng(4).standard_normal((2, 1, 48, 48)).astype(np.float32)
    want = torch_logits(path, x)
    assert rel_err(a, want) <= TOL and rel_err(b, want) <= TOL
    assert not np.array_equal(a, b)  # different algorithms: equal within rounding, not bit for bit


# -- ShuffleNetV2 stage tables (ModelSpec widths/repeats) through the real export path -----------
STAGE_TABLES = {
    "0.5x": (SHUFFLENETV2_WIDTHS[0.5], None),
    "1.5x": (SHUFFLENETV2_WIDTHS[1.5], None),
    "two stages, odd stem and conv5": ((13, 50, 98, 301), (2, 3)),
    "four stages": ((8, 16, 24, 32, 40, 64), (1, 2, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(STAGE_TABLES))
def test_a_stage_table_exports_and_runs_as_pytorch_does(tmp_path, name):
    """export_model writes the table, from_safetensors rebuilds the model from the file alone, and
    the engine's logits match the unfolded PyTorch model's (7 classes of their own names)."""
    widths, repeats = STAGE_TABLES[name]
    spec = ModelSpec("shufflenetv2", 7, widths=widths, repeats=repeats)
    model = randomize_batchnorm(spec.build(), seed=4, fc_scale=20.0).eval()
    path = export_model(model, spec, PreprocessSpec(40), tmp_path / "v.safetensors",
                        class_names=[f"c{i}" for i in range(7)])
    meta = read(path)[1]
    assert meta["widths"] == list(widths) and meta.get("repeats") == (None if repeats is None else list(repeats))
    x = np.random.default_rng(3).standard_normal((3, 1, 40, 40)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        assert rel_err(from_safetensors(path)(torch.from_numpy(x)).numpy(), want) <= TOL
    for isa in ("portable", "auto"):
        assert rel_err(pyfer.Engine(path, threads=1, isa=isa).forward(x), want) <= TOL, isa


def test_the_default_table_is_not_written(exports):
    """A 1.0x model's export reads as before the stage table existed (the shipped file's metadata)."""
    meta = read(exports[("shufflenetv2", "small")])[1]
    assert "widths" not in meta and "repeats" not in meta
