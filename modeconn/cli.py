"""The ``modeconn`` command: parse, call the library, print a table, write files. Bad input: one line, exit 2.

``modeconn train``'s flags are derived from ``TrainConfig``'s fields and the methods' own option declarations, so a
new setting or method option appears here, in config files and in the run record without being listed again.
"""
from __future__ import annotations

import re
import sys

import click

from .errors import ModeconnError

GLOSSARY = "docs/glossary.md"
POSITIVE = click.IntRange(min=1)
RESULT_BYTES = 8 * 2**20  # about one result's files: its HTML embeds plotly.js (a barrier's JSON, PNG and HTML: 4.9 MB)


class PathKinds(click.Choice):
    """The registered path kinds (``curved``: those with free points to fit), read when asked: a kind registered after
    this module is imported is offered too."""

    def __init__(self, curved: bool = False):
        self.curved = curved
        super().__init__([])

    @property
    def choices(self) -> list[str]:
        from .lora import path_kinds

        return path_kinds.curved() if self.curved else path_kinds.names()

    @choices.setter
    def choices(self, value) -> None:
        """Ignored: the registry is the list."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=f"Each concept has one name in every command (precision, accuracy, limit, split, space, path, "
                    f"barrier, joint gap, …): the glossary is {GLOSSARY} in the source tree, linked from the README.")
@click.version_option(package_name="modeconn")
def cli():
    """Mode connectivity and forgetting in continual LoRA fine-tuning."""


def _inputs(*values) -> list[str]:
    """Every path a command reads (``NAME=PATH`` data too), and the adapters and data of a sequence given or beside an
    adapter given: an output folder may not overlap any of them."""
    from pathlib import Path

    from .lora.sequence import MANIFEST, load_sequence

    found = []
    for value in values:
        for given in ([value] if isinstance(value, str) else [v for v in value or () if v is not None]):
            path = Path(given if Path(given).exists() or "=" not in given else given.split("=", 1)[1])
            if not path.exists():
                continue
            found.append(str(path))
            for manifest in (path / MANIFEST, path.parent / MANIFEST, path):
                try:
                    seq = load_sequence(manifest) if manifest.name == MANIFEST and manifest.is_file() else None
                except ModeconnError:
                    seq = None  # the command itself says what is wrong with it
                if seq is not None:
                    found += [str(p) for t in seq.tasks for p in (seq.adapter_dir(t), seq.data_dir(t))]
                    break
    return found


def _analysis(out: str, as_json: bool, compute, inputs: list[str] = (), **options) -> None:
    """Claim ``out`` (checked and locked before any work; apart from ``inputs``), compute the result, write its JSON,
    PNG and HTML together, then print its table (or the JSON); non-finite losses are written as null, with a warning."""
    from .files import count_nonfinite, write_all
    from .outdir import claim
    from .ranks import main_process
    from .plots.kinds import writers
    from . import checks

    checks.free_space(out, RESULT_BYTES, "writing the result (JSON, PNG and self-contained HTML)")
    with claim(out, inputs=inputs):
        result = compute()
        if not main_process():  # under accelerate launch: the main process writes and reports
            return
        files = write_all(out, writers(result, **options))
    cut = _cut_prompts(result.to_json())
    if cut:
        click.echo("modeconn: prompts cut from the left to fit max_length: "
                   + ", ".join(f"{task} {n}" for task, n in cut.items()), err=True)
    bad = count_nonfinite(result.to_json())
    if bad:
        click.echo(f"modeconn: warning: {bad} numbers of this result are not finite (NaN or infinite: the loss overflowed "
                   "at some points); they are written as null", err=True)
    click.echo(result.dumps() if as_json else result.table())
    if not as_json:
        click.echo("\nwrote " + ", ".join(str(f) for f in files))


def _cut_prompts(data) -> dict[str, int]:
    """Per task, the most prompts cut in any evaluation a result holds (each records its own count)."""
    found: dict[str, int] = {}
    if isinstance(data, dict):
        for name, value in data.items():
            if isinstance(value, dict) and isinstance(value.get("cut_prompts"), int) and value["cut_prompts"]:
                found[name] = max(found.get(name, 0), value["cut_prompts"])
            for task, n in _cut_prompts(value).items():
                found[task] = max(found.get(task, 0), n)
    elif isinstance(data, list):
        for value in data:
            for task, n in _cut_prompts(value).items():
                found[task] = max(found.get(task, 0), n)
    return found


def _given(name: str) -> bool:
    """Whether the running command's option ``name`` was given (not left at its default)."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _refuse_idle(*cases) -> None:
    """Refuse an option that has no effect in the combination given: ``(flag, idle, why)`` each."""
    from .errors import ConfigError

    for flag, idle, why in cases:
        if idle:
            raise ConfigError(f"{flag} has no effect {why}; leave it out")


