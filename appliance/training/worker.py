"""Training in a worker process, so the process that serves predictions keeps its latency meanwhile."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import msgspec

from appliance import errors, progress
from appliance.errors import ApplianceError, Conflict
from appliance.processes import STOPS, start_shielded, unblock_stops
from appliance.training import stop
from storage import errors as storage_errors
from storage.database import explained
from storage.errors import StorageError

if TYPE_CHECKING:  # the pipeline (and the ML stack under it) is imported in the worker, not here
    from appliance.training.pipeline import NothingNew, TrainingOutcome

# Training is batch work: below the serving threads in the scheduler's eyes.
WORKER_NICENESS = 10
PARENT_POLL_S = 0.5  # how often a worker looks whether the process waiting for it is still there


class TrainingInterrupted(ApplianceError):
    status = 503
    title = "Training interrupted"


class StoppedBySignal(errors.TrainingStopped):
    """The run ended resumably because the process waiting for it received SIGINT or SIGTERM and passed it on."""


@overload
def train_in_worker(
    root: Path,
    model: str,
    *,
    actor: str = ...,
    resume: Literal[False] = ...,
    run_id: str | None = ...,
    retrain: Literal[False] = ...,
    new_run_id: str | None = ...,
    say: Callable[[str], None] = ...,
    forward_signals: bool = ...,
) -> TrainingOutcome: ...
@overload
def train_in_worker(
    root: Path,
    model: str,
    *,
    actor: str = ...,
    resume: bool = ...,
    run_id: str | None = ...,
    retrain: bool = ...,
    new_run_id: str | None = ...,
    say: Callable[[str], None] = ...,
    forward_signals: bool = ...,
) -> TrainingOutcome | NothingNew: ...
def train_in_worker(
    root: Path,
    model: str,
    *,
    actor: str = "cli",
    resume: bool = False,
    run_id: str | None = None,
    retrain: bool = False,
    new_run_id: str | None = None,
    say: Callable[[str], None] = lambda _: None,
    forward_signals: bool = False,
) -> TrainingOutcome | NothingNew:
    """Run the pipeline for a model in a fresh (spawned) process and return its TrainingOutcome, or a retrain's
    NothingNew (``retrain`` and ``new_run_id`` as in ``pipeline.train``).

    The worker holds the model's run lock itself, so if it dies the lock goes with it. User
    errors in the worker are raised here as the same appliance error; a killed worker raises
    TrainingInterrupted after its run is marked failed (and resumable).

    With ``forward_signals`` (the main thread of a command waiting for the run), a SIGINT or SIGTERM this process
    receives is passed to the worker, which stops at its next safe point; a second one kills it at once. Either
    way the run is left failed and resumable, and StoppedBySignal is raised.
    """
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads and open databases
    messages = context.Queue()
    worker = context.Process(
        target=_work,
        name=f"train-{model}",
        daemon=True,
        args=(str(root), model, actor, resume, run_id, retrain, new_run_id, messages),
    )
    start_shielded(worker)  # a terminal's Ctrl-C cannot kill it half-started: it stops at its next safe point
    received: list[int] = []
    try:
        with _passing_signals(worker, received) if forward_signals else contextlib.nullcontext():
            return _wait_for(worker, messages, Path(root), model, say)
    except (errors.TrainingStopped, TrainingInterrupted) as e:
        if received:
            raise StoppedBySignal(str(e)) from None
        raise
    finally:
        if worker.is_alive():  # we were interrupted (Ctrl-C): the run must not go on unattended
            worker.terminate()
            worker.join(10)


@contextlib.contextmanager
def _passing_signals(worker: multiprocessing.process.BaseProcess, received: list[int]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM go to the worker (the first asks it to stop, a second kills it)
    instead of ending this process, which waits for the worker to record where it stopped."""

    pid = worker.pid
    assert pid is not None, "the worker has started"

    def pass_on(signum: int, _frame: object) -> None:
        received.append(signum)
        if worker.exitcode is None:  # not reaped yet: its pid is still its own, not a reused one
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                os.kill(pid, signum if len(received) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, pass_on) for s in STOPS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait_for(
    worker: multiprocessing.process.BaseProcess, messages, root: Path, model: str, say: Callable[[str], None]
) -> TrainingOutcome | NothingNew:
    """The worker's outcome, relaying what it says and draws meanwhile; its errors raised here."""
    from appliance.training.pipeline import NothingNew, TrainingOutcome

    while True:
        try:
            kind, payload = messages.get(timeout=0.2)
        except queue.Empty:
            if worker.is_alive():
                continue
            try:  # the worker may have posted its last message just before it ended
                kind, payload = messages.get(timeout=1)
            except queue.Empty:
                worker.join()
                _after_death(root, model, worker.pid, worker.exitcode, say)
        if kind == "say":
            say(payload)
        elif kind == "progress":  # the worker's progress line, on this process's terminal if it has one
            progress.draw(*payload)
        elif kind == "done":
            worker.join()
            return msgspec.convert(payload, TrainingOutcome)
        elif kind == "nothing new":
            worker.join()
            return msgspec.convert(payload, NothingNew)
        elif kind == "error":
            worker.join()
            name, message = payload
            error = getattr(errors, name, None) or getattr(storage_errors, name, ApplianceError)
            raise error(message)
        else:  # "crash": a bug, not a user error; keep the worker's traceback
            worker.join()
            raise RuntimeError(f"the training worker failed:\n{payload}")


