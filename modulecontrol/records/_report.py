"""Batch reports: run list, run figures, and HTML / JSON / CSV exports of one run.

Why figures are driven by run metadata: which tag is "the product flow" is a fact of the
plant and recipe, not of the historian. A run declares it once in ``metadata["figures"]``
(validated by :class:`FigureSpec` when the run starts), and every figure is then computed
from the recorded samples and events alone, so the report can be rebuilt years later.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from modulecontrol.records._db import RecordsError, connect
from modulecontrol.units import UnitError, compatible, convert

ReportFormat = Literal["html", "json", "csv"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_quantity(text: str | None, unit: str, what: str) -> str | None:
    if text is None:
        return None
    try:
        convert(text, unit)
    except UnitError as exc:
        raise ValueError(f"{what} must be a quantity in {unit} or a compatible unit"
                         f" (e.g. '1.0 {unit}'): {exc}") from exc
    return text


class StreamSpec(_Strict):
    """One material stream measured by a flow tag (mass, volume or molar flow per time).

    ``density`` converts between volume and mass; ``concentration`` (amount per volume) of
    the compound of interest, or ``molar_mass`` for a neat stream, gives moles for yield.
    """

    tag: str
    name: str = ""
    density: str | None = None
    concentration: str | None = None
    molar_mass: str | None = None

    @field_validator("density")
    @classmethod
    def _density(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mL", "density")

    @field_validator("concentration")
    @classmethod
    def _conc(cls, v: str | None) -> str | None:
        return _check_quantity(v, "mol/L", "concentration")

    @field_validator("molar_mass")
    @classmethod
    def _mm(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mol", "molar_mass")


class SteadyStateSpec(_Strict):
    """Steady state: ``tag`` stays within ``tolerance`` (relative) of its reference.

    The reference is ``target`` when given, otherwise the mean of the last ``window``
    seconds of the run.
    """

    tag: str
    tolerance: float = Field(0.02, gt=0)
    window: float = Field(60.0, gt=0)
    target: float | None = None


class IntervalSpec(_Strict):
    """Figures between two named recipe steps, e.g. a product changeover: from the moment
    step ``start`` started to the moment step ``end`` started.

    ``counters`` names totalizer tags (a pump's delivered volume, a valve's waste volume)
    whose increase over the interval is summed per figure: ``{solvent_ml: [P1.DeliveredVolume,
    P2.DeliveredVolume]}``; a counter reset inside the interval is bridged (only increases
    count). Values are in the unit of the first tag of each figure.
    """

    name: str = Field(min_length=1)
    start: str = Field(min_length=1)
    end: str = Field(min_length=1)
    counters: dict[str, list[str]] = {}


class FigureSpec(_Strict):
    """Which tags mean what, for the figures of a batch report (``metadata["figures"]``).

    Example for a two-feed flow synthesis::

        figures:
          feeds:
            - {tag: P1.flow, name: amine, density: 0.95 g/mL, concentration: 0.5 mol/L}
            - {tag: P2.flow, name: reagent, density: 1.05 g/mL}
          limiting_feed: amine
          product: {tag: OUT.flow, density: 1.0 g/mL}
          outlets: [{tag: WASTE.flow, density: 1.0 g/mL}]
          product_molar_mass: 233.7 g/mol
          purity_tag: AT1.purity
          purity_spec: 98.0
          divert_tag: V3.divert
          steady_state: {tag: AT1.purity, tolerance: 0.01, window: 120}
    """

    feeds: list[StreamSpec] = []
    product: StreamSpec | None = None
    outlets: list[StreamSpec] = []
    limiting_feed: str | None = None
    product_molar_mass: str | None = None
    stoichiometry: float = Field(1.0, gt=0)
    purity_tag: str | None = None
    purity_spec: float | None = None
    divert_tag: str | None = None
    steady_state: SteadyStateSpec | None = None
    intervals: list[IntervalSpec] = []

    @field_validator("product_molar_mass")
    @classmethod
    def _pmm(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mol", "product_molar_mass")

    def feed(self, key: str) -> StreamSpec:
        for f in self.feeds:
            if key in (f.name, f.tag):
                return f
        known = ", ".join(f.name or f.tag for f in self.feeds) or "none"
        raise RecordsError(f"limiting_feed '{key}' is not one of the feeds (known: {known})")


@dataclass(frozen=True)
class RunInfo:
    """A run record as stored (times in seconds since the Unix epoch, UTC)."""

    id: int
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    plant_hash: str
    parameters: dict[str, Any]
    metadata: dict[str, Any]
    operator: str
    t_start: float
    t_end: float | None
    result: str
    note: str

    @property
    def duration_s(self) -> float | None:
        return None if self.t_end is None else self.t_end - self.t_start


_RUN_COLS = ("id, recipe_name, recipe_version, recipe_hash, plant_hash, parameters, metadata,"
             " operator, t_start, t_end, result, note")


def _run_from_row(row: tuple[Any, ...]) -> RunInfo:
    return RunInfo(int(row[0]), row[1], row[2], row[3], row[4], json.loads(row[5]),
                   json.loads(row[6]), row[7], float(row[8]),
                   None if row[9] is None else float(row[9]), row[10], row[11])


def _open(db: str | Path | sqlite3.Connection) -> tuple[sqlite3.Connection, bool]:
    if isinstance(db, sqlite3.Connection):
        return db, False
    return connect(db, create=False), True


def list_runs(db: str | Path | sqlite3.Connection) -> list[RunInfo]:
    """All runs, oldest first."""
    conn, own = _open(db)
    try:
        return [_run_from_row(r) for r in
                conn.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id")]
    finally:
        if own:
            conn.close()


def get_run(conn: sqlite3.Connection, run_id: int) -> RunInfo:
    row = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
    if row is None:
        ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 10")]
        raise RecordsError(f"no run {run_id} in this database (latest runs: {ids or 'none'};"
                           " see `modulecontrol runs`)")
    return _run_from_row(row)


# ---------------------------------------------------------------------------- data access

@dataclass
class _Series:
    unit: str
    group: str | None
    t: NDArray[np.float64]
    v: NDArray[np.float64]


class _RunData:
    """Samples, events and alarms of one run window, loaded once."""

    def __init__(self, conn: sqlite3.Connection, run: RunInfo) -> None:
        self.run = run
        t0 = run.t_start
        last_t = conn.execute("SELECT MAX(t) FROM samples WHERE t >= ?", (t0,)).fetchone()[0]
        last_e = conn.execute("SELECT MAX(t) FROM events WHERE run_id=?", (run.id,)).fetchone()[0]
        self.t_end = run.t_end if run.t_end is not None else max(
            x for x in (t0, last_t, last_e) if x is not None)
        t1 = self.t_end
        self.series: dict[str, _Series] = {}
        tags = {r[0]: (r[1], r[2], r[3]) for r in
                conn.execute("SELECT id, name, unit, grp FROM tags")}
        raw: dict[int, list[tuple[float, float]]] = {}
        # the value each tag held when the run started (deadband-filtered data is a step signal)
        for tid, t, v in conn.execute("SELECT tag_id, MAX(t), value FROM samples WHERE t < ?"
                                      " GROUP BY tag_id", (t0,)):
            raw.setdefault(tid, []).append((t, v))
        for tid, t, v in conn.execute("SELECT tag_id, t, value FROM samples WHERE t >= ? AND"
                                      " t <= ? ORDER BY tag_id, t", (t0, t1)):
            raw.setdefault(tid, []).append((t, v))
        for tid, pts in raw.items():
            name, unit, grp = tags[tid]
            arr = np.array(pts, dtype=np.float64).reshape(-1, 2)
            v = np.where(np.isfinite(arr[:, 1]), arr[:, 1], np.nan)
            self.series[name] = _Series(unit, grp, arr[:, 0], v)
        self.events = [
            (t, kind, source, json.loads(payload)) for t, kind, source, payload in conn.execute(
                "SELECT t, kind, source, payload FROM events WHERE run_id=? ORDER BY t, id",
                (run.id,))]
        self.alarms = [
            {"name": n, "message": m, "priority": p, "raised": tr, "acknowledged": ta,
             "acked_by": ab, "cleared": tc}
            for n, m, p, tr, ta, ab, tc in conn.execute(
                "SELECT name, message, priority, t_raised, t_acked, acked_by, t_cleared FROM"
                " alarms WHERE run_id=? OR (run_id IS NULL AND t_raised BETWEEN ? AND ?)"
                " ORDER BY t_raised, id", (run.id, t0, t1))]
        self.actions = [
            {"t": t, "user": u, "action": a, "target": tg, "old_value": json.loads(o or "null"),
             "new_value": json.loads(nv or "null"), "reason": r}
            for t, u, a, tg, o, nv, r in conn.execute(
                "SELECT t, user, action, target, old_value, new_value, reason FROM"
                " operator_actions WHERE run_id=? ORDER BY t, id", (run.id,))]

    def need(self, tag: str) -> _Series:
        s = self.series.get(tag)
        if s is None:
            known = ", ".join(sorted(self.series)[:20]) or "none"
            raise RecordsError(f"run {self.run.id}: no samples of tag '{tag}' named in the"
                               f" figures metadata (tags with samples: {known})")
        return s


def _step(series: _Series, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """Value held at each time (zero-order hold; NaN before the first sample)."""
    idx = np.searchsorted(series.t, times, side="right") - 1
    out = np.full(times.shape, np.nan)
    ok = idx >= 0
    out[ok] = series.v[idx[ok]]
    return out


class _Grid:
    """Piecewise-constant time grid over the run, on the union of the tags' sample times."""

    def __init__(self, data: _RunData, tags: list[str]) -> None:
        a, b = data.run.t_start, data.t_end
        pts = [np.array([a, b])]
        for tg in tags:
            s = data.need(tg)
            pts.append(s.t[(s.t > a) & (s.t < b)])
        edges = np.unique(np.concatenate(pts))
        self.start = edges[:-1]
        self.dt = np.diff(edges)
        self.data = data

    def values(self, tag: str) -> NDArray[np.float64]:
        return _step(self.data.need(tag), self.start)

    def integral(self, y: NDArray[np.float64], mask: NDArray[np.bool_] | None = None) -> float:
        w = self.dt if mask is None else self.dt * mask
        good = np.isfinite(y)
        return float(np.sum(np.where(good, y, 0.0) * w))