def _options(*options):
    """Apply click options in the order they are listed."""
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def _study_options(command: str, *, skip: tuple[str, ...] = (), reword: dict | None = None, as_json: bool = True):
    """One flag per ``StudySettings`` field, its help, default and bounds taken from the field (as ``train``'s from
    ``TrainConfig``): the shared options of the analysis commands. ``reword`` gives a field this command's own help,
    ``(flag, help)``."""
    from dataclasses import fields

    from .analysis.settings import ACCURACY, StudySettings

    def decorate(f):
        if as_json:
            f = click.option("--json", "as_json", is_flag=True, help="print the JSON result to stdout instead of the table")(f)
        for spec in reversed(fields(StudySettings)):
            meta = spec.metadata
            flag, text = (reword or {}).get(spec.name, (meta.get("flag", f"--{spec.name.replace('_', '-')}"), meta["help"]))
            if spec.name in skip or flag is None:
                continue
            if spec.name == "accuracy":
                text = f"{text.split(' [')[0]} [{'on' if ACCURACY[command] else 'off'}]"
                f = click.option("--accuracy/--no-accuracy", spec.name, default=None, help=text)(f)
            elif spec.type == "bool":
                f = click.option(flag, spec.name, flag_value=not spec.default, default=spec.default, help=text)(f)
            elif "choices" in meta:
                f = click.option(flag, spec.name, type=click.Choice(list(meta["choices"])), default=spec.default,
                                 show_default=spec.default is not None, help=text)(f)
            elif "multiple" in meta:
                f = click.option(flag, spec.name, multiple=True, default=spec.default, metavar=meta["metavar"], help=text)(f)
            else:
                kind = click.IntRange(min=meta["low"]) if "low" in meta else int if spec.type.startswith("int") else None
                f = click.option(flag, spec.name, type=kind, default=spec.default, show_default=spec.default is not None,
                                 help=text)(f)
        return f

    return decorate


# the StudySettings fields ``report`` does not take: each run names its base, tasks and data; --limit and --seed are
# its own
LOADED_BY_RUNS = ("data", "prompt_field", "answer_field", "manifest", "split", "base", "limit", "seed", "accuracy")


def _settings(**given):
    """The one ``StudySettings`` an analysis command builds from its flags."""
    from .analysis.settings import StudySettings

    return StudySettings(**given)


@cli.command()
@click.argument("adapter_a")
@click.argument("adapter_b")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True,
              help="interpolate the A and B factors, or the merged updates ΔW = B·A (exact, rank r1+r2)")
@click.option("--points", type=click.IntRange(min=2), default=11, show_default=True,
              help="evenly spaced t in [0, 1], endpoints included")
@click.option("--adaptive", is_flag=True,
              help="instead of --points: 6 points, then refine around each barrier's peak by parabolic steps (at most 10 points)")
@click.option("--path", "path_kind", type=PathKinds(), default="linear", show_default=True,
              help="the path's kind (bezier: quadratic Bézier; polychain: polygonal chain; cubic: cubic Bézier)")
@click.option("--control", default=None, help="with a curved --path: its control-point adapter, or the folder "
                                              "`modeconn curve --path KIND` wrote")
@click.option("--out", default="results", show_default=True, help="folder for barrier.json, barrier.png, barrier.html")
@_study_options("barrier")
def barrier(adapter_a, adapter_b, space, points, adaptive, path_kind, control, out, as_json, **study):
    """Loss and accuracy along the path from ADAPTER_A to ADAPTER_B, per task, and the loss barrier."""
    from .analysis.measure import measure_barrier
    from .analysis.search import SearchConfig

    _refuse_idle(("--control", control is not None and path_kind == "linear",
                  "without --path bezier (add --path bezier, or another curved kind, to walk its curve)"),
                 ("--points", _given("points") and adaptive, "with --adaptive (it chooses its own points)"))
    settings = _settings(**study)
    _analysis(out, as_json, lambda: measure_barrier(
        [adapter_a, adapter_b], settings, space=space, points=points, path=path_kind, control=control,
        adaptive=SearchConfig() if adaptive else None),
        inputs=_inputs([adapter_a, adapter_b, control], settings.data, settings.base))


@cli.command()
@click.argument("adapter_a")
@click.argument("adapter_b")
@click.argument("adapter_c")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True)
@click.option("--grid", type=click.IntRange(min=2), default=21, show_default=True, help="points per axis")
@click.option("--margin", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="extra room around the three points, as a fraction of their extent")
@click.option("--curve/--no-curve", default=None,
              help="draw the Bézier curve A → B with control point C [default: when C's curve.json names A and B]")
