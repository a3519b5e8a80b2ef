"""Ctrl-C in a training tool: one line and exit status 130, not a traceback (a helper's review:
prior_shift and framing printed torch's whole stack). ``training.train`` says how to resume
instead (tests/test_run_folder.py)."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from training.cli import run_tool


def test_a_stopped_tool_says_so_in_one_line(capsys):
    def stopped():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        run_tool(stopped)
    assert stop.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    run_tool(lambda: None)  # a tool that ends by itself is left alone


@pytest.mark.skipif(os.name != "posix", reason="signals")
@pytest.mark.parametrize("sig,ignored_at_start", [("SIGTERM", False), ("SIGINT", False), ("SIGINT", True)])
def test_kill_and_timeout_stop_a_tool_as_ctrl_c_does(tmp_path, sig, ignored_at_start):
    """``kill`` (SIGTERM) ended a tool with no word, and ``kill -INT`` of a background job (which
    starts with SIGINT ignored) did nothing: both now stop it in one line, 143 and 130."""
    tool = tmp_path / "tool.py"
    tool.write_text("import os, signal, time\n"
                    "from training.cli import run_tool\n"
                    f"def main():\n    os.kill(os.getpid(), signal.{sig})\n    time.sleep(30)\n"
                    "run_tool(main)\n")
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored_at_start else None
    done = subprocess.run([sys.executable, str(tool)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=start)
    assert done.returncode == 128 + getattr(signal, sig) and done.stderr == "interrupted\n", done


def _main_block_calls(path) -> list[str]:
    """What the module's ``if __name__ == "__main__":`` block calls."""
    calls = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            calls += [ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)]
    return calls


def test_every_training_tool_runs_through_run_tool():
    tools = {p.name: _main_block_calls(p) for p in sorted((REPO / "training").glob("*.py"))}
    tools = {name: calls for name, calls in tools.items() if calls and name != "train.py"}
    assert len(tools) >= 15
    assert [name for name, calls in tools.items() if "run_tool" not in calls] == []