def _flow_kind(unit: str) -> str:
    if compatible(unit, "g/s"):
        return "mass"
    if compatible(unit, "mL/s"):
        return "volume"
    if compatible(unit, "mol/s"):
        return "molar"
    raise RecordsError(f"tag unit '{unit}' is not a mass, volume or molar flow; a stream tag"
                       " in the figures metadata must be one")


@dataclass
class _StreamTotals:
    mass_g: float | None
    volume_ml: float | None
    mol: float | None


def _stream_totals(grid: _Grid, spec: StreamSpec,
                   mask: NDArray[np.bool_] | None = None) -> _StreamTotals:
    s = grid.data.need(spec.tag)
    kind = _flow_kind(s.unit)
    y = grid.values(spec.tag)
    density = convert(spec.density, "g/mL") if spec.density else None
    conc = convert(spec.concentration, "mol/mL") if spec.concentration else None
    mm = convert(spec.molar_mass, "g/mol") if spec.molar_mass else None
    mass = vol = mol = None
    if kind == "mass":
        mass = grid.integral(y * convert(1.0, "g/s", s.unit), mask)
        vol = mass / density if density else None
    elif kind == "volume":
        vol = grid.integral(y * convert(1.0, "mL/s", s.unit), mask)
        mass = vol * density if density else None
    else:
        mol = grid.integral(y * convert(1.0, "mol/s", s.unit), mask)
        mass = mol * mm if mm else None
    if mol is None:
        if conc is not None and vol is not None:
            mol = vol * conc
        elif mm is not None and mass is not None:
            mol = mass / mm
    return _StreamTotals(mass, vol, mol)