@click.option("--surface", is_flag=True, help="HTML as 3D surfaces instead of contour maps")
@click.option("--out", default="results", show_default=True, help="folder for plane.json, plane.png, plane.html")
@click.option("--mark", multiple=True, help="an adapter to place on the plane at its projection (its own loss scored, "
                                            "its distance from the plane recorded); repeatable")
@_study_options("plane")
def plane(adapter_a, adapter_b, adapter_c, space, grid, margin, curve, surface, out, mark, as_json, **study):
    """Loss of each task on a grid over the plane through three adapters (e.g. two minima and a Bézier control point)."""
    from .analysis.measure import measure_plane

    settings = _settings(**study)
    _analysis(out, as_json, lambda: measure_plane(
        [adapter_a, adapter_b, adapter_c], settings, space=space, grid=grid, margin=margin, curve=curve, marks=mark),
        surface3d=surface, inputs=_inputs([adapter_a, adapter_b, adapter_c, *mark], settings.data, settings.base))


@cli.command()
@click.argument("adapter")
@click.option("--dimensions", type=click.IntRange(1, 2), default=2, show_default=True, help="1D curve or 2D surface")
@click.option("--grid", type=click.IntRange(min=2), default=21, show_default=True, help="points per axis")
@click.option("--span", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="α, β run over [−span, span]")
@click.option("--surface", is_flag=True, help="HTML as a 3D surface instead of a contour map")
@click.option("--out", default="results", show_default=True, help="folder for landscape.json, landscape.png, landscape.html")
@_study_options("landscape")
def landscape(adapter, dimensions, grid, span, surface, out, as_json, **study):
    """Loss around ADAPTER along filter-normalised random directions (Li et al., 2018), per LoRA factor; --seed picks them."""
    from .analysis.measure import measure_landscape

    settings = _settings(**study)
    _analysis(out, as_json, lambda: measure_landscape(adapter, settings, dimensions=dimensions, grid=grid, span=span),
              surface3d=surface, inputs=_inputs(adapter, settings.data, settings.base))


@cli.command()
@click.argument("adapters", nargs=-1, required=True)
@click.option("--top-k", type=POSITIVE, default=5, show_default=True, help="how many of the largest eigenvalues")
@click.option("--trace/--no-trace", default=True, show_default=True, help="a Hutchinson estimate of the Hessian's trace")
@click.option("--probes", type=click.IntRange(min=2), default=20, show_default=True,
              help="Rademacher probes of the trace estimate (--seed draws them)")
@click.option("--ggn/--no-ggn", default=True, show_default=True, help="also the Gauss-Newton matrix's top eigenvalues")
@click.option("--tol", type=float, default=None, help="relative accuracy of the eigenvalues (ARPACK's stop) [1e-5; "
              "machine precision in float64]; 1e-3 needs a fraction of the Hessian-vector products on a large base")
@click.option("--along", is_flag=True, help="the two ADAPTERS are the ends of a straight path: measure its points")
@click.option("--points", type=click.IntRange(min=2), default=5, show_default=True, help="with --along: evenly spaced t")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True,
              help="with --along: the path's space")
@click.option("--out", default="results", show_default=True, help="folder for curvature.json, curvature.png, curvature.html")
@_study_options("landscape", skip=("accuracy",))
def curvature(adapters, top_k, trace, probes, ggn, tol, along, points, space, out, as_json, **study):
    """Largest Hessian and Gauss-Newton eigenvalues of each task's loss with respect to the LoRA factors of each
    ADAPTER, and the Hessian's trace (Hutchinson); a run folder gives each task's minimum on its own task."""
    import shutil
    from pathlib import Path

    from .analysis.curvature import CurvatureConfig, measure_curvature
    from .outdir import KEPT
    from .ranks import main_process

    _refuse_idle(("--points", _given("points") and not along, "without --along"),
                 ("--space", _given("space") and not along, "without --along"),
                 ("--probes", _given("probes") and not trace, "with --no-trace"))
    settings = _settings(**study)
    _analysis(out, as_json, lambda: measure_curvature(
        list(adapters), settings, CurvatureConfig(top_k, ggn, probes if trace else None, tol), along=along, space=space,
        points=points, keep=str(Path(out) / KEPT)), inputs=_inputs(list(adapters), settings.data, settings.base))
    if main_process():
        shutil.rmtree(Path(out) / KEPT, ignore_errors=True)  # the result is written: its kept points go


