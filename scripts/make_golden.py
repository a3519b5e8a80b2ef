"""Regenerate the engine's golden files under tests/golden/.

    python scripts/make_golden.py [--out tests/golden]

Writes
  student_golden.safetensors  a random-weight ShuffleNetV2 (stem "small", input 48) export stored
                              as float16 (small, and exercises the engine's F16 conversion), with
                              randomised BatchNorm statistics so BN folding is not the identity;
  golden_io.safetensors       "input" float32 (2, 1, 48, 48) and "logits" float32 (2, 8): the
                              expected output of training.models.from_safetensors (PyTorch, eval).
Checked by tests/test_engine_golden.py and the C++ pyfer_selftest.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.export import export_model  # noqa: E402
from training.export import from_safetensors  # noqa: E402
from training.models import ModelSpec, randomize_batchnorm  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests" / "golden"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    spec = ModelSpec("shufflenetv2", 8, 1, "small")
    model = randomize_batchnorm(spec.build(), seed=1234, fc_scale=20.0)
    weights = export_model(model, spec, PreprocessSpec(48), out / "student_golden.safetensors",
                           source={"golden": "scripts/make_golden.py"}, half=True)
    ref = from_safetensors(weights)
    x = np.random.default_rng(1234).standard_normal((2, 1, 48, 48)).astype(np.float32)
    with torch.no_grad():
        y = ref(torch.from_numpy(x)).numpy().astype(np.float32)
    from safetensors.numpy import save_file

    save_file({"input": x, "logits": y}, str(out / "golden_io.safetensors"))
    print(f"wrote {weights} and {out / 'golden_io.safetensors'}; logits[0] = {y[0]}")


if __name__ == "__main__":
    main()