def _round(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{nd}g}")


def _time_to_steady(data: _RunData, spec: SteadyStateSpec) -> tuple[float | None, float | None]:
    s = data.need(spec.tag)
    a, b = data.run.t_start, data.t_end
    sel = (s.t >= a) & (s.t <= b) & np.isfinite(s.v)
    t, v = s.t[sel], s.v[sel]
    if len(t) == 0:
        return None, None
    if spec.target is not None:
        ref = spec.target
    else:
        # time-weighted mean over the last window (zero-order hold)
        grid = _Grid(data, [spec.tag])
        lo = b - spec.window
        w = np.clip(grid.start + grid.dt, lo, None) - np.clip(grid.start, lo, None)
        y = grid.values(spec.tag)
        good = np.isfinite(y) & (w > 0)
        if not good.any():
            return None, None
        ref = float(np.sum(y[good] * w[good]) / np.sum(w[good]))
    tol = abs(ref) * spec.tolerance if ref != 0 else spec.tolerance
    bad = np.abs(v - ref) > tol
    if not bad.any():
        return 0.0 if t[0] <= a else float(t[0] - a), ref
    last_bad = int(np.nonzero(bad)[0][-1])
    if last_bad + 1 >= len(t):
        return None, ref
    return float(t[last_bad + 1] - a), ref


