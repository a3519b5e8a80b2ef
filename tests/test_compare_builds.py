"""scripts/compare_builds.py refuses a comparison that would time one build against itself."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import compare_builds  # noqa: E402


def test_a_package_inside_this_checkout_is_accepted():
    compare_builds.imported_from_this_checkout(REPO / "pyfer", "--save")


def test_a_package_from_another_checkout_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not from this checkout"):
        compare_builds.imported_from_this_checkout(tmp_path / "other" / "pyfer", "--save")


def test_before_must_be_a_saved_build(tmp_path):
    with pytest.raises(SystemExit, match="holds no saved build"):
        compare_builds.main(["--before", str(tmp_path)])
