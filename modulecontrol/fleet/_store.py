"""The central historian's PostgreSQL schema, its versioned migrations, and its queries.

Samples are range-partitioned by month on their time (``sample_yYYYYmMM``, created when the
first sample of a month arrives), so retention is ``DROP TABLE`` of old partitions rather
than a slow ``DELETE``, and a query over a time window touches only its months. A sample is
identified by (metric, time): a replay of a message the broker already delivered (at-least-
once QoS 1) does not store it twice.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

MIGRATIONS: list[str] = [
    # 1: sites (Sparkplug groups), lines (edge nodes), modules (devices), metrics, samples
    """
    CREATE TABLE site (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE
    );
    CREATE TABLE line (
        id serial PRIMARY KEY,
        site_id integer NOT NULL REFERENCES site(id),
        name text NOT NULL,
        online boolean NOT NULL DEFAULT false,
        bd_seq bigint,
        born_at timestamptz,
        seen_at timestamptz,
        UNIQUE (site_id, name)
    );
    CREATE TABLE module (
        id serial PRIMARY KEY,
        line_id integer NOT NULL REFERENCES line(id),
        name text NOT NULL,
        online boolean NOT NULL DEFAULT false,
        born_at timestamptz,
        UNIQUE (line_id, name)
    );
    CREATE TABLE metric (
        id serial PRIMARY KEY,
        module_id integer NOT NULL REFERENCES module(id),
        name text NOT NULL,
        datatype integer NOT NULL,
        unit text NOT NULL DEFAULT '',
        low double precision,
        high double precision,
        last_value jsonb,
        last_ts timestamptz,
        UNIQUE (module_id, name)
    );
    CREATE TABLE sample (
        metric_id integer NOT NULL,
        ts timestamptz NOT NULL,
        value jsonb,
        historical boolean NOT NULL DEFAULT false,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (metric_id, ts)
    ) PARTITION BY RANGE (ts);
    CREATE INDEX sample_ts ON sample (ts);
    CREATE TABLE event (
        line_id integer NOT NULL REFERENCES line(id),
        ts timestamptz NOT NULL,
        seq bigint NOT NULL,
        kind text NOT NULL,
        source text NOT NULL,
        message text NOT NULL,
        historical boolean NOT NULL DEFAULT false,
        PRIMARY KEY (line_id, ts, seq)
    );
    CREATE INDEX event_kind ON event (kind, ts);
    CREATE TABLE run_summary (
        line_id integer NOT NULL REFERENCES line(id),
        ts timestamptz NOT NULL,
        summary jsonb NOT NULL,
        PRIMARY KEY (line_id, ts)
    );
    """,
    # 2: the line's own station (drill-down from the fleet view), its sessions (uptime)
    """
    ALTER TABLE line ADD COLUMN station_url text;
    CREATE TABLE line_session (
        line_id integer NOT NULL REFERENCES line(id),
        born_at timestamptz NOT NULL,
        died_at timestamptz,
        PRIMARY KEY (line_id, born_at)
    );
    CREATE INDEX run_summary_ts ON run_summary (ts);
    """,
]
"""Each entry is applied once, in order, in its own transaction; never edit a released one:
append the next."""


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to the latest version; returns it. Safe to run on every start."""
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                     "version integer PRIMARY KEY, applied_at timestamptz NOT NULL "
                     "DEFAULT now())")
        conn.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")  # two hosts starting
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return len(MIGRATIONS)


def _month(ts: _dt.datetime) -> tuple[_dt.datetime, _dt.datetime]:
    start = ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + _dt.timedelta(days=32)).replace(day=1)
    return start, end


