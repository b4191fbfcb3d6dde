"""Helpers that turn results into Dagster UI metadata: tables and PNG plots in markdown.

Dagster has no image metadata type, so plots are embedded as base64 PNG data URIs inside
markdown (see REFERENCE.md). Plots are downsampled so metadata stays small.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MAX_PLOT_POINTS = 2000


def figure_markdown(fig: Any, title: str = "") -> dg.MetadataValue:
    """Render a matplotlib figure as a markdown image (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    heading = f"**{title}**\n\n" if title else ""
    return dg.MetadataValue.md(f"{heading}![{title or 'plot'}](data:image/png;base64,{data})")


def downsample(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every k-th point so a plot has at most MAX_PLOT_POINTS points."""
    step = max(1, len(x) // MAX_PLOT_POINTS)
    return (x[::step], *(y[::step] for y in ys))


def line_plot(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, ylabel: str = ""
) -> dg.MetadataValue:
    """One line per named (x_ms, y) series, x in epoch ms shown as dates."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for name, (x, y) in series.items():
        xs, ys = downsample(np.asarray(x), np.asarray(y))
        ax.plot(xs.astype("datetime64[ms]"), ys, label=name, linewidth=0.9)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return figure_markdown(fig, title)


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> dg.MetadataValue:
    """A Dagster table from dict rows (column types inferred: int, float, bool or text)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    schema_cols = []
    for col in cols:
        sample = next((r[col] for r in rows if r.get(col) is not None), "")
        kind = (
            "bool"
            if isinstance(sample, bool)
            else "int"
            if isinstance(sample, int | np.integer)
            else "float"
            if isinstance(sample, float | np.floating)
            else "string"
        )
        schema_cols.append(dg.TableColumn(col, kind))
    records = [dg.TableRecord({c: _plain(r.get(c)) for c in cols}) for r in rows]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=schema_cols))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None:
        return ""
    return value


def equity_drawdown_plot(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str
) -> dg.MetadataValue:
    """Equity curves (top) and their drawdown from the running peak in % (bottom), shared x."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 4.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for name, (x, y) in series.items():
        values = np.asarray(y, dtype=float)
        if len(values) == 0:
            continue
        drawdown = 100.0 * (values / np.maximum.accumulate(values) - 1.0)
        xs, ys, dds = downsample(np.asarray(x), values, drawdown)
        when = xs.astype("datetime64[ms]")
        top.plot(when, ys, label=name, linewidth=0.9)
        bottom.plot(when, dds, linewidth=0.8)
    top.set_ylabel("equity")
    bottom.set_ylabel("drawdown %")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    if len(series) > 1:
        top.legend(loc="best", fontsize=7)
    fig.autofmt_xdate()
    return figure_markdown(fig, title)
