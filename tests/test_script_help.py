"""Every command-line tool (scripts/*.py and ``python -m training.X``) answers ``--help`` with its
usage and leaves nothing behind: a tool that read ``--help`` as an output folder or ran its whole
job instead (scripts/group_photos.py and scripts/hard_faces.py did) fails here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tools() -> list[tuple[str, list[str]]]:
    found = []
    for folder, as_module in (("scripts", False), ("training", True)):
        for path in sorted((REPO / folder).glob("*.py")):
            if "__main__" not in path.read_text(encoding="utf-8"):
                continue
            command = ["-m", f"{folder}.{path.stem}"] if as_module else [str(path)]
            found.append((f"{folder}/{path.name}", command))
    return found


@pytest.mark.parametrize("name,command", _tools(), ids=[n for n, _ in _tools()])
def test_help_prints_usage_and_writes_nothing(name, command, tmp_path):
    if name.startswith("training/"):
        pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, *command, "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, (name, done.stderr[-2000:])
    assert done.stdout.lstrip().startswith("usage:"), (name, done.stdout[:500])
    assert list(tmp_path.iterdir()) == [], (name, [p.name for p in tmp_path.iterdir()])