def run_figures(db: str | Path | sqlite3.Connection, run_id: int) -> dict[str, Any]:
    """The figures of one run as plain data (what the JSON report holds under ``figures``).

    Masses in g, volumes in mL, amounts in mol, times in s, percentages in %; a figure that
    the metadata does not allow to compute is None, with the reason in ``notes``.
    """
    conn, own = _open(db)
    try:
        run = get_run(conn, run_id)
        data = _RunData(conn, run)
    finally:
        if own:
            conn.close()
    return _figures(data)


def _figures(data: _RunData) -> dict[str, Any]:
    run = data.run
    duration = data.t_end - run.t_start
    out: dict[str, Any] = {"duration_s": _round(duration)}
    notes: list[str] = []
    try:
        spec = FigureSpec.model_validate(run.metadata.get("figures", {}))
    except ValueError as exc:
        raise RecordsError(f"run {run.id}: figures metadata is invalid: {exc}") from exc
    tags = [f.tag for f in spec.feeds] + [o.tag for o in spec.outlets]
    for t in (spec.product.tag if spec.product else None, spec.purity_tag, spec.divert_tag):
        if t:
            tags.append(t)
    grid = _Grid(data, tags) if duration > 0 else None
    out["deviations"] = sum(1 for e in data.events if e[1] == "deviation")
    out["alarms"] = len(data.alarms)
    out["operator_actions"] = len(data.actions)
    if grid is None:
        notes.append("run has no duration: no flow figures")
        out["notes"] = notes
        return out
    divert = None
    if spec.divert_tag:
        divert = np.nan_to_num(grid.values(spec.divert_tag), nan=0.0) > 0.5
    collect = None if divert is None else ~divert
    feeds_in = [_stream_totals(grid, f) for f in spec.feeds]
    outs = [_stream_totals(grid, o) for o in spec.outlets]
    if spec.product is not None:
        p_all = _stream_totals(grid, spec.product)
        p_col = _stream_totals(grid, spec.product, collect)
        p_div = _stream_totals(grid, spec.product, divert) if divert is not None else None
        out["product_mass_g"] = _round(p_col.mass_g)
        out["product_volume_ml"] = _round(p_col.volume_ml)
        out["diverted_volume_ml"] = _round(p_div.volume_ml) if p_div else 0.0
        out["diverted_mass_g"] = _round(p_div.mass_g) if p_div else 0.0
        outs = [p_all, *outs]
        # mass of the compound itself: from concentration, else purity, else the stream
        compound_g: float | None = None
        mm = convert(spec.product_molar_mass, "g/mol") if spec.product_molar_mass else None
        if spec.product.concentration and mm and p_col.mol is not None:
            compound_g = p_col.mol * mm
        elif spec.purity_tag and p_col.mass_g is not None:
            s = data.need(spec.product.tag)
            kind = _flow_kind(s.unit)
            y = grid.values(spec.product.tag)
            if kind == "mass":
                gps = y * convert(1.0, "g/s", s.unit)
            elif kind == "volume" and spec.product.density:
                gps = (y * convert(1.0, "mL/s", s.unit)
                       * convert(spec.product.density, "g/mL"))
            else:
                gps = np.full_like(y, np.nan)
            frac = grid.values(spec.purity_tag) * convert(
                1.0, "", data.need(spec.purity_tag).unit or "")
            compound_g = grid.integral(gps * frac, collect)
        else:
            compound_g = p_col.mass_g
        out["product_compound_g"] = _round(compound_g)
        out["throughput_g_per_h"] = _round(compound_g / (duration / 3600.0)
                                           if compound_g is not None else None)
        if compound_g is None:
            notes.append("product mass unknown: give the product stream a density, or a mass"
                         " flow tag")
        if spec.limiting_feed:
            lim = feeds_in[spec.feeds.index(spec.feed(spec.limiting_feed))]
            if lim.mol and compound_g is not None and mm:
                out["yield_pct"] = _round(100.0 * (compound_g / mm) / (lim.mol *
                                                                       spec.stoichiometry))
            else:
                out["yield_pct"] = None
                notes.append("yield needs the limiting feed's concentration or molar_mass and"
                              " product_molar_mass")
    in_g = [f.mass_g for f in feeds_in]
    out_g = [o.mass_g for o in outs]
    if spec.feeds:
        total_in = None if None in in_g else float(sum(x for x in in_g if x is not None))
        total_out = None if (None in out_g or not out_g) else float(
            sum(x for x in out_g if x is not None))
        out["mass_in_g"] = _round(total_in)
        out["mass_out_g"] = _round(total_out)
        out["material_balance_pct"] = _round(
            100.0 * total_out / total_in if total_in and total_out is not None else None)
        if total_in is None or total_out is None:
            notes.append("material balance needs every stream in mass, or with a density")
    if spec.purity_tag:
        pur = grid.values(spec.purity_tag) * convert(
            1.0, "percent", data.need(spec.purity_tag).unit or "")
        w = grid.dt if collect is None else grid.dt * collect
        good = np.isfinite(pur) & (w > 0)
        if good.any():
            out["purity_mean_pct"] = _round(float(np.sum(pur[good] * w[good]) / np.sum(w[good])))
            out["purity_min_pct"] = _round(float(np.min(pur[good])))
            if spec.purity_spec is not None:
                below = np.isfinite(pur) & (pur < spec.purity_spec)  # whole run
                out["off_spec_time_s"] = _round(float(np.sum(grid.dt[below])))
        else:
            out["purity_mean_pct"] = None
    if spec.steady_state is not None:
        tss, ref = _time_to_steady(data, spec.steady_state)
        out["time_to_steady_state_s"] = _round(tss)
        out["steady_state_reference"] = _round(ref)
        if tss is None:
            notes.append(f"{spec.steady_state.tag} never settled within"
                         f" {spec.steady_state.tolerance:.1%} of its reference")
    for iv in spec.intervals:
        out.update(_interval(data, iv, notes))
    out["notes"] = notes
    return out


