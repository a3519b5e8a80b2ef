"""Packaging checks (issue 7, docs/packaging.md): what an installed pyfer needs and carries.

Runs in two places:
- in the dev checkout (editable install, the normal test suite): the checks that hold for any
  install (weights inside the package, runtime dependencies, no torch at run time);
- against an installed wheel, from a copy of tests/ outside the source tree, in a venv without
  torch or build tools (scripts/check_wheel.sh sets PYFER_WHEEL_TEST=1): all checks, including
  that ``import pyfer`` resolves to site-packages and the wheel's build options (CPU-only).
Needs only numpy, OpenCV and pytest.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyfer._engine")
import pyfer  # noqa: E402

HERE = Path(__file__).resolve().parent
ASTRONAUT = HERE.parent / "examples" / "astronaut.png"
WHEEL_TEST = os.environ.get("PYFER_WHEEL_TEST") == "1"
wheel_only = pytest.mark.skipif(not WHEEL_TEST, reason="installed-wheel check (PYFER_WHEEL_TEST=1, scripts/check_wheel.sh)")

PKG = Path(pyfer.__file__).resolve().parent


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh process that imports the same pyfer as this one."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, **kw)


def test_weights_ship_inside_the_package():
    path = pyfer.default_weights_path()
    assert path.resolve().parent == PKG / "models", path
    assert path.suffix == ".safetensors" and path.stat().st_size > 1_000_000
    eng = pyfer.Engine(path, threads=1)
    assert eng.info()["architecture"] == "shufflenetv2"


def test_runtime_dependencies_are_numpy_opencv_and_tqdm_only():
    """The wheel's install requirements stay light: no torch, no onnxruntime (pyproject.toml)."""
    try:
        md.distribution("pyfer")
    except md.PackageNotFoundError:
        pytest.skip("pyfer is not pip-installed here (in-place dev build)")
    reqs = [r for r in (md.requires("pyfer") or []) if "extra ==" not in r]
    names = sorted(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs)
    assert names == ["numpy", "opencv-python-headless", "tqdm"], reqs
    # OpenCV before 4.10.0.84 was built against numpy 1 but declares no numpy bound: pip pairs it
    # with numpy 2 and `import cv2` fails
    cv = next(r for r in reqs if r.lower().startswith("opencv"))
    floor = re.search(r">=\s*([\d.]+)", cv)
    assert floor and tuple(map(int, floor.group(1).split("."))) >= (4, 10, 0, 84), cv


def test_the_licences_of_what_the_wheel_carries_ship_in_it():
    """pyfer's own, the notice file, pybind11's (compiled into _engine: BSD-3 asks for its notice in
    binary form) and YuNet's (the shipped detector)."""
    try:
        files = {str(f).replace("\\", "/") for f in md.files("pyfer") or []}
    except md.PackageNotFoundError:
        pytest.skip("pyfer is not pip-installed here (in-place dev build)")
    licences = {f.rsplit("/", 1)[-1] for f in files if "/licenses/" in f}
    assert {"LICENSE", "NOTICE.md", "LICENSE-pybind11.txt"} <= licences, sorted(licences)
    pybind11 = next(f for f in md.distribution("pyfer").files if f.name == "LICENSE-pybind11.txt")
    assert "Wenzel Jakob" in pybind11.read_text()
    assert "MIT" in (PKG / "models" / "LICENSE-yunet.txt").read_text()


def test_predict_imports_no_torch_and_no_training_code():
    """A full predict in a fresh process loads neither torch nor the training package."""
    code = ("import sys, pyfer\n"
            f"faces = pyfer.Recognizer(threads=1).predict({str(ASTRONAUT)!r})\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'onnxruntime', 'safetensors'))\n"
            "print(len(faces), faces[0].label if faces else None, bad)\n")
    r = _run(code, cwd=str(HERE))
    assert r.returncode == 0, r.stderr
    n, label, bad = r.stdout.split(" ", 2)
    assert int(n) == 1 and label == "happiness", r.stdout
    assert bad.strip() == "[]", r.stdout


def test_import_pyfer_is_lazy():
    """``import pyfer`` loads neither the engine nor OpenCV (they load on first use)."""
    r = _run("import sys, pyfer; print(sorted(m for m in ('pyfer._engine', 'cv2', 'pyfer.recognizer') if m in sys.modules))",
             cwd=str(HERE))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


