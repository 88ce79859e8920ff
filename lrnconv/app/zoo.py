"""``zoo``: convert and verify many models, one failure never stopping the rest.

Without a source folder the built-in model replicas are converted (the README's main
job); with one, every ``.onnx`` and ``.prototxt`` (with a same-name ``.caffemodel`` when
present) under it. A model's name is its path under the folder without the extension;
where two files share one (``net.onnx`` and ``net.prototxt``), both keep their extension
(``net.onnx``, ``net.prototxt``), so their outputs never land in one folder. The walk
skips lrnconv's staging folders, the run's own output folder and any other zoo output
folder (one holding a completion record).

A run (``run_zoo``):

1. takes the models of its shard (``lrnconv.app.shards``: a stable hash of the name);
2. locks the output folder and removes what a killed run left half-written;
3. skips every model whose completion record (``lrnconv.app.records``) matches its input
   hash and the run's fingerprint (unless ``force``), and hands the rest to an executor
   (``lrnconv.app.executors``: this process, a process pool or a Dask cluster), one task per
   model. The task (``convert_model``) converts the model with every strategy, saves each
   result, times it against the original, and writes the model's record last;
4. writes ``report.json`` (``lrnconv.app.zoo_report``), ``report.md`` and ``report.html``
   from every model's entries, reused or new.

Any exception while handling one model is that model's failure, recorded with its reason;
the rest go on and the reports are always written.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..base.errors import LrnConvError, OutputError, UsageError
from ..base.files import STAGING_PREFIX, same_file
from ..formats.modelio import load, save
from ..measure.quantization import Int8Options
from ..models import BUILTIN, build
from ..passes import REGISTRY
from ..runtime.providers import resolve_providers
from .conversion import AUTO, INT8_SUFFIX, VerifyOptions, convert
from .executors import SerialExecutor
from .latency import LatencyProbe
from .records import (RECORD_NAME, fingerprint, file_sha256, locked, output_sizes, read_record,
                      remove_staging, stale_reason, write_record)
from .shards import Shard, select
from .zoo_report import build_report, write_reports

log = logging.getLogger(__name__)

DEFAULT_TIMING_RUNS = 5
"""Timed runs of the original and of each converted model (0 = no timing)."""

MODEL_EXTENSIONS = (".onnx", ".prototxt")


@dataclass(frozen=True)
class ZooItem:
    """A model to convert: its report name and where it comes from."""

    name: str
    """Its path under the source folder without extension, '/'-separated (unique in a zoo)."""
    source: str
    """A file path, or 'builtin:<name>:<variant>'."""
    weights: Optional[str] = None

    def load(self):
        if self.source.startswith("builtin:"):
            _, name, variant = self.source.split(":")
            return build(name, variant=variant)
        return load(self.source, self.weights)

    def files(self) -> List[str]:
        """The files the model is read from (none for a built-in replica)."""
        if self.source.startswith("builtin:"):
            return []
        return [self.source] + ([self.weights] if self.weights else [])

    def input_sha256(self) -> str:
        """The hash a completion record keeps of the input (a built-in: of its name and variant)."""
        files = self.files()
        if not files:
            return "builtin:" + self.source.split(":", 1)[1]
        return file_sha256(files)


def builtin_items(variant: str = "full") -> List[ZooItem]:
    return [ZooItem(name, f"builtin:{name}:{variant}") for name in BUILTIN]


def _skipped_folder(path: str, name: str, exclude: Sequence[str]) -> bool:
    if name.startswith(STAGING_PREFIX):
        return True
    if os.path.isfile(os.path.join(path, RECORD_NAME)):  # a model folder of some zoo output
        return True
    return any(os.path.exists(e) and same_file(path, e) for e in exclude)


def _unique_names(found: Sequence[Tuple[str, str]]) -> List[str]:
    """A unique name per model file from (path without extension, path with extension).

    The path without extension where no other file shares it, else the full path; full
    paths are unique, so switching every clashing name to its full path ends the clashes.
    """
    names = [stem for stem, _ in found]
    while True:
        counts = Counter(names)
        clashing = [i for i, name in enumerate(names) if counts[name] > 1 and name != found[i][1]]
        if not clashing:
            return names
        for i in clashing:
            names[i] = found[i][1]


def folder_items(root: str, exclude: Sequence[str] = ()) -> List[ZooItem]:
    """Every .onnx and .prototxt under ``root`` (a .prototxt takes a same-name .caffemodel).

    Args:
        root: the source folder. The items' paths are absolute.
        exclude: folders not to walk (the run's output folder). Staging folders and zoo
            output folders are never walked.

    Raises:
        UsageError: ``root`` is not a folder.
    """
    if not os.path.isdir(root):
        raise UsageError(f"{root}: not a folder")
    root = os.path.abspath(root)  # a worker on another machine or in another folder finds them too
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped_folder(os.path.join(folder, d), d, exclude))
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if ext.lower() not in MODEL_EXTENSIONS:
                continue
            relative = os.path.relpath(os.path.join(folder, file), root).replace(os.sep, "/")
            found.append((relative[:-len(ext)], relative, os.path.join(folder, file), ext.lower(), stem))
    names = _unique_names([(stem_name, relative) for stem_name, relative, *_ in found])
    items = []
    for name, (_, _, path, ext, stem) in zip(names, found):
        weights = os.path.join(os.path.dirname(path), stem + ".caffemodel")
        has_weights = ext == ".prototxt" and os.path.exists(weights)
        items.append(ZooItem(name, path, weights if has_weights else None))
    return sorted(items, key=lambda i: i.name)


@dataclass(frozen=True)
class ZooOptions:
    """What every model of a zoo run gets (all of it goes into the completion records)."""

    strategies: Sequence[str] = ("decompose",)
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    timing_runs: int = DEFAULT_TIMING_RUNS
    """Timed runs of the original and of each converted model (batch 1); 0 = no timing."""
    quantize: Optional[Int8Options] = None
    """``--quantize int8``: also quantize every converted model and verify its INT8 model."""

    def to_dict(self) -> Dict[str, object]:
        return {"strategies": list(self.strategies), "providers": list(self.verify.providers),
                "samples": self.verify.samples, "seed": self.verify.seed, "atol": self.verify.atol,
                "rtol": self.verify.rtol, "timing_runs": self.timing_runs,
                "quantize": None if self.quantize is None else {"int8": self.quantize.to_dict()}}


@dataclass(frozen=True)
class ZooTask:
    """One model's work, picklable for a process pool or a Dask worker."""

    item: ZooItem
    outdir: str
    """Absolute, and reachable from the worker."""
    options: ZooOptions
    input_sha256: str
    fingerprint: Mapping[str, object]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LrnConvError):
        return str(exc)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail} (unexpected; lrnconv convert --debug shows the traceback)"