class Store:
    """One connection. Samples are written in batches of many messages
    (:meth:`sample_batch`), everything else one message per transaction."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        migrate(self.conn)
        self._partitions: set[str] = set()
        self._ids: dict[tuple[str, ...], int] = {}
        self._staging = False

    def close(self) -> None:
        self.conn.close()

    def _partition(self, ts: _dt.datetime) -> None:
        start, end = _month(ts)
        name = f"sample_y{start.year:04d}m{start.month:02d}"
        if name in self._partitions:
            return
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF sample "  # name: digits only
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')".encode())
        self._partitions.add(name)

    def line_id(self, site: str, line: str) -> int:
        key = (site, line)
        if key not in self._ids:
            self.conn.execute("INSERT INTO site (name) VALUES (%s) ON CONFLICT DO NOTHING",
                              (site,))
            row = self.conn.execute(
                "INSERT INTO line (site_id, name) SELECT id, %s FROM site WHERE name = %s "
                "ON CONFLICT (site_id, name) DO UPDATE SET name = excluded.name RETURNING id",
                (line, site)).fetchone()
            assert row is not None
            self._ids[key] = int(row[0])
        return self._ids[key]

    def module_id(self, site: str, line: str, module: str) -> int:
        key = (site, line, module)
        if key not in self._ids:
            row = self.conn.execute(
                "INSERT INTO module (line_id, name) VALUES (%s, %s) ON CONFLICT (line_id, name) "
                "DO UPDATE SET name = excluded.name RETURNING id",
                (self.line_id(site, line), module)).fetchone()
            assert row is not None
            self._ids[key] = int(row[0])
        return self._ids[key]

    def metric_id(self, module_id: int, name: str, datatype: int) -> int:
        key = (str(module_id), name)
        if key not in self._ids:
            row = self.conn.execute(
                "INSERT INTO metric (module_id, name, datatype) VALUES (%s, %s, %s) "
                "ON CONFLICT (module_id, name) DO UPDATE SET name = excluded.name RETURNING id",
                (module_id, name, datatype)).fetchone()
            assert row is not None
            self._ids[key] = int(row[0])
        return self._ids[key]

    def node_birth(self, site: str, line: str, bd_seq: int | None, ts: _dt.datetime,
                   station_url: str | None = None) -> None:
        """A line's new session: online from ``ts`` (its uptime counts from here); a session
        still open (its death was lost) ends where this one starts."""
        lid = self.line_id(site, line)
        with self.conn.transaction():
            self.conn.execute("UPDATE line SET online = true, bd_seq = %s, born_at = %s, "
                              "seen_at = %s, station_url = %s WHERE id = %s",
                              (bd_seq, ts, ts, station_url, lid))
            self.conn.execute("UPDATE line_session SET died_at = %s WHERE line_id = %s AND "
                              "died_at IS NULL AND born_at < %s", (ts, lid, ts))
            self.conn.execute("INSERT INTO line_session (line_id, born_at) VALUES (%s, %s) "
                              "ON CONFLICT DO NOTHING", (lid, ts))

    def node_death(self, site: str, line: str, bd_seq: int | None) -> bool:
        """Offline only if the death is of the current session (its bdSeq matches)."""
        lid = self.line_id(site, line)
        with self.conn.transaction():
            cur = self.conn.execute(
                "UPDATE line SET online = false WHERE id = %s AND (bd_seq = %s OR %s IS NULL)",
                (lid, bd_seq, bd_seq))
            if cur.rowcount > 0:
                self.conn.execute("UPDATE line_session SET died_at = now() WHERE line_id = %s "
                                  "AND died_at IS NULL", (lid,))
        return cur.rowcount > 0

    def device_birth(self, site: str, line: str, module: str, ts: _dt.datetime,
                     metrics: list[tuple[str, int, dict[str, Any]]]) -> None:
        mid = self.module_id(site, line, module)
        with self.conn.transaction():
            self.conn.execute("UPDATE module SET online = true, born_at = %s WHERE id = %s",
                              (ts, mid))
            for name, datatype, props in metrics:
                metric = self.metric_id(mid, name, datatype)
                self.conn.execute(
                    "UPDATE metric SET datatype = %s, unit = %s, low = %s, high = %s "
                    "WHERE id = %s", (datatype, str(props.get("engUnit") or ""),
                                      props.get("engLow"), props.get("engHigh"), metric))

    def device_death(self, site: str, line: str, module: str) -> None:
        self.conn.execute("UPDATE module SET online = false WHERE id = %s",
                          (self.module_id(site, line, module),))

    def samples(self, site: str, line: str, module: str,
                rows: list[tuple[str, int, _dt.datetime, Any, bool]]) -> int:
        """Store (name, datatype, ts, value, historical) rows of one message in one
        transaction; returns how many were new."""
        return self.sample_batch([(site, line, module, rows)])

    def sample_batch(self, messages: list[tuple[str, str, str,
                                                list[tuple[str, int, _dt.datetime, Any, bool]]]]
                     ) -> int:
        """Store the rows of many messages in **one** transaction, in arrival order; returns
        how many rows were new (the others were stored already: a redelivered message).

        The rows go by ``COPY`` into a temporary staging table, then one ``INSERT … SELECT
        … ON CONFLICT DO NOTHING`` in arrival order (``received_at`` is the row's own
        ``clock_timestamp()``), one update of each metric's latest value and one of each
        line's ``seen_at``: a handful of statements per batch instead of three per message.
        """
        staged: list[tuple[int, _dt.datetime, str, bool]] = []
        lines: set[int] = set()
        for site, line, module, rows in messages:
            mid = self.module_id(site, line, module)
            lines.add(self.line_id(site, line))
            for name, datatype, ts, value, historical in rows:
                self._partition(ts)
                staged.append((self.metric_id(mid, name, datatype), ts, _json(value),
                               historical))
        if not staged:
            return 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            if not self._staging:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS sample_in (n integer, "
                            "metric_id integer, ts timestamptz, value jsonb, "
                            "historical boolean) ON COMMIT DELETE ROWS")
                self._staging = True
            with cur.copy("COPY sample_in (n, metric_id, ts, value, historical) "
                          "FROM STDIN") as copy:
                for n, row in enumerate(staged):
                    copy.write_row((n, *row))
            cur.execute("INSERT INTO sample (metric_id, ts, value, historical, received_at) "
                        "SELECT metric_id, ts, value, historical, clock_timestamp() "
                        "FROM sample_in ORDER BY n ON CONFLICT DO NOTHING")
            new = cur.rowcount
            cur.execute("UPDATE metric m SET last_value = s.value, last_ts = s.ts FROM "
                        "(SELECT DISTINCT ON (metric_id) metric_id, ts, value FROM sample_in "
                        "ORDER BY metric_id, ts DESC, n DESC) s WHERE m.id = s.metric_id "
                        "AND (m.last_ts IS NULL OR m.last_ts <= s.ts)")
            cur.execute("UPDATE line SET seen_at = now() WHERE id = ANY(%s)", (sorted(lines),))
        return int(new)

    def event(self, site: str, line: str, ts: _dt.datetime, data: dict[str, Any],
              historical: bool) -> None:
        self.conn.execute(
            "INSERT INTO event (line_id, ts, seq, kind, source, message, historical) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (self.line_id(site, line), ts, int(data.get("seq", 0)), str(data.get("kind", "")),
             str(data.get("source", "")), str(data.get("message", "")), historical))

    def run_summary(self, site: str, line: str, ts: _dt.datetime, data: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO run_summary (line_id, ts, summary) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING", (self.line_id(site, line), ts, json.dumps(data)))


def _json(value: Any) -> str:
    """JSON of a sample; a float JSON cannot hold (NaN, ±infinity, a failed sensor's
    reading) is stored as its name, ``"NaN"``, rather than failing the whole batch."""
    if isinstance(value, float) and not math.isfinite(value):
        value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


@dataclass(frozen=True)
class LatestValue:
    site: str
    line: str
    line_online: bool
    module: str
    module_online: bool
    metric: str
    unit: str
    value: Any
    ts: _dt.datetime | None


def fleet_status(dsn: str) -> list[LatestValue]:
    """Every site, line, module and metric with its latest value, sorted by name."""
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        rows = conn.execute(
            "SELECT s.name, l.name, l.online, m.name, m.online, x.name, x.unit, x.last_value, "
            "x.last_ts FROM site s JOIN line l ON l.site_id = s.id "
            "JOIN module m ON m.line_id = l.id JOIN metric x ON x.module_id = m.id "
            "ORDER BY s.name, l.name, m.name, x.name").fetchall()
    return [LatestValue(*r) for r in rows]


@dataclass(frozen=True)
class ModuleView:
    name: str
    online: bool
    states: dict[str, str]
    """Each service's state (``Dosing: Execute``), from its ``<Service>.StateCur`` metric."""


