"""The ``lrnconv`` command line: a thin layer over the public API.

Each command maps its options onto one API call and renders the result. Exit codes: 0 passed;
1 the drift is over tolerance (or a zoo model failed); 2 bad input or usage, always exactly one
line on stderr naming the file and the reason (no traceback unless ``--debug``), nothing
written; 3 written but not verifiable; 130 interrupted (SIGINT), 143 terminated (SIGTERM),
nothing left behind. Every file goes through ``lrnconv.base.files`` with the command's inputs
protected.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
from typing import Iterator, Optional

import click

from .. import __version__
from ..base.errors import (EXIT_BAD_INPUT, EXIT_DRIFT, EXIT_INTERRUPTED, EXIT_NOT_VERIFIABLE, EXIT_TERMINATED,
                           LrnConvError, RunFailed, Terminated, UnsupportedModel, UsageError, interruption_behind,
                           raise_terminated)
from ..base.files import OutputGuard, bytes_writer, same_file, write_files
from ..base.text import json_text
from ..formats.modelio import CAFFE_SUFFIXES, load, model_writer
from ..graph.metadata import import_notes
from ..maths.drift import ERROR_STATS, Tolerance
from ..measure.calibration import DEFAULT_CALIBRATION_SAMPLES
from ..measure.formulation import AUTO as FORMULATION_AUTO, DEFAULT_BUDGET_SECONDS
from ..measure.golden import GoldenRecorder, golden_writer, load_golden
from ..measure.importance import DEFAULT_STRATEGIES
from ..measure.quantization import QUANTIZE_CHOICES, Int8Options, verify_quantized
from ..measure.verification import DEFAULT_SAMPLES, samples_for, verify as run_verify
from ..passes import REGISTRY
from ..passes.decompose import DEFAULT_POWER, DEFAULT_WINDOW, POWERS, WINDOWS
from ..runtime.datafiles import ImagePreprocessing, load_data
from ..runtime.inputs import array_samples, input_specs, parse_input_shapes, parse_input_values
from ..runtime.progress import watching
from ..runtime.runnable import REFERENCES
from .conversion import AUTO, VerifyOptions, convert, int8_path
from .executors import make_executor
from .inspection import inspect as inspect_model
from .plots import PLOTS_HINT, figure_writers, plots_available
from .progress import BarProgress, LineProgress, SampleBar
from .render import importance_text, inspection_text, int8_text, records_text, report_text
from .shards import parse_shard
from .zoo import DEFAULT_TIMING_RUNS, ZooOptions, ZooProgress, builtin_items, folder_items, run_zoo
from .zoo_report import merge_reports



class _Cli(click.Group):
    """Library errors and usage errors as one stderr line and exit 2; SIGINT 130, SIGTERM 143."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            previous = signal.signal(signal.SIGTERM, raise_terminated)
        except ValueError:  # not the main thread (an embedding host): signals stay the host's
            previous = None
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"lrnconv: error: {exc.format_message()}", err=True)
            code = EXIT_BAD_INPUT
        except click.exceptions.Abort:
            click.echo("lrnconv: interrupted; nothing was left half-written", err=True)
            code = EXIT_INTERRUPTED
        except Terminated:
            click.echo("lrnconv: terminated; nothing was left half-written", err=True)
            code = EXIT_TERMINATED
        except Exception as exc:  # a signal while a lazily imported compiled module loads
            stop = interruption_behind(exc)
            if stop is None:
                raise
            click.echo(f"lrnconv: {'interrupted' if isinstance(stop, KeyboardInterrupt) else 'terminated'}; "
                       "nothing was left half-written", err=True)
            code = EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

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


def _sample_progress():
    """A bar per long sample loop (calibrating, verifying, auto's trials) when stderr is a terminal."""
    return watching(SampleBar(sys.stderr) if sys.stderr.isatty() else None)


@contextlib.contextmanager
def _about(path: str) -> Iterator[None]:
    """Errors raised while handling ``path`` name it, so the one error line says which file."""
    try:
        yield
    except LrnConvError as exc:
        if str(exc).startswith(path):
            raise
        if isinstance(exc, RunFailed):
            raise RunFailed(f"{path}: {exc}", exc.role) from None
        raise type(exc)(f"{path}: {exc}") from None
    except Exception as exc:  # a corrupt model can break any parser below us: still one line
        if click.get_current_context().find_root().params.get("debug"):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnsupportedModel(f"{path}: cannot process the model ({type(exc).__name__}: {detail}); "
                               "rerun with --debug for the traceback") from None


