"""Face-pretrained weights for the faceresnet teacher (training.pretrained): reading TensorFlow.js
weights and folding dlib's RGB input into pyfer's grayscale normalisation."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.data import to_model_input  # noqa: E402
from training.models import FaceResNet, ModelSpec  # noqa: E402
from training.pretrained import DLIB_MEAN_RGB, faceresnet_state, read_tfjs_weights  # noqa: E402


def _face_api_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under face-api.js's names and TensorFlow.js shapes (kh, kw, in, out)."""
    rng = np.random.default_rng(seed)
    arrays = {}

    def scaled(prefix, cin, cout, k):
        arrays[f"{prefix}conv/filters"] = rng.normal(0, (2 / (k * k * cin)) ** 0.5, (k, k, cin, cout)).astype(np.float32)
        arrays[f"{prefix}conv/bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
        arrays[f"{prefix}scale/weights"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        arrays[f"{prefix}scale/biases"] = rng.normal(0, 0.1, cout).astype(np.float32)

    scaled("conv32_down/", 3, 32, 7)
    cin = 32
    for name, cout, _ in FaceResNet.STAGES:
        scaled(f"{name}/conv1/", cin, cout, 3)
        scaled(f"{name}/conv2/", cout, cout, 3)
        cin = cout
    return arrays


def test_read_tfjs_weights_dequantizes_and_checks_the_size():
    q = np.array([0, 1, 255], np.uint8)
    plain = np.array([1.5, -2.0], np.float32)
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2, 1], "dtype": "float32"}]}]
    arrays = read_tfjs_weights(json.loads(json.dumps(manifest)), q.tobytes() + plain.tobytes())
    np.testing.assert_allclose(arrays["a"], [-1.0, -0.5, 126.5])
    np.testing.assert_array_equal(arrays["b"], plain.reshape(2, 1))
    with pytest.raises(ValueError, match="bytes"):
        read_tfjs_weights(manifest, q.tobytes() + plain.tobytes() + b"\0")