def _worst(report) -> Dict[str, object]:
    """The worst drift of a ``DriftReport`` over every output and provider ({} when nothing ran)."""
    if report is None:
        return {}
    drifts = [d for p in report.providers.values() for d in p.outputs.values()]
    if not drifts:  # not verifiable on any provider
        return {}
    return {"max_rel": max(d.max_rel for d in drifts), "cosine": min(d.cosine for d in drifts),
            "top1": min((d.top1 for d in drifts if d.top1 is not None), default=None)}


def _entry(item: ZooItem, strategy: str, **fields) -> Dict[str, object]:
    """A report entry: every key of the schema present (see ``lrnconv.app.zoo_report``)."""
    entry = {"model": item.name, "source": item.source, "strategy": strategy, "status": "error",
             "passed": False, "error": None, "output": None, "output_bytes": None, "source_bytes": None,
             "sites": None, "exact_sites": None, "approximate_sites": None, "worst": {}, "latency": None,
             "int8": None, "seconds": None, "notes": [], "report": None}
    files = item.files()
    if files:
        entry["source_bytes"] = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    entry.update(fields)
    return entry


def _convert_one(task: ZooTask, model, strategy: str, probe: Optional[LatencyProbe],
                 stage: Callable[[str], None]) -> Dict[str, object]:
    item = task.item
    start = time.perf_counter()
    try:
        stage(f"{strategy}: converting and verifying" + (" (float and INT8)" if task.options.quantize else ""))
        result = convert(model, strategy, verify=task.options.verify, quantize=task.options.quantize)
        relative = f"{item.name}/{strategy}.onnx"
        stage(f"{strategy}: saving")
        target = _save(result.model, task.outdir, relative)
        latency = None
        if probe is not None:
            stage(f"{strategy}: timing")
            latency = probe.measure(result.model)
        int8 = None
        if result.int8 is not None:
            int8 = _int8_entry(result.int8, task.outdir, f"{item.name}/{strategy}{INT8_SUFFIX}", probe, stage, strategy)
        exact = sum(r.status == "exact" for r in result.sites)
        status = result.verify.status if result.verify is not None else "passed"
        return _entry(item, strategy, status=status, passed=result.passed,
                      unverifiable=result.verify.unverifiable if result.verify is not None else {},
                      output=relative, output_bytes=os.path.getsize(target), sites=len(result.sites),
                      exact_sites=exact, approximate_sites=len(result.sites) - exact, worst=_worst(result.verify),
                      latency=latency, int8=int8, seconds=time.perf_counter() - start,
                      report=result.to_dict(item.source, relative, int8["output"] if int8 else None),
                      notes=list(result.notes))
    except Exception as exc:  # any failure of one model is its result; the zoo goes on
        log.debug("%s %s failed", item.name, strategy, exc_info=True)
        return _entry(item, strategy, error=_reason(exc), seconds=time.perf_counter() - start)