@cli.command()
@click.argument("sequence")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True)
@click.option("--points", type=click.IntRange(min=2), default=11, show_default=True,
              help="evenly spaced t per path, endpoints included")
@click.option("--pairs", type=click.Choice(["all", "consecutive"]), default="all", show_default=True)
@click.option("--bezier", is_flag=True, help="also fit a quadratic Bézier curve for every pair and measure along it "
                                             "(--curve bezier)")
@click.option("--curve", "curve_kind", type=PathKinds(curved=True), default=None,
              help="also fit a curve of this kind for every pair and measure along it")
@click.option("--curve-steps", type=POSITIVE, default=200, show_default=True, help="optimizer steps per fitted curve")
@click.option("--measure", type=click.Choice(["barrier", "mean", "max"]), default="barrier", show_default=True,
              help="per-task barrier drawn in the heatmaps (all three are in the JSON)")
@click.option("--out", default="results", show_default=True, help="folder for sweep.json, sweep.png, sweep.html")
@click.option("--curves-out", default=None,
              help="with --bezier or --curve: also save each fitted curve as CURVES_OUT/A-B/ (for modeconn plane)")
@_study_options("sweep", skip=("data", "prompt_field", "answer_field", "manifest"),
                reword={"base": ("--base", "base model (default: the manifest's)")})
def sweep(sequence, space, points, pairs, bezier, curve_kind, curve_steps, measure, out, curves_out, as_json, **study):
    """Barriers between every pair of task adapters in SEQUENCE (a sequence.json or its folder), as matrices and heatmaps."""
    import shutil
    from contextlib import nullcontext
    from pathlib import Path

    from .analysis.bezier import CurveConfig
    from .analysis.measure import sweep_sequence
    from .errors import OutputError
    from .outdir import KEPT, check_apart, check_before_work, claim
    from .ranks import main_process

    if bezier and curve_kind not in (None, "bezier"):
        from .errors import ConfigError

        raise ConfigError(f"--bezier means --curve bezier; give --curve {curve_kind} alone")
    bezier = bezier or curve_kind is not None
    _refuse_idle(("--curves-out", curves_out is not None and not bezier, "without --bezier (no curves are fitted)"),
                 ("--curve-steps", _given("curve_steps") and not bezier, "without --bezier (no curves are fitted)"))
    settings = _settings(**study)
    inputs = _inputs(sequence, settings.base)
    if curves_out:  # claimed like --out, both before any work; neither may hold the other
        try:
            check_apart(out, [curves_out])
        except OutputError:
            raise OutputError(f"--out {out} and --curves-out {curves_out} overlap; give each a folder of its own") from None
        check_before_work(out, inputs=inputs)
    with claim(curves_out, "curves", inputs=[*inputs, out]) if curves_out else nullcontext():
        _analysis(out, as_json, lambda: sweep_sequence(
            sequence, settings, space=space, points=points, pairs=pairs,
            curve=CurveConfig(steps=curve_steps, seed=settings.seed, max_length=settings.max_length,
                              path=curve_kind or "bezier") if bezier else None,
            curves_out=curves_out, keep=str(Path(out) / KEPT)), measure=measure,
            inputs=[*inputs, *([curves_out] if curves_out else [])])
    if main_process():
        shutil.rmtree(Path(out) / KEPT, ignore_errors=True)  # the sweep is written: its kept pairs go


@cli.command()
@click.argument("result_json")
@click.option("--out", default=None, help="folder for the pictures [default: the JSON's folder]")
@click.option("--surface", is_flag=True, help="planes and landscapes: HTML as 3D surfaces")
@click.option("--measure", type=click.Choice(["barrier", "mean", "max"]), default="barrier", show_default=True,
              help="sweeps: the per-task barrier drawn in the heatmaps")
def plot(result_json, out, surface, measure):
    """Redraw the PNG and HTML of any result JSON (barrier, plane, landscape, sweep, a run's metrics.json) without
    recomputing; prints the settings that made it."""
    from pathlib import Path

    from .files import write_all
    from .outdir import claim
    from .plots.kinds import load_result, writers
    from .provenance import settings_line

    result = load_result(result_json)
    pictures = {k: v for k, v in writers(result, surface3d=surface, measure=measure).items() if not k.endswith(".json")}
    # beside its JSON by default (a folder of the user's: only the pictures' own names must be modeconn's, and are
    # written); else a result folder apart from the JSON
    beside = out is None or Path(out).resolve() == Path(result_json).resolve().parent
    dest = Path(result_json).parent if beside else Path(out)
    if beside and Path(result_json).name in pictures:
        from .errors import OutputError

        raise OutputError(f"{result_json}: drawing it beside itself would replace it; give --out")
    from . import checks

    checks.free_space(dest, RESULT_BYTES, "drawing the result (PNG and self-contained HTML)")
    with claim(dest, owned=list(pictures), shared=True) if beside else claim(dest, inputs=[result_json]):
        files = write_all(dest, pictures)
    made_by = getattr(result, "made_by", None)
    if made_by:
        click.echo(f"made by: {made_by.get('command', '')}\nsettings: {settings_line(made_by)}")
    click.echo("wrote " + ", ".join(str(f) for f in files))