@dataclass(frozen=True)
class LineView:
    """One line in the fleet view: where it is, whether it is live, what it runs, its KPIs.

    KPI definitions (docs/fleet.md): ``throughput_g_per_h`` and ``yield_pct`` are those of
    the line's latest finished run (its summary's figures); ``uptime_pct`` is the share of
    the window (the last ``window_h`` hours, or since the line's first birth if younger)
    with a live Sparkplug session; ``alarms_per_h`` counts ``alarm_raised`` events in the
    same window."""

    site: str
    line: str
    online: bool
    station_url: str | None
    seen_at: _dt.datetime | None
    modules: list[ModuleView]
    active_run: str | None
    last_run: str | None
    throughput_g_per_h: float | None
    yield_pct: float | None
    uptime_pct: float | None
    alarms_per_h: float | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seen_at"] = self.seen_at.isoformat() if self.seen_at else None
        return d


def _state_label(value: Any) -> str:
    from modulecontrol.statemachine import State

    try:
        return str(State(int(value)).label)
    except (TypeError, ValueError):
        return "?"


def fleet_lines(dsn: str, window_h: float = 24.0) -> list[LineView]:
    """Every line of every site with its module states, active run and KPIs."""
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        lines = conn.execute(
            "SELECT l.id, s.name, l.name, l.online, l.station_url, l.seen_at, "
            "greatest(now() - make_interval(secs => %s), "
            "         (SELECT min(born_at) FROM line_session WHERE line_id = l.id)) AS since "
            "FROM line l JOIN site s ON s.id = l.site_id ORDER BY s.name, l.name",
            (window_h * 3600.0,)).fetchall()
        out = []
        for lid, site, line, online, station, seen, since in lines:
            modules = []
            for mod, mod_online, states in conn.execute(
                    "SELECT m.name, m.online, coalesce(jsonb_object_agg(replace(x.name, "
                    "'.StateCur', ''), x.last_value) FILTER (WHERE x.name LIKE '%%.StateCur' "
                    "AND x.last_value IS NOT NULL), '{}') FROM module m LEFT JOIN metric x ON "
                    "x.module_id = m.id WHERE m.line_id = %s GROUP BY m.id ORDER BY m.name",
                    (lid,)).fetchall():
                modules.append(ModuleView(mod, bool(mod_online), {
                    k: _state_label(v) for k, v in sorted(dict(states).items())}))
            run = conn.execute(
                "SELECT kind, message FROM event WHERE line_id = %s AND kind IN "
                "('run_started', 'run_ended') ORDER BY ts DESC, seq DESC LIMIT 1",
                (lid,)).fetchone()
            summary = conn.execute(
                "SELECT summary FROM run_summary WHERE line_id = %s ORDER BY ts DESC LIMIT 1",
                (lid,)).fetchone()
            up = alarms = None
            if since is not None:
                row = conn.execute(
                    "SELECT extract(epoch FROM now() - %s), coalesce(sum(extract(epoch FROM "
                    "least(coalesce(died_at, now()), now()) - greatest(born_at, %s))) FILTER "
                    "(WHERE coalesce(died_at, now()) > %s), 0), (SELECT count(*) FROM event "
                    "WHERE line_id = %s AND kind = 'alarm_raised' AND ts >= %s) "
                    "FROM line_session WHERE line_id = %s",
                    (since, since, since, lid, since, lid)).fetchone()
                if row is not None and row[0] and float(row[0]) > 0:
                    span = float(row[0])
                    up = round(min(100.0, 100.0 * float(row[1]) / span), 1)
                    alarms = round(int(row[2]) / (span / 3600.0), 2)
            figures = (summary[0] or {}).get("figures") or {} if summary else {}
            out.append(LineView(
                site, line, bool(online), station, seen, modules,
                run[1] if run and run[0] == "run_started" else None,
                _last_run(summary[0]) if summary else None,
                _num(figures.get("throughput_g_per_h")), _num(figures.get("yield_pct")),
                up, alarms))
    return out


def _last_run(summary: dict[str, Any]) -> str:
    return " ".join(str(x) for x in (summary.get("recipe"), summary.get("result")) if x)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
