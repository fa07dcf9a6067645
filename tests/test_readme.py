"""The README's CLI reference is the CLI's own help, so it cannot drift."""
from pathlib import Path

from modeconn.cli_reference import reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_cli_reference_matches_the_help():
    text = README.read_text()
    start, end = "<!-- cli-reference:start -->\n", "<!-- cli-reference:end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    assert block == reference(), "regenerate with: python scripts/update_readme.py"
