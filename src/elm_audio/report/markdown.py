"""Text written into table.md and onto the terminal stays the text it is: a front-end's name or a
class label from the MLflow store, whoever wrote it, is one cell of one row or part of one note,
never a row, a line, HTML or a code span of its own."""

from __future__ import annotations

import re

import pandas as pd

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # line breaks, tabs, a terminal's escapes
ENTITY = re.compile(r"&(?=#?\w+;)")  # an '&' that would start a character reference
BLOCK_MARK = re.compile(r"^(\s*)([#>+*-])")  # a heading, quote or list marker opening a line
# '<' opens HTML; '>' only quotes at a line's start (BLOCK_MARK), so "a > b" stays as written
ESCAPES = {"\\": "\\\\", "<": "&lt;", "|": "\\|", "`": "\\`", "](": "]\\("}
SPECIAL = re.compile("|".join(re.escape(s) for s in ESCAPES))


def one_line(text: str) -> str:
    """``text`` with its line breaks and other control characters as spaces."""
    return CONTROL.sub(" ", str(text))


def escape(text: str) -> str:
    """``text`` as Markdown that renders as the text itself, on one line: pipes cannot end a
    table cell, HTML is shown not run, backticks open no code span and brackets make no link."""
    text = ENTITY.sub("&amp;", one_line(text))
    text = SPECIAL.sub(lambda m: ESCAPES[m[0]], text)
    return BLOCK_MARK.sub(r"\1\\\2", text)


def _cell(value: object) -> object:
    return escape(value) if isinstance(value, str) else value


def table(frame: pd.DataFrame, **to_markdown) -> str:
    """``frame`` as a Markdown table (DataFrame.to_markdown's options), its text cells, column
    titles and row names escaped: one row of the frame is one row of the table."""
    return frame.map(_cell).rename(index=_cell, columns=_cell).to_markdown(**to_markdown)


def bullets(lines: list[str]) -> list[str]:
    """Notes as a Markdown list, escaped; a note indented by two spaces is a sub-item."""
    return [f"- {escape(n)}" if not n.startswith("  ") else f"  - {escape(n.strip())}" for n in lines]


def section(title: str, lines: list[str]) -> list[str]:
    """A section of table.md: its heading (``title``, the report's own words) and ``lines``."""
    return ["", f"## {title}", "", *lines]
