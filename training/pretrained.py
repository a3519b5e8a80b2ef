"""Face-pretrained weights for the ``faceresnet`` teacher, from a package registry (no other network).

    python -m training.pretrained [--out runs/pretrained/faceresnet_dlib.safetensors]

dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, CC0, trained by dlib on
about 3M faces) ships, converted to TensorFlow.js, in the npm package ``@vladmandic/face-api``
(MIT) as ``model/face_recognition_model-weights_manifest.json`` + ``.bin``. This module fetches
that package with ``npm pack`` (pinned version; ``fetch_face_api``, which ``training.peer`` also
uses), reads the weights (most tensors are stored as uint8: value = q * scale + min, from the
manifest) and writes a folded ``training.models.FaceResNet`` state dict (each conv with its
affine) for grayscale input in pyfer's normalisation, without the classifier:
``python -m training.train teacher --arch faceresnet --pretrained FILE`` starts from it.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from pyfer.preprocess import PreprocessSpec
from training.cli import reported_errors, run_tool
from training.data import cache_dir
from training.models import FaceResNet, ModelSpec

PACKAGE = "@vladmandic/face-api@1.7.15"
# the sha256 of its npm tarball: a fetched or cached file that differs is refused (a cache another
# user could write, PYFER_CACHE on a shared disk, a registry that served something else)
PACKAGE_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input layer: (pixel - mean) / 256
DEFAULT_OUT = Path("runs/pretrained/faceresnet_dlib.safetensors")


def read_tfjs_weights(manifest: dict, data: bytes) -> dict[str, np.ndarray]:
    """The float32 arrays of a TensorFlow.js weights manifest and its one weights file."""
    arrays, offset = {}, 0
    for group in manifest:
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            q = w.get("quantization")
            dtype = np.dtype(q["dtype"] if q else w["dtype"])
            raw = np.frombuffer(data, dtype, n, offset)
            offset += n * dtype.itemsize
            values = raw.astype(np.float32) * q["scale"] + q["min"] if q else raw.astype(np.float32)
            arrays[w["name"]] = values.reshape(w["shape"])
    if offset != len(data):
        raise ValueError(f"the manifest describes {offset} bytes, the weights file has {len(data)}")
    return arrays


def folded_conv(arrays: dict[str, np.ndarray], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv and its affine (dlib's frozen BatchNorm) as one conv with bias, in PyTorch's layout:
    scale * (W x + b) + shift = (scale W) x + (scale b + shift). TensorFlow.js filters are
    (kh, kw, in, out); PyTorch's are (out, in, kh, kw)."""
    scale = torch.from_numpy(arrays[f"{prefix}scale/weights"]).double()
    weight = torch.from_numpy(arrays[f"{prefix}conv/filters"]).permute(3, 2, 0, 1).double()
    bias = torch.from_numpy(arrays[f"{prefix}conv/bias"]).double()
    return weight * scale[:, None, None, None], bias * scale + torch.from_numpy(arrays[f"{prefix}scale/biases"])


def faceresnet_state(arrays: dict[str, np.ndarray], prep: PreprocessSpec = PreprocessSpec()) -> dict:
    """A folded (``folded=True``) grayscale ``FaceResNet`` state dict, without ``fc``, from
    face-api.js's arrays.

    The stem takes pyfer's normalised gray x = (pixel / 255 - mean) / std instead of dlib's three
    channels (pixel - mean_c) / 256: with gray = R = G = B, its filter is the RGB filters summed
    times 255 * std / 256, and its bias gains each channel's filter sum times
    (255 * mean - mean_c) / 256, exactly, since the stem conv has no padding."""
    state = {}

    def put(module: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        state[f"{module}.conv.weight"] = weight.float().contiguous()
        state[f"{module}.conv.bias"] = bias.float()

    rgb, bias = folded_conv(arrays, "conv32_down/")
    offsets = torch.tensor([(255 * prep.mean - m) / 256 for m in DLIB_MEAN_RGB], dtype=torch.float64)
    put("stem", rgb.sum(1, keepdim=True) * 255 * prep.std / 256, bias + (rgb.sum((2, 3)) * offsets).sum(1))
    for i, (name, _, _) in enumerate(FaceResNet.STAGES):
        put(f"blocks.{i}.conv1", *folded_conv(arrays, f"{name}/conv1/"))
        put(f"blocks.{i}.conv2", *folded_conv(arrays, f"{name}/conv2/"))
    return state


def _check_package(raw: bytes, what: str) -> None:
    got = hashlib.sha256(raw).hexdigest()
    if got != PACKAGE_SHA256:
        raise SystemExit(f"{what}: sha256 {got}, not the pinned {PACKAGE_SHA256} of {PACKAGE}")


def fetch_face_api(model: str) -> tuple[dict, bytes]:
    """The TensorFlow.js manifest and weights of one face-api.js model (``model/<model>-weights_
    manifest.json`` and ``model/<model>.bin``), from the npm registry (``npm pack`` of the pinned
    version, kept in the training cache so that it is fetched once)."""
    cached = cache_dir() / f"{PACKAGE.lstrip('@').replace('/', '-').replace('@', '-')}.tgz"
    if not cached.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                done = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True,
                                      capture_output=True, text=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise SystemExit(f"could not fetch {PACKAGE} with npm: {exc}") from None
            # copied under a name of its own beside the cache, then renamed: a second process
            # (pytest -n) never reads half of it
            fetched = Path(tmp) / done.stdout.strip().splitlines()[-1]
            _check_package(fetched.read_bytes(), f"{PACKAGE} as npm fetched it")
            part = cached.with_name(f".{cached.name}.{secrets.token_hex(6)}.part")
            shutil.move(str(fetched), part)
            os.replace(part, cached)
    raw = cached.read_bytes()
    _check_package(raw, f"{cached} (delete it to fetch it again)")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        manifest = json.load(tar.extractfile(f"package/model/{model}-weights_manifest.json"))
        data = tar.extractfile(f"package/model/{model}.bin").read()
    return manifest, data


def main(argv=None) -> None:
    from pyfer.weights_file import save_checked

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    manifest, data = fetch_face_api("face_recognition_model")
    state = faceresnet_state(read_tfjs_weights(manifest, data))
    model = ModelSpec("faceresnet").build(folded=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise SystemExit(f"weights do not fit FaceResNet: missing {missing}, unexpected {unexpected}")
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        save_checked({k: v.numpy() for k, v in state.items()}, args.out,
                     {"source": PACKAGE, "license": "CC0 (dlib model), MIT (face-api.js)"})
    print(f"wrote {args.out} ({sum(v.numel() for v in state.values()):,} weights from {PACKAGE})")


if __name__ == "__main__":
    run_tool(main)