def _load(path: str, weights: Optional[str] = None, *, check: bool = True):
    """Load a model, naming the file in any error."""
    with _about(path):
        return load(path, weights, check=check)


def _echo_import_notes(path: str, model) -> None:
    """What the importer noted, said once the command's work succeeded."""
    for note in import_notes(model):
        click.echo(f"note: {path}: {note}", err=True)


def _providers(text: str):
    return [p.strip() for p in text.split(",") if p.strip()]


def _random_inputs_warning(doing: str) -> None:
    click.echo(f"WARNING: no --data/--calib given: {doing} on seeded random inputs "
               "(uniform [-128, 128)); drift on real data may differ", err=True)


class _Tolerance(click.ParamType):
    """A finite number >= 0 for every output (``1e-5``) or one output (``prob:1e-4``, Polygraphy's
    spelling); NaN, Inf and negatives would pass anything or nothing."""

    name = "[NAME:]NUMBER"

    def convert(self, value, param, ctx):
        name, sep, text = str(value).rpartition(":")
        try:
            number = float(text)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number (give NUMBER or OUTPUT:NUMBER)", param, ctx)
        if not math.isfinite(number) or number < 0:
            self.fail(f"{value!r} must be a finite number >= 0", param, ctx)
        return (name if sep else "", number)


def _per_output(values):
    """The repeated --atol/--rtol values as one tolerance, or per output name ("" for the others)."""
    if not values:
        return None
    given = dict(values)
    return given[""] if list(given) == [""] else given


providers_option = click.option("--providers", default="cpu", show_default=True,
                                help="Comma-separated: cpu, cuda or full ONNX Runtime provider names.")
samples_option = click.option("--samples", type=click.IntRange(min=1), default=DEFAULT_SAMPLES,
                              show_default=True, help="Random inputs to verify on (or data samples to use).")
atol_option = click.option("--atol", type=_Tolerance(), multiple=True,
                           help="Absolute tolerance, for every output or OUTPUT:NUMBER for one (repeatable) "
                                "[default: by element type: 1e-5 for float32, 1e-3 float16, 1e-2 bfloat16].")
rtol_option = click.option("--rtol", type=_Tolerance(), multiple=True,
                           help="Relative tolerance, for every output or OUTPUT:NUMBER for one (repeatable) "
                                "[default: by element type: 1e-4 for float32, 1e-2 float16, 6e-2 bfloat16].")
error_stat_option = click.option("--check-error-stat", "error_stat", type=click.Choice(ERROR_STATS),
                                 default="elemwise", show_default=True,
                                 help="What --atol/--rtol judge: every element (numpy allclose), or the max, "
                                      "mean or median error (Polygraphy's check_error_stat).")
model_input_options = [
    click.option("--input-shapes", "input_shapes", multiple=True, metavar="NAME:D0,D1,...",
                 help="Shape of an input with symbolic dims, for random samples (e.g. data:1,3,224,224; "
                      "repeatable)."),
    click.option("--input", "input_values", multiple=True, metavar="NAME=VALUE",
                 help="Value of an input fed whole: an If condition, a Loop trip count, a shape "
                      "(e.g. cond=false, trip=3; repeatable)."),
    click.option("--reference", "reference_mode", type=click.Choice(REFERENCES), default="native",
                 show_default=True,
                 help="Compare against the model as ONNX Runtime runs it, or with every LRN evaluated "
                      "exactly in float64."),
]


check_option = click.option("--no-check", is_flag=True,
                            help="Skip the ONNX checker's full check of ONNX input models (for operators the "
                                 "installed onnx does not know); tensor sizes and data locations are still checked.")


def with_model_input_options(func):
    for option in reversed(model_input_options):
        func = option(func)
    return func


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