def _step_start(data: _RunData, step: str) -> float | None:
    """When the step named ``step`` first started (its first step transition event)."""
    for t, kind, source, payload in data.events:
        if kind == "step_transition" and (payload.get("step") == step or source == step):
            return float(t)
    return None


def _increase(series: _Series, a: float, b: float) -> float:
    """How much a totalizer rose between ``a`` and ``b`` (resets bridged)."""
    inside = (series.t > a) & (series.t <= b)
    start = _step(series, np.array([a]))[0]
    v = np.concatenate([[start], series.v[inside]])
    v = v[np.isfinite(v)]
    return float(np.sum(np.clip(np.diff(v), 0.0, None))) if v.size > 1 else 0.0


def _interval(data: _RunData, iv: IntervalSpec, notes: list[str]) -> dict[str, Any]:
    a, b = _step_start(data, iv.start), _step_start(data, iv.end)
    keys = [f"{iv.name}.duration_s", *(f"{iv.name}.{k}" for k in iv.counters)]
    if a is None or b is None or b < a:
        missing = [n for n, t in ((iv.start, a), (iv.end, b)) if t is None]
        notes.append(f"interval {iv.name}: " + (
            f"step(s) {', '.join(missing)} never started" if missing
            else f"step {iv.end} started before {iv.start}"))
        return dict.fromkeys(keys)
    out: dict[str, Any] = {keys[0]: _round(b - a)}
    for figure, tags in iv.counters.items():
        unit = data.need(tags[0]).unit if tags else ""
        total = 0.0
        for tg in tags:
            s = data.need(tg)
            total += _increase(s, a, b) * (convert(1.0, unit, s.unit) if unit and s.unit
                                           else 1.0)
        out[f"{iv.name}.{figure}"] = _round(total)
    return out


# ---------------------------------------------------------------------------- exports

def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _family(unit: str) -> str:
    for ref, name in (("K", "temperatures"), ("Pa", "pressures"), ("g/s", "flows"),
                      ("mL/s", "flows"), ("mol/s", "flows")):
        if compatible(unit, ref):
            return name
    if unit.strip() in ("", "1", "-") or compatible(unit, "") or compatible(unit, "mol/L") \
            or compatible(unit, "g/L"):
        return "analyzer signals"
    return f"other ({unit})"


