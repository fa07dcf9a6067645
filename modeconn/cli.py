"""The ``modeconn`` command: parse, call the library, print a table, write files. Bad input: one line, exit 2."""
from __future__ import annotations

import sys
from functools import partial

import click

from .errors import ModeconnError


def _eval_config(max_batch_tokens: int, accuracy: bool):
    from .evaluate import EvalConfig

    return EvalConfig(max_batch_tokens=max_batch_tokens, accuracy=accuracy)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="modeconn")
def cli():
    """Mode connectivity and forgetting in continual LoRA fine-tuning."""


@cli.command()
@click.argument("adapter_a")
@click.argument("adapter_b")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True,
              help="interpolate the A and B factors, or the merged updates ΔW = B·A (exact, rank r1+r2)")
@click.option("--points", type=int, default=11, show_default=True, help="evenly spaced t in [0, 1], endpoints included")
@click.option("--path", "path_kind", type=click.Choice(["linear", "bezier"]), default="linear", show_default=True)
@click.option("--control", default=None, help="control-point adapter of a quadratic Bézier path (with --path bezier)")
@click.option("--data", multiple=True, metavar="[NAME=]PATH",
              help="a data file or task folder to score (repeatable); adds to the tasks named in sequence.json")
@click.option("--no-manifest-data", is_flag=True, help="score only the --data tasks, not the adapters' own tasks")
@click.option("--split", type=click.Choice(["train", "eval", "test"]), default="eval", show_default=True)
@click.option("--limit", type=int, default=None, help="use at most this many examples per task")
@click.option("--base", default=None, help="base model: a folder, a hub id, 'tiny-llama' or 'smollm2-135m' (default: from the checkpoints)")
@click.option("--out", default="results", show_default=True, help="folder for barrier.json, barrier.png, barrier.html")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--max-batch-tokens", type=int, default=16384, show_default=True,
              help="padded tokens per forward pass (path points × examples × length)")
@click.option("--no-accuracy", is_flag=True, help="skip greedy decoding; report loss only")
@click.option("--allow-pickle", is_flag=True, help="allow adapter_model.bin (loaded with torch.load(weights_only=True))")
@click.option("--json", "as_json", is_flag=True, help="print the JSON result to stdout instead of the table")
def barrier(adapter_a, adapter_b, space, points, path_kind, control, data, no_manifest_data, split, limit, base, out, seed,
            device, max_batch_tokens, no_accuracy, allow_pickle, as_json):
    """Loss and accuracy along the path from ADAPTER_A to ADAPTER_B, per task, and the loss barrier."""
    from .analysis import measure_barrier
    from .outputs import write_all
    from .paths import uniform_ts
    from .plot import barrier_html, barrier_png

    uniform_ts(points)
    if max_batch_tokens < 1:
        raise click.BadParameter("must be at least 1", param_hint="--max-batch-tokens")
    if limit is not None and limit < 1:
        raise click.BadParameter("must be at least 1", param_hint="--limit")
    result = measure_barrier(adapter_a, adapter_b, list(data), space, points, path_kind, control, base, split, limit,
                             not no_manifest_data, seed, device, allow_pickle, _eval_config(max_batch_tokens, not no_accuracy))
    files = write_all(out, {
        "barrier.json": lambda p: p.write_text(result.dumps() + "\n"),
        "barrier.png": partial(barrier_png, result),
        "barrier.html": partial(barrier_html, result),
    })
    click.echo(result.dumps() if as_json else result.table())
    if not as_json:
        click.echo("\nwrote " + ", ".join(str(f) for f in files))


@cli.command()
@click.argument("adapter_a")
@click.argument("adapter_b")
@click.option("--out", required=True, help="folder for the control point: a peft adapter plus curve.json")
@click.option("--space", type=click.Choice(["factor", "delta"]), default="factor", show_default=True)
@click.option("--data", multiple=True, metavar="[NAME=]PATH", help="training data (file or task folder; repeatable); adds to the manifest's tasks")
@click.option("--no-manifest-data", is_flag=True, help="train only on the --data tasks")
@click.option("--steps", type=int, default=200, show_default=True)
@click.option("--points-per-step", type=int, default=4, show_default=True, help="t values per step, scored in one forward pass")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=1e-2, show_default=True)
@click.option("--limit", type=int, default=None, help="training examples per task")
@click.option("--base", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--allow-pickle", is_flag=True)
def curve(adapter_a, adapter_b, out, space, data, no_manifest_data, steps, points_per_step, batch_size, lr, limit, base, seed,
          device, allow_pickle):
    """Fit a quadratic Bézier curve between ADAPTER_A and ADAPTER_B (Garipov et al., 2018); save its control point.

    Measure along it with: modeconn barrier A B --path bezier --control OUT --space SPACE
    """
    from pathlib import Path

    from .adapters import CONFIG_FILE, SAFETENSORS_FILE, save_adapter
    from .analysis import fit_curve
    from .bezier import CurveConfig
    from .errors import ConfigError

    out_dir = Path(out)
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in (CONFIG_FILE, SAFETENSORS_FILE, "curve.json")) if out_dir.is_dir() else []
    if foreign or out_dir.is_file():
        raise ConfigError(f"{out_dir} holds other files; choose a new --out for the control point (nothing was overwritten)")
    config = CurveConfig(steps=steps, points_per_step=points_per_step, batch_size=batch_size, lr=lr, seed=seed)
    fit = fit_curve(adapter_a, adapter_b, list(data), space, base, limit, not no_manifest_data, device, allow_pickle, config)
    save_adapter(fit.control, out_dir)
    tmp = out_dir / "curve.json.tmp"
    tmp.write_text(fit.dumps() + "\n")
    tmp.replace(out_dir / "curve.json")
    click.echo(f"fitted in {space} space: training loss {fit.history[0]:.4f} → {sum(fit.history[-10:]) / len(fit.history[-10:]):.4f} "
               f"(mean of the last 10 steps); control point saved to {out_dir}")