@click.group(cls=_Cli)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="lrnconv")
def main(debug: bool) -> None:
    """Find, rewrite and verify Local Response Normalization in legacy CNNs."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(name)s: %(message)s" if debug else "WARNING: %(message)s")
    logging.captureWarnings(True)  # a library's RuntimeWarning is one logged line, not Python's noise


quantize_option = click.option("--quantize", type=click.Choice(QUANTIZE_CHOICES), default=None,
                               help="Also quantize with ONNX Runtime's static quantizer (QDQ, per-channel symmetric "
                                    "int8) on the first half of the data and measure the INT8 model against the "
                                    "float original on the second half (a proxy for the target's own quantizer).")
exclude_decomposition_option = click.option(
    "--quantize-exclude-decomposition", "exclude_decomposition", is_flag=True,
    help="--quantize: keep the nodes decompose emits in float (they are then listed as float islands).")


def _int8_options(quantize: Optional[str], exclude_decomposition: bool) -> Optional[Int8Options]:
    if quantize is None:
        if exclude_decomposition:
            click.echo("WARNING: --quantize-exclude-decomposition is ignored without --quantize int8", err=True)
        return None
    return Int8Options(exclude_decomposition=exclude_decomposition)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Caffe .caffemodel for a .prototxt MODEL.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--data", type=click.Path(), help="Measure each site's importance on this data (.npy, .npz or a folder "
              "of images): the first half fits, every effect is measured on the second.")
@with_image_options
@click.option("--samples", type=click.IntRange(min=2), default=None, help="Data samples to use [default: all].")
@click.option("--tolerance", help="What the verdicts judge by [default: top1=0.995,cosine=0.999].")
@click.option("--strategies", default=",".join(DEFAULT_STRATEGIES), show_default=True,
              help="--data: strategies to apply to each site alone (remove and fold always are): "
                   "remove, fold, bn, l2, decompose.")
@quantize_option
@exclude_decomposition_option
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="--data: write per-site figures into this folder (needs the plots extra).")
@click.option("--provider", default="cpu", show_default=True, help="--data: where to run (cpu, cuda or a full name).")
@click.option("--drop-nonfinite", is_flag=True, help="--data: leave samples holding NaN or Inf out.")
@with_model_input_options
@check_option
def inspect(model: str, weights: Optional[str], as_json: bool, data, mean, std, size, bgr, samples, tolerance,
            strategies, quantize, exclude_decomposition, plot_dir, provider, drop_nonfinite, input_shapes,
            input_values, reference_mode, no_check) -> None:
    """List every LRN site of MODEL and what each strategy would do with it; with --data, how much each matters."""
    if data is None:
        ignored = [name for name, value in (("--quantize", quantize), ("--plot", plot_dir), ("--samples", samples),
                                            ("--tolerance", tolerance)) if value]
        if ignored:
            click.echo(f"WARNING: {', '.join(ignored)} need --data and are ignored", err=True)
        quantize, plot_dir = None, None
    if plot_dir is not None:
        if not os.path.isdir(plot_dir):
            raise UsageError(f"--plot {plot_dir}: no such folder")
        if not plots_available():
            click.echo(f"note: {PLOTS_HINT}", err=True)
            plot_dir = None
    loaded = _load(model, weights, check=not no_check)
    inputs = None
    if data is not None:
        _, values = _model_inputs(loaded, input_shapes, input_values)
        inputs = _samples(data, loaded, samples, _preprocessing(mean, std, size, bgr), values)
    with _about(model), _sample_progress():
        inspection = inspect_model(loaded, inputs, tolerance=_tolerance(tolerance), strategies=_providers(strategies),
                                   quantize=_int8_options(quantize, exclude_decomposition), provider=provider,
                                   reference=reference_mode, drop_nonfinite=drop_nonfinite)
    written = []
    if plot_dir is not None and inspection.importance is not None:
        guard = OutputGuard([model, weights, data])
        items = figure_writers(inspection.importance, plot_dir)
        write_files(items, guard)
        written = [path for path, _ in items]
    if as_json:
        document = inspection.to_dict(model)
        if written:
            document["figures"] = written
        click.echo(json_text(document))
    else:
        click.echo(inspection_text(model, inspection))
        if inspection.importance is not None:
            click.echo(importance_text(inspection.importance))
        for note in inspection.notes:
            click.echo(f"note: {note}")
        for path in written:
            click.echo(f"wrote {path}")
    _echo_import_notes(model, loaded)


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


def _model_inputs(model, input_shapes, input_values):
    """--input-shapes and --input, checked against the model's inputs."""
    return parse_input_shapes(input_shapes), parse_input_values(input_values, input_specs(model))