def tag_groups(run: RunInfo, series: dict[str, Any]) -> dict[str, list[str]]:
    """Group tags for plotting: run metadata ``tag_groups`` > tag's group > unit family."""
    override: dict[str, str] = dict(run.metadata.get("tag_groups", {}))
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        s = series[name]
        g = override.get(name) or s.group or _family(s.unit)
        groups.setdefault(g, []).append(name)
    order = ["flows", "temperatures", "pressures", "analyzer signals"]
    return dict(sorted(groups.items(),
                       key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order),
                                       kv[0])))


def _json_doc(data: _RunData) -> dict[str, Any]:
    run = data.run
    info = asdict(run)
    info.update(t_start_utc=_iso(run.t_start), t_end_utc=_iso(run.t_end))
    return {
        "run": info,
        "figures": _figures(data),
        "alarms": data.alarms,
        "deviations": [{"t": t, "source": s, "payload": p} for t, k, s, p in data.events
                       if k == "deviation"],
        "operator_actions": data.actions,
        "tags": {n: {"unit": s.unit, "samples": int(np.sum(s.t >= run.t_start))}
                 for n, s in sorted(data.series.items())},
    }


def _csv(conn: sqlite3.Connection, data: _RunData) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time_utc", "t_rel_s", "tag", "value", "raw", "quality", "unit"])
    a = data.run.t_start
    for t, name, v, raw, q, unit in conn.execute(
            "SELECT s.t, g.name, s.value, s.raw, s.quality, g.unit FROM samples s JOIN tags g"
            " ON g.id = s.tag_id WHERE s.t >= ? AND s.t <= ? ORDER BY s.t, g.name",
            (a, data.t_end)):
        w.writerow([_iso(t), f"{t - a:.6f}", name, repr(v) if v is not None else "",
                    "" if raw is None else repr(raw), q, unit])
    return buf.getvalue()


