"""Reference models: shapes, parameter counts, the FFE equations, the KD loss, BN folding, export."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pyfer.preprocess import PreprocessSpec
from training.export import export_model, from_safetensors, read_metadata
from training.models import (FFE, STEMS, ModelSpec, build_student, build_teacher, count_parameters,
                             fold_batchnorm, randomize_batchnorm)
from training.train import kd_loss


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("size", [48, 64])
def test_output_shapes(stem, size):
    x = torch.randn(3, 1, size, size)
    for model in (build_student(stem=stem), build_teacher(stem=stem)):
        assert model.eval()(x).shape == (3, 8)


def test_parameter_counts():
    student = count_parameters(build_student())
    teacher = count_parameters(build_teacher())
    print(f"student {student:,} (paper ~1.26M), teacher {teacher:,} (paper 11.8M)")
    assert 1.20e6 < student < 1.30e6
    assert abs(teacher - 11.8e6) / 11.8e6 < 0.10


def test_the_width_table_is_the_papers():
    """ShuffleNetV2's channels per stage and multiplier (Ma et al. 2018, Table 5): stem, the three
    stages, conv5 (2048 only at 2.0x)."""
    from training.models import SHUFFLENETV2_WIDTHS

    assert SHUFFLENETV2_WIDTHS == {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                                   1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}
    assert build_student(width=0.5).conv5.conv.out_channels == 1024


def test_student_stage_widths():
    m = build_student()
    assert m.stem.conv.out_channels == 24
    assert [s[0].branch2[2].conv.out_channels * 2 for s in (m.stage2, m.stage3, m.stage4)] == [116, 232, 464]
    assert [len(s) for s in (m.stage2, m.stage3, m.stage4)] == [4, 8, 4]
    assert m.conv5.conv.out_channels == 1024 and m.dropout.p == 0.5


def naive_ffe(ffe: FFE, x: torch.Tensor) -> torch.Tensor:
    """The FFE equations written out literally, one group at a time."""
    n = ffe.groups
    X = list(ffe.conv_in(x).chunk(n, dim=1))
    YL = [None] * (n + 2)  # 1-based, Y_0^L = 0
    YR = [None] * (n + 2)  # Y_{n+1}^R = 0
    YL[0] = torch.zeros_like(X[0])
    YR[n + 1] = torch.zeros_like(X[0])
    for i in range(1, n + 1):
        YL[i] = ffe.left[i - 1](X[i - 1] + YL[i - 1])
    for i in range(n, 0, -1):
        YR[i] = ffe.right[i - 1](X[i - 1] + YR[i + 1])
    Y = torch.cat([YL[i] + YR[i] for i in range(1, n + 1)], dim=1)
    identity = x if ffe.shortcut is None else ffe.shortcut(x)
    return F.relu(ffe.conv_out(Y) + identity)


@pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (6, 16, 2)])
def test_ffe_matches_equations(cin, cout, stride):
    torch.manual_seed(0)
    ffe = FFE(cin, cout, stride).eval()
    randomize_batchnorm(ffe)
    x = torch.randn(2, cin, 5, 7)
    torch.testing.assert_close(ffe(x), naive_ffe(ffe, x), rtol=1e-5, atol=1e-6)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="stem"):
        build_student(stem="huge")
    with pytest.raises(ValueError, match="num_classes"):
        build_teacher(num_classes=1)
    with pytest.raises(ValueError, match="in_channels"):
        build_student(in_channels=2)
    with pytest.raises(ValueError, match="groups"):
        FFE(8, 10, 1)
    with pytest.raises(ValueError, match="unknown architecture"):
        ModelSpec("vgg").build()


@pytest.mark.parametrize("widths, repeats, message", [
    ((24, 116, 232, 464), None, r"widths must be 5 ints"),      # a stage table of 3 stages needs 5
    ((24, 116, 232, 464, 1024, 2048), None, r"widths must be 5"),  # (was built with conv5 = 464's next)
    ((24, 115, 232, 464, 1024), None, r"even.*\[115\]"),
    ((24, 116, 464, 1024), (4, 0), r"repeats must be"),
    ((24, 116, 232, 464, 1024), (), r"repeats must be"),
])
def test_a_bad_stage_table_is_one_clear_error(widths, repeats, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec("shufflenetv2", widths=widths, repeats=repeats).build()


def test_export_refuses_what_recognizer_could_not_run(tmp_path):
    spec = ModelSpec("shufflenetv2", 3)
    with pytest.raises(ValueError, match="must differ"):
        export_model(spec.build(), spec, PreprocessSpec(48), tmp_path / "a.safetensors", class_names=["a", "b", "a"])
    rgb = ModelSpec("shufflenetv2", in_channels=3)
    with pytest.raises(ValueError, match="3-channel input and the preprocessing gives 1"):
        export_model(rgb.build(), rgb, PreprocessSpec(48), tmp_path / "b.safetensors")
    assert not list(tmp_path.iterdir())


def test_stage_tables_as_data():
    """The builders and ModelSpec build the multipliers of Ma et al.; a spec read back from a
    checkpoint's JSON (lists) is the spec written; other architectures take no table."""
    from dataclasses import asdict

    from training.models import SHUFFLENETV2_WIDTHS, student_spec

    for width, widths in SHUFFLENETV2_WIDTHS.items():
        m = build_student(width=width)
        assert [s[0].branch2[2].conv.out_channels * 2 for s in (m.stage2, m.stage3, m.stage4)] == list(widths[1:4])
        assert m.fc.in_features == widths[-1]
    assert student_spec(1.0) == ModelSpec("shufflenetv2")  # the default writes no table
    spec = ModelSpec("shufflenetv2", widths=(8, 16, 24, 32), repeats=(1, 2))
    back = ModelSpec(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()})
    assert back == spec and [n for n, _ in back.build().named_children()][:4] == ["stem", "maxpool", "stage2", "stage3"]
    with pytest.raises(ValueError, match="stage table"):
        ModelSpec("effresnet18", widths=(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="width must be one of"):
        build_student(width=0.75)


def test_kd_loss_hand_computed():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.5, 0.5, 0.0]])
    y = torch.tensor([0])
    T = 2.0
    p = [math.exp(v / T) for v in (0.5, 0.5, 0.0)]
    p = [v / sum(p) for v in p]
    q = [math.exp(v / T) for v in (1.0, 0.0, -1.0)]
    q = [v / sum(q) for v in q]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    q1 = [math.exp(v) for v in (1.0, 0.0, -1.0)]
    ce = -math.log(q1[0] / sum(q1))
    for a in (0.0, 0.4, 1.0):
        expected = a * T * T * kl + (1 - a) * ce
        assert kd_loss(s, t, y, T, a).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(s, t, y, T, 0.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)
    assert kd_loss(s, t, y, T, 1.0).item() == pytest.approx(T * T * kl, rel=1e-5)


@pytest.mark.parametrize("arch", ["shufflenetv2", "effresnet18"])
def test_fold_and_export_round_trip(arch, tmp_path):
    torch.manual_seed(1)
    spec = ModelSpec(arch)
    model = spec.build().eval()
    randomize_batchnorm(model)
    with torch.no_grad():  # a dead channel (no variance in training): eps keeps its scale finite
        next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_var[0] = 0.0
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        ref = model(x)
        folded = fold_batchnorm(model, spec)(x)
    assert (folded - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    path = export_model(model, spec, PreprocessSpec(48), tmp_path / "m.safetensors")
    meta = read_metadata(path)
    assert meta["arch"] == arch and meta["preprocess"]["input_size"] == 48 and len(meta["class_names"]) == 8
    rebuilt = from_safetensors(path)
    assert not rebuilt.training
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), folded, rtol=0, atol=0)


def test_from_safetensors_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_safetensors(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a pyfer export"):
        from_safetensors(tmp_path / "plain.safetensors")
