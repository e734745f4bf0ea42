"""Figures of a run, each returned as a PNG data URI drawn by matplotlib's Agg renderer.

The HTML report embeds them so the page needs no other file. matplotlib is
imported inside the functions: only ``report --format html`` pays for it.
"""

from __future__ import annotations

import base64
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oodbench.selection import VALIDATION

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 90
CURVE_PARTS = {
    "train": {("train", "main")},
    "val": set(VALIDATION),
    "test": {("test", "main")},
}
"""The splits behind each line of a training curve: what the model fits, what ``val`` selects on, what is reported."""
CURVE_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:red"}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def data_uri(figure: Figure) -> str:
    """The figure as ``data:image/png;base64,...``, ready for an ``<img src>``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _ceiling(axes: Axes, ceiling: float | None) -> None:
    if ceiling is not None:
        axes.axhline(ceiling * 100, color="gray", linestyle="--", linewidth=1, label=f"ceiling {ceiling:.0%}")


def curve_series(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(epoch, mean accuracy in %) per line of ``CURVE_PARTS``, from one training's rows of the curves table."""
    by_line: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for line, parts in CURVE_PARTS.items():
            if (row["role"], row["part"]) in parts:
                by_line[line][row["epoch"]].append(row["acc"] * 100)
    return {line: [(epoch, statistics.fmean(accs)) for epoch, accs in sorted(by_line[line].items())]
            for line in CURVE_PARTS if line in by_line}