def _save(model, outdir: str, relative: str) -> str:
    target = os.path.join(outdir, *relative.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    save(model, target)
    return target


def _int8_entry(int8, outdir: str, relative: str, probe: Optional[LatencyProbe], stage: Callable[[str], None],
                strategy: str) -> Dict[str, object]:
    """The ``int8`` part of an entry: where the INT8 model went, its drift, islands and latency."""
    stage(f"{strategy}: saving INT8")
    target = _save(int8.model, outdir, relative)
    latency = None
    if probe is not None:
        stage(f"{strategy}: timing INT8")
        latency = probe.measure(int8.model)
    return {"output": relative, "output_bytes": os.path.getsize(target), "status": int8.verify.status,
            "passed": int8.passed, "worst": _worst(int8.verify), "integer_only": int8.integer_only,
            "float_islands": [f"{i.op_type} {i.node}" for i in int8.float_islands], "latency": latency}


def convert_model(task: ZooTask, stage: Callable[[str], None] = lambda _: None) -> Dict[str, object]:
    """The unit of work of every executor: one model with every strategy, then its record.

    Returns:
        ``{"model": name, "entries": [...]}``; a model that fails has entries with ``error``.
    """
    item, options = task.item, task.options
    stage("loading")
    try:
        model = item.load()
    except Exception as exc:  # a corrupt file can break any parser below us
        log.debug("%s failed to load", item.name, exc_info=True)
        entries = [_entry(item, s, error=_reason(exc)) for s in options.strategies]
    else:
        probe = None
        if options.timing_runs > 0:
            probe = LatencyProbe(model, options.verify.providers[0], options.timing_runs)
        entries = [_convert_one(task, model, s, probe, stage) for s in options.strategies]
    stage("recording")
    write_record(task.outdir, item.name, {
        "model": item.name, "source": item.source, "input_sha256": task.input_sha256,
        "fingerprint": dict(task.fingerprint), "entries": entries,
        "outputs": output_sizes(task.outdir, item.name, entries)})
    return {"model": item.name, "entries": entries}


class ZooProgress:
    """What ``run_zoo`` tells whoever watches (the CLI's bar or lines); every method optional."""

    def start(self, total: int, reused: int, workers: int) -> None:
        pass

    def reused(self, name: str, entries: Sequence[Mapping[str, object]]) -> None:
        pass

    def stage(self, name: str, text: str) -> None:
        pass

    def done(self, name: str, entries: Sequence[Mapping[str, object]]) -> None:
        pass

    def close(self) -> None:
        pass


def _check(options: ZooOptions) -> List[str]:
    """The full names of the providers, once the options are known to be valid."""
    known = list(REGISTRY) + [AUTO]
    unknown = [s for s in options.strategies if s not in known]
    if unknown or not options.strategies:
        raise UsageError(f"unknown strategy {unknown}; choose from {', '.join(known)}")
    if options.timing_runs < 0:
        raise UsageError(f"--timing-runs {options.timing_runs}: expected 0 or more")
    return resolve_providers(options.verify.providers)  # a missing provider is one usage error, not N failures


def run_zoo(items: Sequence[ZooItem], outdir: str, options: ZooOptions = ZooOptions(), *,
            shard: Optional[Shard] = None, executor=None, force: bool = False,
            progress: Optional[ZooProgress] = None, source: str = "") -> Dict[str, object]:
    """Convert every item of the shard with every strategy; write models, records and reports.

    Args:
        items: the whole zoo (the shard is taken here, so the report lists the catalogue).
        outdir: the output folder (created); one run at a time writes to it.
        options: strategies, verification and timing.
        shard: the part of ``items`` to convert. Defaults to None (all).
        executor: from ``lrnconv.app.executors.make_executor``. Defaults to this process.
        force: redo models whose completion record matches.
        progress: told about each model. Defaults to nothing.
        source: what the report names as the zoo's source.

    Returns:
        The report (what ``report.json`` holds; ``lrnconv.app.zoo_report`` documents it).

    Raises:
        UsageError, ProviderUnavailable: before any model is touched.
        OutputError: the output folder cannot be written or another run holds it.
    """
    providers = _check(options)
    options = replace(options, strategies=tuple(options.strategies),
                      verify=replace(options.verify, providers=tuple(providers)))
    executor = executor or SerialExecutor()
    progress = progress or ZooProgress()
    names = Counter(i.name for i in items)
    if any(count > 1 for count in names.values()):
        raise UsageError(f"two models are called {[n for n, c in names.items() if c > 1]}")
    assigned = select(items, shard)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output folder ({exc.strerror or exc})") from None
    outdir_abs = os.path.abspath(outdir)
    started = time.time()
    expected = fingerprint(options.to_dict())
    results: Dict[str, List[Dict[str, object]]] = {}
    converted: List[str] = []
    reused: List[str] = []
    with locked(outdir_abs):
        remove_staging(outdir_abs)
        tasks = []
        for item in assigned:
            try:
                digest = item.input_sha256()
            except OSError as exc:
                results[item.name] = [_entry(item, s, error=f"{item.source}: cannot read: {exc.strerror or exc}")
                                      for s in options.strategies]
                continue
            record = read_record(outdir_abs, item.name)
            why = "forced" if force else stale_reason(record, outdir_abs, item.name, digest, expected)
            if why is None:
                results[item.name] = record["entries"]
                reused.append(item.name)
                continue
            log.debug("%s: converting (%s)", item.name, why)
            tasks.append((item.name, ZooTask(item, outdir_abs, options, digest, expected)))
        progress.start(len(assigned), len(results), executor.workers)
        for name, entries in results.items():  # reused, or unreadable
            progress.reused(name, entries)
        by_name = {i.name: i for i in assigned}

        digests = {name: task.input_sha256 for name, task in tasks}

        def done(name: str, result, error: Optional[str]) -> None:
            if result is None:  # no result came back; the work may still have finished and recorded it
                record = read_record(outdir_abs, name)
                if stale_reason(record, outdir_abs, name, digests[name], expected) is None:
                    entries = record["entries"]
                    converted.append(name)
                else:  # no record, so the next run retries it
                    entries = [_entry(by_name[name], s, error=error) for s in options.strategies]
            else:
                entries = result["entries"]
                converted.append(name)
            results[name] = entries
            progress.done(name, entries)

        try:
            executor.run(convert_model, tasks, progress.stage, done)
        finally:
            progress.close()
        report = build_report(
            [e for i in assigned for e in results.get(i.name, [])], fingerprint=expected,
            catalogue=[i.name for i in items], assigned=[i.name for i in assigned], source=source,
            shards=[shard.to_dict()] if shard else [],
            run={"started": started, "seconds": time.time() - started, **executor.describe(),
                 "converted": [i.name for i in assigned if i.name in set(converted)], "reused": reused})
        write_reports(outdir_abs, report)
    return report