@cli.command()
@click.argument("adapter_a")
@click.argument("adapter_b")
@click.option("--out", required=True, help="folder for the control point: a peft adapter plus curve.json")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True)
@click.option("--path", "path_kind", type=PathKinds(curved=True), default="bezier", show_default=True,
              help="the kind of curve (several free points: one adapter folder each, control_1/, control_2/, …)")
@click.option("--steps", type=POSITIVE, default=200, show_default=True)
@click.option("--points-per-step", type=POSITIVE, default=4, show_default=True, help="t values per step, scored in one forward pass")
@click.option("--batch-size", type=POSITIVE, default=8, show_default=True)
@click.option("--lr", type=float, default=1e-2, show_default=True)
@click.option("--limit", "limit_alias", type=POSITIVE, default=None, hidden=True)  # the old spelling of --train-limit
@_study_options("curve", skip=("split", "device_map", "max_batch_tokens", "accuracy"), as_json=False, reword={
    "data": ("--data", "training data, repeatable, adding to the manifest's tasks: a data file or a task folder (as "
                       "for barrier)"),
    "manifest": ("--no-manifest-data", "train only on the --data tasks"),
    "limit": ("--train-limit", "training examples per task (--limit, its old spelling, still works)")})
def curve(adapter_a, adapter_b, out, space, path_kind, steps, points_per_step, batch_size, lr, limit_alias, **study):
    """Fit a curve between ADAPTER_A and ADAPTER_B (Garipov et al., 2018; a quadratic Bézier by default); save its
    control point(s).

    Measure along it with: modeconn barrier A B --path KIND --control OUT --space SPACE
    """
    from .analysis.bezier import CurveConfig
    from .analysis.measure import fit_curve
    from .outdir import claim

    from .errors import ConfigError

    if limit_alias is not None:
        if study["limit"] is not None:
            raise ConfigError("--limit is the old spelling of --train-limit; give one of them")
        study["limit"] = limit_alias
    settings = _settings(**study)
    config = CurveConfig(steps=steps, points_per_step=points_per_step, batch_size=batch_size, lr=lr, seed=settings.seed,
                         max_length=settings.max_length, path=path_kind)
    with claim(out, "curve", inputs=_inputs(adapter_a, adapter_b, settings.data, settings.base)) as claimed:
        fit = fit_curve([adapter_a, adapter_b], settings, space=space, config=config)
        fit.save(claimed.root)
    out_dir = claimed.root
    click.echo(f"fitted in {space} space: training loss {fit.history[0]:.4f} → {sum(fit.history[-10:]) / len(fit.history[-10:]):.4f} "
               f"(mean of the last 10 steps); control point saved to {out_dir}")


def _train_config_options(f):
    """One flag per TrainConfig field, its help and default taken from the field; None means 'not given'."""
    from dataclasses import MISSING, fields

    from .continual.config import TrainConfig

    from .continual.config import DTYPES, OPTIMIZERS, SCHEDULERS
    from .continual.old_names import PRECISION_VALUES

    f = click.option("--precision", "precision", type=click.Choice(list(PRECISION_VALUES)), default=None, hidden=True,
                     help="the old name of --dtype (fp32, bf16, fp16, auto)")(f)
    choices = {"dtype": DTYPES, "lr_scheduler": SCHEDULERS, "schedule_scope": ("task", "stream"),
               "optimizer": OPTIMIZERS}
    for spec in reversed(fields(TrainConfig)):
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        flag = f"--{spec.name.replace('_', '-')}"
        listed = spec.name == "target_modules"
        help_text = spec.metadata["help"] + (" (comma-separated)" if listed else "") + ("" if default is None else f" [{default}]")
        if spec.type == "bool":
            f = click.option(f"{flag}/--no-{flag[2:]}", spec.name, default=None, help=help_text)(f)
            continue
        kind = click.Choice(choices[spec.name]) if spec.name in choices else \
            {"int": int, "float": float, "int | None": int}.get(spec.type, str)
        f = click.option(flag, spec.name, type=kind, default=None, help=help_text)(f)
    return f


