"""scripts/check_mutants.py's table follows the code: every mutant's code occurs exactly once in
its file and its tests exist, so a refactoring that moves the code shows here, in the main suite,
not first in CI's reliability stage. (The mutants themselves run in scripts/ci_reliability.sh.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mutants():
    """scripts/check_mutants.py's table, loaded from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("check_mutants", REPO / "scripts" / "check_mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_mutants", module)  # (its dataclass looks its module up)
    spec.loader.exec_module(module)
    return module.MUTANTS


def test_every_mutant_applies_once_and_names_tests_that_exist():
    mutants = _mutants()
    assert len({m.name for m in mutants}) == len(mutants)
    for m in mutants:
        assert (REPO / m.path).read_text(encoding="utf-8").count(m.old) == 1, m.name
        assert m.old != m.new, m.name
        files = [t for t in m.tests if t.startswith("tests/")]
        assert files and all((REPO / f).is_file() for f in files), m.name