# ---- installed wheel only --------------------------------------------------------------------
@wheel_only
def test_pyfer_is_the_installed_wheel_not_the_source_tree():
    assert "site-packages" in PKG.parts, PKG
    assert not (PKG.parent / "CMakeLists.txt").exists()
    dist = md.distribution("pyfer")
    files = {str(f) for f in dist.files or []}
    assert "pyfer/models/tsnet_student.safetensors" in files
    assert any(f.startswith("pyfer/_engine") and f.endswith((".so", ".pyd")) for f in files), files
    # nothing but the package and its metadata: no training code, no teacher, no tests
    assert {f.split("/")[0] for f in files} <= {"pyfer", f"pyfer-{dist.version}.dist-info", ".."}, files
    assert not any("teacher" in f or f.startswith(("training/", "tests/")) for f in files)


@wheel_only
def test_no_torch_and_no_build_tools_in_this_environment():
    present = [m for m in ("torch", "skbuild", "scikit_build_core", "pybind11", "cmake", "ninja", "setuptools")
               if importlib.util.find_spec(m) is not None]
    assert present == [], f"the wheel test venv must hold only the wheel and test tools, found {present}"


@wheel_only
def test_wheel_is_the_cpu_build_with_isa_dispatch():
    info = pyfer.build_info()
    assert info["cuda"] is False  # published CPU wheel: PYFER_WITH_CUDA=OFF (docs/packaging.md)
    machine = os.uname().machine
    if sys.platform.startswith("linux") and machine in ("x86_64", "AMD64"):
        # x86_64 wheels keep the AVX2 and AVX-512 kernels and choose at run time (CPUID, and on
        # AVX-512 CPUs a measured rule), saying why
        assert info["isa"]["compiled"] == ["portable", "avx2", "avx512"], info
        assert info["isa"]["selected"] in info["isa"]["runnable"] and info["isa"]["why"], info
    elif machine in ("aarch64", "arm64"):
        # aarch64 wheels (cross-built with cmake/zig-toolchain.cmake): portable kernels only
        assert info["isa"]["compiled"] == ["portable"] and info["isa"]["selected"] == "portable", info
    assert pyfer.engine.cuda_devices()[0] == 0


@wheel_only
def test_cli_info_and_predict(tmp_path):
    exe = Path(sys.executable).with_name("pyfer")
    r = subprocess.run([str(exe), "info"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "weights:" in r.stdout and str(PKG) in r.stdout, r.stdout
    sha = hashlib.sha256(pyfer.default_weights_path().read_bytes()).hexdigest()
    assert sha in r.stdout
    out = tmp_path / "annotated.jpg"
    r = subprocess.run([str(exe), "predict", str(ASTRONAUT), "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 face(s)" in r.stdout and "happiness" in r.stdout, r.stdout
    assert out.stat().st_size > 1000


@wheel_only
def test_every_runnable_isa_agrees_with_the_reference_on_the_shipped_weights():
    import numpy as np

    ref = pyfer.Engine(pyfer.default_weights_path(), threads=1, isa="ref")
    x = np.random.default_rng(0).standard_normal((3, *ref.input_shape)).astype(np.float32)
    want = ref.forward(x)
    for isa in pyfer.build_info()["isa"]["runnable"]:
        got = pyfer.Engine(pyfer.default_weights_path(), threads=1, isa=isa).forward(x)
        err = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
        assert err <= 1e-4, (isa, err)


def test_cibuildwheel_runs_the_test_list_that_check_wheel_runs():
    """pyproject.toml's cibuildwheel test command is a second copy of scripts/check_wheel.sh's
    torch-free list: they must name the same files (each a file that exists)."""
    tomllib = pytest.importorskip("tomllib")
    root = HERE.parent
    script = root / "scripts" / "check_wheel.sh"
    if not script.is_file() or not (root / "pyproject.toml").is_file():
        pytest.skip("needs the source tree (scripts/check_wheel.sh, pyproject.toml)")
    default = re.search(r"PYFER_CHECK_TESTS:-([^}]*)\}", script.read_text())
    command = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["cibuildwheel"]["test-command"]
    pytest_line = next(c for c in command if "pytest" in c)
    listed = {"check_wheel.sh": default.group(1).split(), "cibuildwheel": re.findall(r"tests/\S+\.py", pytest_line)}
    assert listed["check_wheel.sh"] and sorted(listed["check_wheel.sh"]) == sorted(listed["cibuildwheel"]), listed
    assert all((root / t).is_file() for t in listed["check_wheel.sh"]), listed