def test_grayscale_stem_computes_what_dlib_computes_on_the_gray_face_in_rgb():
    """The converted one-channel model on pyfer's normalised input equals dlib's network (conv,
    then its frozen affine) on dlib's RGB input (pixel - mean_c) / 256 of the same gray face."""
    arrays = _face_api_arrays()
    prep = PreprocessSpec(64)
    gray = ModelSpec("faceresnet").build(folded=True).eval()
    missing, unexpected = gray.load_state_dict(faceresnet_state(arrays, prep), strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected

    def dlib_conv(x, prefix, stride, padding):  # dlib's layers as they are: conv, then affine
        w = torch.from_numpy(arrays[f"{prefix}conv/filters"]).permute(3, 2, 0, 1)
        y = F.conv2d(x, w, torch.from_numpy(arrays[f"{prefix}conv/bias"]), stride, padding)
        return y * torch.from_numpy(arrays[f"{prefix}scale/weights"])[:, None, None] \
            + torch.from_numpy(arrays[f"{prefix}scale/biases"])[:, None, None]

    def dlib_features(x):
        x = F.max_pool2d(F.relu(dlib_conv(x, "conv32_down/", 2, 0)), 3, 2)
        for name, cout, down in FaceResNet.STAGES:
            out = dlib_conv(F.relu(dlib_conv(x, f"{name}/conv1/", 2 if down else 1, 0 if down else 1)),
                            f"{name}/conv2/", 1, 1)
            if down:
                x = F.avg_pool2d(x, 2, 2)
                out = F.pad(out, (0, x.shape[-1] - out.shape[-1], 0, x.shape[-2] - out.shape[-2]))
                x = F.pad(x, (0, 0, 0, 0, 0, cout - x.shape[1]))
            x = F.relu(out + x)
        return x

    u8 = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    big = F.interpolate(u8.float(), size=(150, 150), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    with torch.no_grad():
        expected = dlib_features((big - torch.tensor(DLIB_MEAN_RGB)[None, :, None, None]) / 256)
        got = gray.features(to_model_input(u8, prep))
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_pretrained_start_computes_the_folded_network_with_trainable_batchnorms(tmp_path):
    """--pretrained rebuilds BatchNorms from the training faces: in eval mode the model computes
    what the folded pretrained network does."""
    import argparse

    from safetensors.torch import save_file

    from training.train import initial_model

    spec = ModelSpec("faceresnet")
    state = faceresnet_state(_face_api_arrays(), PreprocessSpec(64))
    save_file(state, str(tmp_path / "pre.safetensors"))
    faces = torch.randint(0, 256, (64, 1, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    args = argparse.Namespace(pretrained=str(tmp_path / "pre.safetensors"), init=None, seed=0, dropout=0.0)
    model = initial_model(args, spec, PreprocessSpec(64), faces).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = spec.build(folded=True).eval()
    folded.load_state_dict(state, strict=False)
    x = to_model_input(faces[:4], PreprocessSpec(64))
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), folded.features(x), rtol=1e-3, atol=1e-3)


def test_faceresnet_shapes_and_down_sampling_shortcuts():
    model = ModelSpec("faceresnet").build(dropout=0.0, folded=True).eval()
    x = torch.randn(2, 1, 64, 64)
    assert model(x).shape == (2, 8)
    assert model.features(x).shape == (2, 256, 2, 2)  # 150 px -> 72 -> 35 -> 17 -> 8 -> 4 (pad) -> 2 (pad)
    block = model.blocks[3]  # 32 -> 64 channels, stride 2: the shortcut is pooled and zero-padded
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        inp = torch.rand(1, 32, 35, 35)
        out = block(inp)
    torch.testing.assert_close(out[:, :32], F.avg_pool2d(inp, 2, 2))
    assert out[:, 32:].abs().max() == 0


def test_train_rejects_pretrained_with_init_and_weights_that_do_not_fit(tmp_path):
    from safetensors.torch import save_file

    from training.train import main

    with pytest.raises(SystemExit, match="use one"):
        main(["teacher", "--arch", "faceresnet", "--out", str(tmp_path / "a"), "--pretrained", "x", "--init", "y"])
    bad = tmp_path / "bad.safetensors"
    save_file({"stem.conv.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(SystemExit, match="does not fit"):
        main(["teacher", "--arch", "faceresnet", "--out", str(tmp_path / "b"), "--pretrained", str(bad),
              "--train-limit", "64", "--val-limit", "32", "--batch-size", "32", "--epochs", "1", "--quiet"])
    bad.write_bytes(b"not weights")  # not safetensors: one line, not a traceback
    with pytest.raises(SystemExit, match="--pretrained: .*bad.safetensors is not a readable safetensors file"):
        main(["teacher", "--arch", "faceresnet", "--out", str(tmp_path / "c"), "--pretrained", str(bad),
              "--train-limit", "64", "--val-limit", "32", "--batch-size", "32", "--epochs", "1", "--quiet"])
    # both refused before the run folder is made (a wrong-shaped file left one holding .lock)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_export_refuses_the_training_only_architecture(tmp_path):
    from training.export import export_model

    with pytest.raises(ValueError, match="training-only"):
        export_model(ModelSpec("faceresnet").build(), ModelSpec("faceresnet"), PreprocessSpec(), tmp_path / "x.safetensors")


def test_a_face_api_tarball_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    """The npm tarball is checked against its pinned sha256 when fetched and each time the cache
    is read: a cache another user could write (PYFER_CACHE on a shared disk) cannot slip in other
    weights."""
    from training.pretrained import PACKAGE_SHA256, fetch_face_api

    monkeypatch.setenv("PYFER_CACHE", str(tmp_path))
    (tmp_path / "vladmandic-face-api-1.7.15.tgz").write_bytes(b"\x1f\x8b not the package")
    with pytest.raises(SystemExit, match=f"not the pinned {PACKAGE_SHA256}"):
        fetch_face_api("face_recognition_model")
