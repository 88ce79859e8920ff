"""The ``lrnconv`` command line: a thin layer over the public API.

Each command maps its options onto one API call and renders the result. Every
``LrnConvError`` becomes one line on stderr and exit code 2 (no traceback unless
``--debug``); a failed verification is exit code 1.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from typing import Iterator, Optional

import click

from ..base.errors import LrnConvError, UnsupportedModel, UsageError
from ..base.files import same_file, write_text
from ..formats.modelio import load, save
from ..graph.metadata import import_notes
from ..maths.drift import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from ..measure.calibration import DEFAULT_CALIBRATION_SAMPLES
from ..measure.verification import DEFAULT_SAMPLES, verify as run_verify
from ..passes import REGISTRY
from ..passes.decompose import POWERS, WINDOWS
from ..runtime.inputs import ImagePreprocessing, load_data
from .conversion import AUTO, VerifyOptions, convert
from .inspection import inspect as inspect_model
from .render import inspection_text, records_text, report_text
from .executors import make_executor
from .progress import BarProgress, LineProgress
from .shards import parse_shard
from .zoo import DEFAULT_TIMING_RUNS, ZooOptions, ZooProgress, builtin_items, folder_items, run_zoo
from .zoo_report import merge_reports

EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2


class _Cli(click.Group):
    """Turns library errors into one stderr line and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LrnConvError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"lrnconv: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (MemoryError, RecursionError) as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"lrnconv: error: {type(exc).__name__}: the model is too large or too deep", err=True)
            ctx.exit(EXIT_BAD_INPUT)


@contextlib.contextmanager
def _about(path: str) -> Iterator[None]:
    """Errors raised while handling ``path`` name it, so the one error line says which file."""
    try:
        yield
    except LrnConvError as exc:
        if str(exc).startswith(path):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except Exception as exc:  # a corrupt model can break any parser below us: still one line
        if click.get_current_context().find_root().params.get("debug"):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnsupportedModel(f"{path}: cannot process the model ({type(exc).__name__}: {detail}); "
                               "rerun with --debug for the traceback") from None


def _load(path: str, weights: Optional[str] = None):
    """Load a model, naming the file in any error, and pass on what the importer noted."""
    with _about(path):
        model = load(path, weights)
    for note in import_notes(model):
        click.echo(f"note: {path}: {note}", err=True)
    return model


def _providers(text: str):
    return [p.strip() for p in text.split(",") if p.strip()]


def _write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=2))


def _random_inputs_warning(doing: str) -> None:
    click.echo(f"WARNING: no --data/--calib given: {doing} on seeded random inputs "
               "(uniform [-128, 128)); drift on real data may differ", err=True)


providers_option = click.option("--providers", default="cpu", show_default=True,
                                help="Comma-separated: cpu, cuda or full ONNX Runtime provider names.")
samples_option = click.option("--samples", type=click.IntRange(min=1), default=DEFAULT_SAMPLES,
                              show_default=True, help="Random inputs to verify on (or data samples to use).")
atol_option = click.option("--atol", type=float, default=DEFAULT_ATOL, show_default=True)
rtol_option = click.option("--rtol", type=float, default=DEFAULT_RTOL, show_default=True)


