"""scripts/check_mutants.py's table follows the code: every mutant's code occurs exactly once in
its file and its tests exist, so a refactoring that moves the code shows here, in the main suite,
not first in CI's reliability stage. (The mutants themselves run in scripts/ci_reliability.sh.)"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

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


def _keyword_names(node_id: str) -> list[str]:
    """What ``-k`` matches an item by, from its node id: its file's name and each name after it
    (class, function with its parameters), as pytest's keyword matcher sees them."""
    file, *names = node_id.split("::")
    return [Path(file).name, *names]


def test_every_k_selection_matches_a_test():
    """A ``-k`` that matches no test (a test renamed) made check_mutants say "fails unmutated" in
    CI's reliability stage only; here it shows in the main suite. One collection of the files,
    each expression judged by pytest's own parser."""
    expression = pytest.importorskip("_pytest.mark.expression", reason="pytest's -k parser moved").Expression
    mutants = _mutants()
    files = sorted({t for m in mutants for t in m.tests if t.startswith("tests/")})
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    node_ids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert len(node_ids) > 100, listed.stdout[-2000:] + listed.stderr[-2000:]
    unmatched = []
    for m in mutants:
        if "-k" not in m.tests:
            continue
        k = expression.compile(m.tests[m.tests.index("-k") + 1])
        own = [i for i in node_ids if i.split("::")[0] in m.tests]
        if not any(k.evaluate(lambda word, *_, names=_keyword_names(i): any(word.lower() in n.lower() for n in names))
                   for i in own):
            unmatched.append(m.name)
    assert unmatched == []
