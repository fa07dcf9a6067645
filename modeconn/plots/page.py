"""One HTML page that gathers a study's figures: each section is a heading, a few sentences saying what the figure
shows, the interactive plotly figure, and a link to its PNG. plotly.js is inlined once, so the page opens offline."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from .style import CAPTION

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
p { max-width: 62em; } table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; } .files { font-family: monospace; font-size: 0.9em; }
.note { color: #555; font-size: 0.92em; }
.wide { overflow-x: auto; } .figure > div { min-width: 720px; }
@media (max-width: 600px) { body { margin: 1em auto; padding: 0 0.7em; } h1 { font-size: 1.3em; } }
"""


@dataclass
class Section:
    title: str
    text: str  # what the figure shows, in plain sentences (HTML-escaped when written)
    figure: object = None  # a plotly figure
    files: list[str] = field(default_factory=list)  # result files beside the report, linked under the figure
    settings: str = ""  # what made the figure (provenance.settings_line of its result)
    table: str = ""  # an HTML table (``table_html``) shown after the text


def table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"  # scrolls sideways on a phone


def render(title: str, intro: str, sections: list[Section], summary_table: str = "", footer: str = "") -> str:
    """The page as one string: ``intro`` and ``footer`` are plain text, ``summary_table`` is HTML (``table_html``)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             *(f"<p>{html.escape(p)}</p>" for p in intro.split("\n\n") if p.strip()), summary_table]
    first = True
    for k, section in enumerate(sections):
        parts += [f"<h2>{html.escape(section.title)}</h2>",
                  *(f"<p>{html.escape(p)}</p>" for p in section.text.split("\n\n") if p.strip()), section.table]
        if section.figure is not None:
            section.figure.update_layout(width=None, autosize=True)  # the page's width, not the standalone page's
            if section.settings:  # printed under the figure in the page's own type: the figure's small copy goes
                section.figure.layout.annotations = [a for a in section.figure.layout.annotations if a.name != CAPTION]
            parts.append("<div class='wide figure'>" + section.figure.to_html(  # at least 720 px: scrolls on a phone
                full_html=False, include_plotlyjs=first, default_width="100%",
                div_id=f"figure-{k}") + "</div>")  # fixed ids: the same results give the same page
            first = False
        if section.settings:
            parts.append(f"<p class='note'>settings: {html.escape(section.settings)}</p>")
        if section.files:
            links = " · ".join(f"<a href='{html.escape(f)}'>{html.escape(f)}</a>" for f in section.files)
            parts.append(f"<p class='files'>{links}</p>")
    if footer:
        parts.append(f"<p class='note'>{html.escape(footer)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out: str | Path, page: str) -> Path:
    """Write the page all-or-nothing (``files.atomic_write``)."""
    from ..files import atomic_write

    return atomic_write(out, page)
