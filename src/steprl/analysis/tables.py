"""The comparison table as plain text (terminal), Markdown (results/ pages) or CSV rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

from steprl.analysis.summary import NUMBERS, GroupSummary

#: Column title and number format of each summary number.
COLUMNS: dict[str, tuple[str, str]] = {
    "final_success": ("final train SR", "{:.3f}"),
    "best_success": ("best train SR", "{:.3f}"),
    "heldout_success": ("held-out SR", "{:.3f}"),
    "above_s0": ("tasks >= s0", "{:.1f}"),
    "env_steps": ("env steps", "{:.0f}"),
    "step_time": ("s/step", "{:.2f}"),
    "wall_time": ("wall s", "{:.1f}"),
}
HEADERS = ["run", "n", "train SR from", *(COLUMNS[name][0] for name in NUMBERS)]


def format_value(mean: float, std: float, fmt: str) -> str:
    """'0.700 ± 0.200' (std left out when NaN, i.e. one seed); '-' when there is no value."""
    if math.isnan(mean):
        return "-"
    text = fmt.format(mean)
    return text if math.isnan(std) else f"{text} ± {fmt.format(std)}"


def table_rows(groups: Sequence[GroupSummary]) -> list[list[str]]:
    """One row of strings per group: label, n, success key, then mean ± std of every number."""
    rows = []
    for group in groups:
        cells = [group.label, str(group.size), group.success_key]
        for name in NUMBERS:
            mean, std, _ = group.stats(name)
            cells.append(format_value(mean, std, COLUMNS[name][1]))
        rows.append(cells)
    return rows


def format_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table (first column left-aligned, the others right-aligned)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width) for i, (cell, width) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def format_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table ('|' in cells escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] + ["---:"] * (len(headers) - 1)
    return "\n".join([line(headers), "|" + "|".join(align) + "|", *(line(row) for row in rows)])


def markdown_table(groups: Sequence[GroupSummary]) -> str:
    """The comparison table of `groups` in Markdown (what `compare_runs.py --markdown` writes)."""
    return format_markdown(HEADERS, table_rows(groups))


def text_table(groups: Sequence[GroupSummary]) -> str:
    """The comparison table of `groups` as aligned plain text."""
    return format_text(HEADERS, table_rows(groups))


def csv_rows(groups: Sequence[GroupSummary]) -> list[dict[str, object]]:
    """Machine-readable rows: label, n, success key, and <number>_mean / <number>_std columns."""
    out: list[dict[str, object]] = []
    for group in groups:
        row: dict[str, object] = {"label": group.label, "n": group.size, "success_key": group.success_key}
        for name in NUMBERS:
            mean, std, _ = group.stats(name)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
        out.append(row)
    return out
