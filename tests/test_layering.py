"""The engine's C++ layers include only downwards (docs/architecture.md): the model (csrc/core) at
the bottom, then the kernels, the fused blocks, the runtime (engine, thread pool, backend factory),
then the backends above it (csrc/ref, csrc/cuda, which do not include each other), then the
bindings and the test code. No build needed: this reads the #include lines."""
from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parents[1] / "csrc"
LEVEL = {"core": 0, "kernels": 1, "blocks": 2, "runtime": 3, "ref": 4, "cuda": 4, "tests": 5, "python": 6}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _edges():
    for f in sorted(CSRC.rglob("*")):
        if f.suffix not in (".hpp", ".cpp", ".cu", ".cuh", ".inc", ".h"):
            continue
        rel = f.relative_to(CSRC).as_posix()
        for inc in INCLUDE.findall(f.read_text(errors="replace")):
            target = (f.parent / inc).resolve()
            if CSRC not in target.parents:
                continue
            yield rel, target.relative_to(CSRC).as_posix()


def test_every_source_is_in_a_layer():
    dirs = {p.name for p in CSRC.iterdir() if p.is_dir()}
    assert dirs <= set(LEVEL), dirs - set(LEVEL)


def test_includes_go_down_the_layers():
    bad = []
    for src, dst in _edges():
        a, b = src.split("/")[0], dst.split("/")[0]
        if a == b:
            continue
        if LEVEL[b] >= LEVEL[a]:
            bad.append(f"{src} includes {dst}")
    assert not bad, "\n".join(bad)


def test_core_is_free_of_kernels_and_blocks():
    for src, dst in _edges():
        if src.startswith("core/"):
            assert dst.startswith("core/"), f"{src} includes {dst}"


def test_shipped_module_has_no_test_code():
    # pyfer._engine (bindings.cpp) ships in wheels; the checks live in the test-only pyfer._checks
    for src, dst in _edges():
        if src == "python/bindings.cpp":
            assert not dst.startswith("tests/"), dst


def test_ref_declarations_live_in_ref_hpp():
    # no hand-written declarations of the reference functions outside csrc/ref
    decl = re.compile(r"^\s*(ref::Tensor|std::vector<float>)\s+ref_(block|forward)\s*\(", re.M)
    for f in CSRC.rglob("*.cpp"):
        if f.parent.name != "ref":
            assert not decl.search(f.read_text()), f
