"""Where the zoo's models are converted: in this process, a local process pool, or a Dask cluster.

Every executor runs the same unit of work, ``work(task, stage) -> result``: one model, all of
its strategies, its files and its completion record (``lrnconv.app.zoo.convert_model``), so
results, failures and records do not depend on the executor. ``stage(text)`` is how the
work says what it is doing; the executor brings that back to this process, where the
callbacks run (always in the calling thread):

- ``on_stage(key, text)``: a model's current stage;
- ``on_done(key, result, error)``: a model finished (``result``), or its worker was lost
  (``error``: a killed process, a lost Dask worker; the work itself never raises for a bad
  model, it records the failure in its result).

``DaskExecutor`` imports ``dask.distributed`` only when it runs (the optional ``dask``
extra); the rest of lrnconv never needs it. One task per model; the scheduler balances
them; stages come back through Dask's event topics.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import queue
import signal
import sys
import time
import uuid
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..base.errors import UsageError

log = logging.getLogger(__name__)

Work = Callable[[Any, Callable[[str], None]], Any]
OnStage = Callable[[str, str], None]
OnDone = Callable[[str, Any, Optional[str]], None]
Tasks = Sequence[Tuple[str, Any]]

_POLL_S = 0.1
STAGE_TOPIC = "lrnconv-zoo-stage"


def _no_result(exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"no result from the worker ({type(exc).__name__}: {detail}); the next run retries this model"


class SerialExecutor:
    """Every model in this process, one after the other (``--jobs 1``)."""

    name = "serial"
    workers = 1

    def describe(self) -> Dict[str, object]:
        return {"executor": "local", "workers": 1}

    def run(self, work: Work, tasks: Tasks, on_stage: OnStage, on_done: OnDone) -> None:
        for key, task in tasks:
            try:
                result = work(task, lambda text, key=key: on_stage(key, text))
            except Exception as exc:  # what a worker process would die of (a record it cannot write)
                log.debug("%s: the work failed", key, exc_info=True)
                on_done(key, None, _no_result(exc))
            else:
                on_done(key, result, None)


# --- local process pool -------------------------------------------------------------------

_stage_queue = None


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the zoo process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # another libc: orphans finish their model and exit
            pass


def _init_worker(stage_queue) -> None:
    global _stage_queue
    _stage_queue = stage_queue
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # a forked worker inherits the CLI's SIGTERM handler (it raises Terminated), which the pool would
    # report as the task's error and then go on with the next task; the pool's terminate() must end it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _call_in_worker(work: Work, key: str, task: Any) -> Any:
    return work(task, lambda text: _stage_queue.put((key, text)))


class ProcessExecutor:
    """A local process pool of ``jobs`` workers (``--jobs N``)."""

    name = "processes"

    def __init__(self, jobs: int):
        self.workers = jobs

    def describe(self) -> Dict[str, object]:
        return {"executor": "local", "workers": self.workers}

    def run(self, work: Work, tasks: Tasks, on_stage: OnStage, on_done: OnDone) -> None:
        context = multiprocessing.get_context()
        stages = context.Queue()
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                                      initializer=_init_worker, initargs=(stages,))

        def drain() -> None:
            while True:
                try:
                    on_stage(*stages.get_nowait())
                except queue.Empty:
                    return

        try:
            pending = {pool.submit(_call_in_worker, work, key, task): key for key, task in tasks}
            while pending:
                done, _ = concurrent.futures.wait(pending, timeout=_POLL_S,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                drain()
                for future in done:
                    key = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # BrokenProcessPool (the worker is gone), a record it cannot write
                        on_done(key, None, _no_result(exc))
                    else:
                        on_done(key, result, None)
        except BaseException:  # Ctrl-C, SIGTERM: stop now; a killed worker's staging is removed next run
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        pool.shutdown(wait=True)
        stages.close()


# --- Dask ---------------------------------------------------------------------------------

def _call_on_dask(work: Work, key: str, task: Any) -> Any:
    from distributed import get_worker

    worker = get_worker()
    return work(task, lambda text: worker.log_event(STAGE_TOPIC, {"key": key, "stage": text}))


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError("--executor dask needs dask.distributed: pip install 'lrnconv[dask]'") from None
    return distributed


class DaskExecutor:
    """One task per model on a Dask cluster: the one at ``scheduler``, or a local one.

    Args:
        scheduler: a scheduler address (``tcp://HOST:PORT``). Defaults to None: a
            ``LocalCluster`` of ``workers`` single-threaded worker processes, for this run.
        workers: single-threaded worker processes of the local cluster. Defaults to 2.
        connect_timeout: seconds to wait for the scheduler.

    Raises:
        UsageError (from ``run``): dask.distributed is not installed, or the scheduler
            cannot be reached.
    """

    name = "dask"

    def __init__(self, scheduler: Optional[str] = None, workers: int = 2, connect_timeout: float = 30.0):
        self.scheduler = scheduler
        self.workers = workers
        self.connect_timeout = connect_timeout
        self._seen_workers: Optional[int] = None

    def describe(self) -> Dict[str, object]:
        return {"executor": "dask", "scheduler": self.scheduler or "local",
                "workers": self._seen_workers if self._seen_workers is not None else self.workers}

    def _client(self, distributed):
        if self.scheduler:
            try:
                return distributed.Client(self.scheduler, timeout=self.connect_timeout), None
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"--scheduler {self.scheduler}: cannot reach the Dask scheduler "
                                 f"({type(exc).__name__}: {exc})") from None
        cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
        return distributed.Client(cluster), cluster

    def run(self, work: Work, tasks: Tasks, on_stage: OnStage, on_done: OnDone) -> None:
        distributed = _distributed()
        client, cluster = self._client(distributed)
        stages: "queue.SimpleQueue" = queue.SimpleQueue()
        try:
            self._seen_workers = len(client.scheduler_info().get("workers", {}))
            client.subscribe_topic(STAGE_TOPIC, lambda event: stages.put(event[1]))
            run_id = uuid.uuid4().hex[:8]
            pending = {client.submit(_call_on_dask, work, key, task, pure=False,
                                     key=f"lrnconv-zoo-{run_id}-{n}"): key
                       for n, (key, task) in enumerate(tasks)}
            while pending:
                time.sleep(_POLL_S)
                while True:
                    try:
                        event = stages.get_nowait()
                    except queue.Empty:
                        break
                    on_stage(event["key"], event["stage"])
                for future in [f for f in pending if f.done()]:
                    key = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # KilledWorker, a lost connection, a record it cannot write
                        on_done(key, None, _no_result(exc))
                    else:
                        on_done(key, result, None)
        finally:
            try:
                client.unsubscribe_topic(STAGE_TOPIC)
            except Exception:  # the connection may be gone already
                log.debug("could not unsubscribe from %s", STAGE_TOPIC, exc_info=True)
            client.close()
            if cluster is not None:
                cluster.close()


def make_executor(kind: str, *, jobs: int = 1, scheduler: Optional[str] = None):
    """The executor for ``--executor`` / ``--jobs`` / ``--scheduler``.

    Args:
        kind: 'local' (this process for one job, else a process pool) or 'dask'.
        jobs: local processes, or the workers of a local Dask cluster.
        scheduler: a Dask scheduler address (implies 'dask').
    """
    if scheduler or kind == "dask":
        return DaskExecutor(scheduler, workers=jobs)
    if kind != "local":
        raise UsageError(f"unknown executor '{kind}'; choose local or dask")
    return SerialExecutor() if jobs <= 1 else ProcessExecutor(jobs)