def _method_options(f):
    """One flag per method option, from the methods' own declarations (``continual.methods.registry.declared_options``)."""
    from .continual.methods.registry import declared_options
    from .continual.old_names import OLD_KEYS

    for old, new in OLD_KEYS.items():  # the old spellings of renamed method options, hidden
        if new in declared_options():
            opt = declared_options()[new]
            f = click.option(f"--{old}", old, type=click.Choice(list(opt.choices)) if opt.choices else opt.type,
                             default=None, hidden=True, help=f"the old name of --{opt.flag}")(f)
    for key, opt in reversed(declared_options().items()):
        defaults = sorted(set(map(str, opt.defaults.values())))
        shown = defaults[0] if len(defaults) == 1 else ", ".join(f"{m} {d}" for m, d in opt.defaults.items())
        kind = click.Choice(list(opt.choices)) if opt.choices else opt.type
        help_text = f"{' / '.join(opt.defaults)}: {opt.help} [{shown}]"
        if opt.type is bool:
            f = click.option(f"--{opt.flag}/--no-{opt.flag}", key, default=None, help=help_text)(f)
            continue
        f = click.option(f"--{opt.flag}", key, type=kind, default=None, help=help_text)(f)
    return f


def _protocols():
    from .continual.protocols import PROTOCOLS

    return PROTOCOLS


def _request(name: str):
    """A name of the training request's module: the train flags' defaults and choices are read there."""
    from .continual import request

    return getattr(request, name)


def _method_names() -> str:
    from .continual.methods.registry import METHODS

    return ", ".join(METHODS)


@cli.command()
@click.option("--method", default=None, help=f"{_method_names()}  [default: {_request('DEFAULT_METHOD')}]")
@click.option("--protocol", default=None, type=click.Choice(list(_protocols())),
              help="a named setting (task order, metrics, test rows, training settings) that your other options "
                   "override: trace (TRACE + MedMCQA + JEC-QA as LLMCL lays them out, the I-LoRA paper's setting), "
                   "standard-cl (O-LoRA's CL_Benchmark as it lays it out) or embedded (the embedded stream)")
@click.option("--tasks", default=None,
              help="a sequence.json (or its folder), or a folder of task folders (TRACE/LLMCL format; standard-cl: "
                   "the folder holding CL_Benchmark/); required, here or in --config")
@click.option("--order", default=None, help="comma-separated task names: the training order (default: the manifest's, "
                                            "or sorted); with --protocol standard-cl also O-LoRA's order1, order2, "
                                            "order3 or long [order1]")
@click.option("--out", required=True, help="run folder: one adapter per task, sequence.json, metrics.json")
@click.option("--name", default=None, help="the run's name in sequence.json [the --out folder's name]; "
                                           "NAME-seedN groups runs for modeconn compare")
@click.option("--config", "config_file", default=None, help="YAML or JSON file of the options below (flags win)")
@click.option("--base", default=None, help="base model (default: the manifest's, else 'tiny-llama')")
@_train_config_options
@_method_options
@click.option("--eval-split", type=click.Choice(list(_request("EVAL_SPLITS"))), default=None,
              help=_request("help_of")("eval_split"))
@click.option("--eval-limit", type=int, default=None, help=_request("help_of")("eval_limit"))
@click.option("--eval-rows", type=click.Choice(list(_request("EVAL_ROWS"))), default=None,
              help=_request("help_of")("eval_rows"))
@click.option("--prompt-field", default=None, help="the records' field holding the prompt, for every task whose "
                                                   "sequence.json entry names none [prompt; else input, instruction or question]")
@click.option("--answer-field", default=None, help="the records' field holding the answer, likewise; numbers and booleans "
                                                   "are read in JSON's spelling (3, 2.5, true) [answer; else output, response or answer]")
@click.option("--device", default=None, help=_request("help_of")("device"))
@click.option("--report-to", type=click.Choice(list(_request("TRACKERS"))), default=None,
              help=_request("help_of")("report_to"))
@click.option("--allow-pickle", is_flag=True, help="allow a base model whose weights are only pickles (*.bin)")
@click.option("--resume", is_flag=True, help="continue the interrupted run in --out (same settings), or start it")
@click.option("--stop-after-steps", type=POSITIVE, default=None,
              help="stop after this many steps, leaving a state for --resume")
@click.option("--state-every", type=click.IntRange(min=0), default=_request("STATE_EVERY"),
              help=f"save the resumable state every N optimizer steps (0: only after each task) [{_request('STATE_EVERY')}]")