def _after_death(root: Path, model: str, pid: int, exitcode: int | None, say: Callable[[str], None]) -> None:
    from appliance.home import Home
    from appliance.training.pipeline import abandon_dead_runs
    from appliance.training.run_lock import model_lock

    how = f"was killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exited ({exitcode})"
    with Home(root) as home:
        try:
            with model_lock(root, model, "cleanup"):
                abandon_dead_runs(home, model, say)
        except Conflict:
            pass  # another run has started since; it has done this already
    raise TrainingInterrupted(
        f"the training worker of '{model}' (process {pid}) {how}; continue its run from the "
        f"stage it reached with `appliance train {model} --resume`"
    )


def _stop_with(parent: multiprocessing.process.BaseProcess | None) -> None:
    """Stop (as a first Ctrl-C stops a run) once the process that started this worker is gone: killed, or its
    terminal closed, it no longer waits for the outcome, and the run must not go on unattended. Its pid is
    watched rather than its death signalled (Linux's PR_SET_PDEATHSIG), which would follow the thread that
    started the worker, not the process, and exists on Linux only."""
    pid = parent.pid if parent is not None else None
    if pid is None:
        return

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(PARENT_POLL_S)
        stop.request_stop(why="the end of the command that started it")

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _work(
    root: str, model: str, actor: str, resume: bool, run_id: str | None, retrain: bool, new_run_id: str | None, messages
) -> None:
    from appliance.home import Home
    from appliance.training.pipeline import NothingNew, train

    os.nice(WORKER_NICENESS)
    for stopping in STOPS:  # end at the next safe point, resumably; not a traceback
        signal.signal(stopping, stop.request_stop)
    unblock_stops()  # a Ctrl-C that came while this process started is delivered now, to request_stop
    _stop_with(multiprocessing.parent_process())
    progress.draw_with(lambda line, last: messages.put(("progress", (line, last))))
    try:
        with Home(Path(root)) as home:
            outcome = train(
                home,
                home.spec(model),
                actor,
                say=lambda line: messages.put(("say", line)),
                resume=resume,
                run_id=run_id,
                retrain=retrain,
                new_run_id=new_run_id,
            )
        messages.put(("nothing new" if isinstance(outcome, NothingNew) else "done", msgspec.to_builtins(outcome)))
    except (ApplianceError, StorageError) as e:
        messages.put(("error", (type(e).__name__, str(e))))
    except sqlite3.DatabaseError as e:  # a damaged or unwritable data directory is the user's to fix
        refused = explained(e)
        messages.put(
            ("crash", traceback.format_exc()) if refused is None else ("error", ("StorageError", str(refused)))
        )
    except BaseException:
        messages.put(("crash", traceback.format_exc()))