def _samples(path: Optional[str], model, samples: Optional[int], preprocessing: ImagePreprocessing, values):
    """The samples of a --data / --calib file or folder, checked against the model (errors name the file)."""
    if path is None:
        return None
    with _about(path):
        return array_samples(model, load_data(path, model, samples, preprocessing, values), values=values,
                             what=path)


def _exit_for(report) -> None:
    """Exit 1 for a failed verification, 3 when ONNX Runtime could not run the converted model."""
    if report is None or report.passed:
        return
    sys.exit(EXIT_NOT_VERIFIABLE if report.unverifiable else EXIT_DRIFT)


def _tolerance(text: Optional[str]) -> Optional[Tolerance]:
    try:
        return Tolerance.parse(text) if text else None
    except ValueError as exc:
        raise UsageError(f"--tolerance: {exc}") from None


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
@error_stat_option
@click.option("--drop-nonfinite", is_flag=True,
              help="Leave calibration samples holding NaN or Inf out (and count them) instead of refusing the data.")
@quantize_option
@exclude_decomposition_option
@with_model_input_options
@check_option
def convert_command(model, output, weights, strategy, calib, mean, std, size, bgr, tolerance, samples,
                    providers, atol, rtol, no_verify, report, in_place, window, power, tune_seconds, tune_batch,
                    error_stat,
                    drop_nonfinite, quantize, exclude_decomposition, input_shapes, input_values, reference_mode,
                    no_check) -> None:
    """Rewrite every LRN of MODEL with a strategy, verify it, and save it to OUTPUT."""
    if in_place and model.lower().endswith(CAFFE_SUFFIXES):
        raise UsageError(f"{model}: --in-place replaces ONNX models only; a Caffe prototxt stays as it is "
                         "(give -o OUT.onnx)")
    if output is None:
        if not in_place:
            raise UsageError("missing -o/--output (or pass --in-place to replace MODEL)")
        output = model
    if not in_place and os.path.exists(output) and os.path.exists(model) and same_file(output, model):
        raise UsageError(f"{output}: refusing to overwrite the input model; pass --in-place")
    guard = OutputGuard([weights, calib] + ([] if in_place else [model]))
    int8_options = _int8_options(quantize, exclude_decomposition)
    int8_output = int8_path(output) if int8_options is not None else None
    if int8_output is not None and os.path.exists(int8_output) and same_file(int8_output, model):
        raise UsageError(f"{int8_output}: is the input model; refusing to overwrite it with the INT8 model")
    guard.check_all([t for t in (report, output, int8_output) if t])
    loaded = _load(model, weights, check=not no_check)
    shapes, values = _model_inputs(loaded, input_shapes, input_values)
    data = _samples(calib, loaded, samples, _preprocessing(mean, std, size, bgr), values)
    verify_options = None
    if not no_verify:
        verify_options = VerifyOptions(providers=_providers(providers), samples=samples or DEFAULT_SAMPLES,
                                       atol=_per_output(atol), rtol=_per_output(rtol), error_stat=error_stat)
    if FORMULATION_AUTO not in (window, power) and (tune_seconds is not None or tune_batch is not None):
        click.echo("warning: --tune-seconds/--tune-batch only apply with --window auto or --power auto", err=True)
    options = {k: v for k, v in (("window", window), ("power", power), ("tune_seconds", tune_seconds),
                                 ("tune_batch", tune_batch)) if v is not None}
    with _about(model), _sample_progress():
        result = convert(loaded, strategy, calibration=data, tolerance=_tolerance(tolerance),
                         verify=verify_options, inplace=True, options=options,
                         calibration_samples=samples or DEFAULT_CALIBRATION_SAMPLES, reference=reference_mode,
                         input_shapes=shapes, input_values=values, drop_nonfinite=drop_nonfinite,
                         quantize=int8_options)
    replaces_input = in_place and os.path.exists(output) and os.path.abspath(output) == os.path.abspath(model)
    written = not (replaces_input and not result.passed)
    if written:  # the report lands first, the model right after it (then its INT8 model): all or none
        files = [(report, bytes_writer(json_text(result.to_dict(model, output, int8_output)).encode()))] if report else []
        files.append((output, model_writer(result.model)))
        if result.int8 is not None:
            files.append((int8_output, model_writer(result.int8.model)))
        write_files(files, guard)
    if result.random_inputs:
        _random_inputs_warning(" and ".join(result.random_inputs))
    click.echo(records_text(result.sites))
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.verify is not None:
        click.echo(report_text(result.verify, output, show_notes=False))
    if result.int8 is not None:
        click.echo(int8_text(result.int8, result.verify, int8_output, proxy_note=False))
    if written and result.int8 is not None:
        click.echo(f"wrote {int8_output}")
    click.echo(f"wrote {output}" if written else f"{model} was NOT replaced: verification did not pass (--in-place "
                                                 "replaces the input only after a pass)")
    _echo_import_notes(model, loaded)
    _exit_for(result.verify)
    if result.int8 is not None:
        _exit_for(result.int8.verify)


