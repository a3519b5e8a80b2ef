"""pyfer ships ``py.typed``: its types must reach a user's type checker and be right.

- The package type-checks under its own configuration (``[tool.mypy]`` in pyproject.toml).
- A user's code under ``mypy --strict`` sees the public names with their types (the lazy imports
  of ``pyfer/__init__.py`` hid them: everything was ``Any``) and gets an error for a misspelt one.
- ``pyfer/_engine.pyi`` names what the compiled module has (mypy's stubtest), and each function's
  parameters and defaults are those of the bindings (pybind11's signature lines).
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
_engine = pytest.importorskip("pyfer._engine")

STUB = REPO / "pyfer" / "_engine.pyi"


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_the_package_type_checks(tmp_path):
    r = mypy("--cache-dir", str(tmp_path / "cache"), cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


USER_CODE = """
    from pathlib import Path
    from typing import Any, Union

    import numpy as np
    import numpy.typing as npt
    from typing_extensions import assert_type

    import pyfer

    rec = pyfer.Recognizer(threads=1)
    img = np.zeros((48, 64, 3), np.uint8)
    faces = rec.predict(img)
    assert_type(faces, list[pyfer.Face])
    face = faces[0]
    assert_type(face.box, tuple[int, int, int, int])
    assert_type(face.label, str)
    assert_type(face.scores, dict[str, float])
    assert_type(rec.predict_batch([img]), list[list[pyfer.Face]])
    assert_type(rec.predict_batch([img], return_exceptions=True), list[Union[list[pyfer.Face], Exception]])
    assert_type(rec.classify([img[:, :, 0]]), np.ndarray)
    assert_type(pyfer.default_weights_path(), Path)
    assert_type(pyfer.Engine(str(pyfer.default_weights_path())).forward(np.zeros((1, 1, 64, 64), np.float32)),
                npt.NDArray[np.float32])
    assert_type(pyfer.build_info()["version"], Any)
"""


def test_user_code_sees_the_public_types(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(USER_CODE))
    r = mypy("--strict", "--cache-dir", str(tmp_path / "cache"), "app.py", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_misspelt_public_name_is_a_type_error(tmp_path):
    """The module's ``__getattr__`` (the lazy imports) would make any name valid to a checker."""
    (tmp_path / "app.py").write_text("import pyfer\n\npyfer.Recogniser()\n")
    r = mypy("--cache-dir", str(tmp_path / "cache"), "app.py", cwd=tmp_path)
    assert r.returncode == 1 and 'has no attribute "Recogniser"' in r.stdout, r.stdout + r.stderr


def test_the_stub_names_what_the_module_has(tmp_path):
    # pybind11 classes have a metaclass of their own, which a stub does not spell
    allow = tmp_path / "allowlist.txt"
    allow.write_text("pyfer._engine.Engine\npyfer._engine.YuNet\n")
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pyfer._engine", "--allowlist", str(allow),
                        "--mypy-config-file", str(REPO / "pyproject.toml")],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def _stub_functions() -> dict[str, ast.FunctionDef]:
    """'fma_peak', 'Engine.forward', ... -> the stub's definition."""
    found = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            found.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)
                          and not any(isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list)})
    return found


def _runtime_parameters(qualname: str) -> list[tuple[str, str | None]]:
    """(name, default or None) from the binding's pybind11 signature line, without ``self``."""
    obj = _engine
    for part in qualname.split("."):
        obj = getattr(obj, part)
    line = obj.__doc__.splitlines()[0]
    inner = line[line.index("(") + 1:line.rindex(") ->")]
    params = []
    for p in re.split(r",\s*(?![^\[]*\])", inner) if inner else []:  # commas outside [...]
        name, _, rest = p.partition(":")
        default = rest.split("=", 1)[1].strip() if "=" in rest else None
        if name.strip() != "self":
            params.append((name.strip(), default))
    return params


def test_the_stub_parameters_match_the_bindings():
    functions = _stub_functions()
    assert {"Engine.__init__", "Engine.forward", "Engine.profile", "YuNet.forward", "fma_peak"} <= set(functions)
    for qualname, fn in functions.items():
        args = [a for a in fn.args.args if a.arg != "self"]
        defaults = [None] * (len(args) - len(fn.args.defaults)) + [ast.literal_eval(d) for d in fn.args.defaults]
        stub = [(a.arg, None if d is None else repr(d)) for a, d in zip(args, defaults)]
        assert stub == _runtime_parameters(qualname), qualname
