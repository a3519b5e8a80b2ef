"""Every command-line tool (scripts/*.py and ``python -m training.X``) answers ``--help`` with its
usage and leaves nothing behind: a tool that read ``--help`` as an output folder or ran its whole
job instead (scripts/group_photos.py and scripts/hard_faces.py did) fails here.

Each tool runs in its own process, started as ``python TOOL --help`` would start it (``sys.argv``,
``sys.path[0]``, ``__main__``, its own empty working folder), but forked from one runner that has
imported numpy, OpenCV and torch once: importing torch was 2 of the 2.3 s each tool took."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

# argv: a JSON list of [name, command, folder]; runs each tool in a fork with its working folder
# FOLDER/cwd and its output in FOLDER/stdout and FOLDER/stderr; prints {name: exit status}
RUNNER = r"""
import json, os, runpy, signal, sys, time
for heavy in ("numpy", "cv2", "torch"):
    try:
        __import__(heavy)
    except ImportError:
        pass
status = {}
for name, command, folder in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, stream in ((1, "stdout"), (2, "stderr")):
                target = os.open(os.path.join(folder, stream), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(target, fd)
                os.close(target)
            os.chdir(os.path.join(folder, "cwd"))
            module = command[0] == "-m"
            sys.argv = [command[1] if module else command[0], "--help"]
            # as `python -m` (the folder) and `python SCRIPT` (its folder) set it; safe_path: 3.11+
            if not getattr(sys.flags, 'safe_path', False):
                sys.path[0] = os.getcwd() if module else os.path.dirname(command[0])
            try:
                if module:
                    runpy.run_module(command[1], run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(command[0], run_name="__main__")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
        # the interpreter's own way out, as after `python TOOL`: atexit handlers, threads joined
        raise SystemExit(code)
    deadline = time.monotonic() + 120
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            status[name] = os.waitstatus_to_exitcode(wait_status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status[name] = "timed out after 120 s"
            break
        time.sleep(0.01)
print(json.dumps(status))
"""


def _tools() -> list[tuple[str, list[str]]]:
    found = []
    for folder, as_module in (("scripts", False), ("training", True)):
        for path in sorted((REPO / folder).glob("*.py")):
            if "__main__" not in path.read_text(encoding="utf-8"):
                continue
            command = ["-m", f"{folder}.{path.stem}"] if as_module else [str(path)]
            found.append((f"{folder}/{path.name}", command))
    return found


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _run_every_tool(root: Path) -> dict:
    """{tool name: [exit status, stdout, stderr, what its working folder holds afterwards]}."""
    jobs = []
    for i, (name, command) in enumerate(_tools()):
        if name.startswith("training/") and not _has_torch():
            continue
        folder = root / str(i)
        (folder / "cwd").mkdir(parents=True)
        jobs.append((name, command, str(folder)))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: [status[name], (Path(folder) / "stdout").read_text(errors="replace"),
                   (Path(folder) / "stderr").read_text(errors="replace"),
                   sorted(p.name for p in (Path(folder) / "cwd").iterdir())]
            for name, _, folder in jobs}


def _help_problems(status, stdout: str, stderr: str, left: list) -> list[str]:
    """What is wrong with one tool's answer to --help (nothing: an empty list)."""
    if status != 0:
        return [f"exit status {status}: {stderr[-2000:]}"]
    problems = []
    if not stdout.lstrip().startswith("usage:"):
        problems.append(f"no usage first: {stdout[:500]!r}")
    if left:
        problems.append(f"left files behind: {left}")
    # the description, where there is one, is whole: the first line of a docstring cut a
    # sentence in two ("... where its five landmarks and its box fall in the")
    paragraphs = stdout.strip().split("\n\n")
    described = [p for p in paragraphs[1:2] if not p.rstrip().endswith(":") and not p.startswith(("options:", "positional"))]
    problems += [f"a description cut short: ...{text[-300:]!r}" for text in described
                 if not text.rstrip().endswith((".", ")", ":", "`", "!", "?"))]
    return problems


def test_every_tool_prints_usage_and_writes_nothing(tmp_path):
    """One test, not one per tool: under pytest-xdist a module fixture shared by per-tool tests ran
    every tool once in each worker that got one of them (40 s each); one test runs on one worker
    while the others go on. Every failing tool is named, with what is wrong."""
    runs = _run_every_tool(tmp_path)
    assert "scripts/eval_frontend.py" in runs and ("training/train.py" in runs or not _has_torch())  # found
    problems = {name: why for name, run in runs.items() if (why := _help_problems(*run))}
    assert not problems, "\n".join(f"{name}: {'; '.join(why)}" for name, why in problems.items())


def test_the_runner_reports_a_tool_that_fails_or_writes(tmp_path):
    """The forked runner must see what a separate process would: a failing tool's status and
    message, and a file it leaves behind."""
    bad = tmp_path / "bad_tool.py"
    bad.write_text("import sys\nopen('left.txt', 'w').write('x')\nsys.exit('no --help here')\n")
    # what it leaves only on the way out, as a real process would
    late = tmp_path / "late_tool.py"
    late.write_text("import atexit, threading, time\n"
                    "atexit.register(lambda: open('by_atexit.txt', 'w').close())\n"
                    "threading.Thread(target=lambda: (time.sleep(0.2), open('by_thread.txt', 'w').close())).start()\n"
                    "print('usage: late')\n")
    jobs = []
    for name, tool in (("bad", bad), ("late", late)):
        (tmp_path / name / "cwd").mkdir(parents=True)
        jobs.append([name, [str(tool)], str(tmp_path / name)])
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"bad": 1, "late": 0}
    assert "no --help here" in (tmp_path / "bad" / "stderr").read_text()
    assert [p.name for p in (tmp_path / "bad" / "cwd").iterdir()] == ["left.txt"]
    assert sorted(p.name for p in (tmp_path / "late" / "cwd").iterdir()) == ["by_atexit.txt", "by_thread.txt"]


def test_what_counts_as_a_wrong_answer_to_help():
    """The judge of each tool's answer: a failing status, no usage first, files left behind and a
    description cut short are each named; a good answer has no problems."""
    good = "usage: tool [-h]\n\nDoes one thing (and says so).\n\noptions:\n  -h, --help  show this\n"
    assert _help_problems(0, good, "", []) == []
    assert _help_problems(2, good, "boom", []) == ["exit status 2: boom"]
    assert len(_help_problems(0, "Tool 1.0\n" + good, "", ["out.csv"])) == 2
    cut = good.replace("Does one thing (and says so).", "Finds where its five landmarks and its box fall in the")
    assert [p.split(":")[0] for p in _help_problems(0, cut, "", [])] == ["a description cut short"]
