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
from dataclasses import dataclass
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
    """One connection; every Sparkplug message is written in one transaction."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        migrate(self.conn)
        self._partitions: set[str] = set()
        self._ids: dict[tuple[str, ...], int] = {}

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

    def node_birth(self, site: str, line: str, bd_seq: int | None, ts: _dt.datetime) -> None:
        self.conn.execute("UPDATE line SET online = true, bd_seq = %s, born_at = %s, "
                          "seen_at = %s WHERE id = %s",
                          (bd_seq, ts, ts, self.line_id(site, line)))

    def node_death(self, site: str, line: str, bd_seq: int | None) -> bool:
        """Offline only if the death is of the current session (its bdSeq matches)."""
        cur = self.conn.execute(
            "UPDATE line SET online = false WHERE id = %s AND (bd_seq = %s OR %s IS NULL)",
            (self.line_id(site, line), bd_seq, bd_seq))
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
                rows: list[tuple[str, int, _dt.datetime, Any, bool]]) -> None:
        """Store (name, datatype, ts, value, historical) rows of one message, in one
        transaction, batched (psycopg's pipelined ``executemany``); a row already stored
        (a redelivered message) is skipped."""
        mid = self.module_id(site, line, module)
        params = []
        for name, datatype, ts, value, historical in rows:
            self._partition(ts)
            params.append((self.metric_id(mid, name, datatype), ts, json.dumps(value),
                           historical))
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany("INSERT INTO sample (metric_id, ts, value, historical) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", params)
            cur.executemany("UPDATE metric SET last_value = %s, last_ts = %s "
                            "WHERE id = %s AND (last_ts IS NULL OR last_ts <= %s)",
                            [(v, ts, m, ts) for m, ts, v, _ in params])
            cur.execute("UPDATE line SET seen_at = now() WHERE id = %s",
                        (self.line_id(site, line),))

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
