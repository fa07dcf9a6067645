"""Rewrite the README's CLI reference block from the commands' own help."""
from pathlib import Path

from modeconn.cli_reference import reference

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
start, end = "<!-- cli-reference:start -->\n", "<!-- cli-reference:end -->"
head, rest = text.split(start)
readme.write_text(head + start + reference() + end + rest.split(end, 1)[1])
