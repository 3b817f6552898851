"""The trend pages of a batch report: which signal goes on which axis, and the drawing.

Why a plan before the drawing: what makes a trend readable is decided by the data, not by the
plotting library: one axis per group and unit (bar and kPa, % and mol/L, um and g/h never
share one), on/off signals as lanes, constant signals in a table, and limits far from the data
kept from flattening the axis. :func:`plot_plan` makes those decisions from the recorded
samples alone, so the JSON export carries them and tests check them without reading pixels;
:func:`render` only draws the plan.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from modulecontrol.records._format import format_elapsed
from modulecontrol.units import compatible

__all__ = ["WINDOW_KINDS", "Limit", "PlotPlan", "plot_plan", "render", "tag_groups"]

OUTLIER_FACTOR = 10.0
"""Signals whose largest magnitude is within this multiple of the median magnitude of the
signals on their axis set the axis range."""
SPLIT_FACTOR = 4.0
"""Signals on one axis stay within this factor of the largest of them; a signal smaller than
that gets an axis of its own below (same unit, same panel), so a 0.4 mL/min feed is not a
flat line under a 2.4 mL/min one, nor a 30 mL totaliser under a 400 mL stock."""
OFF_AXIS_FACTOR = 3.0
"""Any other signal extends the range only if it lies within this multiple of the range's
magnitude from it; otherwise (a 100-400 bar trip limit next to 1-4 bar readings) it is drawn
where it falls inside the axis and named, with its range, as off-axis."""


class SeriesLike(Protocol):
    """What the plan needs of a recorded signal: its unit, plot group and samples."""

    unit: str
    group: str | None
    t: NDArray[np.float64]
    v: NDArray[np.float64]


@dataclass(frozen=True)
class Limit:
    """A limit of one signal (a recipe alarm's ``high`` or ``low``), in the signal's unit.

    Drawn as a dashed line when it falls inside the axis the data set; named at the edge
    otherwise, so a trip limit far from the readings never flattens them."""

    tag: str
    name: str
    value: float
    on_axis: bool = True


@dataclass(frozen=True)
class AxisPlan:
    """One y axis: signals of one unit (and one pressure reference) of one group."""

    unit: str
    tags: list[str]
    ylim: tuple[float, float]
    off_axis: dict[str, tuple[float, float]] = field(default_factory=dict)
    limits: list[Limit] = field(default_factory=list)


WINDOW_KINDS = ("steady state", "to product", "held", "no record")
"""The windows shaded on every trend panel, in drawing order. "no record": the control
service was down (killed, restarted) and nothing was recorded; the plant ran on."""


@dataclass(frozen=True)
class PanelPlan:
    """One figure: a group (module category, family of units) with one axis per unit."""

    title: str
    axes: list[AxisPlan]


@dataclass(frozen=True)
class PlotPlan:
    """Everything the trend section shows, decided from the samples of the run window."""

    panels: list[PanelPlan]
    lanes: list[str]
    constants: list[tuple[str, float, str]]
    no_data: list[str]
    simulated_time: bool
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    """(kind, start, end) in seconds after the run start, kind one of ``WINDOW_KINDS``."""

    def as_json(self) -> dict[str, Any]:
        return {
            "time_axis": "simulated time since start" if self.simulated_time
            else "time since start",
            "panels": [{"title": p.title, "axes": [
                {"unit": a.unit, "tags": a.tags, "ylim": list(a.ylim),
                 "off_axis": {k: list(v) for k, v in a.off_axis.items()},
                 "limits": [{"tag": x.tag, "name": x.name, "value": x.value,
                             "on_axis": x.on_axis} for x in a.limits]} for a in p.axes]}
                for p in self.panels],
            "windows": [{"kind": k, "start_s": a, "end_s": b} for k, a, b in self.windows],
            "lanes": self.lanes,
            "constants": [{"tag": t, "value": v, "unit": u} for t, v, u in self.constants],
            "no_data": self.no_data,
        }


def _family(unit: str) -> str:
    for ref, name in (("K", "temperatures"), ("Pa", "pressures"), ("g/s", "flows"),
                      ("mL/s", "flows"), ("mol/s", "flows")):
        if compatible(unit, ref):
            return name
    if unit.strip() in ("", "1", "-") or compatible(unit, "") or compatible(unit, "mol/L") \
            or compatible(unit, "g/L"):
        return "analyzer signals"
    return f"other ({unit})"


_ORDER = ["flows", "temperatures", "pressures", "analyzer signals", "selections"]


def tag_groups(metadata: Mapping[str, Any], series: Mapping[str, SeriesLike]
               ) -> dict[str, list[str]]:
    """Group tags for plotting: run metadata ``tag_groups`` > tag's group > unit family.

    The group ``"-"`` keeps a tag out of the plots (it stays in the CSV export)."""
    override: dict[str, str] = dict(metadata.get("tag_groups", {}))
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        s = series[name]
        g = override.get(name) or s.group or _family(s.unit)
        if g == "-":  # recorded but not plotted (e.g. state codes, shown in the Gantt chart)
            continue
        groups.setdefault(g, []).append(name)
    return dict(sorted(groups.items(),
                       key=lambda kv: (_ORDER.index(kv[0]) if kv[0] in _ORDER else len(_ORDER),
                                       kv[0])))


def is_simulated_time(metadata: Mapping[str, Any]) -> bool:
    """Whether the run's times come from an accelerated (simulated) clock, not the wall."""
    clock = metadata.get("clock")
    if isinstance(clock, Mapping):
        return str(clock.get("mode", "realtime")) != "realtime"
    speed = metadata.get("speed", 1)
    return isinstance(speed, int | float) and speed != 1


def _window(s: SeriesLike, a: float) -> NDArray[np.float64]:
    """Finite values the signal held during the run (the value held at its start counts)."""
    idx = np.searchsorted(s.t, a, side="right") - 1
    v = s.v[max(int(idx), 0):]
    return v[np.isfinite(v)]


def _unit_label(unit: str, note: str | None) -> str:
    """The unit as a plant engineer writes it: ``barg`` and ``bara`` for gauge and absolute
    bar (a 3 barg set point and a 4.0 bara reading are the same pressure), else the reference
    after the unit (``kPa, differential``)."""
    if unit.strip() == "bar" and note in ("gauge", "absolute"):
        return "barg" if note == "gauge" else "bara"
    return f"{unit}, {note}" if note else unit


def plot_plan(metadata: Mapping[str, Any], series: Mapping[str, SeriesLike], t_start: float
              ) -> PlotPlan:
    """Decide the trend section of a run: panels and axes, lanes, constants, empty signals.

    ``metadata["tag_notes"]`` ({tag: note}, e.g. "gauge" or "absolute" for a pressure) is
    part of the unit label, so signals with different notes never share an axis.
    """
    notes: dict[str, str] = dict(metadata.get("tag_notes", {}))
    limits = _limits(metadata)
    panels: list[PanelPlan] = []
    lanes: list[str] = []
    constants: list[tuple[str, float, str]] = []
    no_data: list[str] = []
    for group, names in tag_groups(metadata, series).items():
        by_unit: dict[str, list[str]] = {}
        for n in names:
            s = series[n]
            v = _window(s, t_start)
            if v.size == 0:
                no_data.append(n)
            elif float(np.min(v)) == float(np.max(v)):
                constants.append((n, float(v[0]), _unit_label(s.unit, notes.get(n))))
            elif group == "on/off signals" or (
                    s.unit.strip() in ("", "1") and bool(np.all((v == 0) | (v == 1)))):
                lanes.append(n)
            else:
                by_unit.setdefault(_unit_label(s.unit, notes.get(n)), []).append(n)
        axes = [axis for unit, tags in by_unit.items()
                for axis in _axes(unit, tags, series, t_start, limits)]
        if axes:
            panels.append(PanelPlan(group, axes))
    return PlotPlan(panels, lanes, constants, no_data, is_simulated_time(metadata))


def _limits(metadata: Mapping[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """``metadata["limits"]`` ([{tag, name, value}], values in the tag's unit) by tag."""
    out: dict[str, list[tuple[str, float]]] = {}
    for x in metadata.get("limits", []):
        if isinstance(x, Mapping) and isinstance(x.get("value"), int | float) \
                and math.isfinite(x["value"]):
            out.setdefault(str(x.get("tag")), []).append((str(x.get("name")),
                                                           float(x["value"])))
    return out


def _axes(unit: str, tags: list[str], series: Mapping[str, SeriesLike], a: float,
          limits: Mapping[str, list[tuple[str, float]]]) -> list[AxisPlan]:
    """The axes of one unit: the signals that set the range (far outliers are named
    off-axis, as on one axis), split by magnitude (:data:`SPLIT_FACTOR`), largest first."""
    ranges = {n: (float(np.min(v)), float(np.max(v)))
              for n in tags if (v := _window(series[n], a)).size}
    size = {n: max(abs(lo), abs(hi)) for n, (lo, hi) in ranges.items()}
    ref = float(np.median(list(size.values())))
    core = [n for n in tags if ref == 0 or size[n] <= OUTLIER_FACTOR * ref]
    lo = min(ranges[n][0] for n in core)
    hi = max(ranges[n][1] for n in core)
    reach = OFF_AXIS_FACTOR * max(abs(lo), abs(hi), hi - lo)
    core += [n for n in tags if n not in core
             and max(ranges[n][0] - hi, lo - ranges[n][1]) <= reach]
    off = {n: ranges[n] for n in tags if n not in core}
    clusters: list[list[str]] = []
    for n in sorted(core, key=lambda n: -size[n]):
        if clusters and size[n] * SPLIT_FACTOR >= size[clusters[-1][0]]:
            clusters[-1].append(n)
        else:
            clusters.append([n])
    axes = []
    for i, cluster in enumerate(clusters):
        members = [n for n in tags if n in cluster]  # the caller's order within an axis
        lo = min(ranges[n][0] for n in members)
        hi = max(ranges[n][1] for n in members)
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-9)
        ylim = (lo - pad, hi + pad)
        named = off if i == 0 else {}  # the far outliers, once, on the largest axis
        lims = [Limit(n, name, v, ylim[0] <= v <= ylim[1])
                for n in [*members, *named] for name, v in limits.get(n, [])]
        axes.append(AxisPlan(unit, [*members, *named], ylim, named, lims))
    return axes


# ----------------------------------------------------------------------------- drawing

_TICKS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _png(fig: Any) -> str:
    bio = io.BytesIO()
    fig.savefig(bio, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(bio.getvalue()).decode()


def _time_axis(ax: Any, span: float, simulated: bool, label: bool = True) -> None:
    """Elapsed time as h:mm (m:ss under 10 min), ticks on round minutes or hours."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    short = span < 600
    step = next((t for t in _TICKS if span / t <= 10), _TICKS[-1])
    if short:
        step = max(10, 10 * math.ceil(span / 100))
    ax.xaxis.set_major_locator(MultipleLocator(step))

    def fmt(x: float, _pos: int) -> str:
        text = format_elapsed(x)
        return text[2:] if short and text.startswith("0:") else text.rsplit(":", 1)[0]

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlim(0, max(span, 1e-9))
    if label:
        what = "simulated time since start" if simulated else "time since start"
        ax.set_xlabel(f"{what} [{'m:ss' if short else 'h:mm'}]")


def render(plan: PlotPlan, series: Mapping[str, SeriesLike], a: float, b: float,
           bars: list[tuple[str, float, float, str]]) -> list[tuple[str, str]]:
    """PNG images (base64) of the plan's panels, the on/off lanes and the state chart."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    span = b - a
    gaps = [(t0, t1) for k, t0, t1 in plan.windows if k == "no record" and t1 > t0]
    out: list[tuple[str, str]] = []
    for panel in plan.panels:
        fig = Figure(figsize=(9, 0.8 + 2.1 * len(panel.axes)))
        axs = fig.subplots(len(panel.axes), 1, sharex=True, squeeze=False)[:, 0]
        for ax, axis in zip(axs, panel.axes, strict=True):
            shade = _shade(ax, plan.windows)
            for n in axis.tags:
                if n in axis.off_axis:  # named in the legend's title, not drawn
                    continue
                s = series[n]
                step = max(1, len(s.t) // 5000)
                t, v = _broken(np.clip(s.t[::step], a, None) - a, s.v[::step], gaps)
                ax.step(t, v, where="post", label=n)
            outside = _draw_limits(ax, axis)
            if _integral(axis, series):  # channels and methods: no tick at channel 1.5
                from matplotlib.ticker import MaxNLocator

                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(*axis.ylim)
            ax.set_ylabel(pretty_unit(axis.unit) or "-")
            ax.grid(alpha=0.3)
            handles, _ = ax.get_legend_handles_labels()
            off = [f"{n} {lo:.4g} to {hi:.4g}" if lo != hi else f"{n} {lo:.4g}"
                   for n, (lo, hi) in axis.off_axis.items()] + outside
            # what lies off the axis is the legend's title: beside the data, never over it
            legend = ax.legend(handles=[*handles, *shade], fontsize=7, loc="upper left",
                               bbox_to_anchor=(1.01, 1.0), title_fontsize=6, alignment="left",
                               title=(f"off-axis ({pretty_unit(axis.unit)}):\n"
                                      + "\n".join(off)) if off else None)
            legend.get_title().set_color("dimgray")
            _time_axis(ax, span, plan.simulated_time, label=ax is axs[-1])
        axs[0].set_title(panel.title)
        out.append((panel.title, _png(fig)))
    if plan.lanes:
        out.append(("on/off signals", _lanes(Figure, plan, series, a, span)))
    service = [x for x in bars if not x[0].startswith("recipe")]
    recipe = [x for x in bars if x[0].startswith("recipe")]
    for title, part in (("service states", service), ("recipe steps", recipe)):
        if part:
            out.append((title, _states(Figure, plan, part, title, a, span)))
    return out


def _broken(t: NDArray[np.float64], v: NDArray[np.float64], gaps: list[tuple[float, float]]
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The series with its line broken where nothing was recorded: the last value before a
    gap is not drawn across it as if it had been measured there."""
    for g0, _ in gaps:
        i = int(np.searchsorted(t, g0, side="right"))
        if 0 < i < len(t):  # samples on both sides: end the step at the gap's start
            t, v = np.insert(t, i, g0), np.insert(v, i, np.nan)
    return t, v


_PRETTY = ((r"\*\*2\b", "\u00b2"), (r"\*\*3\b", "\u00b3"), (r"\bum\b", "\u00b5m"),
           (r"\bdegC\b", "\u00b0C"), (r"\*", "\u00b7"))


def pretty_unit(unit: str) -> str:
    """A unit as printed on an axis: ``kg/m³``, ``µm``, ``°C`` (the plan keeps pint's text)."""
    import re

    for pattern, text in _PRETTY:
        unit = re.sub(pattern, text, unit)
    return unit


def _integral(axis: AxisPlan, series: Mapping[str, SeriesLike]) -> bool:
    """Whether every value on an axis without unit is a whole number (a selection)."""
    if axis.unit.strip() not in ("", "1"):
        return False
    v = np.concatenate([series[n].v for n in axis.tags])
    v = v[np.isfinite(v)]
    return bool(v.size) and bool(np.all(v == np.round(v)))


_WINDOW_STYLE: dict[str, tuple[str, float, str | None]] = {
    "steady state": ("tab:blue", 0.10, None),
    "to product": ("tab:green", 0.14, None),
    "held": ("tab:red", 0.18, "//"),
    "no record": ("dimgray", 0.30, "xx"),
}
"""Colour, opacity and hatch of each window kind."""


def _shade(ax: Any, windows: list[tuple[str, float, float]]) -> list[Any]:
    """Shade the run's windows behind the data; the legend entries of the kinds drawn.

    Steady state fills the upper half of the axes and "to product" the lower half, so where
    both hold (the usual production window) each stays visible; a hold fills the height."""
    from matplotlib.patches import Patch

    band = {"steady state": (0.5, 1.0), "to product": (0.0, 0.5), "held": (0.0, 1.0),
            "no record": (0.0, 1.0)}
    drawn: list[Any] = []
    for kind in WINDOW_KINDS:
        spans = [(t0, t1) for k, t0, t1 in windows if k == kind and t1 > t0]
        colour, alpha, hatch = _WINDOW_STYLE[kind]
        for t0, t1 in spans:
            lo, hi = band[kind]
            ax.axvspan(t0, t1, ymin=lo, ymax=hi, linewidth=0, zorder=0, color=colour,
                       alpha=alpha, hatch=hatch)
        if spans:
            drawn.append(Patch(label=f"{kind} (shaded)", linewidth=0, color=colour,
                               alpha=alpha, hatch=hatch))
    return drawn


def _draw_limits(ax: Any, axis: AxisPlan) -> list[str]:
    """Dashed lines for the limits inside the axis; the text for those outside it (they are
    named, never allowed to rescale the axis the data set)."""
    outside: list[str] = []
    for lim in axis.limits:
        if lim.on_axis:
            ax.axhline(lim.value, color="tab:red", linestyle="--", linewidth=0.9,
                       label=f"alarm {lim.name} {lim.value:.4g}")
        else:
            where = "above" if lim.value > axis.ylim[1] else "below"
            outside.append(f"alarm {lim.name} {lim.value:.4g} ({where})")
    return outside


def _states(figure: Callable[..., Any], plan: PlotPlan, bars: list[tuple[str, float, float, str]],
            title: str, a: float, span: float) -> str:
    """One row per service (or unit procedure), coloured by state (or step), with a legend."""
    import matplotlib
    from matplotlib.patches import Patch

    rows = sorted({r for r, *_ in bars})
    states = list(dict.fromkeys(s for *_, s in sorted(bars, key=lambda x: x[1])))
    fig = figure(figsize=(9, 0.9 + 0.3 * len(rows)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20" if len(states) > 10 else "tab10"]
    colour = {s: cmap(i % cmap.N) for i, s in enumerate(states)}
    for row, t0, t1, st in bars:
        ax.barh(rows.index(row), t1 - t0, left=t0 - a, color=colour[st], edgecolor="black",
                linewidth=0.3)
        if (t1 - t0) / max(span, 1e-9) > 0.08:
            ax.text(t0 - a + (t1 - t0) / 2, rows.index(row), st, ha="center", va="center",
                    fontsize=6)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    _time_axis(ax, span, plan.simulated_time)
    ax.set_title(title)
    ax.legend(handles=[Patch(facecolor=colour[s], edgecolor="black", label=s) for s in states],
              fontsize=6, ncol=min(6, len(states)), loc="upper center",
              bbox_to_anchor=(0.5, -0.3 if len(rows) < 6 else -0.12), frameon=False)
    return _png(fig)


def _lanes(figure: Callable[..., Any], plan: PlotPlan, series: Mapping[str, SeriesLike],
           a: float, span: float) -> str:
    """One labelled lane per on/off signal, filled while it is on."""
    fig = figure(figsize=(9, 0.8 + 0.28 * len(plan.lanes)))
    ax = fig.subplots()
    for y, n in enumerate(plan.lanes):
        s = series[n]
        t = np.append(np.clip(s.t, a, None) - a, span)
        on = [(float(t[i]), float(t[i + 1] - t[i])) for i in range(len(s.v))
              if s.v[i] == 1 and t[i + 1] > t[i]]
        ax.broken_barh(on, (y - 0.35, 0.7), color="tab:blue")
    ax.set_yticks(range(len(plan.lanes)), plan.lanes, fontsize=7)
    ax.set_ylim(len(plan.lanes) - 0.5, -0.5)
    shade = _shade(ax, plan.windows)
    if shade:
        ax.legend(handles=shade, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("on/off signals (filled: on)")
    _time_axis(ax, span, plan.simulated_time)
    return _png(fig)
