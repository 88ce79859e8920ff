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
import sys
from typing import Iterator, Optional

import click

from .convert import VerifyOptions, convert, strategies
from .drift import DEFAULT_ATOL, DEFAULT_RTOL
from .errors import LrnConvError, UnsupportedModel, UsageError
from .calibrate import DEFAULT_CALIBRATION_SAMPLES
from .convert import AUTO
from .drift import Tolerance
from .inputs import ImagePreprocessing, load_data
from .formulation import AUTO as FORMULATION_AUTO, DEFAULT_BUDGET_SECONDS
from .passes.decompose import DEFAULT_POWER, DEFAULT_WINDOW, POWERS, WINDOWS
from .modelio import import_notes, load, same_file, save
from .render import records_text, report_text, sites_text
from .sites import find_lrn
from .targets import target_support
from .verify import DEFAULT_SAMPLES, verify as run_verify
from .zoo import builtin_items, folder_items, parse_shard, run_zoo

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
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except OSError as exc:
        from .errors import OutputError

        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _random_inputs_warning(data: Optional[str], doing: str = "verifying") -> None:
    if data is None:
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
        sites = find_lrn(loaded)
        verdicts = {s.output: {name: strategy.check(s) for name, strategy in strategies().items()} for s in sites}
    if as_json:
        click.echo(json.dumps({"model": model, "sites": [
            dict(s.to_dict(), strategies={n: v.status for n, v in verdicts[s.output].items()},
                 reasons={n: v.reason for n, v in verdicts[s.output].items()},
                 targets=target_support(s)) for s in sites]}, indent=2))
    else:
        click.echo(sites_text(model, sites, verdicts))


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
              help="How to rewrite each LRN site: " + ", ".join(list(strategies()) + [AUTO]))
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
@click.option("--window", type=click.Choice(WINDOWS + (FORMULATION_AUTO,)), default=None,
              help=f"decompose: window-sum formulation; auto = time the candidates on this machine "
                   f"[default: {DEFAULT_WINDOW}].")
@click.option("--power", type=click.Choice(POWERS + (FORMULATION_AUTO,)), default=None,
              help=f"decompose: power formulation; auto = time the candidates on this machine "
                   f"[default: {DEFAULT_POWER}].")
@click.option("--tune-seconds", type=click.FloatRange(min=0), default=None,
              help=f"--window/--power auto: timing budget in seconds; 0 = use the default formulation "
                   f"without timing [default: {DEFAULT_BUDGET_SECONDS:g}].")
@click.option("--tune-batch", type=click.IntRange(min=1), default=None,
              help="--window/--power auto: batch to time at, where the model's batch is not fixed [default: 1].")
def convert_command(model, output, weights, strategy, calib, mean, std, size, bgr, tolerance, samples,
                    providers, atol, rtol, no_verify, report, in_place, window, power, tune_seconds,
                    tune_batch) -> None:
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
    approximating = strategy == AUTO or getattr(strategies().get(strategy), "needs_calibration", False)
    if data is None and (approximating or not no_verify):
        _random_inputs_warning(None, "fitting and verifying" if approximating else "verifying")
    verify_options = None
    if not no_verify:
        verify_options = VerifyOptions(providers=_providers(providers),
                                       samples=samples or DEFAULT_SAMPLES, atol=atol, rtol=rtol)
    if FORMULATION_AUTO not in (window, power) and (tune_seconds is not None or tune_batch is not None):
        click.echo("warning: --tune-seconds/--tune-batch only apply with --window auto or --power auto", err=True)
    options = {k: v for k, v in (("window", window), ("power", power), ("tune_seconds", tune_seconds),
                                 ("tune_batch", tune_batch)) if v is not None}
    with _about(model):
        result = convert(loaded, strategy, calibration=data, tolerance=_tolerance(tolerance),
                         verify=verify_options, inplace=True, options=options,
                         calibration_samples=samples or DEFAULT_CALIBRATION_SAMPLES)
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
    if not as_json:
        _random_inputs_warning(data)
    with _about(candidate):
        report = run_verify(ref, cand, inputs, _providers(providers), samples=samples or DEFAULT_SAMPLES,
                            atol=atol, rtol=rtol, per_site=per_site, tolerance=_tolerance(tolerance))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report_text(report, candidate))
    if not report.passed:
        sys.exit(EXIT_DRIFT)


@main.command()
@click.argument("source", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--strategy", "strategy_list", default="decompose", show_default=True,
              help="Comma-separated strategies to run on every model (" + ", ".join(list(strategies()) + [AUTO]) + ").")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--shard", help="I/N: take the models whose sorted position is I mod N (0-based).")
@click.option("--variant", type=click.Choice(("full", "small")), default="full", show_default=True,
              help="Built-in models only: published widths or reduced width.")
@samples_option
@providers_option
def zoo(source, outdir, strategy_list, jobs, shard, variant, samples, providers) -> None:
    """Convert and verify a folder of models (default: the built-in replicas)."""
    items = folder_items(source) if source else builtin_items(variant)
    _random_inputs_warning(None)
    entries = run_zoo(items, outdir, _providers(strategy_list),
                      verify=VerifyOptions(providers=_providers(providers), samples=samples),
                      jobs=jobs, shard=parse_shard(shard), progress=lambda m: click.echo(m, err=True))
    failed = [e for e in entries if e.get("error") or not e.get("passed")]
    click.echo(f"{len(entries) - len(failed)}/{len(entries)} conversions passed; "
               f"reports: {os.path.join(outdir, 'report.md')}, {os.path.join(outdir, 'report.json')}")
    if failed:
        sys.exit(EXIT_DRIFT)