@main.command(name="verify")
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(), help="Inputs: .npy (the one batched input), .npz keyed by input "
              "name, or a folder of images.")
@with_image_options
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help=f"Data samples to use [default: all] or random inputs [default: {DEFAULT_SAMPLES}].")
@providers_option
@atol_option
@rtol_option
@click.option("--per-site", is_flag=True, help="Also compare the tensor right after each LRN site.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--tolerance", help="Judge by task-level tolerance (e.g. top1=0.995,cosine=0.999) "
              "instead of --atol/--rtol (--quantize: what the INT8 model is judged by; default top1=0.995,cosine=0.999).")
@error_stat_option
@click.option("--save-outputs", type=click.Path(dir_okay=False),
              help="Keep the samples and the reference's outputs (first provider) in this .npz, to compare against later.")
@click.option("--load-outputs", type=click.Path(dir_okay=False),
              help="Compare CANDIDATE against the outputs in this .npz (saved with --save-outputs, or produced by "
                   "the original framework) instead of running REFERENCE.")
@quantize_option
@exclude_decomposition_option
@click.option("--save-int8", type=click.Path(dir_okay=False), help="--quantize: write the INT8 model here.")
@with_model_input_options
@check_option
def verify_command(reference, candidate, data, mean, std, size, bgr, samples, providers, atol, rtol,
                   per_site, as_json, tolerance, error_stat, save_outputs, load_outputs, quantize,
                   exclude_decomposition, save_int8, input_shapes, input_values, reference_mode, no_check) -> None:
    """Measure how far CANDIDATE's outputs drift from REFERENCE's in ONNX Runtime."""
    if load_outputs and data:
        raise UsageError("--load-outputs brings its own samples; give --data or --load-outputs, not both")
    int8_options = _int8_options(quantize, exclude_decomposition)
    if int8_options is not None and (save_outputs or load_outputs):
        raise UsageError("--quantize runs REFERENCE itself; it does not take --save-outputs or --load-outputs")
    if save_int8 is not None and int8_options is None:
        raise UsageError("--save-int8 needs --quantize int8")
    guard = OutputGuard([reference, candidate, data, load_outputs])
    guard.check_all([t for t in (save_outputs, save_int8) if t])
    ref = _load(reference, check=not no_check)
    cand = _load(candidate, check=not no_check)
    with _about(reference):
        shapes, values = _model_inputs(ref, input_shapes, input_values)
    inputs = _samples(data, ref, samples, _preprocessing(mean, std, size, bgr), values)
    if int8_options is not None:
        _verify_int8(ref, cand, inputs, reference=reference, candidate=candidate, samples=samples, shapes=shapes,
                     values=values, providers=_providers(providers), tolerance=_tolerance(tolerance),
                     options=int8_options, reference_mode=reference_mode, atol=_per_output(atol),
                     rtol=_per_output(rtol), error_stat=error_stat, as_json=as_json, save_int8=save_int8, guard=guard)
        return
    golden = None
    if load_outputs:
        with _about(load_outputs):
            golden = load_golden(load_outputs, ref)
    recorder = GoldenRecorder() if save_outputs else None
    try:
        with _sample_progress():
            report = run_verify(ref, cand, inputs, _providers(providers), samples=samples or DEFAULT_SAMPLES,
                                input_shapes=shapes, input_values=values, reference_mode=reference_mode,
                                atol=_per_output(atol), rtol=_per_output(rtol), error_stat=error_stat,
                                per_site=per_site, tolerance=_tolerance(tolerance), golden=golden, record=recorder)
    except RunFailed as exc:
        raise RunFailed(f"{reference if exc.role == 'reference' else candidate}: {exc}", exc.role) from None
    if recorder is not None:
        recorder.meta.update({"reference_model": os.path.basename(reference), "lrnconv": __version__})
        write_files([(save_outputs, golden_writer(recorder))], guard)
    if data is None and golden is None and not as_json:
        _random_inputs_warning("verifying")
    if as_json:
        click.echo(json_text(report.to_dict()))
    else:
        click.echo(report_text(report, candidate))
    _exit_for(report)


