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