def train(out, name, config_file, allow_pickle, resume, stop_after_steps, state_every, **flags):
    """Train a continual LoRA sequence; write per-task adapters, sequence.json and metrics.json (AP, BWT, FWT)."""
    from pathlib import Path

    from .continual import train_sequence
    from .continual.options import read_config_file, resolve
    from .continual.state import STATE_DIR
    from .errors import ConfigError
    from .outdir import check_apart

    out_dir = Path(out)
    request = resolve(flags, read_config_file(config_file), config_file)
    check_apart(out_dir, _inputs(config_file, flags.get("tasks"), request.base))
    if (out_dir / "sequence.json").exists() or (out_dir / "metrics.json").exists():
        raise ConfigError(f"{out_dir} holds a finished run; choose another --out (nothing was overwritten)")
    if (out_dir / STATE_DIR).exists() and not resume:
        raise ConfigError(f"{out_dir} holds an interrupted run; pass --resume to continue it, or choose another --out")
    try:
        run = train_sequence(request, out_dir, name=name, resume=resume, state_every=state_every,
                             stop_after=stop_after_steps, allow_pickle=allow_pickle)
    except KeyboardInterrupt:
        from .errors import Interrupted

        raise Interrupted(f"interrupted; run the same command with --resume to continue from the last saved state in "
                          f"{out_dir / STATE_DIR}") from None
    if not run.main_process:
        return
    if not run.complete:
        click.echo(f"stopped after {stop_after_steps} steps; run the same command with --resume to continue")
        return
    click.echo(f"{request.method.name}: {len(run.sequence.tasks)} tasks → {out_dir}")
    click.echo(run.metrics.table())


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--baseline", default="er", show_default=True, help="the group every other is paired with, by seed")
@click.option("--out", default="results", show_default=True, help="folder for compare.json, compare.png, compare.html")
@click.option("--primary", default=None, help="the one group whose paired difference from the baseline is the study's "
              "primary comparison; every other gets a Holm-adjusted p-value [default: none]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="the paired bootstrap's resampling seed")
@click.option("--json", "as_json", is_flag=True, help="print the JSON result to stdout instead of the table")
def compare(runs, baseline, out, primary, seed, as_json):
    """Compare continual runs over seeds: AP, BWT and FWT per method with 95% intervals of the mean and prediction
    intervals for one new seed, and each method's paired difference from the baseline with Holm-adjusted p-values.
    RUNS are run folders, or folders holding them; a run named NAME-seedN is grouped under NAME, any other by its
    method and options."""
    from .continual.compare import check_labels, compare as compare_runs, read_runs

    found = read_runs(list(runs))  # every record checked before the output folder is claimed
    check_labels(found, baseline, primary)
    _analysis(out, as_json, lambda: compare_runs(found, baseline, primary, seed), inputs=_inputs(runs))


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", default="report", show_default=True, help="folder for report.html, report.json and the results")
@click.option("--points", type=click.IntRange(min=2), default=11, show_default=True, help="points per path")
@click.option("--limit", type=POSITIVE, default=32, show_default=True,
              help="examples per task for the paths, the curves and the plane")
@click.option("--curves/--no-curves", default=True, show_default=True,
              help="fit a Bézier curve for every consecutive pair")
@click.option("--curve-steps", type=POSITIVE, default=100, show_default=True, help="optimizer steps per fitted curve")
@click.option("--grid", type=click.IntRange(min=2), default=9, show_default=True, help="plane points per axis")
@click.option("--baseline", default="er", show_default=True, help="comparison baseline (when among the runs)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--space", type=click.Choice(["factor", "delta", "both"]), default="factor", show_default=True,
              help="the paths' space; both: the consecutive barriers in each, one after the other (the plane: factor)")
@click.option("--accuracy/--no-accuracy", default=False, show_default=True,
              help="score the paths by accuracy too (greedy decoding, and rank classification where the tasks have "
                   "choices); off by default: decoding is the slow part")
@click.option("--curvature", "curvature_files", multiple=True, metavar="FILE",
              help="a curvature.json of one of the runs (`modeconn curvature RUN --out DIR`): a table and a plot of each "
                   "task minimum's sharpness against its forgetting; repeatable")
@_study_options("report", skip=LOADED_BY_RUNS, as_json=False)
def report(runs, out, points, limit, curves, curve_steps, grid, baseline, seed, space, accuracy, curvature_files,
           **loading):
    """The report page for any runs or task sequences: accuracy matrices, consecutive barriers (line and fitted
    curve), the plane through the largest barrier (with any slow and fast learners the runs keep marked on it), the
    method comparison, and every result's settings. Results already in OUT with the same settings are read back, not
    recomputed."""
    from dataclasses import fields
    from pathlib import Path

    from . import checks
    from .analysis.settings import StudySettings
    from .report.gather import REPORT_FILES, ReportConfig, gather, labels_of
    from .files import write_json
    from .outdir import claim
    from .report.page import write_run_report

    checks.seed("seed", seed)
    folders = [Path(r) for r in runs]
    labels = labels_of(folders)
    _settings(**loading)  # checked at the door
    defaults = {f.name: f.default for f in fields(StudySettings)}
    config = ReportConfig(points, limit, curves, curve_steps, grid=grid, seed=seed, baseline=baseline, space=space,
                          accuracy=accuracy, loading={k: v for k, v in loading.items() if v != defaults[k]})
    with claim(out, owned=[*labels, *REPORT_FILES], inputs=_inputs(runs, curvature_files)) as claimed:
        results = gather([str(f) for f in folders], claimed.root, config, curvature=curvature_files)
        write_json(claimed.root / "report.json", results.to_json())
        page = write_run_report(results)
    click.echo(f"report: {page}")


@cli.command()
@click.option("--out", default="demo_out", show_default=True, help="report folder: report.html, PNGs, JSON, the runs")
@click.option("--methods", default="seq,er,ilora", show_default=True, help="comma-separated methods to train and compare")
@click.option("--max-train", type=int, default=160, show_default=True, help="training examples per task")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--eval-limit", type=int, default=60, show_default=True, help="test examples per task for the accuracy matrices")
@click.option("--limit", type=int, default=48, show_default=True, help="examples per task for paths and curve fitting")
@click.option("--curve-steps", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out, methods, max_train, epochs, eval_limit, limit, curve_steps, seed):
    """The main job on the embedded default: train seq, er and ilora, sweep seq's consecutive barriers (linear and
    Bézier), compare the methods, and write OUT/report.html with its PNGs and JSON."""
    from .demo.config import DemoConfig
    from .demo.run import run_demo

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    config = DemoConfig(chosen, max_train, epochs, eval_limit, limit=limit, curve_steps=curve_steps, seed=seed)
    result = run_demo(out, config)
    click.echo(f"report: {result.out / 'report.html'}  ({result.seconds / 60:.1f} min)")
    for line in result.summary_lines():
        click.echo(line)


_SETTING = re.compile(r"\b([a-z][a-z_]*)=('[^']*'|\"[^\"]*\"|[^\s;,()]+)")
_LEADING = re.compile(r"^([a-z][a-z_]*)(?= must be)")


def in_flag_terms(message: str, argv: list[str]) -> str:
    """A library message names settings as ``name=value`` (``space='delta'``, ``allow_pickle=True``); say them as the
    running command's flags (``--space delta``, ``--allow-pickle``)."""
    command = next((cli.commands[a] for a in argv if a in cli.commands), None)
    flags = {p.name: max(p.opts, key=len) for p in command.params if p.opts} if command is not None else {}

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2).strip("'\"")
        if name not in flags:
            return match.group(0)
        return flags[name] if value == "True" else f"{flags[name]} {value}"

    message = _LEADING.sub(lambda m: flags.get(m.group(1), m.group(1)), message)
    return _SETTING.sub(flag, message)


