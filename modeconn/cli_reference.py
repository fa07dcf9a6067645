"""The CLI reference in the README, generated from the commands' own help so that it cannot drift.

    python -m modeconn.cli_reference > /tmp/ref.md   (tests/test_readme.py checks the README holds exactly this)
"""
from __future__ import annotations

import click

from .cli import cli

WIDTH = 110


def reference() -> str:
    blocks = []
    parent = click.Context(cli, info_name="modeconn", **cli.context_settings)  # subcommands inherit its -h/--help
    for name in sorted(cli.commands):
        command = cli.commands[name]
        ctx = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
        blocks.append(f"### `modeconn {name}`\n\n```\n{command.get_help(ctx)}\n```\n")
    return "\n".join(blocks)


if __name__ == "__main__":
    print(reference(), end="")
