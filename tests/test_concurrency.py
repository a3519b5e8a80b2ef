"""Concurrency on one shared ``Recognizer`` / ``Engine`` with real faces (SFEW + the astronaut).

* 8 Python threads x ``CALLS`` ``predict`` calls each give exactly the serial results
  (always-on: 8 x 50; ``-m slow``: 8 x 500, the issue's figure).
* The GIL is released inside the engine: the main thread runs Python while another thread is
  inside ``Engine.forward`` (checked without timing: no forced GIL switches); the overlap of the
  threaded run (speed-up, CPU per wall second) is printed by the slow test, not asserted.
* Two engines in two threads at once give the serial logits.
* Engines created and destroyed in a loop while other threads predict: no crash, results intact.
* A Recognizer made before ``os.fork()`` (gunicorn's ``--preload``) predicts in the child as in the
  parent, and a child that never predicts exits cleanly: both hung forever before (session 35).
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time

import cv2
import numpy as np
import pytest

import pyfer
from conftest import ASTRONAUT, SHIPPED_WEIGHTS

NTHREADS = 8
# under ThreadSanitizer (scripts/tsan.sh sets PYFER_TSAN=1) every call is ~10x slower: fewer calls
TSAN = os.environ.get("PYFER_TSAN") == "1"
CALLS_PER_THREAD = 3 if TSAN else 10


@pytest.fixture(scope="module")
def images(sfew_rows):
    """The astronaut photo and 7 SFEW faces (BGR), spread over the manifest."""
    step = max(1, len(sfew_rows) // 7)
    imgs = [cv2.imread(str(ASTRONAUT))] + [cv2.imread(str(p)) for p, _ in sfew_rows[::step][:7]]
    assert all(i is not None for i in imgs)
    return imgs


@pytest.fixture(scope="module")
def shared():
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("shipped weights missing")
    return pyfer.Recognizer(SHIPPED_WEIGHTS)


def as_key(faces):
    """Exact, hashable form of a predict() result (boxes and bit-exact scores)."""
    return tuple((f.box, f.label, tuple(f.scores.values())) for f in faces)


def hammer(rec, images, calls, nthreads=NTHREADS, extra=None):
    """Run ``calls`` predicts per thread; returns (results per thread, errors, wall s, cpu s)."""
    results = [[] for _ in range(nthreads)]
    errors = []
    start = threading.Barrier(nthreads + 1)

    def work(t):
        try:
            start.wait()
            for i in range(calls):
                k = (t + i) % len(images)
                results[t].append((k, as_key(rec.predict(images[k]))))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for th in ts:
        th.start()
    c0, w0 = time.process_time(), time.perf_counter()
    start.wait()
    if extra is not None:
        extra()
    for th in ts:
        th.join()
    return results, errors, time.perf_counter() - w0, time.process_time() - c0


def run_concurrency(rec, images, calls, timed=False):
    serial = [as_key(rec.predict(img)) for img in images]
    assert sum(len(s) > 0 for s in serial) >= 6, "the real faces should mostly be detected"
    n = NTHREADS * calls
    stats = {"calls": n, "cores": os.cpu_count()}
    if timed:  # serial timing of exactly the same call sequence
        c0, w0 = time.process_time(), time.perf_counter()
        for t in range(NTHREADS):
            for i in range(calls):
                rec.predict(images[(t + i) % len(images)])
        stats["serial_wall_s"], stats["serial_cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
    results, errors, wall, cpu = hammer(rec, images, calls)
    assert not errors, errors[:3]
    mismatches = sum(key != serial[k] for r in results for k, key in r)
    assert sum(len(r) for r in results) == n
    assert mismatches == 0, f"{mismatches} of {n} threaded results differ from serial"
    stats.update(threaded_wall_s=wall, threaded_cpu_s=cpu, cpu_per_wall_threaded=cpu / wall)
    if timed:
        stats.update(speedup=stats["serial_wall_s"] / wall,
                     cpu_per_wall_serial=stats["serial_cpu_s"] / stats["serial_wall_s"])
        stats["overlap_gain"] = stats["cpu_per_wall_threaded"] / stats["cpu_per_wall_serial"]
    print("\nconcurrency:", {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()})
    return stats


def test_threads_match_serial(shared, images):
    """8 threads x 50 calls: identical to serial (timing claims live in the slow test and in
    test_engine_forward_releases_the_gil, which do not depend on how busy the cores are)."""
    run_concurrency(shared, images, calls=10 if TSAN else 50)


@pytest.mark.slow
def test_threads_match_serial_full(shared, images):
    """The issue's figure: 8 threads x 500 predict calls on one shared Recognizer, identical to
    serial; prints the overlap (speed-up and CPU per wall second, threaded vs serial)."""
    run_concurrency(shared, images, calls=500, timed=True)
    # the overlap figures (speed-up, CPU per wall second threaded vs serial) are printed, not
    # asserted: they depend on whether the other core is free. The GIL claim is asserted by
    # test_engine_forward_releases_the_gil, which does not depend on that.


@pytest.mark.parametrize("pool", [2, 8])
def test_threads_share_one_engine(pool):
    """Several Python threads on one ``Engine`` whose thread pool has 2 or 8 workers: batches of
    9 (split over the pool in uneven ranges), every result bit-identical to the serial one.
    Also run under ThreadSanitizer by scripts/tsan.sh."""
    eng = pyfer.Engine(SHIPPED_WEIGHTS, threads=pool)
    rng = np.random.default_rng(pool)
    xs = [rng.standard_normal((9, 1, 64, 64)).astype(np.float32) for _ in range(4)]
    want = [eng.forward(x) for x in xs]
    errors, done = [], []

    def work(t):
        try:
            for i in range(CALLS_PER_THREAD):
                k = (t + i) % len(xs)
                np.testing.assert_array_equal(eng.forward(xs[k]), want[k])
                done.append(1)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:2]
    assert len(done) == 6 * CALLS_PER_THREAD


@pytest.mark.parametrize("pool", [2, 8])
def test_threads_share_one_recognizer_pool_sizes(pool, images):
    """8 threads on one ``Recognizer`` whose engine pool has 2 or 8 workers: identical to serial."""
    rec = pyfer.Recognizer(SHIPPED_WEIGHTS, threads=pool)
    serial = [as_key(rec.predict(img)) for img in images]
    results, errors, _, _ = hammer(rec, images, CALLS_PER_THREAD)
    assert not errors, errors[:3]
    assert all(key == serial[k] for r in results for k, key in r)


def test_engine_forward_releases_the_gil():
    """Python in another thread must run while Engine.forward computes: a GIL-holding call would block it.

    With a switch interval of 100 s the interpreter never forces a thread off the GIL, so once the
    worker has the GIL the main thread can run only when the worker gives it up: inside forward if
    the binding releases it, else only after forward has returned (then ``returned`` is set)."""
    eng = pyfer.Engine(SHIPPED_WEIGHTS, threads=1)
    x = np.random.default_rng(0).standard_normal((64 if TSAN else 256, 1, 64, 64)).astype(np.float32)
    eng.forward(x[:2])

    def attempt() -> bool:
        returned = threading.Event()
        th = threading.Thread(target=lambda: (eng.forward(x), returned.set()))
        th.start()  # the main thread gets the GIL back only when the worker releases it
        ran_during_forward = not returned.is_set()
        th.join()
        return ran_during_forward

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        # a retry only covers the OS not scheduling the main thread during a ~0.2 s forward on busy
        # cores; a binding that holds the GIL fails every attempt
        ok = [attempt() for _ in range(3)]
    finally:
        sys.setswitchinterval(old)
    assert any(ok), "the main thread could not run while Engine.forward computed: the GIL is held"


def test_two_engines_in_two_threads_give_the_serial_logits():
    """Two engines called from two threads at once must each give the serial logits (the speed-up
    is printed only: it depends on how busy the shared cores are)."""
    engs = [pyfer.Engine(SHIPPED_WEIGHTS, threads=1) for _ in range(2)]
    x = np.random.default_rng(1).standard_normal((16, 1, 64, 64)).astype(np.float32)
    want = engs[0].forward(x)
    t0 = time.perf_counter()
    for e in engs:
        e.forward(x)
    serial = time.perf_counter() - t0
    out = [None, None]
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, engs[i].forward(x))) for i in range(2)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    par = time.perf_counter() - t0
    print(f"\ntwo engines: serial {serial * 1e3:.0f} ms, threaded {par * 1e3:.0f} ms ({serial / par:.2f}x)")
    for o in out:
        np.testing.assert_array_equal(o, want)
    # informational: the speed-up depends on how busy the (shared) cores are; results must match


def churn_while_predicting(rec, images, cycles, calls):
    serial = [as_key(rec.predict(img)) for img in images]
    x = np.random.default_rng(2).standard_normal((2, 1, 64, 64)).astype(np.float32)
    want = pyfer.Engine(SHIPPED_WEIGHTS, threads=1).forward(x)
    churn_errors = []

    def churn():
        try:
            for i in range(cycles):
                e = pyfer.Engine(SHIPPED_WEIGHTS, threads=1 + i % 3)
                if i % 2:
                    np.testing.assert_array_equal(e.forward(x), want)
                del e
                if i % 5 == 0:
                    gc.collect()
                # a Recognizer too (engine + detector), dropped at once
                if i % 4 == 0:
                    pyfer.Recognizer(SHIPPED_WEIGHTS, threads=1).predict(images[i % len(images)])
        except BaseException as e:  # noqa: BLE001
            churn_errors.append(e)

    churners = [threading.Thread(target=churn) for _ in range(2)]
    results, errors, _, _ = hammer(rec, images, calls, nthreads=4,
                                   extra=lambda: [t.start() for t in churners])
    for t in churners:
        t.join()
    assert not errors and not churn_errors, (errors[:2], churn_errors[:2])
    assert all(key == serial[k] for r in results for k, key in r)


def test_engines_created_and_destroyed_while_predicting(shared, images):
    churn_while_predicting(shared, images, cycles=6 if TSAN else 20, calls=6 if TSAN else 25)


@pytest.mark.slow
def test_engines_created_and_destroyed_while_predicting_long(shared, images):
    churn_while_predicting(shared, images, cycles=200, calls=200)


FORK_CHILD = """
import os, subprocess, sys
import pyfer
rec = pyfer.Recognizer(threads=2)  # a pool with a worker: the case fork() breaks
want = [(f.box, f.label, f.confidence) for f in rec.predict(sys.argv[1])]
codes = []
for predicts in (True, False):
    pid = os.fork()
    if pid == 0:
        if predicts:  # the engine's workers stayed in the parent
            got = [(f.box, f.label, f.confidence) for f in rec.predict(sys.argv[1])]
            sys.exit(0 if got == want else 3)
        sys.exit(0)  # finalization destroys the engine: its pool must not wait for the parent's workers
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
got = [(f.box, f.label, f.confidence) for f in rec.predict(sys.argv[1])]  # the parent's pool still works
print(*codes, got == want)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.skipif(TSAN, reason="ThreadSanitizer kills a child that starts threads after a multi-threaded fork")
def test_a_recognizer_made_before_fork_works_in_the_child():
    import subprocess

    out = subprocess.run([sys.executable, "-c", FORK_CHILD, str(ASTRONAUT)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["0", "0", "True"], (out.stdout, out.stderr[-2000:])


FORK_DURING_PREDICT = """
import os, signal, sys, threading, time
import numpy as np, pyfer
rec = pyfer.Recognizer(threads=2)
want = [(f.box, f.label, f.confidence) for f in rec.predict(sys.argv[1])]
batch = np.zeros((256, 1, 64, 64), np.float32)  # about 0.1-0.3 s inside the engine per call
busy, stop = threading.Event(), threading.Event()
def work():
    while not stop.is_set():
        busy.set()
        rec.engine.forward(batch)
worker = threading.Thread(target=work)
worker.start()
codes, waited = [], 0
for _ in range(5):
    busy.clear()
    busy.wait()  # a call has just started
    time.sleep(0.02)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a hung child must not outlive the test
        got = [(f.box, f.label, f.confidence) for f in rec.predict(sys.argv[1])]
        os._exit(0 if got == want else 3)
    waited += time.perf_counter() - t0 > 0.005  # the fork waited for the call in flight
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop.set()
worker.join()
print(*codes, waited)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.skipif(TSAN, reason="ThreadSanitizer kills a child that starts threads after a multi-threaded fork")
def test_fork_while_another_thread_predicts():
    """fork() while a thread is inside the engine: the child's engine lock was copied held, and its
    first predict waited forever (3 children of 3, session 35's review); now fork() waits for the
    call in flight (csrc/runtime/fork_safe_mutex.hpp)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", FORK_DURING_PREDICT, str(ASTRONAUT)], capture_output=True,
                         text=True, timeout=120)
    *codes, waited = out.stdout.split() or ["no output"]
    assert out.returncode == 0 and codes == ["0"] * 5, (out.stdout, out.stderr[-2000:])
    assert int(waited) >= 3, out.stdout  # most forks met a call in flight: the case under test


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_default_threads_are_the_cpus_the_process_may_use():
    """taskset or a container's cpuset: the default pool has one thread per usable CPU (at most a
    cgroup CPU quota: tests/test_cpu_count.py), not one per CPU of the host (it counted the
    host's before, session 35)."""
    import subprocess

    code = ("import os, pyfer\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "print(pyfer.Engine(%r).info()['threads'], pyfer.Recognizer(%r).engine.info()['threads'])"
            % (str(SHIPPED_WEIGHTS), str(SHIPPED_WEIGHTS)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "1"], (out.stdout, out.stderr[-2000:])


DAEMONS_AT_EXIT = """
import sys, threading, time
import numpy as np, pyfer
rec = pyfer.Recognizer(threads=1)
photo = rec.predict  # (warm: the first call builds the detector)
photo(sys.argv[2])
import cv2
image = cv2.imread(sys.argv[2])
batch = np.zeros((64, 1, 64, 64), np.float32)
call = {"predict": lambda: rec.predict(image), "engine": lambda: rec.engine.forward(batch)}[sys.argv[1]]
inside = threading.Event()
def work():
    while True:
        inside.set()
        call()
for _ in range(2):
    threading.Thread(target=work, daemon=True).start()
inside.wait()
time.sleep(0.05)
print("exiting", flush=True)
"""


@pytest.mark.skipif(TSAN, reason="a thread parked at exit is what ThreadSanitizer reports as a leak")
@pytest.mark.parametrize("call", ["predict", "engine"])
def test_a_program_exits_cleanly_while_daemon_threads_predict(call):
    """Daemon threads inside ``predict`` (OpenCV, the engine) or ``Engine.forward`` when the program
    exits: CPython ends such a thread by unwinding its stack as it asks for the GIL back, and an
    unwind out of a C++ destructor that takes the GIL back aborted the process with a core dump
    (OpenCV's and pybind11's; ``predict`` or ``detect``: 12 of 12 exits, ``classify``: 2 of 6; both
    cases of this test failed on that code, session 46). Now
    pyfer's own bindings park such a thread (csrc/python/released_gil.hpp) and the exit waits for
    pyfer calls under way (pyfer/exit_gate.py). Four exits each."""
    import subprocess

    for _ in range(4):
        out = subprocess.run([sys.executable, "-c", DAEMONS_AT_EXIT, call, str(ASTRONAUT)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.split() == ["exiting"], (out.returncode, out.stderr[-2000:])


EXIT_GATE = """
import atexit, sys, threading, time
rec = None
finished = threading.Event()
# registered before pyfer is imported, so it runs after pyfer's exit handler (atexit: last first)
atexit.register(lambda: print("the call had finished:", finished.is_set(), "| main thread at exit:",
                              len(rec.predict(sys.argv[1]))))
import pyfer
from pyfer.exit_gate import CallInFlight
rec = pyfer.Recognizer(threads=1)
inside = threading.Event()
def slow_call():
    with CallInFlight():
        inside.set()
        time.sleep(0.5)
        finished.set()
threading.Thread(target=slow_call, daemon=True).start()
inside.wait()
"""


def test_the_exit_waits_for_a_call_under_way_and_the_main_thread_still_predicts():
    """The gate itself: the program's end waits for a daemon thread's call that is under way
    (0.5 s), as the handler that runs after pyfer's sees; and a ``predict`` from that handler, on
    the main thread, still runs."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", EXIT_GATE, str(ASTRONAUT)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["the call had finished: True | main thread at exit: 1"], out.stdout


DRAIN_AT_EXIT = """
import atexit, queue, sys, threading
work, answers = queue.Queue(), []
def drain():
    work.join()
    print("answered", len(answers), "of 6;", sum(a == "refused" for a in answers), "refused", flush=True)
if sys.argv[2] == "before":  # a handler registered before pyfer: it runs after pyfer's gate closed
    atexit.register(drain)
import pyfer
if sys.argv[2] == "after":
    atexit.register(drain)
rec = pyfer.Recognizer(threads=1)
def worker():
    while True:
        path = work.get()
        try:
            answers.append(rec.predict(path)[0].label)
        except RuntimeError:  # a call started once the exit is under way
            answers.append("refused")
        finally:
            work.task_done()
threading.Thread(target=worker, daemon=True).start()
for _ in range(6):
    work.put(sys.argv[1])
"""


@pytest.mark.parametrize("registered", ["after", "before"])
def test_a_shutdown_handler_that_drains_a_queue_of_work_finishes(registered):
    """A service's own exit handler that waits for its daemon worker to finish the queued work: one
    registered after ``import pyfer`` runs while pyfer's calls do, so every item is answered; one
    registered before it runs after pyfer's gate closed, and the worker's later calls raise
    ``RuntimeError``, which it handles: no item is lost and the exit does not hang (it hung when
    such calls waited for good: a helper's review, session 46)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", DRAIN_AT_EXIT, str(ASTRONAUT), registered], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    assert words[:4] == ["answered", "6", "of", "6;"], out.stdout
    if registered == "after":
        assert words[4] == "0", out.stdout


_worker_recognizer = None


def _make_worker_recognizer() -> None:
    global _worker_recognizer
    _worker_recognizer = pyfer.Recognizer(threads=1)


def _labels_in_worker(path: str) -> list:
    return [f.label for f in _worker_recognizer.predict(path)]


def test_a_recognizer_is_not_pickled_but_made_in_each_worker(shared):
    """Pickling failed deep inside (``cannot pickle '_thread._local' object``), which is what a
    process pool's ``map(rec.predict, ...)`` meets under spawn; now a ``TypeError`` says what to do,
    and what it says (a pool initializer) works."""
    import copy
    import pickle
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    for what in (shared, shared.predict):
        with pytest.raises(TypeError, match="make one in each worker process"):
            pickle.dumps(what)
    twin = copy.copy(shared)  # a shallow copy still works, sharing the engine
    assert twin is not shared and twin.engine is shared.engine and twin.predict(ASTRONAUT) == shared.predict(ASTRONAUT)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_make_worker_recognizer) as pool:
        got = list(pool.map(_labels_in_worker, [str(ASTRONAUT)]))
    assert got == [[f.label for f in shared.predict(ASTRONAUT)]]


TEARDOWN_CALL = """
import os
from pyfer import _engine


class MeasuresAtTeardown:
    def __init__(self):
        self.peak, self.write = _engine.fma_peak, os.write

    def __del__(self):  # runs on the main thread while Python finalizes
        self.write(1, b"called at teardown: %d" % (self.peak("auto", 0.001) > 0))


keep = MeasuresAtTeardown()
"""


def test_the_main_thread_can_still_call_the_engine_while_python_finalizes():
    """A thread that comes back while Python finalizes parks for good (daemon threads: above), but
    not the main thread, which runs the finalization: parking it hung every such exit."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", TEARDOWN_CALL], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "called at teardown: 1", (out.stdout, out.stderr[-2000:])