def _verify_int8(ref, cand, inputs, *, reference, candidate, samples, shapes, values, providers, tolerance, options,
                 reference_mode, atol, rtol, error_stat, as_json, save_int8, guard) -> None:
    """``verify --quantize int8``: CANDIDATE and its INT8 model against REFERENCE on the held-out half."""
    if inputs is None:
        inputs, _ = samples_for(ref, samples=samples or DEFAULT_CALIBRATION_SAMPLES, input_shapes=shapes,
                                input_values=values)
    try:
        with _sample_progress():
            checked = verify_quantized(ref, cand, inputs, providers=providers, tolerance=tolerance, options=options,
                                       reference_mode=reference_mode, atol=atol, rtol=rtol, error_stat=error_stat)
    except RunFailed as exc:
        raise RunFailed(f"{reference if exc.role == 'reference' else candidate}: {exc}", exc.role) from None
    if save_int8 is not None:
        write_files([(save_int8, model_writer(checked.int8.model))], guard)
    if inputs.random and not as_json:
        _random_inputs_warning("quantizing and verifying")
    if as_json:
        click.echo(json_text(checked.to_dict(save_int8)))
    else:
        click.echo(report_text(checked.float, candidate))
        click.echo(int8_text(checked.int8, checked.float, save_int8 or candidate))
        if save_int8 is not None:
            click.echo(f"wrote {save_int8}")
    _exit_for(checked.float)
    _exit_for(checked.int8.verify)


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
@quantize_option
@exclude_decomposition_option
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout (progress as plain lines).")
def zoo_run(source, outdir, strategy_list, jobs, shard, executor, scheduler, force, timing_runs, variant,
            samples, providers, quantize, exclude_decomposition, quiet, as_json) -> None:
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
                         verify=VerifyOptions(providers=_providers(providers), samples=samples),
                         quantize=_int8_options(quantize, exclude_decomposition))
    if not quiet:
        _random_inputs_warning("verifying and quantizing" if quantize else "verifying")
    try:
        report = run_zoo(items, outdir, options, shard=shard_spec, force=force,
                         executor=make_executor(executor, jobs=jobs, scheduler=scheduler),
                         progress=_zoo_progress(quiet, as_json), source=source or f"builtin:{variant}")
    except (KeyboardInterrupt, Terminated) as stop:  # Ctrl-C; SIGTERM from Slurm's time limit or an eviction
        how = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated"
        click.echo(f"lrnconv: {how}; the models finished so far are recorded under {outdir}; "
                   "rerun the same command to go on", err=True)
        sys.exit(EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED)
    _zoo_summary(report, outdir, as_json)


def _zoo_summary(report, outdir: str, as_json: bool) -> None:
    entries = report["entries"]
    if as_json:
        click.echo(json_text(report))
    else:
        reports = ", ".join(os.path.join(outdir, name) for name in ("report.md", "report.html", "report.json"))
        quantized = [e for e in entries if e.get("int8")]
        int8 = (f"; INT8 within tolerance: {len(quantized) - report['int8_failed']}/{len(quantized)}"
                if quantized else "")
        click.echo(f"{report['passed']}/{len(entries)} conversions passed{int8}; reports: {reports}")
        if not plots_available():
            click.echo(f"note: no drift-against-latency figure: {PLOTS_HINT}")
        if report.get("missing"):
            click.echo(f"missing from every shard: {', '.join(report['missing'])}")
    if report["failed"] or report["errors"] or report.get("int8_failed") or report.get("missing"):
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