@click.group(cls=_Cli)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="lrnconv")
def main(debug: bool) -> None:
    """Find, rewrite and verify Local Response Normalization in legacy CNNs."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Caffe .caffemodel for a .prototxt MODEL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model: str, weights: Optional[str], as_json: bool) -> None:
    """List every LRN site of MODEL and what each strategy would do with it."""
    loaded = _load(model, weights)
    with _about(model):
        inspection = inspect_model(loaded)
    if as_json:
        click.echo(json.dumps(inspection.to_dict(model), indent=2))
    else:
        click.echo(inspection_text(model, inspection))


def _preprocessing(mean: Optional[str], std: Optional[str], size: Optional[str], bgr: bool) -> ImagePreprocessing:
    def floats(text: Optional[str], default):
        return tuple(float(v) for v in text.split(",")) if text else default

    try:
        shape = tuple(int(v) for v in size.split(",")) if size else None
        if shape is not None and len(shape) != 2:
            raise ValueError(size)
        return ImagePreprocessing(mean=floats(mean, (0.0, 0.0, 0.0)), std=floats(std, (1.0, 1.0, 1.0)),
                                  size=shape, bgr=bgr)
    except ValueError:
        raise UsageError("--mean/--std take comma-separated numbers (e.g. 104,117,123); --size takes H,W") from None


def _tolerance(text: Optional[str]) -> Optional[Tolerance]:
    try:
        return Tolerance.parse(text) if text else None
    except ValueError as exc:
        raise UsageError(f"--tolerance: {exc}") from None


image_options = [
    click.option("--mean", help="Image folders: per-channel mean, model channel order (e.g. 104,117,123)."),
    click.option("--std", help="Image folders: per-channel std. Defaults to 1."),
    click.option("--size", help="Image folders: H,W to resize to. Defaults to the model's input size."),
    click.option("--bgr", is_flag=True, help="Image folders: feed BGR (Caffe models)."),
]


def with_image_options(func):
    for option in reversed(image_options):
        func = option(func)
    return func


@main.command(name="convert")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output .onnx path.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Caffe .caffemodel for a .prototxt MODEL.")
@click.option("--strategy", default="decompose", show_default=True,
              help="How to rewrite each LRN site: " + ", ".join(list(REGISTRY) + [AUTO]))
@click.option("--calib", type=click.Path(), help="Data: .npy, .npz keyed by input name, or a folder of images. "
              "The first half fits approximations, the second half judges and verifies them.")
@with_image_options
@click.option("--tolerance", help="auto / approximate verification: e.g. top1=0.995,cosine=0.999[,max_rel=0.05].")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help=f"Random inputs or data samples to use [default: {DEFAULT_SAMPLES} to verify, "
                   f"{DEFAULT_CALIBRATION_SAMPLES} to calibrate].")
@providers_option
@atol_option
@rtol_option
@click.option("--no-verify", is_flag=True, help="Skip verification with ONNX Runtime.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the per-site report as JSON.")
@click.option("--in-place", is_flag=True, help="Allow the output to replace MODEL.")
@click.option("--window", type=click.Choice(WINDOWS), default=None,
              help="decompose: window-sum formulation (default: the fastest measured).")
@click.option("--power", type=click.Choice(POWERS), default=None,
              help="decompose: power formulation (default: the fastest measured).")
def convert_command(model, output, weights, strategy, calib, mean, std, size, bgr, tolerance, samples,
                    providers, atol, rtol, no_verify, report, in_place, window, power) -> None:
    """Rewrite every LRN of MODEL with a strategy, verify it, and save it to OUTPUT."""
    if output is None:
        if not in_place:
            raise UsageError("missing -o/--output (or pass --in-place to replace MODEL)")
        output = model
    if not in_place and os.path.exists(output) and same_file(output, model):
        raise UsageError(f"{output}: refusing to overwrite the input model; pass --in-place")
    if in_place and weights is not None and same_file(output, model):
        raise UsageError(f"{model}: --in-place cannot replace a Caffe prototxt with an ONNX model")
    loaded = _load(model, weights)
    data = load_data(calib, loaded, samples, _preprocessing(mean, std, size, bgr)) if calib else None
    verify_options = None
    if not no_verify:
        verify_options = VerifyOptions(providers=_providers(providers),
                                       samples=samples or DEFAULT_SAMPLES, atol=atol, rtol=rtol)
    options = {k: v for k, v in (("window", window), ("power", power)) if v}
    with _about(model):
        result = convert(loaded, strategy, calibration=data, tolerance=_tolerance(tolerance),
                         verify=verify_options, inplace=True, options=options,
                         calibration_samples=samples or DEFAULT_CALIBRATION_SAMPLES)
    if result.random_inputs:
        _random_inputs_warning(" and ".join(result.random_inputs))
    save(result.model, output)
    if report:
        _write_json(report, result.to_dict(model, output))
    click.echo(records_text(result.sites))
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.verify is not None:
        click.echo(report_text(result.verify, output, show_notes=False))
    click.echo(f"wrote {output}")
    if not result.passed:
        sys.exit(EXIT_DRIFT)


@main.command(name="verify")
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(), help="Inputs: .npy (single input), .npz keyed by input name, "
              "or a folder of images.")
@with_image_options
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help=f"Data samples to use [default: all] or random inputs [default: {DEFAULT_SAMPLES}].")
@providers_option
@atol_option
@rtol_option
@click.option("--per-site", is_flag=True, help="Also compare the tensor right after each LRN site.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--tolerance", help="Judge by task-level tolerance (e.g. top1=0.995,cosine=0.999) "
              "instead of --atol/--rtol.")
def verify_command(reference, candidate, data, mean, std, size, bgr, samples, providers, atol, rtol,
                   per_site, as_json, tolerance) -> None:
    """Measure how far CANDIDATE's outputs drift from REFERENCE's in ONNX Runtime."""
    ref = _load(reference)
    cand = _load(candidate)
    inputs = load_data(data, ref, samples, _preprocessing(mean, std, size, bgr)) if data else None
    if data is None and not as_json:
        _random_inputs_warning("verifying")
    with _about(candidate):
        report = run_verify(ref, cand, inputs, _providers(providers), samples=samples or DEFAULT_SAMPLES,
                            atol=atol, rtol=rtol, per_site=per_site, tolerance=_tolerance(tolerance))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report_text(report, candidate))
    if not report.passed:
        sys.exit(EXIT_DRIFT)


class _ZooGroup(click.Group):
    """``zoo [SRC] -o OUT ...`` runs the zoo (the ``run`` subcommand); ``zoo merge ...`` merges shards."""

    default_command = "run"

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = [self.default_command] + list(args)
        return super().parse_args(ctx, args)


@main.group(cls=_ZooGroup)
def zoo() -> None:
    """Convert and verify a zoo of models (`lrnconv zoo [SRC] -o OUT`), or merge shard outputs.

    `lrnconv zoo [SRC] -o OUT ...` is `lrnconv zoo run [SRC] -o OUT ...`; see `lrnconv zoo run --help`.
    """


def _zoo_progress(quiet: bool, as_json: bool):
    if quiet:
        return ZooProgress()
    if as_json or not sys.stderr.isatty():
        return LineProgress(sys.stderr)
    return BarProgress(sys.stderr)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (Slurm's time limit, a pod's eviction) stops the run as Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding host): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@zoo.command(name="run")
@click.argument("source", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--strategy", "strategy_list", default="decompose", show_default=True,
              help="Comma-separated strategies to run on every model (" + ", ".join(list(REGISTRY) + [AUTO]) + ").")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes (with --executor dask and no --scheduler: local Dask workers).")
@click.option("--shard", help="I/N: the models whose name hashes to shard I of N (0-based); auto: I and N "
              "from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX/LRNCONV_SHARD_COUNT.")
@click.option("--executor", type=click.Choice(("local", "dask")), default="local", show_default=True,
              help="local: this process or --jobs processes; dask: one task per model on a Dask cluster.")
@click.option("--scheduler", help="Dask scheduler address (tcp://HOST:PORT); implies --executor dask. "
              "Without it, --executor dask starts a local cluster of --jobs workers.")
@click.option("--force", is_flag=True, help="Redo every model, even those whose completion record matches.")
@click.option("--timing-runs", type=click.IntRange(min=0), default=DEFAULT_TIMING_RUNS, show_default=True,
              help="Timed runs (batch 1, one thread) of the original and each converted model; 0: no timing.")
@click.option("--variant", type=click.Choice(("full", "small")), default="full", show_default=True,
              help="Built-in models only: published widths or reduced width.")
@samples_option
@providers_option
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout (progress as plain lines).")
def zoo_run(source, outdir, strategy_list, jobs, shard, executor, scheduler, force, timing_runs, variant,
            samples, providers, quiet, as_json) -> None:
    """Convert and verify a folder of models (default: the built-in replicas).

    Writes OUTDIR/<model>/<strategy>.onnx, a completion record per model (a rerun skips
    what matches and redoes the rest), and OUTDIR/report.json, report.md, report.html.
    Merge shard outputs with `lrnconv zoo merge OUT_1 ... -o OUT`.
    """
    if executor == "local" and scheduler:
        executor = "dask"
    if scheduler and jobs > 1:
        click.echo("warning: --jobs is ignored with --scheduler: the cluster's workers do the work", err=True)
    if executor == "dask" and not click.get_current_context().find_root().params.get("debug"):
        # Dask logs every worker's coming and going at INFO; the zoo's progress says what matters
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if source and os.path.isdir(source) and os.path.isdir(outdir) and same_file(source, outdir):
        raise UsageError(f"-o {outdir}: the output folder is the source folder; give another one")
    shard_spec = parse_shard(shard)
    items = folder_items(source, exclude=[outdir]) if source else builtin_items(variant)
    options = ZooOptions(strategies=_providers(strategy_list), timing_runs=timing_runs,
                         verify=VerifyOptions(providers=_providers(providers), samples=samples))
    if not quiet:
        _random_inputs_warning("verifying")
    try:
        with _sigterm_as_interrupt():
            report = run_zoo(items, outdir, options, shard=shard_spec, force=force,
                             executor=make_executor(executor, jobs=jobs, scheduler=scheduler),
                             progress=_zoo_progress(quiet, as_json),
                             source=source or f"builtin:{variant}")
    except KeyboardInterrupt:
        click.echo(f"lrnconv: interrupted; the models finished so far are recorded under {outdir}; "
                   "rerun the same command to go on", err=True)
        sys.exit(130)
    _zoo_summary(report, outdir, as_json)


def _zoo_summary(report, outdir: str, as_json: bool) -> None:
    entries = report["entries"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        reports = ", ".join(os.path.join(outdir, name) for name in ("report.md", "report.html", "report.json"))
        click.echo(f"{report['passed']}/{len(entries)} conversions passed; reports: {reports}")
        if report.get("missing"):
            click.echo(f"missing from every shard: {', '.join(report['missing'])}")
    if report["failed"] or report["errors"] or report.get("missing"):
        sys.exit(EXIT_DRIFT)


@zoo.command(name="merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the merged report.json to stdout.")
def zoo_merge(shards, outdir, as_json) -> None:
    """Merge the outputs of zoo shards (SHARDS: their -o folders) into one report in OUTDIR.

    Refuses shards made with other lrnconv/onnxruntime versions or other options, and a
    model found in two shards; lists the models that no shard has (exit 1 then).
    """
    _zoo_summary(merge_reports(list(shards), outdir), outdir, as_json)