def training_curves(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Train, validation and test accuracy per epoch of one training run."""
    figure = _figure(4.2, 2.8)
    axes = figure.add_subplot()
    for line, points in curve_series(rows).items():
        epochs, accs = zip(*points)
        axes.plot(epochs, accs, marker="o", markersize=3, color=CURVE_COLORS[line], label=line)
    _ceiling(axes, next((r["ceiling"] for r in rows if r["role"] == "test"), None))
    axes.set(title=title, xlabel="epoch", ylabel="accuracy %", ylim=(0, 100))
    axes.title.set_fontsize(8)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=7, loc="lower left")
    return data_uri(figure)


def _row_label(row: dict[str, Any]) -> str:
    return row["algorithm"] + (f"\n{row['hparams']}" if row["hparams"] else "")


def accuracy_bars(summary: Sequence[dict[str, Any]]) -> str:
    """Test and worst-group accuracy (mean, standard error as error bar) of every method, one panel per
    (dataset, backbone, target, test environment)."""
    panels: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in summary:
        panels[(row["dataset"], row["backbone"], row["target"], row["env"])].append(row)
    columns = min(2, len(panels))
    figure = _figure(5.5 * columns, 3.2 * math.ceil(len(panels) / columns))
    width = 0.4
    for index, ((dataset, backbone, target, env), rows) in enumerate(sorted(panels.items()), 1):
        axes = figure.add_subplot(math.ceil(len(panels) / columns), columns, index)
        xs = range(len(rows))
        for offset, metric, label in ((-width / 2, "acc", "test acc"), (width / 2, "worst_group_acc", "worst group")):
            axes.bar([x + offset for x in xs], [r[metric].mean * 100 for r in rows], width,
                     yerr=[r[metric].se * 100 for r in rows], capsize=2, label=label)
        _ceiling(axes, rows[0].get("ceiling"))
        axes.set_xticks(list(xs), [_row_label(r) for r in rows], rotation=30, ha="right", fontsize=7)
        axes.set_xlim(-0.75, max(len(rows), 2) - 0.25)  # one method gets a bar pair, not the whole panel
        axes.set(title=f"{dataset} · {backbone} · {target} · {env}", ylabel="accuracy %", ylim=(0, 100))
        axes.title.set_fontsize(9)
        axes.legend(fontsize=7)
    return data_uri(figure)


def _log_axis(axes: Axes) -> None:
    """A logarithmic x axis labelled at the decades only (minor labels overlap in a small figure)."""
    from matplotlib.ticker import NullFormatter

    axes.set_xscale("log")
    axes.xaxis.set_minor_formatter(NullFormatter())


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _against_value(axes: Axes, values: Sequence[Any], order: Sequence[str], key: str, title: str, log_ratio: float,
                   legend_size: int) -> str:
    """The shared finish of a plot of test accuracy against one hyperparameter: a log axis when the numeric
    values span ``log_ratio``, one tick per value (in ``order``) when they are not numbers, labels, legend."""
    numeric = _numeric(values)
    if numeric and all(v > 0 for v in values) and max(values) / min(values) >= log_ratio:
        _log_axis(axes)
    if not numeric:
        axes.set_xticks(list(range(len(order))), order, fontsize=7)
    axes.set(title=title, xlabel=key, ylabel="test accuracy %", ylim=(0, 100))
    axes.title.set_fontsize(8)
    axes.legend(fontsize=legend_size)
    return data_uri(axes.figure)


def sweep_plot(rows: Sequence[dict[str, Any]], key: str, title: str) -> str:
    """Test accuracy against the swept value of ``key``: one line per setting of the other swept keys."""
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        rest = ", ".join(f"{n}={v}" for n, v in row["swept"].items() if n != key)
        lines[rest].append(row)
    values = {json.dumps(row["swept"][key]): row["swept"][key] for row in rows}
    numeric = _numeric(list(values.values()))
    order = sorted(values, key=lambda text: values[text] if numeric else text)
    position = {text: (values[text] if numeric else i) for i, text in enumerate(order)}
    figure = _figure(4.2, 2.8)
    axes = figure.add_subplot()
    for rest, members in sorted(lines.items()):
        xs = sorted(((position[json.dumps(r["swept"][key])], r) for r in members), key=lambda pair: pair[0])
        axes.errorbar([x for x, _ in xs], [r["acc"].mean * 100 for _, r in xs],
                      yerr=[r["acc"].se * 100 for _, r in xs], marker="o", markersize=3, capsize=2,
                      label=rest or "test acc")
    _ceiling(axes, rows[0].get("ceiling"))
    return _against_value(axes, list(values.values()), order, key, title, log_ratio=100, legend_size=7)


RULE_MARKERS = {"val": ("s", "tab:orange"), "oracle": ("D", "tab:red"), "oracle_epoch": ("^", "tab:purple"),
                "last": ("v", "tab:green")}


def search_plot(points: Sequence[tuple[Any, float, int]], marks: dict[str, Sequence[tuple[Any, float]]], key: str,
                title: str) -> str:
    """Test accuracy of every (configuration, trial) against ``key``, and, marked, what each rule chose.

    ``points`` are (value, accuracy, trial); ``marks`` per rule (value, accuracy)."""
    figure = _figure(4.2, 2.8)
    axes = figure.add_subplot()
    values = [v for v, _, _ in points]
    numeric = _numeric(values)
    order = sorted({json.dumps(v) for v in values})
    where = (lambda v: v) if numeric else (lambda v: order.index(json.dumps(v)))
    axes.scatter([where(v) for v, _, _ in points], [a * 100 for _, a, _ in points], s=12, color="tab:gray",
                 alpha=0.6, label="configuration × trial")
    for rule, chosen in marks.items():
        marker, color = RULE_MARKERS.get(rule, ("o", "black"))
        axes.scatter([where(v) for v, _ in chosen], [a * 100 for _, a in chosen], s=40, marker=marker,
                     facecolors="none", edgecolors=color, linewidths=1.2, label=f"chosen by {rule}")
    return _against_value(axes, values, order, key, title, log_ratio=20, legend_size=6)


TIME_UNITS = ((31_536_000, "y"), (2_592_000, "mo"), (86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))


def time_label(seconds: float) -> str:
    """1 s, 1 h, 30 d, 1 y: the largest unit the time fills at least once."""
    for size, unit in TIME_UNITS:
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def time_plot(rows: Sequence[dict[str, Any]], key: str, title: str) -> str:
    """Test accuracy (solid) and worst-group accuracy (dashed) against the time since programming ``key``, one
    colour per method (and per setting of any other swept key), ± the standard error over trials."""
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        rest = ", ".join(f"{n}={v}" for n, v in row["swept"].items() if n != key)
        lines[row["algorithm"] + (f" ({rest})" if rest else "")].append(row)
    figure = _figure(4.8, 3.0)
    axes = figure.add_subplot()
    for label, members in sorted(lines.items()):
        members = sorted(members, key=lambda r: r["swept"][key])
        times = [r["swept"][key] for r in members]
        color = None  # the worst-group line takes the colour the accuracy line was given
        for metric, style, name in (("acc", "-", "acc"), ("worst_group_acc", "--", "worst group")):
            drawn = axes.errorbar(times, [r[metric].mean * 100 for r in members],
                                  yerr=[r[metric].se * 100 for r in members], linestyle=style, marker="o",
                                  markersize=3, capsize=2, color=color, label=f"{label} {name}")
            color = drawn.lines[0].get_color()
    values = sorted({r["swept"][key] for r in rows})
    if min(values) > 0 and max(values) / min(values) >= 10:
        _log_axis(axes)
    axes.set_xticks(values, [time_label(v) for v in values], fontsize=7)
    _ceiling(axes, rows[0].get("ceiling"))
    axes.set(title=title, xlabel="time since programming", ylabel="accuracy %", ylim=(0, 100))
    axes.title.set_fontsize(8)
    axes.legend(fontsize=6)
    return data_uri(figure)
