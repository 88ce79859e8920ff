"""``zoo``: convert and verify many models, one failure never stopping the rest.

Without a source folder the built-in model replicas are converted (the README's main
job); with one, every ``.onnx`` and ``.prototxt`` (with a same-name ``.caffemodel`` when
present) under it. ``shard=(i, n)`` keeps the models whose position in the sorted list
is i modulo n (0-based), so a Slurm array or a Kubernetes indexed Job can split a zoo
deterministically across machines.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..base.errors import LrnConvError, UsageError
from ..base.files import is_staging, write_text
from ..formats.modelio import load, save
from ..models import BUILTIN, build
from ..passes import REGISTRY
from ..runtime.providers import resolve_providers
from .conversion import AUTO, VerifyOptions, convert
from .render import zoo_markdown

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ZooItem:
    """A model to convert: its report name and where it comes from."""

    name: str
    source: str
    """A file path, or 'builtin:<name>:<variant>'."""
    weights: Optional[str] = None

    def load(self):
        if self.source.startswith("builtin:"):
            _, name, variant = self.source.split(":")
            return build(name, variant=variant)
        return load(self.source, self.weights)


def builtin_items(variant: str = "full") -> List[ZooItem]:
    return [ZooItem(name, f"builtin:{name}:{variant}") for name in BUILTIN]


def folder_items(root: str) -> List[ZooItem]:
    """Every .onnx and .prototxt under ``root`` (a .prototxt takes a same-name .caffemodel)."""
    if not os.path.isdir(root):
        raise UsageError(f"{root}: not a folder")
    items = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not is_staging(d))  # a killed run's half-written files
        for file in sorted(files):
            stem, ext = os.path.splitext(file)
            if ext.lower() not in (".onnx", ".prototxt"):
                continue
            path = os.path.join(folder, file)
            weights = os.path.join(folder, stem + ".caffemodel")
            name = os.path.relpath(os.path.join(folder, stem), root)
            items.append(ZooItem(name, path, weights if ext.lower() == ".prototxt" and os.path.exists(weights) else None))
    return sorted(items, key=lambda i: i.name)


def parse_shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """'I/N' (0-based I) -> (I, N)."""
    if not text:
        return None
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4")
    return index, count


def _worst(result) -> Dict[str, object]:
    if result.verify is None:
        return {}
    drifts = [d for p in result.verify.providers.values() for d in p.outputs.values()]
    if not drifts:  # not verifiable on any provider
        return {}
    return {"max_rel": max(d.max_rel for d in drifts), "cosine": min(d.cosine for d in drifts),
            "top1": min((d.top1 for d in drifts if d.top1 is not None), default=None)}


def _convert_item(item: ZooItem, outdir: str, names: Sequence[str], verify: VerifyOptions) -> List[Dict[str, object]]:
    entries = []
    try:
        model = item.load()
    except LrnConvError as exc:
        return [{"model": item.name, "source": item.source, "strategy": s, "error": str(exc)} for s in names]
    for strategy in names:
        start = time.perf_counter()
        try:
            result = convert(model, strategy, verify=verify)
            target = os.path.join(outdir, item.name, f"{strategy}.onnx")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            save(result.model, target)
            entries.append({
                "model": item.name, "source": item.source, "strategy": strategy, "output": target,
                "sites": len(result.sites), "exact_sites": sum(r.status == "exact" for r in result.sites),
                "passed": result.passed, "status": result.verify.status if result.verify is not None else "not verified",
                "unverifiable": result.verify.unverifiable if result.verify is not None else {},
                "worst": _worst(result), "seconds": time.perf_counter() - start,
                "report": result.to_dict(item.source, target), "notes": result.notes})
        except LrnConvError as exc:
            entries.append({"model": item.name, "source": item.source, "strategy": strategy, "error": str(exc)})
    return entries


def run_zoo(items: Sequence[ZooItem], outdir: str, strategy_names: Sequence[str], *,
            verify: VerifyOptions, jobs: int = 1, shard: Optional[Tuple[int, int]] = None,
            progress: Optional[Progress] = None) -> List[Dict[str, object]]:
    """Convert every item with every strategy; write models, report.json and report.md.

    Returns:
        One entry per model and strategy; an entry with ``error`` is a model that failed.
    """
    known = list(REGISTRY) + [AUTO]
    unknown = [s for s in strategy_names if s not in known]
    if unknown:
        raise UsageError(f"unknown strategy {unknown}; choose from {', '.join(known)}")
    resolve_providers(verify.providers)  # a missing provider is a usage error, not N failed models
    if shard:
        items = [item for i, item in enumerate(items) if i % shard[1] == shard[0]]
    os.makedirs(outdir, exist_ok=True)
    say = progress or (lambda _: None)
    entries: List[Dict[str, object]] = []

    def record(position: int, item_entries: List[Dict[str, object]]) -> None:
        for e in item_entries:
            state = f"error: {e['error']}" if "error" in e else ("PASSED" if e["passed"] else "FAILED")
            say(f"[{position}/{len(items)}] {e['model']} {e['strategy']}: {state}")
        entries.extend(item_entries)

    if jobs > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_convert_item, item, outdir, strategy_names, verify) for item in items]
            for position, future in enumerate(futures, 1):
                record(position, future.result())
    else:
        for position, item in enumerate(items, 1):
            say(f"[{position}/{len(items)}] {item.name} ...")
            record(position, _convert_item(item, outdir, strategy_names, verify))
    _write_reports(outdir, entries)
    return entries


def _write_reports(outdir: str, entries: List[Dict[str, object]]) -> None:
    summary = {"models": len({e["model"] for e in entries}),
               "failed": sum(1 for e in entries if e.get("error") or not e.get("passed")),
               "entries": entries}
    for name, text in (("report.json", json.dumps(summary, indent=2)), ("report.md", zoo_markdown(entries))):
        write_text(os.path.join(outdir, name), text)
