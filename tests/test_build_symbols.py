"""The development build's symbols. Nothing compiled for AVX2/AVX-512 is reachable without the
CPUID check: the ISA files define no global or weak function outside their own namespace
(scripts/check_isa_isolation.py; the wheel build runs the same check on its zig objects). And the
module exports none of pyfer's own symbols (hidden visibility)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "check_isa_isolation.py"
# the editable install's build folder (build/{wheel_tag}, pyproject.toml) for this Python; not the
# fuzz or sanitizer builds beside it
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}-"
BUILDS = sorted((p.parent for p in REPO.glob(f"build/{TAG}*/_engine*.so")
                 if (p.parent / "CMakeFiles" / "pyfer_core.dir").is_dir()), key=lambda p: p.stat().st_mtime)
needs_build = pytest.mark.skipif(not BUILDS or not shutil.which("nm"),
                                 reason="needs the development build's objects (pip install -e .) and nm; for "
                                        "another build folder: python scripts/check_isa_isolation.py BUILD_DIR")


@needs_build
def test_the_development_build_keeps_isa_code_in_its_namespaces():
    out = subprocess.run([sys.executable, str(SCRIPT), str(BUILDS[-1])], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "none outside their ISA namespace" in out.stdout


@needs_build
def test_the_check_fails_on_an_inline_function_compiled_into_an_isa_file(tmp_path):
    """An inline destructor in a header, compiled into an -mavx512f file, is a weak symbol the
    linker may pick for the whole module: the check must name it."""
    obj_dir = tmp_path / "CMakeFiles" / "pyfer_core.dir" / "csrc" / "kernels" / "avx512"
    obj_dir.mkdir(parents=True)
    src = tmp_path / "leak.cpp"
    src.write_text("namespace pyfer { struct Buf { float* p = nullptr; ~Buf(); }; inline Buf::~Buf() { delete[] p; }\n"
                   "namespace avx512 { void kernel() { Buf b; } } }\n")
    cxx = shutil.which("c++") or pytest.skip("no C++ compiler")
    subprocess.run([cxx, "-O2", "-mavx512f", "-fno-inline", "-c", str(src), "-o", str(obj_dir / "leak.cpp.o")],
                   check=True)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "pyfer::Buf::~Buf()" in out.stdout, out.stdout
    # a template inside the namespace is not flagged (demangled, its name starts with its return type)
    src.write_text("namespace pyfer::avx512 { template <int N> void run(float* p) { p[N] = 0; }\n"
                   "template void run<4>(float*); }\n")
    subprocess.run([cxx, "-O2", "-mavx512f", "-c", str(src), "-o", str(obj_dir / "leak.cpp.o")], check=True)
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_nothing_to_check_is_not_a_pass(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "nothing was checked" in out.stdout


@needs_build
def test_the_modules_export_none_of_pyfers_symbols():
    """Exported, a pyfer:: function could be interposed by another library in the process that
    defines the same name (and every export is a relocation at load time)."""
    modules = sorted(BUILDS[-1].glob("_*.so"))  # _engine, and _checks where the C++ checks are built
    for module in modules:
        out = subprocess.run(["nm", "-D", "-C", "--defined-only", str(module)], capture_output=True, text=True,
                             check=True).stdout
        assert "PyInit_" in out, module
        leaked = [line for line in out.splitlines() if " pyfer::" in line]
        assert not leaked, (module.name, leaked[:10])
