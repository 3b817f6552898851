"""Batch reports: run list, run figures, and HTML / JSON / CSV exports of one run.

Why figures are driven by run metadata: which tag is "the product flow" is a fact of the
plant and recipe, not of the historian. A run declares it once in ``metadata["figures"]``
(validated by :class:`FigureSpec` when the run starts), and every figure is then computed
from the recorded samples and events alone, so the report can be rebuilt years later.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from modulecontrol.alarms import AlarmKpis, alarm_kpis
from modulecontrol.events import EventKind, kind_of
from modulecontrol.mtpcore import HOLD_STATES
from modulecontrol.records._db import RecordsError, connect
from modulecontrol.records._format import format_elapsed, format_figure
from modulecontrol.records._lock import writer_alive
from modulecontrol.records._plots import PlotPlan, is_simulated_time, plot_plan, render
from modulecontrol.records._signing import run_signatures
from modulecontrol.records._spec import (
    FigureSpec,
    IntervalSpec,
    LotSpec,
    SteadyStateSpec,
    StreamSpec,
)
from modulecontrol.units import compatible, convert

ReportFormat = Literal["html", "json", "csv"]


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


def last_sample_time(db: str | Path) -> float | None:
    """The time (epoch seconds) of the latest sample committed to ``db``, None if none:
    where a record that a crash cut off ends (the control service's reattach gap)."""
    conn, own = _open(db)
    try:
        row = conn.execute("SELECT max(t) FROM samples").fetchone()
        return float(row[0]) if row and row[0] is not None else None
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

class NoSamples(RecordsError):
    """A tag the figures need has no samples in the run (e.g. it was interrupted first)."""


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
        self.own_samples = ""
        self.signatures = _signatures(conn, run)
        t0 = run.t_start
        # schema 2: samples carry their run, so another run's samples never enter the window
        # (samples recorded before any run started belong to none and still count)
        own = ""
        if "run_id" in {r[1] for r in conn.execute("PRAGMA table_info(samples)")}:
            own = self.own_samples = f" AND (run_id IS NULL OR run_id = {int(run.id)})"
        last_t = conn.execute(f"SELECT MAX(t) FROM samples WHERE t >= ?{own}",
                              (t0,)).fetchone()[0]
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
                                      f" t <= ?{own} ORDER BY tag_id, t", (t0, t1)):
            raw.setdefault(tid, []).append((t, v))
        for tid, pts in raw.items():
            name, unit, grp = tags[tid]
            arr = np.array(pts, dtype=np.float64).reshape(-1, 2)
            v = np.where(np.isfinite(arr[:, 1]), arr[:, 1], np.nan)
            self.series[name] = _Series(unit, grp, arr[:, 0], v)
        self.events: list[tuple[float, EventKind | str, str, dict[str, Any]]] = [
            (t, kind_of(kind) or kind, source, json.loads(payload))
            for t, kind, source, payload in conn.execute(
                "SELECT t, kind, source, payload FROM events WHERE run_id=? ORDER BY t, id",
                (run.id,))]
        self.alarms = [
            {"name": n, "message": m, "priority": p, "raised": tr, "acknowledged": ta,
             "acked_by": ab, "cleared": tc}
            for n, m, p, tr, ta, ab, tc in conn.execute(
                "SELECT name, message, priority, t_raised, t_acked, acked_by, t_cleared FROM"
                " alarms WHERE run_id=? OR (run_id IS NULL AND t_raised <= ? AND"
                " (t_cleared IS NULL OR t_cleared >= ?)) ORDER BY t_raised, id",
                (run.id, t1, t0))]
        """The run's alarms and the line's that stood during it (raised between runs, e.g.
        a plant-file alarm already in alarm when the run started)."""
        self.chain = _chain_info(conn, run.id)
        recorded = [
            {"t": t, "user": u, "action": a, "target": tg, "old_value": json.loads(o or "null"),
             "new_value": json.loads(nv or "null"), "reason": r}
            for t, u, a, tg, o, nv, r in conn.execute(
                "SELECT t, user, action, target, old_value, new_value, reason FROM"
                " operator_actions WHERE run_id=? ORDER BY t, id", (run.id,))]
        # what people did, and apart from it what the program answered for them (--yes, no
        # terminal): an automatic answer is neither an operator action nor a deviation
        self.actions = [x for x in recorded if x["action"] != AUTOMATIC_ANSWER]
        self.automatic = [x for x in recorded if x["action"] == AUTOMATIC_ANSWER]

    def need(self, tag: str) -> _Series:
        s = self.series.get(tag)
        if s is None:
            known = ", ".join(sorted(self.series)[:20]) or "none"
            raise NoSamples(f"run {self.run.id}: no samples of tag '{tag}' named in the"
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
    """Piecewise-constant time grid over the run, on the union of the tags' sample times.

    Every figure is a sum over the cells of this grid, so windows (production, off-spec,
    feeding) are boolean masks over the same cells and always add up to the whole run.
    """

    def __init__(self, data: _RunData, tags: list[str], cuts: Sequence[float] = ()) -> None:
        a, b = data.run.t_start, data.t_end
        # ``cuts``: further cell edges (a lot's start and end), so windows end exactly there
        pts = [np.array([a, b]), np.array([c for c in cuts if a < c < b], dtype=np.float64)]
        for tg in tags:
            s = data.need(tg)
            pts.append(s.t[(s.t > a) & (s.t < b)])
        edges = np.unique(np.concatenate(pts))
        self.edges = edges
        self.start = edges[:-1]
        self.dt = np.diff(edges)
        self.data = data

    def values(self, tag: str) -> NDArray[np.float64]:
        return _step(self.data.need(tag), self.start)

    def increments(self, tag: str) -> NDArray[np.float64]:
        """What a totaliser added in each cell; a drop (reset) adds nothing, unknown adds 0.

        A stored sample holds until the next, so the amount a sample reports arrives in the
        cell that ends at that sample: the interval during which it was delivered.
        """
        v = _step(self.data.need(tag), self.edges)
        d = np.diff(v)
        return np.where(np.isfinite(d) & (d > 0), d, 0.0)

    def integral(self, y: NDArray[np.float64], mask: NDArray[np.bool_] | None = None) -> float:
        w = self.dt if mask is None else self.dt * mask
        good = np.isfinite(y)
        return float(np.sum(np.where(good, y, 0.0) * w))


_BASES = (("mass", "g"), ("volume", "mL"), ("molar", "mol"))


def _kind(unit: str, per_time: bool) -> tuple[str, str]:
    """("mass" | "volume" | "molar", base unit) of a flow (per time) or a totaliser unit."""
    for kind, base in _BASES:
        if compatible(unit, f"{base}/s" if per_time else base):
            return kind, base
    what = "flow (per time)" if per_time else "totaliser (cumulative amount)"
    raise RecordsError(f"tag unit '{unit}' is not a mass, volume or molar {what}; a stream"
                       f" tag in the figures metadata must be one")


class _Stream:
    """Per-cell amounts of one stream in g, mL and mol (None where the spec cannot say)."""

    def __init__(self, grid: _Grid, spec: StreamSpec) -> None:
        self.spec = spec
        if spec.totaliser is not None:
            unit = grid.data.need(spec.totaliser).unit
            kind, base = _kind(unit, per_time=False)
            raw = grid.increments(spec.totaliser) * convert(1.0, base, unit)
        else:
            assert spec.tag is not None
            unit = grid.data.need(spec.tag).unit
            kind, base = _kind(unit, per_time=True)
            y = grid.values(spec.tag) * convert(1.0, f"{base}/s", unit)
            raw = np.where(np.isfinite(y), y, 0.0) * grid.dt
        if spec.tag is not None:
            flow = grid.values(spec.tag)
            self.running: NDArray[np.bool_] = np.isfinite(flow) & (flow > 0)
        else:
            self.running = raw > 0
        density = convert(spec.density, "g/mL") if spec.density else None
        conc = convert(spec.concentration, "mol/mL") if spec.concentration else None
        mm = convert(spec.molar_mass, "g/mol") if spec.molar_mass else None
        g = ml = mol = None
        if kind == "mass":
            g = raw
            ml = g / density if density else None
        elif kind == "volume":
            ml = raw
            g = ml * density if density else None
        else:
            mol = raw
            g = mol * mm if mm else None
        if mol is None:
            if conc is not None and ml is not None:
                mol = ml * conc
            elif mm is not None and g is not None:
                mol = g / mm
        self.g, self.ml, self.mol = g, ml, mol

    @staticmethod
    def _sum(x: NDArray[np.float64] | None, mask: NDArray[np.bool_] | None) -> float | None:
        if x is None:
            return None
        return float(np.sum(x if mask is None else x * mask))

    def mass_g(self, mask: NDArray[np.bool_] | None = None) -> float | None:
        return self._sum(self.g, mask)

    def volume_ml(self, mask: NDArray[np.bool_] | None = None) -> float | None:
        return self._sum(self.ml, mask)

    def amount_mol(self, mask: NDArray[np.bool_] | None = None) -> float | None:
        return self._sum(self.mol, mask)


def _round(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{nd}g}")


def _signal_steady(data: _RunData, spec: SteadyStateSpec, t0: float) -> tuple[float | None,
                                                                              float | None]:
    """(time after ``t0`` from which ``spec.tag`` stays in its band, reference value)."""
    assert spec.tag is not None
    s = data.need(spec.tag)
    b = data.t_end
    sel = (s.t >= t0) & (s.t <= b) & np.isfinite(s.v)
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
        return max(0.0, float(t[0] - t0)), ref
    last_bad = int(np.nonzero(bad)[0][-1])
    if last_bad + 1 >= len(t):
        return None, ref
    return float(t[last_bad + 1] - t0), ref


def run_figures(db: str | Path | sqlite3.Connection, run_id: int) -> dict[str, Any]:
    """The figures of one run as plain data (what the JSON report holds under ``figures``).

    Masses in g, volumes in mL, amounts in mol, times in s (``*_at_s`` relative to the run
    start), percentages in %; a figure that the metadata does not allow to compute is None,
    with the reason in ``notes``. Definitions: docs/records.md.
    """
    conn, own = _open(db)
    try:
        run = _as_seen(get_run(conn, run_id), db)
        data = _RunData(conn, run)
    finally:
        if own:
            conn.close()
    return _figures(data)


def _as_seen(run: RunInfo, db: str | Path | sqlite3.Connection) -> RunInfo:
    """A run left ``running`` by a writer that is gone is shown as interrupted.

    Why here and not in the file: a reader never writes (the chain needs the key, and one
    writer owns the file); the next writer of the database records the interruption.
    """
    if run.result != "running" or isinstance(db, sqlite3.Connection) or writer_alive(db):
        return run
    return replace(run, result="interrupted", note=(
        f"{run.note} " if run.note else "") + "its writer is gone without ending it; the next"
        " writer of this database records it as interrupted")


def _spec(run: RunInfo) -> FigureSpec:
    try:
        return FigureSpec.model_validate(run.metadata.get("figures", {}))
    except ValueError as exc:
        raise RecordsError(f"run {run.id}: figures metadata is invalid: {exc}") from exc


def _pct(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return 100.0 * num / den


def _figures(data: _RunData) -> dict[str, Any]:
    run = data.run
    a = run.t_start
    duration = data.t_end - a
    out: dict[str, Any] = {"duration_s": _round(duration)}
    notes: list[str] = []
    spec = _spec(run)
    devs = _deviations(data)
    out["deviations"] = len(devs)
    out["interlock_trips"] = sum(1 for d in devs if d["kind"] == "interlock")
    out["holds"] = sum(1 for d in devs if d["kind"] == "hold")
    out["hold_time_s"] = _round(sum(d["duration_s"] or 0.0 for d in devs if d["kind"] == "hold"))
    out["sim_faults"] = sum(1 for d in devs if d["kind"] == "sim_fault")
    out["alarms"] = len(data.alarms)
    out["operator_actions"] = len(data.actions)
    out["automatic_answers"] = len(data.automatic)
    if duration <= 0:
        notes.append("run has no duration: no flow figures")
        out["notes"] = notes
        return out
    na: dict[str, str] = {}
    try:
        _flow_figures(data, spec, out, notes)
    except NoSamples as exc:
        # an interrupted or early-stopped run: say which figures are missing and why
        reason = f"{exc}; the run ended '{run.result}' after {duration:.0f} s"
        na.update((k, reason) for k in _sample_keys(spec) if out.get(k) is None)
    for iv in spec.intervals:
        try:
            out.update(_interval(data, iv, notes))
        except NoSamples as exc:
            keys = [f"{iv.name}.duration_s", *(f"{iv.name}.{k}" for k in iv.counters),
                    *(f"{iv.name}.{k}" for k in iv.values)]
            na.update((k, f"{exc}; the run ended '{run.result}'") for k in keys)
    for k in na:
        out[k] = None
    if na:
        out["not_available"] = na
        notes.append(f"{len(na)} figure(s) not available: {next(iter(na.values()))}")
    out["notes"] = notes
    if _balance_deviation(data, spec, out) is not None:
        out["deviations"] += 1
    return out


def _sample_keys(spec: FigureSpec) -> list[str]:
    """The figures computed from samples that ``spec`` asks for (to mark them unavailable)."""
    keys = ["feed_start_at_s", "time_to_steady_state_s", "steady_state_at_s"]
    if spec.divert_tag:
        keys += ["production_time_s", "production_start_at_s", "production_end_at_s",
                 "off_spec_time_s", "off_spec_volume_ml", "off_spec_mass_g"]
    if spec.product is not None:
        keys += ["product_stream_mass_g", "product_stream_volume_ml", "product_g",
                 "product_total_g", "throughput_g_per_h", "throughput_overall_g_per_h",
                 "yield_pct", "overall_yield_pct"]
        if spec.workup is not None:
            keys += ["workup_recovery_pct", "isolated_product_g", "isolated_product_total_g",
                     "isolated_throughput_g_per_h", "isolated_yield_pct",
                     "overall_isolated_yield_pct"]
    if spec.purity_tag:
        keys += ["purity_mean_pct", "purity_min_pct"]
        if spec.purity_spec is not None:
            keys.append("purity_below_spec_s")
    if spec.feeds:
        keys += ["mass_in_g", "mass_out_g", "material_balance_pct"]
    return keys


def _flow_figures(data: _RunData, spec: FigureSpec, out: dict[str, Any],
                  notes: list[str]) -> None:
    """The figures computed from samples; raises :class:`NoSamples` when a tag has none."""
    a = data.run.t_start
    duration = data.t_end - a
    tags: list[str] = []
    for st in spec.streams():
        tags += [t for t in (st.tag, st.totaliser) if t]
    tags += [t for t in (spec.purity_tag, spec.divert_tag) if t]
    lots = [(lot, *_lot_window(data, lot, notes)) for lot in spec.lots]
    grid = _Grid(data, tags, [t for _, x, y in lots for t in (x, y) if t is not None])
    streams = {st.key: _Stream(grid, st) for st in spec.streams()}
    feeds = [streams[f.key] for f in spec.feeds]
    lim = streams[spec.feed(spec.limiting_feed).key] if spec.limiting_feed else None

    # -- windows: feeding (limiting feed, else any feed, running), production (to product)
    if lim is not None:
        feeding = lim.running
    elif feeds:
        feeding = np.logical_or.reduce([f.running for f in feeds])
    else:
        feeding = np.zeros(grid.dt.shape, dtype=bool)
    prod: NDArray[np.bool_] | None = None
    if spec.divert_tag:
        dv = grid.values(spec.divert_tag)
        high = np.isfinite(dv) & (dv > 0.5)
        prod = high if spec.divert_product_state == "high" else np.isfinite(dv) & ~high
        out["production_time_s"] = _round(float(np.sum(grid.dt[prod])))
        if prod.any():
            idx = np.nonzero(prod)[0]
            out["production_start_at_s"] = _round(float(grid.start[idx[0]] - a))
            out["production_end_at_s"] = _round(float(grid.edges[idx[-1] + 1] - a))
        else:
            notes.append(f"{spec.divert_tag} never sent the stream to product: production"
                         " figures are None")
    else:
        notes.append("no divert_tag: production figures are taken over the whole run")

    # -- start-up: feed start and steady state
    t0 = _feed_start(data, spec, grid, feeding, notes)
    out["feed_start_at_s"] = _round(None if t0 is None else t0 - a)
    _steady(data, spec, t0, out, notes)

    # -- product, yield, throughput: production window and whole run
    mm = convert(spec.product_molar_mass, "g/mol") if spec.product_molar_mass else None
    if spec.product is not None:
        p = streams[spec.product.key]
        compound = _compound(grid, spec, p, mm, notes)
        win = prod if prod is not None else None
        win_h = (float(np.sum(grid.dt[win])) if win is not None else duration) / 3600.0
        prod_g = float(np.sum(compound * win)) if compound is not None and win is not None \
            else (float(np.sum(compound)) if compound is not None else None)
        total_g = float(np.sum(compound)) if compound is not None else None
        out["product_stream_mass_g"] = _round(p.mass_g(win))
        out["product_stream_volume_ml"] = _round(p.volume_ml(win))
        out["product_g"] = _round(prod_g)
        out["product_total_g"] = _round(total_g)
        out["throughput_g_per_h"] = _round(prod_g / win_h if prod_g is not None and win_h > 0
                                           else None)
        out["throughput_overall_g_per_h"] = _round(
            total_g / (duration / 3600.0) if total_g is not None else None)
        lim_win = lim.amount_mol(win) if lim is not None else None
        lim_all = lim.amount_mol() if lim is not None else None
        yw = yt = None
        if lim is not None and mm and prod_g is not None and total_g is not None:
            yw = _pct(prod_g / mm, None if lim_win is None else lim_win * spec.stoichiometry)
            yt = _pct(total_g / mm, None if lim_all is None else lim_all * spec.stoichiometry)
        elif spec.limiting_feed:
            notes.append("yield needs the limiting feed's concentration or molar_mass and"
                         " product_molar_mass")
        out["yield_pct"] = _round(yw)
        out["overall_yield_pct"] = _round(yt)
        if spec.workup is not None:
            rec = spec.workup.recovery
            out["workup_recovery_pct"] = _round(100.0 * rec)
            out["isolated_product_g"] = _round(None if prod_g is None else prod_g * rec)
            out["isolated_product_total_g"] = _round(None if total_g is None else total_g * rec)
            out["isolated_throughput_g_per_h"] = _round(
                None if out["throughput_g_per_h"] is None else out["throughput_g_per_h"] * rec)
            out["isolated_yield_pct"] = _round(None if yw is None else yw * rec)
            out["overall_isolated_yield_pct"] = _round(None if yt is None else yt * rec)

    # -- purity over the production window
    if spec.purity_tag:
        pur = grid.values(spec.purity_tag) * convert(
            1.0, "percent", data.need(spec.purity_tag).unit or "")
        w = grid.dt if prod is None else grid.dt * prod
        good = np.isfinite(pur) & (w > 0)
        out["purity_mean_pct"] = _round(float(np.sum(pur[good] * w[good]) / np.sum(w[good]))) \
            if good.any() else None
        out["purity_min_pct"] = _round(float(np.min(pur[good]))) if good.any() else None
        if spec.purity_spec is not None:
            below = np.isfinite(pur) & (pur < spec.purity_spec) & feeding
            out["purity_below_spec_s"] = _round(float(np.sum(grid.dt[below])))

    # -- off-spec: diverted to waste while feeding
    if prod is not None:
        off = feeding & ~prod
        out["off_spec_time_s"] = _round(float(np.sum(grid.dt[off])))
        if spec.waste is not None:
            ws = streams[spec.stream(spec.waste).key]
            out["off_spec_volume_ml"] = _round(ws.volume_ml(feeding))
            out["off_spec_mass_g"] = _round(ws.mass_g(feeding))
            out["off_spec_source"] = f"outlet {ws.spec.key}"
        else:
            keys = spec.diverted_feeds if spec.diverted_feeds is not None else \
                [f.key for f in spec.feeds]
            parts = [streams[spec.stream(k).key] for k in keys]
            vols = [x.volume_ml(off) for x in parts]
            masses = [x.mass_g(off) for x in parts]
            out["off_spec_volume_ml"] = _round(None if None in vols or not parts
                                               else sum(v for v in vols if v is not None))
            out["off_spec_mass_g"] = _round(None if None in masses or not parts
                                            else sum(m for m in masses if m is not None))
            out["off_spec_source"] = "feeds " + ", ".join(keys)
        if out["off_spec_volume_ml"] is None:
            notes.append("off-spec volume needs volume totalisers or flows, or densities")

    # -- material balance over the boundary
    if spec.feeds:
        if spec.balance is not None:
            ins = [spec.stream(k).key for k in spec.balance.inputs]
            outs = [spec.stream(k).key for k in spec.balance.outputs]
        else:
            ins = [f.key for f in spec.feeds]
            outs = [st.key for st in ([spec.product] if spec.product else []) + spec.outlets]
        in_g = [streams[k].mass_g() for k in ins]
        out_g = [streams[k].mass_g() for k in outs]
        total_in = None if None in in_g else float(sum(x for x in in_g if x is not None))
        total_out = None if (None in out_g or not out_g) else float(
            sum(x for x in out_g if x is not None))
        out["mass_in_g"] = _round(total_in)
        out["mass_out_g"] = _round(total_out)
        out["material_balance_pct"] = _round(_pct(total_out, total_in))
        out["balance_boundary"] = {"in": ins, "out": outs}
        if total_in is None or total_out is None:
            missing = [k for k, g in zip([*ins, *outs], [*in_g, *out_g], strict=True)
                       if g is None]
            notes.append("material balance needs every stream in mass, or with a density"
                         f" (missing: {', '.join(missing) or 'outlets'})")
    out["streams"] = {k: {"mass_g": _round(st.mass_g()), "volume_ml": _round(st.volume_ml()),
                          "mol": _round(st.amount_mol())} for k, st in streams.items()}
    if lots:
        assert prod is not None  # FigureSpec: lots need divert_tag
        ctx = _LotContext(grid, spec, streams, prod, feeding, lim)
        out["lots"] = [_lot_figures(ctx, lot, x, y, notes) for lot, x, y in lots]


def _lot_window(data: _RunData, lot: LotSpec, notes: list[str]) -> tuple[float | None,
                                                                          float | None]:
    """(start, end) of a lot: the first starts of its steps; no ``end``: the run's end."""
    a = _step_start(data, lot.start)
    b = data.t_end if lot.end is None else _step_start(data, lot.end)
    if a is None or b is None or b < a:
        missing = [n for n, t in ((lot.start, a), (lot.end, b)) if t is None and n]
        notes.append(f"lot {lot.name}: " + (f"step(s) {', '.join(missing)} never started"
                                            if missing else
                                            f"step {lot.end} started before {lot.start}"))
        return None, None
    return a, b


@dataclass(frozen=True)
class _LotContext:
    """What the whole-run figures computed that the lots reuse (same grid, same windows)."""

    grid: _Grid
    spec: FigureSpec
    streams: dict[str, _Stream]
    prod: NDArray[np.bool_]
    feeding: NDArray[np.bool_]
    lim: _Stream | None


LOT_KEYS = ("start_at_s", "end_at_s", "duration_s", "production_time_s", "product_g",
            "throughput_g_per_h", "yield_pct", "purity_mean_pct", "purity_min_pct",
            "purity_below_spec_s", "on_spec_volume_ml", "diverted_volume_ml")
"""The figures of one lot, in the order the report and the summary show them."""


def _lot_figures(ctx: _LotContext, lot: LotSpec, a: float | None, b: float | None,
                 notes: list[str]) -> dict[str, Any]:
    """One lot's figures over the cells of its window (definitions: docs/records.md, Lots)."""
    out: dict[str, Any] = {"name": lot.name, "start_step": lot.start, "end_step": lot.end}
    out.update(dict.fromkeys(LOT_KEYS))
    if a is None or b is None:
        return out
    grid, spec, t0 = ctx.grid, ctx.spec, ctx.grid.data.run.t_start
    inside = (grid.start >= a) & (grid.start < b)
    win = ctx.prod & inside
    hours = float(np.sum(grid.dt[win])) / 3600.0
    out.update(start_at_s=_round(a - t0), end_at_s=_round(b - t0), duration_s=_round(b - a),
               production_time_s=_round(hours * 3600.0))
    mm_text = lot.product_molar_mass or spec.product_molar_mass
    mm = convert(mm_text, "g/mol") if mm_text else None
    if spec.product is not None:
        scratch: list[str] = []  # the whole-run figures already said why a basis is missing
        compound = _compound(grid, spec, ctx.streams[spec.product.key], mm, scratch)
        if compound is not None:
            prod_g = float(np.sum(compound * win))
            out["product_g"] = _round(prod_g)
            out["throughput_g_per_h"] = _round(prod_g / hours) if hours > 0 else None
            lim_mol = _limiting_mol(ctx.lim, lot, win)
            if mm and lim_mol is not None:
                out["yield_pct"] = _round(_pct(prod_g / mm, lim_mol * spec.stoichiometry))
    if spec.purity_tag:
        pur = grid.values(spec.purity_tag) * convert(
            1.0, "percent", grid.data.need(spec.purity_tag).unit or "")
        w = grid.dt * win
        good = np.isfinite(pur) & (w > 0)
        if good.any():
            out["purity_mean_pct"] = _round(float(np.sum(pur[good] * w[good]) / np.sum(w[good])))
            out["purity_min_pct"] = _round(float(np.min(pur[good])))
        limit = lot.purity_spec if lot.purity_spec is not None else spec.purity_spec
        if limit is not None:
            below = np.isfinite(pur) & (pur < limit) & ctx.feeding & inside
            out["purity_below_spec_s"] = _round(float(np.sum(grid.dt[below])))
    if spec.on_spec is not None:
        out["on_spec_volume_ml"] = _round(ctx.streams[spec.stream(spec.on_spec).key]
                                          .volume_ml(inside))
    if spec.waste is not None:
        out["diverted_volume_ml"] = _round(ctx.streams[spec.stream(spec.waste).key]
                                           .volume_ml(inside))
    if out["on_spec_volume_ml"] is None and out["diverted_volume_ml"] is None:
        notes.append(f"lot {lot.name}: on-spec and diverted volumes need the figures' on_spec"
                     " and waste outlets")
    return out


def _limiting_mol(lim: _Stream | None, lot: LotSpec,
                  win: NDArray[np.bool_]) -> float | None:
    """Moles of the limiting reagent fed in ``win``: at the lot's own concentration when it
    gives one (another reagent on the same pump), else as the whole-run figures count them."""
    if lim is None:
        return None
    if lot.limiting_concentration is not None:
        ml = lim.volume_ml(win)
        return None if ml is None else ml * convert(lot.limiting_concentration, "mol/mL")
    return lim.amount_mol(win)


def _feed_start(data: _RunData, spec: FigureSpec, grid: _Grid, feeding: NDArray[np.bool_],
                notes: list[str]) -> float | None:
    """t0 of the start-up: the named step's start, else the first cell with feed running."""
    if spec.start_step is not None:
        for t, kind, source, payload in data.events:
            if kind is EventKind.STEP_TRANSITION and (payload.get("step") == spec.start_step or (
                    source == spec.start_step and "started" in str(payload.get("message")))):
                return float(t)
        notes.append(f"start_step '{spec.start_step}' never started: feed start taken from"
                     " the feed signals")
    if feeding.any():
        return float(grid.start[int(np.argmax(feeding))])
    if spec.feeds:
        notes.append("no feed ever ran: no feed start")
    return None


def _steady(data: _RunData, spec: FigureSpec, t0: float | None, out: dict[str, Any],
            notes: list[str]) -> None:
    ss = spec.steady_state
    name = ss.event if ss is not None else None
    ref_t = t0 if t0 is not None else data.run.t_start
    for t, kind, source, payload in data.events:
        if kind is EventKind.STEADY_STATE and payload.get("steady") is True and (
                name is None or source == name):
            out["time_to_steady_state_s"] = _round(max(0.0, t - ref_t))
            out["steady_state_at_s"] = _round(t - data.run.t_start)
            out["steady_state_source"] = f"event {source}".strip()
            return
    if ss is None or ss.tag is None:
        if ss is not None:
            notes.append("no steady_state event in the run and no steady_state.tag to fall"
                         " back on")
        return
    tss, ref = _signal_steady(data, ss, ref_t)
    out["time_to_steady_state_s"] = _round(tss)
    out["steady_state_at_s"] = _round(None if tss is None else ref_t + tss - data.run.t_start)
    out["steady_state_source"] = f"signal {ss.tag}"
    out["steady_state_reference"] = _round(ref)
    if tss is None:
        notes.append(f"{ss.tag} never settled within {ss.tolerance:.1%} of its reference")


def _compound(grid: _Grid, spec: FigureSpec, p: _Stream, mm: float | None,
              notes: list[str]) -> NDArray[np.float64] | None:
    """Grams of the compound itself per cell, by ``product_basis``."""
    basis = spec.product_basis
    assert spec.product is not None
    if basis == "auto":
        if spec.product.concentration and mm:
            basis = "concentration"
        elif spec.purity_tag and p.g is not None:
            basis = "purity"
        else:
            basis = "stream"
    if basis == "concentration":
        if p.mol is None or not mm or not spec.product.concentration:
            notes.append("product_basis concentration needs the product's concentration, a"
                         " volume (or density) and product_molar_mass")
            return None
        return p.mol * mm
    if p.g is None:
        notes.append("product mass unknown: give the product stream a density, or a mass"
                     " flow or mass totaliser tag")
        return None
    if basis == "purity":
        if not spec.purity_tag:
            notes.append("product_basis purity needs purity_tag")
            return None
        frac = grid.values(spec.purity_tag) * convert(
            1.0, "", grid.data.need(spec.purity_tag).unit or "")
        return np.where(np.isfinite(frac), p.g * frac, 0.0)
    return p.g


_HOLD_STATES = frozenset(s.label for s in HOLD_STATES)


AUTOMATIC_ANSWER = "automatic answer"
"""The operator-action kind of a prompt the program answered (user ``auto``): listed in
the report as an automatic answer, never counted as an operator action or deviation."""

_LISTED = frozenset({EventKind.COMMAND_REFUSED, EventKind.COMMAND_TIMEOUT, EventKind.DIVERT_FAILED,
                     EventKind.GOTO, EventKind.OPERATOR_PROMPT})
"""Event kinds listed among the deviations as they are, without a duration."""


def _balance_deviation(data: _RunData, spec: FigureSpec,
                       figures: Mapping[str, Any]) -> dict[str, Any] | None:
    """The material balance outside its declared tolerance (or not computable while one
    is declared), as a deviation at the run's end; None when within or none declared."""
    tol = spec.balance.tolerance if spec.balance is not None else None
    if tol is None:
        return None
    pct = figures.get("material_balance_pct")
    if pct is not None and abs(float(pct) - 100.0) <= tol:
        return None
    if pct is None:  # why: the samples' gap, or the masses the balance lacks
        reason = (figures.get("not_available") or {}).get("material_balance_pct") or "; ".join(
            n for n in figures.get("notes", []) if n.startswith("material balance"))
        why = f"cannot be computed: {reason or 'no flow figures'}"
    else:
        why = (f"{float(pct):.4g} % (in {float(figures['mass_in_g']):.4g} g, out "
               f"{float(figures['mass_out_g']):.4g} g), outside 100 ± {tol:g} %: a stream "
               "not metered, a leak, or a record that is wrong")
    t = data.t_end
    return {"t": t, "at_s": _round(t - data.run.t_start), "kind": "material_balance",
            "source": "figures", "duration_s": None, "details": f"material balance {why}"}


def _all_deviations(data: _RunData, figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events' deviations and the figures' (a material balance out of tolerance)."""
    devs = _deviations(data)
    balance = _balance_deviation(data, _spec(data.run), figures)
    return [*devs, balance] if balance is not None else devs


def _deviations(data: _RunData) -> list[dict[str, Any]]:
    """Interlock trips, holds, faults, operator answers and other departures, in time order.

    Paired events (trip/clear, hold/release, fault start/end) become one entry with its
    duration; one that never ended has ``duration_s`` None (it lasted to the end of the run).
    """
    a = data.run.t_start
    items: list[dict[str, Any]] = []
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    divert_on, was_product = True, False

    def add(t: float, kind: str, source: str, details: str,
            key: tuple[str, str] | None = None) -> None:
        item = {"t": t, "at_s": _round(t - a), "kind": kind, "source": source,
                "duration_s": None, "details": details}
        items.append(item)
        if key is not None:
            open_[key] = item

    def close(key: tuple[str, str], t: float, extra: str = "") -> None:
        item = open_.pop(key, None)
        if item is not None:
            item["duration_s"] = _round(t - item["t"])
            if extra:
                item["details"] = f"{item['details']}; {extra}"

    for t, kind, source, p in data.events:
        if kind is EventKind.INTERLOCK_TRIPPED:
            add(t, "interlock", source, f"{p.get('condition', '')} -> {p.get('action', '')}"
                .strip(), ("interlock", source))
        elif kind is EventKind.INTERLOCK_CLEARED:
            close(("interlock", source), t)
        elif kind is EventKind.STATE_CHANGE and source == "recipe":
            state = str(p.get("state"))
            if state in _HOLD_STATES:
                if ("hold", "recipe") not in open_:
                    add(t, "hold", "recipe", str(p.get("reason") or "hold"), ("hold", "recipe"))
            else:
                close(("hold", "recipe"), t, f"then {state}")
        elif kind is EventKind.SIM_FAULT:
            fault = str(p.get("fault", ""))
            if p.get("phase") == "end":
                close(("sim_fault", f"{source}:{fault}"), t)
            else:
                add(t, "sim_fault", source, fault, ("sim_fault", f"{source}:{fault}"))
        elif kind is EventKind.FAULT:
            add(t, "module_fault", source, str(p.get("message", "")), ("fault", source))
        elif kind is EventKind.MODULE_RECOVERED:
            close(("fault", source), t)
        elif kind is EventKind.DEVIATION:
            add(t, "deviation", source, json.dumps({k: v for k, v in p.items()
                                                    if k != "sim_time"}, sort_keys=True))
        elif kind is EventKind.DIVERT_ENABLED:
            divert_on, was_product = True, False
        elif kind is EventKind.DIVERT_DISABLED:
            divert_on = False
        elif kind is EventKind.DIVERT:
            if p.get("to_product") is True:
                close(("off_spec", source), t)
                was_product = True
            elif divert_on and was_product:
                add(t, "off_spec", source, "diverted to waste during production",
                    ("off_spec", source))
        elif kind in _LISTED:
            add(t, kind, source, str(p.get("message", "")))
    for act in data.actions:
        if act["action"] == "answer":
            add(act["t"], "operator_answer", act["target"] or "",
                f"{act['user']}: {json.dumps(act['new_value'])} ({act['reason']})")
    items.sort(key=lambda d: d["t"])
    return items


def _step_start(data: _RunData, step: str) -> float | None:
    """When the step named ``step`` first started (its first step transition event)."""
    for t, kind, source, payload in data.events:
        if kind is EventKind.STEP_TRANSITION and (payload.get("step") == step or source == step):
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
    keys = [f"{iv.name}.duration_s", *(f"{iv.name}.{k}" for k in iv.counters),
            *(f"{iv.name}.{k}" for k in iv.values)]
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
    for figure, val in iv.values.items():
        at = b if val.at is None else _step_start(data, val.at)
        if at is None:
            notes.append(f"interval {iv.name}: step {val.at} never started: no {figure}")
            out[f"{iv.name}.{figure}"] = None
            continue
        out[f"{iv.name}.{figure}"] = _round(float(_step(data.need(val.tag),
                                                        np.array([at]))[0]))
    return out


# ---------------------------------------------------------------------------- exports

def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _chain_info(conn: sqlite3.Connection, run_id: int) -> dict[str, Any]:
    """Where the run record sits in the keyed chain, to compare with the anchor file."""
    try:
        head = conn.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        own = conn.execute("SELECT seq, hash FROM chain WHERE kind='runs' AND ref=?"
                           " ORDER BY seq DESC LIMIT 1", (run_id,)).fetchone()
    except sqlite3.OperationalError:  # schema 1: no chain
        return {"keyed": False, "note": "legacy database: no keyed, anchored records chain"}
    return {"keyed": True,
            "run_record_link": None if own is None else {"seq": own[0], "hash": own[1]},
            "head": None if head is None else {"seq": head[0], "hash": head[1]},
            "verify": "modulecontrol audit verify --db <db> --key <key> --anchor <anchor>"}


def _alarm_kpis(data: _RunData) -> AlarmKpis:
    """The run's alarm KPIs (ISA-18.2) from its ``alarm_state`` events, by the default
    philosophy's thresholds (the API's ``/alarms/kpis`` applies the line's own)."""
    changes = [{**p, "t": t, "name": src} for t, k, src, p in data.events
               if k == EventKind.ALARM_STATE]
    return alarm_kpis(changes, data.run.t_start, data.t_end)


def _signatures(conn: sqlite3.Connection, run: RunInfo) -> list[dict[str, Any]]:
    """Signatures on the batch record and on the recipe version the run ran (production)."""
    out = [{"on": "batch record", **asdict(s)} for s in run_signatures(conn, run.id)]
    cols = ("id", "t_utc", "user", "printed_name", "meaning", "action", "object",
            "signed_hash", "reason")
    with contextlib.suppress(sqlite3.OperationalError):
        # signed actions during the run (interlock bypass, divert override): signatures on
        # the audit entries whose object is the run's (``run:N/...``)
        for row in conn.execute(
                "SELECT s.id, s.t_utc, s.user, s.printed_name, s.meaning, s.action, s.object,"
                " s.signed_hash, s.reason FROM signatures s JOIN audit a"
                " ON s.object = 'audit:' || a.seq WHERE a.object LIKE ? ORDER BY s.id",
                (f"run:{run.id}/%",)):
            out.append({"on": "action during the run", **dict(zip(cols, row, strict=True))})
    rv = run.metadata.get("recipe_version")
    if isinstance(rv, dict) and isinstance(rv.get("id"), int):
        with contextlib.suppress(sqlite3.OperationalError):
            for row in conn.execute(
                    "SELECT id, t_utc, user, printed_name, meaning, action, object,"
                    " signed_hash, reason FROM signatures WHERE object=? ORDER BY id",
                    (f"recipe_version:{rv['id']}",)):
                out.append({"on": "recipe version", **dict(zip(
                    ("id", "t_utc", "user", "printed_name", "meaning", "action", "object",
                     "signed_hash", "reason"), row, strict=True))})
    return out


def run_mode_text(metadata: dict[str, Any]) -> str:
    """The run mode as a report prints it (records from before run modes say so)."""
    mode = metadata.get("mode")
    if not isinstance(mode, str):
        return "not recorded (a record from before run modes)"
    rv = metadata.get("recipe_version")
    if mode == "production" and isinstance(rv, dict):
        return f"production (effective recipe version {rv.get('id')})"
    return f"{mode.upper()}: not a production batch" if mode != "production" else mode


def _optimisation(data: _RunData) -> list[dict[str, Any]]:
    """The run's optimisation campaigns (``optimize_experiment`` events, by campaign): each
    experiment with its set points as written (the ``parameter_write`` events before it:
    value and unit, what the line was given), window KPIs, objective, constraint margins
    and outcome, the best feasible one of this run, and ``applied``: the experiment the line
    ran on at after the search (its ``optimize_best`` event; the campaign's best, which may
    be an earlier run's). From the events alone, as every section: the report can be
    rebuilt without the recipe or the optimiser."""
    out: dict[str, dict[str, Any]] = {}
    written: dict[str, str] = {}
    for t, kind, source, payload in data.events:
        if kind == EventKind.PARAMETER_WRITE:
            written[source] = str(payload.get("given", payload.get("value")))
            continue
        if kind == EventKind.OPTIMIZE_BEST:
            out.setdefault(source, {"campaign": source, "experiments": [], "best": None,
                                    "applied": None})["applied"] = payload.get("index")
            continue
        if kind != EventKind.OPTIMIZE_EXPERIMENT:
            continue
        campaign = out.setdefault(source, {"campaign": source, "experiments": [],
                                           "best": None, "applied": None})
        units, factors = payload.get("units"), payload.get("unit_factors")
        if isinstance(units, dict) and isinstance(factors, dict):  # older records: SI
            campaign["units"] = {str(k): [str(u), float(factors[k])]
                                 for k, u in units.items() if k in factors}
        obj = payload.get("objective")
        campaign["experiments"].append({
            "index": int(payload.get("index", len(campaign["experiments"]))), "t": t,
            "setpoints": {k: written.get(k, f"{v:g}")
                          for k, v in dict(payload.get("setpoints", {})).items()},
            "kpis": dict(payload.get("kpis", {})), "objective": obj,
            "margins": list(payload.get("margins", [])),
            "feasible": bool(payload.get("feasible")), "error": str(payload.get("error", ""))})
    for campaign in out.values():
        feasible = [e for e in campaign["experiments"]
                    if e["feasible"] and isinstance(e["objective"], int | float)]
        if feasible:
            campaign["best"] = max(feasible, key=lambda e: e["objective"])["index"]
    return list(out.values())


def _shown(c: dict[str, Any], name: str, value: float) -> str:
    """A campaign's SI figure as people read it (its ``units``), or in SI if it has none."""
    unit, factor = c.get("units", {}).get(name, ("", 1.0))
    return f"{value * factor:.4g}" + (f" {unit}" if unit else "")


def _optimisation_html(campaigns: list[dict[str, Any]], a: float) -> str:
    parts = []
    for c in campaigns:
        si = "" if c.get("units") else " (SI)"
        rows = []
        for e in c["experiments"]:
            result = (f"failed: {e['error']}" if e["error"] else
                      ("best" if e["index"] == c["best"] else "feasible") if e["feasible"]
                      else "infeasible")
            rows.append([e["index"] + 1, format_elapsed(e["t"] - a),
                         "; ".join(f"{k} = {v}" for k, v in e["setpoints"].items()),
                         "" if e["objective"] is None else _shown(c, "objective",
                                                                  e["objective"]),
                         "; ".join(f"{k} {_shown(c, k, v)}" for k, v in e["kpis"].items()),
                         ", ".join(f"{100.0 * m + 0.0:.3g} %" for m in e["margins"]), result])
        best = next((e for e in c["experiments"] if e["index"] == c["best"]), None)
        summary = (f"{len(c['experiments'])} experiments in this run; best feasible: "
                   + (f"experiment {best['index'] + 1}, objective "
                      f"{_shown(c, 'objective', best['objective'])}"
                      if best is not None else "none")
                   + (f"; the line ran on at experiment {c['applied'] + 1}"
                      if isinstance(c["applied"], int) else ""))
        parts.append(f"<h3>Campaign {html.escape(c['campaign'])}</h3>"
                     f"<p>{html.escape(summary)}. A margin is how far inside its bound a "
                     "constraint's window mean was, relative to the bound (negative: "
                     "violated).</p>"
                     + _table(["#", "since start", "set points (as written)",
                               f"objective{si}", f"KPIs{si}", "margins", "result"], rows))
    return "".join(parts)


def _json_doc(data: _RunData) -> dict[str, Any]:
    run = data.run
    info = asdict(run)
    info.update(t_start_utc=_iso(run.t_start), t_end_utc=_iso(run.t_end))
    figures = _figures(data)
    return {
        "run": info,
        "figures": figures,
        "alarms": data.alarms,
        "alarm_kpis": _alarm_kpis(data).as_dict(),
        "deviations": _all_deviations(data, figures),
        "operator_actions": data.actions,
        "automatic_answers": data.automatic,
        "tags": {n: {"unit": s.unit, "samples": int(np.sum(s.t >= run.t_start))}
                 for n, s in sorted(data.series.items())},
        "record_chain": data.chain,
        "plots": _plot_plan(data).as_json(),
        "mode": run.metadata.get("mode"),
        "signatures": data.signatures,
        "optimisation": _optimisation(data),
    }


def _csv(conn: sqlite3.Connection, data: _RunData) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time_utc", "t_rel_s", "tag", "value", "raw", "quality", "unit"])
    a = data.run.t_start
    for t, name, v, raw, q, unit in conn.execute(
            "SELECT s.t, g.name, s.value, s.raw, s.quality, g.unit FROM samples s JOIN tags g"
            f" ON g.id = s.tag_id WHERE s.t >= ? AND s.t <= ?{data.own_samples}"
            " ORDER BY s.t, g.name",
            (a, data.t_end)):
        w.writerow([_iso(t), f"{t - a:.6f}", name, repr(v) if v is not None else "",
                    "" if raw is None else repr(raw), q, unit])
    return buf.getvalue()


def _gantt_bars(data: _RunData) -> list[tuple[str, float, float, str]]:
    """(row, start, end, state) from state-change and step-transition events."""
    current: dict[str, tuple[float, str]] = {}
    bars: list[tuple[str, float, float, str]] = []
    for t, kind, source, payload in data.events:
        if kind is EventKind.STATE_CHANGE:
            row, st = source or "service", str(payload.get("state", "?"))
        elif kind is EventKind.STEP_TRANSITION:
            row, st = f"recipe {source}".strip(), str(payload.get("step", "?"))
        else:
            continue
        if row in current:
            t0, s0 = current.pop(row)
            bars.append((row, t0, t, s0))
        if st != "(done)":  # a unit procedure that ended leaves its row empty
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
    "duration_s": "duration",
    "feed_start_at_s": "first feed start (after run start)",
    "time_to_steady_state_s": "time to steady state, from first feed start",
    "steady_state_at_s": "steady state reached (after run start)",
    "steady_state_source": "steady state taken from",
    "steady_state_reference": "steady-state reference value",
    "production_time_s": "production time (to product)",
    "production_start_at_s": "production start (after run start)",
    "production_end_at_s": "production end (after run start)",
    "product_g": "product, production window",
    "product_total_g": "product, whole run",
    "product_stream_mass_g": "product stream, production window (mass)",
    "product_stream_volume_ml": "product stream, production window (volume)",
    "throughput_g_per_h": "throughput, production window",
    "throughput_overall_g_per_h": "throughput, whole run",
    "yield_pct": "yield, production window",
    "overall_yield_pct": "yield, whole run",
    "workup_recovery_pct": "work-up recovery (model)",
    "isolated_product_g": "isolated product, production window",
    "isolated_product_total_g": "isolated product, whole run",
    "isolated_throughput_g_per_h": "isolated throughput, production window",
    "isolated_yield_pct": "isolated yield, production window",
    "overall_isolated_yield_pct": "isolated yield, whole run",
    "purity_mean_pct": "purity, time-weighted mean over production",
    "purity_min_pct": "purity, minimum over production",
    "purity_below_spec_s": "time below purity spec while feeding",
    "off_spec_time_s": "off-spec time (to waste while feeding)",
    "off_spec_volume_ml": "off-spec volume (to waste while feeding)",
    "off_spec_mass_g": "off-spec mass (to waste while feeding)",
    "off_spec_source": "off-spec measured by",
    "mass_in_g": "mass in", "mass_out_g": "mass out",
    "material_balance_pct": "material balance (out/in)",
    "balance_boundary": "balance boundary",
    "deviations": "deviations (listed below)", "interlock_trips": "interlock trips",
    "holds": "holds", "hold_time_s": "time held", "sim_faults": "simulated faults",
    "alarms": "alarms", "operator_actions": "operator actions",
    "automatic_answers": "automatic answers (listed below, not deviations)",
}


LOT_LABELS = {
    "start_at_s": "start (after run start)", "end_at_s": "end (after run start)",
    "duration_s": "duration", "production_time_s": "production time (to product)",
    "product_g": "product, production window", "throughput_g_per_h": "throughput",
    "yield_pct": "yield", "purity_mean_pct": "purity, mean while to product",
    "purity_min_pct": "purity, minimum while to product",
    "purity_below_spec_s": "time below purity spec while feeding",
    "on_spec_volume_ml": "on-spec volume (to product)",
    "diverted_volume_ml": "diverted volume (to waste)",
}


def lot_rows(lots: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per lot figure, one column per lot, in human units: the lots table of the HTML
    report and of the run summary alike."""
    rows: list[list[Any]] = [["steps", *(f"{x['start_step']} to {x['end_step'] or 'end'}"
                                        for x in lots)]]
    rows += [[LOT_LABELS[k], *(format_figure(k, x.get(k)) for x in lots)] for k in LOT_KEYS]
    return rows


def _fig_value(v: Any) -> Any:
    if isinstance(v, dict):
        return "; ".join(f"{k}: {', '.join(map(str, x)) if isinstance(x, list) else x}"
                         for k, x in v.items())
    return v


def _plot_plan(data: _RunData) -> PlotPlan:
    return replace(plot_plan(data.run.metadata, data.series, data.run.t_start),
                   windows=_windows(data))


def _windows(data: _RunData) -> list[tuple[str, float, float]]:
    """The windows the trends shade, in seconds after the run start, from the run's events:
    steady state (any detector steady), to product (the divert valve), held (recipe holds),
    no record (the control service was down: the gap a ``run_resumed`` states).

    Why events and not signals: they are what the orchestrator decided on, the same events
    the figures and the deviations are computed from, so the shading and the figures agree.
    """
    a, end = data.run.t_start, data.t_end
    out: list[tuple[str, float, float]] = []
    steady: dict[str, bool] = {}
    since: dict[str, float] = {}

    def switch(kind: str, on: bool, t: float) -> None:
        if on and kind not in since:
            since[kind] = t
        elif not on and kind in since:
            out.append((kind, since.pop(kind) - a, t - a))

    for t, kind, source, p in data.events:
        if kind is EventKind.STEADY_STATE and isinstance(p.get("steady"), bool):
            steady[source] = bool(p["steady"])
            switch("steady state", any(steady.values()), t)
        elif kind is EventKind.DIVERT and isinstance(p.get("to_product"), bool):
            switch("to product", bool(p["to_product"]), t)
        elif kind is EventKind.RUN_RESUMED and isinstance(p.get("gap_from"), int | float) \
                and isinstance(p.get("gap_to"), int | float):
            out.append(("no record", max(float(p["gap_from"]), a) - a,
                        min(float(p["gap_to"]), end) - a))
    for k, t0 in since.items():
        out.append((k, t0 - a, end - a))
    for d in _deviations(data):
        if d["kind"] == "hold":
            t1 = d["t"] + d["duration_s"] if d["duration_s"] is not None else end
            out.append(("held", d["t"] - a, t1 - a))
    return sorted(out, key=lambda w: (w[1], w[0]))


def _clock_rows(run: RunInfo) -> list[list[Any]]:
    """Start and end as the reader needs them: wall-clock UTC for a real-time run; for a run on
    an accelerated (simulated) clock the simulated duration and, when recorded, the wall-clock
    start, since its stored times are simulated seconds mapped onto a date, not wall time."""
    if not is_simulated_time(run.metadata):
        return [["start (UTC)", _iso(run.t_start)], ["end (UTC)", _iso(run.t_end)]]
    clock = run.metadata.get("clock")
    wall = clock.get("wall_start_utc") if isinstance(clock, dict) else None
    speed = clock.get("scale") if isinstance(clock, dict) else run.metadata.get("speed")
    return [["time base", f"simulated clock ({speed}x): times are simulated time since the"
             " start of the run (h:mm:ss), not wall-clock time"],
            ["wall-clock start (UTC)", wall or "not recorded"],
            ["simulated duration", format_elapsed(run.duration_s)]]


def _calibration_rows(metadata: dict[str, Any]) -> list[list[Any]]:
    """The calibrated overlays the plant's models ran with (path and SHA-256, as the run
    metadata keeps them); none for a run without, or recorded before they were kept."""
    cals = metadata.get("calibrations")
    if not isinstance(cals, list):
        return []
    return [["calibration", f"{c.get('file', '?')} SHA-256 {c.get('sha256', '?')}"]
            for c in cals if isinstance(c, dict)]


def _html(data: _RunData) -> str:
    doc = _json_doc(data)
    run, figs = data.run, doc["figures"]
    a = run.t_start
    simulated = is_simulated_time(run.metadata)

    def when(t: float | None) -> str:
        """An event time: since start (simulated runs), or since start and UTC."""
        if t is None:
            return ""
        return format_elapsed(t - a) if simulated else f"{format_elapsed(t - a)} ({_iso(t)})"

    info: list[list[Any]] = [["run", run.id], ["mode", run_mode_text(run.metadata)],
            ["recipe", f"{run.recipe_name} {run.recipe_version}"],
            ["recipe SHA-256", run.recipe_hash], ["plant SHA-256", run.plant_hash],
            *_calibration_rows(run.metadata),
            ["operator", run.operator], *_clock_rows(run), ["result", run.result],
            ["note", run.note], ["parameters", json.dumps(run.parameters, sort_keys=True)]]
    na = figs.get("not_available", {})
    fig_rows = [[_FIG_LABELS.get(k, k),
                 f"not available: {na[k]}" if k in na else format_figure(k, _fig_value(v))]
                for k, v in figs.items()
                if k not in ("notes", "streams", "not_available", "lots")]
    lots = figs.get("lots") or []
    lot_t = _table(["figure", *(str(x["name"]) for x in lots)],
                   lot_rows(lots)) if lots else ""
    ch = doc["record_chain"]
    link = ch.get("run_record_link")
    info.append(["record chain", f"run record at link {link['seq']} {link['hash']}; head"
                 f" {ch['head']['seq']} {ch['head']['hash']} (compare with the anchor file)"
                 if link and ch.get("head") else ch.get("note", "not chained")])
    stream_rows = [[k, format_figure("_g", v["mass_g"]), format_figure("_ml", v["volume_ml"]),
                    format_figure("_mol", v["mol"])] for k, v in figs.get("streams", {}).items()]
    fig_rows += [["note", n] for n in figs.get("notes", [])]
    alarms = [[al["name"], al["priority"], al["message"], when(al["raised"]),
               when(al["acknowledged"]), al["acked_by"], when(al["cleared"])]
              for al in data.alarms]
    devs = [[format_elapsed(d["at_s"]), d["kind"], d["source"],
             format_elapsed(d["duration_s"]) if d["duration_s"] is not None else "", d["details"]]
            for d in doc["deviations"]]
    acts = [[when(x["t"]), x["user"], x["action"], x["target"],
             json.dumps(x["old_value"]), json.dumps(x["new_value"]), x["reason"]]
            for x in data.actions]
    autos = [[when(x["t"]), x["user"], x["target"], json.dumps(x["new_value"]),
              x["reason"]] for x in data.automatic]
    plan = _plot_plan(data)
    imgs = "".join(f"<h3>{html.escape(g)}</h3><img alt='{html.escape(g)}'"
                   f" src='data:image/png;base64,{p}'>"
                   for g, p in render(plan, data.series, a, data.t_end, _gantt_bars(data)))
    const_t = _table(["signal", "value", "unit"],
                     [[n, f"{v:.6g}", u] for n, v, u in plan.constants])
    empty = (f"<p class='none'>no samples in this run: {html.escape(', '.join(plan.no_data))}"
             "</p>") if plan.no_data else ""
    style = ("body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:"
             "collapse;margin:0.5em 0}td,th{border:1px solid #999;padding:2px 6px;font-size:"
             "0.85em;text-align:left}th{background:#eee}img{max-width:100%}.none{color:#777}")
    title = f"Batch report: run {run.id} ({run.recipe_name})"
    t_head = "since start" if simulated else "since start (UTC)"
    alarm_t = _table(["name", "priority", "message", f"raised {t_head}", "acknowledged", "by",
                      "cleared"], alarms)
    k = doc["alarm_kpis"]
    kpi_rows = [
        ["alarms (annunciated)", str(k["annunciations"])],
        ["alarms per 10 min per operator", f"{k['per_10min_per_operator']:.2f}"],
        ["busiest 10 min", str(k["max_per_10min"])],
        ["flood periods (> 10 in 10 min)", "; ".join(
            f"{format_elapsed(f['start'] - a)} to {format_elapsed(f['end'] - a)}: "
            f"{f['alarms']:.0f}" for f in k["floods"]) or "none"],
        ["time in flood", f"{k['flood_time_percent']:.1f} %"],
        ["standing (> 30 min in alarm)", ", ".join(x["name"] for x in k["standing"]) or "none"],
        ["stale (> 24 h in alarm)", ", ".join(x["name"] for x in k["stale"]) or "none"],
        ["chattering", ", ".join(x["name"] for x in k["chattering"]) or "none"],
        ["shelved / out of service / re-alarms",
         f"{k['shelved']} / {k['out_of_service']} / {k['realarms']}"],
        ["ten most frequent", ", ".join(f"{x['name']} ({x['count']})" for x in k["top_ten"])
         or "none"]]
    alarm_t += f"<h3>Alarm KPIs (ISA-18.2)</h3>{_table(['KPI', 'value'], kpi_rows)}"
    dev_t = _table(["since start", "kind", "source", "duration", "details"], devs)
    stream_t = _table(["stream", "mass", "volume", "amount"], stream_rows)
    act_t = _table([t_head, "user", "action", "object", "old", "new", "reason"], acts)
    auto_t = _table([t_head, "user", "prompt", "answer", "reason"], autos)
    sig_t = _table(["on", "printed name", "user", "time (UTC)", "meaning", "action", "reason",
                    "signed SHA-256"],
                   [[x["on"], x["printed_name"], x["user"], x["t_utc"], x["meaning"],
                     x["action"], x["reason"], x["signed_hash"]] for x in data.signatures])
    stamp = _iso(datetime.now(UTC).timestamp())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Run</h2>{_table(['field', 'value'], info)}"
            f"<h2>Figures</h2>{_table(['figure', 'value'], fig_rows)}"
            + (f"<h3>Lots (one per product)</h3>{lot_t}" if lot_t else "") +
            f"<h3>Streams, whole run</h3>{stream_t}"
            f"<h2>Trends and states</h2>{imgs or '<p class=none>no samples</p>'}"
            f"<h3>Constant signals</h3>{const_t}{empty}"
            + (f"<h2>Optimisation</h2>{_optimisation_html(doc['optimisation'], a)}"
               if doc["optimisation"] else "") +
            f"<h2>Alarms</h2>{alarm_t}<h2>Deviations and interventions</h2>{dev_t}"
            f"<h2>Operator actions</h2>{act_t}"
            f"<h2>Automatic answers</h2>{auto_t}"
            f"<h2>Signatures</h2>{sig_t}"
            f"<p class='none'>generated {stamp} (wall clock, UTC)</p></body></html>")


def report_images(db: str | Path | sqlite3.Connection, run_id: int) -> list[tuple[str, bytes]]:
    """The report's trend and state charts as (title, PNG bytes), in report order: for docs and
    for archiving the pictures apart from the HTML."""
    conn, own = _open(db)
    try:
        data = _RunData(conn, _as_seen(get_run(conn, run_id), db))
        pngs = render(_plot_plan(data), data.series, data.run.t_start, data.t_end,
                      _gantt_bars(data))
    finally:
        if own:
            conn.close()
    return [(title, base64.b64decode(p)) for title, p in pngs]


def report(db: str | Path | sqlite3.Connection, run_id: int, format: ReportFormat = "html",
           out: str | Path | None = None) -> str:
    """The batch report of one run as text (HTML, JSON or CSV of samples); writes ``out`` too.

    The HTML is one self-contained file (plots inline as PNG), fit to archive with the batch.
    """
    if format not in ("html", "json", "csv"):
        raise ValueError(f"format must be html, json or csv, not {format!r}")
    conn, own = _open(db)
    try:
        run = _as_seen(get_run(conn, run_id), db)
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


@dataclass(frozen=True)
class RunSamples:
    """The recorded samples of one run: what a twin replays and fits against."""

    run: RunInfo
    t_end: float
    """End of the run window (its end time, else its last sample or event)."""
    series: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]
    """Tag -> (times, values); the value a tag held when the run started comes first
    (deadband-filtered data is a step signal)."""
    events: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    """The run's events as (time, kind, source, payload), in order: where the values a
    recipe or operator *wrote* are (``command`` with its service parameters,
    ``parameter_write``), which the polled samples do not tell apart from readings."""


def run_samples(db: str | Path | sqlite3.Connection, run_id: int) -> RunSamples:
    """Every tag's samples in the window of run ``run_id`` (the report's own reader)."""
    conn, own = _open(db)
    try:
        data = _RunData(conn, get_run(conn, run_id))
    finally:
        if own:
            conn.close()
    return RunSamples(data.run, data.t_end,
                      {name: (s.t, s.v) for name, s in data.series.items()},
                      [(t, str(k), src, p) for t, k, src, p in data.events])
