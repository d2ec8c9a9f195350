"""The delta tables' Markdown (``deltas.md``, ``eval_deltas.md``) as a static HTML page, so Snakemake's
report shows them inline (it shows HTML in place; CSV and Markdown items are only downloads).

Covers the subset :func:`hi4dfix.tables.delta_markdown` writes: ``##`` headings, ``**bold**`` and ```code```,
pipe tables, ``-`` lists and paragraphs. Text is escaped; no scripts (the report shows items in an iframe).
"""

from __future__ import annotations

import html
import os
import re

from hi4dfix.io import write_text

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1rem 1.5rem; color: #1f2933; }
table { border-collapse: collapse; margin: 0.3rem 0 0.8rem; font-size: 0.88rem; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e4e7eb; white-space: nowrap; }
th { background: #f0f4f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.improved { color: #2e7d32; } td.worse { color: #c62828; } td.inconclusive { color: #757575; }
p, li { max-width: 60rem; line-height: 1.4; }
"""


def _inline(text: str) -> str:
    escaped = html.escape(text.replace("\\|", "|"))
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _cells(line: str) -> list[str]:
    # split on pipes that the Markdown did not escape
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _table(lines: list[str]) -> str:
    header, align, *body = lines
    right = [cell.endswith(":") for cell in _cells(align)]
    head = "".join(f"<th>{_inline(cell)}</th>" for cell in _cells(header))
    rows = []
    for line in body:
        tds = []
        for cell, is_num in zip(_cells(line), right):
            classes = ["num"] if is_num else []
            if cell in ("improved", "worse", "inconclusive"):
                classes.append(cell)
            attr = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f"<td{attr}>{_inline(cell)}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def markdown_html(markdown: str, title: str) -> str:
    """A standalone HTML page of ``markdown`` (the subset of the module doc)."""
    parts: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            parts.append(_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            parts.append(f"<ul>{''.join(items)}</ul>")
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            parts.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        else:
            parts.append(f"<p>{_inline(line)}</p>")
            i += 1
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_markdown_html(markdown: str, path: str | os.PathLike, title: str) -> None:
    write_text(path, markdown_html(markdown, title))