def _png(fig: Any) -> str:
    bio = io.BytesIO()
    fig.savefig(bio, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(bio.getvalue()).decode()


def _plots(data: _RunData) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    a, b = data.run.t_start, data.t_end
    out: list[tuple[str, str]] = []
    scale, xl = (60.0, "time since start [min]") if b - a > 600 else (1.0, "time since start [s]")
    for group, names in tag_groups(data.run, data.series).items():
        fig = Figure(figsize=(9, 3.2))
        ax = fig.subplots()
        for n in names:
            s = data.series[n]
            step = max(1, len(s.t) // 5000)
            t = np.clip(s.t[::step], a, None)
            ax.step((t - a) / scale, s.v[::step], where="post",
                    label=f"{n} [{s.unit}]" if s.unit else n)
        ax.set_xlim(0, max((b - a) / scale, 1e-9))
        ax.set_xlabel(xl)
        ax.set_title(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        out.append((group, _png(fig)))
    bars = _gantt_bars(data)
    if bars:
        rows = sorted({r for r, *_ in bars})
        states = sorted({s for *_, s in bars})
        fig = Figure(figsize=(9, 0.5 + 0.45 * len(rows)))
        ax = fig.subplots()
        cmap = matplotlib.colormaps["tab20"]
        colour = {s: cmap(i % 20) for i, s in enumerate(states)}
        for row, t0, t1, st in bars:
            y = rows.index(row)
            ax.barh(y, (t1 - t0) / scale, left=(t0 - a) / scale, color=colour[st],
                    edgecolor="black", linewidth=0.3)
            if (t1 - t0) / max(b - a, 1e-9) > 0.06:
                ax.text((t0 - a + (t1 - t0) / 2) / scale, y, st, ha="center", va="center",
                        fontsize=6)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlim(0, max((b - a) / scale, 1e-9))
        ax.set_xlabel(xl)
        ax.set_title("service and recipe states")
        out.append(("service and recipe states", _png(fig)))
    return out


def _gantt_bars(data: _RunData) -> list[tuple[str, float, float, str]]:
    """(row, start, end, state) from state-change and step-transition events."""
    current: dict[str, tuple[float, str]] = {}
    bars: list[tuple[str, float, float, str]] = []
    for t, kind, source, payload in data.events:
        if kind == "state_change":
            row, st = source or "service", str(payload.get("state", "?"))
        elif kind == "step_transition":
            row, st = f"recipe {source}".strip(), str(payload.get("step", "?"))
        else:
            continue
        if row in current:
            t0, s0 = current[row]
            bars.append((row, t0, t, s0))
        current[row] = (t, st)
    for row, (t0, s0) in current.items():
        bars.append((row, t0, max(t0, data.t_end), s0))
    return bars


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class='none'>none</p>"
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


_FIG_LABELS = {
    "duration_s": "duration [s]", "mass_in_g": "mass in [g]", "mass_out_g": "mass out [g]",
    "material_balance_pct": "material balance (out/in) [%]",
    "product_mass_g": "product collected [g]", "product_volume_ml": "product collected [mL]",
    "product_compound_g": "product compound [g]", "throughput_g_per_h": "throughput [g/h]",
    "yield_pct": "yield [%]", "purity_mean_pct": "purity, time-weighted mean [%]",
    "purity_min_pct": "purity, minimum [%]",
    "off_spec_time_s": "time below purity spec, whole run [s]",
    "time_to_steady_state_s": "time to steady state [s]",
    "steady_state_reference": "steady-state reference value",
    "diverted_volume_ml": "off-spec (diverted) volume [mL]",
    "diverted_mass_g": "off-spec (diverted) mass [g]", "deviations": "deviations",
    "alarms": "alarms", "operator_actions": "operator actions",
}


def _html(data: _RunData) -> str:
    doc = _json_doc(data)
    run, figs = data.run, doc["figures"]
    a = run.t_start
    info: list[list[Any]] = [["run", run.id], ["recipe", f"{run.recipe_name} {run.recipe_version}"],
            ["recipe SHA-256", run.recipe_hash], ["plant SHA-256", run.plant_hash],
            ["operator", run.operator], ["start (UTC)", _iso(run.t_start)],
            ["end (UTC)", _iso(run.t_end)], ["result", run.result], ["note", run.note],
            ["parameters", json.dumps(run.parameters, sort_keys=True)]]
    fig_rows = [[_FIG_LABELS.get(k, k), v] for k, v in figs.items() if k != "notes"]
    fig_rows += [["note", n] for n in figs.get("notes", [])]
    alarms = [[al["name"], al["priority"], al["message"], _iso(al["raised"]),
               _iso(al["acknowledged"]), al["acked_by"], _iso(al["cleared"])]
              for al in data.alarms]
    devs = [[f"{d['t'] - a:.1f}", d["source"], json.dumps(d["payload"])]
            for d in doc["deviations"]]
    acts = [[f"{x['t'] - a:.1f}", x["user"], x["action"], x["target"],
             json.dumps(x["old_value"]), json.dumps(x["new_value"]), x["reason"]]
            for x in data.actions]
    imgs = "".join(f"<h3>{html.escape(g)}</h3><img alt='{html.escape(g)}'"
                   f" src='data:image/png;base64,{p}'>" for g, p in _plots(data))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:"
             "collapse;margin:0.5em 0}td,th{border:1px solid #999;padding:2px 6px;font-size:"
             "0.85em;text-align:left}th{background:#eee}img{max-width:100%}.none{color:#777}")
    title = f"Batch report: run {run.id} ({run.recipe_name})"
    alarm_t = _table(["name", "priority", "message", "raised", "acknowledged", "by", "cleared"],
                     alarms)
    dev_t = _table(["t [s]", "source", "details"], devs)
    act_t = _table(["t [s]", "user", "action", "object", "old", "new", "reason"], acts)
    stamp = _iso(datetime.now(UTC).timestamp())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Run</h2>{_table(['field', 'value'], info)}"
            f"<h2>Figures</h2>{_table(['figure', 'value'], fig_rows)}"
            f"<h2>Trends and states</h2>{imgs or '<p class=none>no samples</p>'}"
            f"<h2>Alarms</h2>{alarm_t}<h2>Deviations</h2>{dev_t}"
            f"<h2>Operator actions</h2>{act_t}"
            f"<p class='none'>generated {stamp}</p></body></html>")


def report(db: str | Path | sqlite3.Connection, run_id: int, format: ReportFormat = "html",
           out: str | Path | None = None) -> str:
    """The batch report of one run as text (HTML, JSON or CSV of samples); writes ``out`` too.

    The HTML is one self-contained file (plots inline as PNG), fit to archive with the batch.
    """
    if format not in ("html", "json", "csv"):
        raise ValueError(f"format must be html, json or csv, not {format!r}")
    conn, own = _open(db)
    try:
        run = get_run(conn, run_id)
        data = _RunData(conn, run)
        if format == "csv":
            text = _csv(conn, data)
        elif format == "json":
            text = json.dumps(_json_doc(data), indent=2, sort_keys=True, default=str)
        else:
            text = _html(data)
    finally:
        if own:
            conn.close()
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return text