@cli.command()
@click.option("--method", default=None, help="seq, er, ewc, mtl or ilora  [default: seq]")
@click.option("--tasks", required=True, help="a sequence.json (or its folder), or a folder of task folders (TRACE/LLMCL format)")
@click.option("--order", default=None, help="comma-separated task names: the training order (default: the manifest's, or sorted)")
@click.option("--out", required=True, help="run folder: one adapter per task, sequence.json, metrics.json")
@click.option("--config", "config_file", default=None, help="YAML or JSON file of the options below (flags win)")
@click.option("--base", default=None, help="base model (default: the manifest's, else 'tiny-llama')")
@click.option("--rank", type=int, default=None, help="LoRA rank [8]")
@click.option("--alpha", type=float, default=None, help="LoRA alpha [32]")
@click.option("--dropout", type=float, default=None, help="LoRA dropout [0.1]")
@click.option("--target-modules", default=None, help="comma-separated module names [q_proj,k_proj,v_proj,o_proj]")
@click.option("--lr", type=float, default=None, help="learning rate [2e-3]")
@click.option("--epochs", type=int, default=None, help="epochs per task [3]")
@click.option("--batch-size", type=int, default=None, help="examples per step [16]")
@click.option("--max-length", type=int, default=None, help="tokens per example [128]")
@click.option("--max-train", type=int, default=None, help="training examples per task (default: all)")
@click.option("--seed", type=int, default=None, help="seed [0]")
@click.option("--buffer-size", type=int, default=None, help="er / ilora: replay buffer size [500]")
@click.option("--ewc-lambda", type=float, default=None, help="ewc: penalty weight [100]")
@click.option("--gamma", type=float, default=None, help="ilora: consistency-loss weight γ [1.0]")
@click.option("--ema", type=float, default=None, help="ilora: λ_max of slow ← λ·slow + (1−λ)·fast [0.25, the reference code's]")
@click.option("--ilora-eval", type=click.Choice(["fast", "slow"]), default=None, help="ilora: adapter evaluated and saved per task [slow]")
@click.option("--ilora-variant", type=click.Choice(["paper", "reference"]), default=None,
              help="ilora: 'reference' reproduces the published code's behaviour (slow = base model, evaluate fast)")
@click.option("--consistency", type=click.Choice(["max", "mse"]), default=None,
              help="ilora: target max(fast, slow) as the reference code, or the slow hidden state (symmetric MSE)")
@click.option("--eval-split", type=click.Choice(["eval", "test"]), default="test", show_default=True)
@click.option("--eval-limit", type=int, default=None, help="examples per task for the accuracy matrix (default: all)")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (several processes: launch with accelerate)")
@click.option("--resume", is_flag=True, help="continue the interrupted run in --out (same settings), or start it")
@click.option("--stop-after-steps", type=int, default=None, help="stop after this many steps, leaving a state for --resume")
def train(method, tasks, order, out, config_file, base, device, eval_split, eval_limit, resume, stop_after_steps, **flags):
    """Train a continual LoRA sequence; write per-task adapters, sequence.json and metrics.json (AP, BWT, FWT)."""
    from pathlib import Path

    from .continual import get_method, train_sequence
    from .continual.cli_options import read_config_file, resolve, resolve_tasks
    from .continual.state import STATE_DIR
    from .errors import ConfigError
    from .models import DEFAULT_BASE

    out_dir = Path(out)
    if (out_dir / "sequence.json").exists() or (out_dir / "metrics.json").exists():
        raise ConfigError(f"{out_dir} holds a finished run; choose another --out (nothing was overwritten)")
    if (out_dir / STATE_DIR).exists() and not resume:
        raise ConfigError(f"{out_dir} holds an interrupted run; pass --resume to continue it, or choose another --out")
    file_values = read_config_file(config_file)
    method = method or file_values.get("method") or "seq"
    config, options = resolve(method, file_values, flags)
    chosen, manifest_base, task_metrics = resolve_tasks(tasks, order)
    strategy = get_method(method, **options)
    run = train_sequence(base or manifest_base or DEFAULT_BASE, chosen, strategy, config, out_dir, device=device,
                         eval_split=eval_split, eval_limit=eval_limit, resume=resume, stop_after=stop_after_steps,
                         metrics_by_task=task_metrics)
    if not run.main_process:
        return
    if not run.complete:
        click.echo(f"stopped after {stop_after_steps} steps; run the same command with --resume to continue")
        return
    click.echo(f"{method}: {len(run.sequence.tasks)} tasks → {out_dir}")
    click.echo(run.metrics.table())


def main(argv: list[str] | None = None) -> int:
    """Entry point: library errors and usage errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="modeconn", standalone_mode=False)
    except (ModeconnError, click.ClickException) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"modeconn: error: {' '.join(message.split())}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("modeconn: aborted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
