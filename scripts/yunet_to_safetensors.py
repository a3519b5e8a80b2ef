"""Convert OpenCV Zoo's YuNet ONNX model into the safetensors file pyfer's C++ engine runs.

    python scripts/yunet_to_safetensors.py [MODEL.onnx] [OUT.safetensors]
    (defaults: pyfer/models/face_detection_yunet_2023mar.onnx -> pyfer/models/yunet.safetensors)

The ONNX export already has its BatchNorms folded into the convs (the folded tensors carry
numeric names such as "423"). This script walks the graph, gives every conv the module name of
libfacedetection.train (a depthwise conv gets the name of the 1x1 conv it follows, with
``conv1`` -> ``conv2``; the first conv is ``backbone.model0.conv1``), checks that the graph is the
network the description below says, and writes each conv as ``<module>.weight`` (OIHW float32)
and ``<module>.bias``, plus the description as JSON under the metadata key ``"yunet"``:

- ``stem``: 3x3 stride-2 conv + ReLU on the BGR image (pixel values 0-255, no scaling);
- ``stages``: each a list of units, optionally preceded by a 2x2/2 max pool (``"pool"``); a
  unit ``U`` is ``U.conv1`` (1x1, no ReLU) then ``U.conv2`` (3x3 depthwise) + ReLU;
- ``levels``: the feature pyramid, finest first: level i reads stage ``stage`` (stride
  ``stride``), adds the next coarser level's output upsampled x2 (nearest), then runs the unit
  ``lateral``;
- ``heads``: per level i, ``<module>.<i>.conv1`` (1x1) then ``<module>.<i>.conv2`` (3x3
  depthwise, no ReLU), ``channels`` wide, sigmoid applied where ``sigmoid``;
- ``input_multiple``: the image is zero padded at the bottom and right to a multiple of this
  (as OpenCV's FaceDetectorYN does before running the net).

The C++ loader (csrc/core/yunet_model.cpp) validates the description against the tensors.
Needs ``onnx`` and ``safetensors`` (dev dependencies; not needed at run time).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = ROOT / "pyfer" / "models" / "face_detection_yunet_2023mar.onnx"
DEFAULT_OUT = ROOT / "pyfer" / "models" / "yunet.safetensors"

DESCRIPTION = {
    "format": 1,
    "input_multiple": 32,
    "stem": "backbone.model0.conv1",
    "stages": [
        {"pool": False, "units": ["backbone.model0.conv2"]},
        {"pool": True, "units": ["backbone.model1.conv1", "backbone.model1.conv2"]},
        {"pool": False, "units": ["backbone.model2.conv1", "backbone.model2.conv2"]},
        {"pool": True, "units": ["backbone.model3.conv1", "backbone.model3.conv2"]},
        {"pool": True, "units": ["backbone.model4.conv1", "backbone.model4.conv2"]},
        {"pool": True, "units": ["backbone.model5.conv1", "backbone.model5.conv2"]},
    ],
    "levels": [
        {"stride": 8, "stage": 3, "lateral": "neck.lateral_convs.0"},
        {"stride": 16, "stage": 4, "lateral": "neck.lateral_convs.1"},
        {"stride": 32, "stage": 5, "lateral": "neck.lateral_convs.2"},
    ],
    "heads": [
        {"name": "cls", "module": "bbox_head.multi_level_cls", "channels": 1, "sigmoid": True},
        {"name": "obj", "module": "bbox_head.multi_level_obj", "channels": 1, "sigmoid": True},
        {"name": "bbox", "module": "bbox_head.multi_level_bbox", "channels": 4, "sigmoid": False},
        {"name": "kps", "module": "bbox_head.multi_level_kps", "channels": 10, "sigmoid": False},
    ],
}


def conv_modules(model) -> dict:
    """{module name: (weight, bias, attributes, input tensor, output tensor)} for every Conv."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    by_output = {}
    convs = {}
    for node in g.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w_name, b_name = node.input[1], node.input[2]
        if w_name.endswith(".weight"):
            name = w_name[: -len(".weight")]
        elif node.input[0] == g.input[0].name:
            name = DESCRIPTION["stem"]
        else:  # a folded depthwise conv: named after the 1x1 conv whose output it reads
            prev = by_output.get(node.input[0])
            if prev is None or not prev.endswith(".conv1"):
                raise ValueError(f"cannot name conv {node.name} (input {node.input[0]})")
            name = prev[: -len("conv1")] + "conv2"
        if name in convs:
            raise ValueError(f"two convs named {name}")
        convs[name] = (inits[w_name], inits[b_name], attrs, node.input[0], node.output[0])
        by_output[node.output[0]] = name
    return convs


def check_convs(convs: dict) -> None:
    """The graph's convs are exactly those the description names, with the shapes it implies."""
    d = DESCRIPTION
    want = {d["stem"]: (3, 2, 1)}  # name -> (k, stride, groups or 0 = depthwise)
    units = [u for s in d["stages"] for u in s["units"]] + [lv["lateral"] for lv in d["levels"]]
    for u in units:
        want[u + ".conv1"] = (1, 1, 1)
        want[u + ".conv2"] = (3, 1, 0)
    for i in range(len(d["levels"])):
        for h in d["heads"]:
            want[f"{h['module']}.{i}.conv1"] = (1, 1, 1)
            want[f"{h['module']}.{i}.conv2"] = (3, 1, 0)
    if set(want) != set(convs):
        raise ValueError(f"graph and description differ: {sorted(set(want) ^ set(convs))}")
    for name, (k, stride, groups) in want.items():
        w, b, attrs, _, _ = convs[name]
        cout = w.shape[0]
        g = cout if groups == 0 else groups
        ok = (tuple(attrs["kernel_shape"]) == (k, k) and tuple(attrs["strides"]) == (stride, stride)
              and attrs.get("group", 1) == g and tuple(attrs.get("pads", [0] * 4)) == (k // 2,) * 4
              and b.shape == (cout,) and w.shape[2:] == (k, k))
        if not ok:
            raise ValueError(f"{name}: unexpected conv {w.shape} {attrs}")


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Convert YuNet's ONNX model into the safetensors file the engine runs.")
    ap.add_argument("src", nargs="?", type=Path, default=DEFAULT_ONNX, metavar="MODEL.onnx")
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, metavar="OUT.safetensors")
    args = ap.parse_args(argv)
    src, out = args.src, args.out
    import onnx  # dev dependencies: after the arguments, so that --help works without them
    from pyfer.weights_file import save_checked

    model = onnx.load(str(src))
    convs = conv_modules(model)
    check_convs(convs)
    tensors = {}
    for name, (w, b, _, _, _) in sorted(convs.items()):
        tensors[name + ".weight"] = np.ascontiguousarray(w)
        tensors[name + ".bias"] = np.ascontiguousarray(b)
    meta = {"format": "pyfer-yunet", "yunet": json.dumps(DESCRIPTION),
            "source": src.name, "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "license": "MIT (Copyright (c) 2020 Shiqi Yu), see LICENSE-yunet.txt"}
    save_checked(tensors, out, meta)
    n = sum(t.size for t in tensors.values())
    print(f"wrote {out}: {len(tensors)} tensors, {n} parameters, {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