def main(argv: list[str] | None = None) -> int:
    """Entry point: library errors and usage errors become one line on stderr and exit code 2."""
    from .provenance import invoked_as

    argv = list(sys.argv[1:] if argv is None else argv)
    from .errors import Interrupted

    try:
        with invoked_as(argv):
            cli.main(args=argv, prog_name="modeconn", standalone_mode=False)
    except Interrupted as exc:
        click.echo(f"modeconn: {exc}", err=True)
        return 130
    except ModeconnError as exc:
        click.echo(f"modeconn: error: {' '.join(in_flag_terms(str(exc), argv).split())}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"modeconn: error: {' '.join(exc.format_message().split())}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("modeconn: interrupted; nothing was written", err=True)
        return 130
    except Exception as exc:
        if not _disk_full(exc):
            raise
        where = next((e.filename for e in _chain(exc) if getattr(e, "filename", None)), None)
        click.echo(f"modeconn: error: the disk is full{f' (writing {where})' if where else ''}; nothing half-written was "
                   "kept; free some space, or choose another --out, and run the command again", err=True)
        return 2
    return 0


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _disk_full(exc: BaseException) -> bool:
    """Whether the error (or one it came from) is a full disk or quota: OSError ENOSPC/EDQUOT, or the same error as
    safetensors' and torch's writers word it."""
    import errno

    return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
               or any(m in str(e) for m in ("No space left on device", "StorageFull", "Disk quota exceeded"))
               for e in _chain(exc))


if __name__ == "__main__":
    sys.exit(main())
