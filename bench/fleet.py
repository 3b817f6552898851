"""Fleet: lines × modules at 1 Hz through one Mosquitto into PostgreSQL (issue #20).

What runs, each in its own process, all on this machine:

* **Mosquitto** from Debian and a throwaway **PostgreSQL 15** cluster (``fsync=off``), on
  free loopback ports (the test helpers in ``modulecontrol.testing.servers``);
* **the fleet historian**, ``modulecontrol fleet serve`` unchanged;
* **the edge nodes**: the real :class:`~modulecontrol.fleet.EdgeNode` (buffer file, births,
  ``seq``, STATE, replay) fed with synthetic module values rather than 20 simulated plants
  (``bench/_fleet_edges.py``), split over ``FLEET_BENCH_PROCS`` processes.

Phases: steady production (latency, rows/s, CPU and RSS per process), a broker outage
(``FLEET_BENCH_OUTAGE`` s, 30 by default; ``FLEET_BENCH_OUTAGE=300`` is the issue's five
minutes), steady again, a ``kill -9`` of the historian for ``FLEET_BENCH_KILL`` s, then the
edges stop producing and drain. At the end every metric's rows are checked in PostgreSQL:
one per tick, values 0…n-1 in timestamp order, each timestamp the tick's original one,
stored in timestamp order (``received_at`` never goes back), none twice.

A separate **ceiling** phase measures the historian alone: ``FLEET_BENCH_CEILING`` DDATA
messages of 10 metrics are queued in the broker for its persistent session while it is
stopped, then it is started and the time to store them all is taken (``python -m
bench.fleet --ceiling-only`` with ``PYTHONPATH`` of another tree measures its code).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from modulecontrol.fleet import Broker as BrokerAddress
from modulecontrol.fleet import DataType, Metric, encode, mqtt_client, topic
from modulecontrol.testing.servers import Mosquitto, Postgres

LINES = int(os.environ.get("FLEET_BENCH_LINES", "20"))
MODULES = int(os.environ.get("FLEET_BENCH_MODULES", "50"))
METRICS = int(os.environ.get("FLEET_BENCH_METRICS", "4"))
PROCS = int(os.environ.get("FLEET_BENCH_PROCS", "2"))
STEADY = float(os.environ.get("FLEET_BENCH_STEADY", "40"))
OUTAGE = float(os.environ.get("FLEET_BENCH_OUTAGE", "30"))
KILL = float(os.environ.get("FLEET_BENCH_KILL", "20"))
CEILING = int(os.environ.get("FLEET_BENCH_CEILING", "6000"))
INFLIGHT = int(os.environ.get("FLEET_BENCH_INFLIGHT", "20"))
"""Mosquitto's ``max_inflight_messages`` (its default is 20): the most unacknowledged
messages it sends one client, which bounds the historian's batches."""
QUEUED = int(os.environ.get("FLEET_BENCH_QUEUED", "0"))
"""Mosquitto's ``max_queued_messages`` (0: no limit, as docs/fleet.md asks)."""
SITE = "Bench"
TICK = os.sysconf("SC_CLK_TCK")
MODULECONTROL = str(Path(sys.executable).parent / "modulecontrol")


def _cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of one process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0.0, 0
    return (int(stat[11]) + int(stat[12])) / TICK, int(statm[1]) * os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _pg_pids(pg: Postgres) -> list[int]:
    try:
        master = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [master, *_children(master)]


class Meter:
    """CPU share and peak RSS of named process groups over a window."""

    def __init__(self) -> None:
        self.start: dict[str, tuple[float, float]] = {}
        self.peak: dict[str, int] = {}

    @staticmethod
    def sample(pids: list[int]) -> tuple[float, int]:
        cpu, rss = 0.0, 0
        for pid in pids:
            c, r = _cpu_rss(pid)
            cpu += c
            rss += r
        return cpu, rss

    def begin(self, groups: dict[str, list[int]]) -> None:
        for name, pids in groups.items():
            self.start[name] = (self.sample(pids)[0], time.monotonic())

    def poll(self, groups: dict[str, list[int]]) -> None:
        for name, pids in groups.items():
            self.peak[name] = max(self.peak.get(name, 0), self.sample(pids)[1])

    def result(self, groups: dict[str, list[int]]) -> dict[str, Any]:
        out = {}
        for name, pids in groups.items():
            cpu0, t0 = self.start[name]
            cpu = self.sample(pids)[0]
            out[name] = {"cpu_percent_of_one_core": round(100 * (cpu - cpu0)
                                                          / (time.monotonic() - t0), 1),
                         "rss_mb_peak": round(self.peak.get(name, 0) / 2**20, 1)}
        return out


def _historian(mq: Mosquitto, pg: Postgres, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([MODULECONTROL, "fleet", "serve", "--mqtt", mq.url, "--pg", pg.dsn],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    return proc


def _wait_state(mq: Mosquitto, online: bool, timeout: float = 30.0) -> bool:
    """Wait until the retained STATE of the historian says ``online``."""
    seen = threading.Event()
    c = mqtt_client(f"bench-state-{os.getpid()}-{time.monotonic_ns()}",
                    BrokerAddress.parse(mq.url))

    def on_message(cl: Any, u: Any, msg: Any) -> None:
        try:
            if bool(json.loads(msg.payload).get("online")) == online:
                seen.set()
        except ValueError:
            pass

    c.on_connect = lambda cl, u, f, rc: cl.subscribe("spBv1.0/STATE/modulecontrol-fleet", 1)
    c.on_message = on_message
    c.connect("127.0.0.1", mq.port)
    c.loop_start()
    try:
        return seen.wait(timeout)
    finally:
        c.disconnect()
        c.loop_stop()


def _query(pg: Postgres, sql: str, *args: Any) -> list[Any]:
    with psycopg.connect(pg.dsn) as conn:
        return conn.execute(sql, args).fetchall()


def _rows(pg: Postgres) -> int:
    try:
        return int(_query(pg, "SELECT count(*) FROM sample")[0][0])
    except psycopg.Error:
        return 0


def ceiling(mq: Mosquitto, pg: Postgres, folder: Path, messages: int) -> dict[str, Any]:
    """The historian alone: ``messages`` DDATA of 10 metrics queued for it, then timed."""
    log = folder / "ceiling-historian.log"
    host = _historian(mq, pg, log)  # creates its persistent session and subscription
    assert _wait_state(mq, True), "the historian did not come online"
    host.send_signal(signal.SIGTERM)
    host.wait(30)
    base = _rows(pg)
    c = mqtt_client("bench-ceiling", BrokerAddress.parse(mq.url))
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", mq.port)
    c.loop_start()
    t0 = 1_700_000_000_000
    names = [f"m{i}" for i in range(10)]
    now = int(time.time() * 1000)
    c.publish(topic("Ceiling", "NBIRTH", "C1"), encode(
        [Metric("bdSeq", DataType.INT64, 0, now)], timestamp=now, seq=0), qos=1)
    c.publish(topic("Ceiling", "DBIRTH", "C1", "D0"), encode(
        [Metric(n, DataType.DOUBLE, None, now) for n in names], timestamp=now, seq=1), qos=1)
    info = None
    for k in range(messages):
        info = c.publish(topic("Ceiling", "DDATA", "C1", "D0"), encode(
            [Metric(n, DataType.DOUBLE, float(k), t0 + 10 * k) for n in names],
            timestamp=now, seq=(k + 2) % 256), qos=1)
    assert info is not None
    info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    expect = base + 10 * messages
    host = _historian(mq, pg, log)
    end = time.monotonic() + 600
    while _rows(pg) == base and time.monotonic() < end:  # started: the first batch is in
        time.sleep(0.05)
    started, first = time.monotonic(), _rows(pg)
    while _rows(pg) < expect and time.monotonic() < end:
        time.sleep(0.2)
    took = time.monotonic() - started
    stored = _rows(pg) - first
    host.send_signal(signal.SIGTERM)
    host.wait(30)
    return {"messages": messages, "rows_per_message": 10, "rows_stored": stored,
            "seconds": round(took, 1),
            "rows_per_s": round(stored / took), "messages_per_s": round(stored / 10 / took)}


class Witness:
    """A second, independent persistent subscriber to every DDATA: if a sample is missing
    in PostgreSQL, did it reach the broker at all? (Tells an edge-side loss from a
    historian-side one.)"""

    def __init__(self, mq: Mosquitto) -> None:
        from modulecontrol.fleet import decode

        self.seen: set[tuple[str, str, str, float]] = set()
        self._lock = threading.Lock()
        c = mqtt_client("bench-witness", BrokerAddress.parse(mq.url), clean_session=False)

        def on_message(cl: Any, u: Any, msg: Any) -> None:
            parts = msg.topic.split("/")
            for m in decode(msg.payload).metrics:
                if isinstance(m.value, float):
                    with self._lock:
                        self.seen.add((parts[3], parts[4], m.name, m.value))

        c.on_connect = lambda cl, u, f, rc: cl.subscribe(f"spBv1.0/{SITE}/DDATA/#", 1)
        c.on_message = on_message
        c.connect("127.0.0.1", mq.port)
        c.loop_start()
        self.c = c

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _connections(mq: Mosquitto, client_id: str, since: float, until: float) -> int:
    """How often ``client_id`` connected to the broker between two times (its log)."""
    n = 0
    for line in (mq.folder / "mosquitto.log").read_text(errors="replace").splitlines():
        stamp, _, text = line.partition(": ")
        if (stamp.isdigit() and since <= int(stamp) <= until
                and text.startswith("New client connected") and f" as {client_id} " in text):
            n += 1
    return n


def fleet(mq: Mosquitto, pg: Postgres, folder: Path) -> dict[str, Any]:
    log = folder / "historian.log"
    witness = Witness(mq)
    host = _historian(mq, pg, log)
    assert _wait_state(mq, True), "the historian did not come online"
    rows_before = _rows(pg)
    seconds = 2 * STEADY + OUTAGE + KILL + 3 * 10
    per = -(-LINES // PROCS)
    edges = []
    for p in range(PROCS):
        first = p * per
        n = min(per, LINES - first)
        if n <= 0:
            break
        sub = folder / f"edges{p}"
        sub.mkdir()
        edges.append(subprocess.Popen(
            [sys.executable, "-m", "bench._fleet_edges", mq.url, SITE, str(first), str(n),
             str(MODULES), str(METRICS), str(seconds), str(sub)],
            stdout=subprocess.PIPE, stderr=(folder / f"edges{p}.log").open("wb"),
            cwd=Path(__file__).parents[1]))
    for e in edges:
        assert e.stdout is not None
        ready = e.stdout.readline()
        assert b"ready" in ready, f"edge process: {ready!r}"
    groups = {"edges (all processes)": [e.pid for e in edges],
              "mosquitto": [mq._proc.pid] if mq._proc else [],
              "postgresql (all backends)": _pg_pids(pg),
              "fleet historian": [host.pid]}
    meter = Meter()
    time.sleep(10)  # warm-up: births, first values
    t_steady = time.time()
    meter.begin(groups)
    rows0 = _rows(pg)
    end = time.monotonic() + STEADY
    while time.monotonic() < end:
        meter.poll(groups)
        time.sleep(1)
    rows1 = _rows(pg)
    t_steady_end = time.time()
    steady_rate = (rows1 - rows0) / (t_steady_end - t_steady)
    usage = meter.result(groups)
    lat = _query(pg, "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY "
                 "extract(epoch FROM received_at - ts)), count(*) FROM sample WHERE ts >= "
                 "to_timestamp(%s) AND ts < to_timestamp(%s) AND NOT historical",
                 t_steady, t_steady_end - 2)[0]
    # the broker away
    t_out = time.time()
    mq.stop()
    time.sleep(OUTAGE)
    mq.start()
    t_back = time.time()
    time.sleep(10 + STEADY / 2)
    # the historian killed
    host.kill()
    host.wait(10)
    t_kill = time.time()
    time.sleep(KILL)
    host = _historian(mq, pg, log)
    t_host_back = time.time()
    results = []
    for e in edges:
        out, _ = e.communicate(timeout=seconds + 900)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    t_drained = time.time()
    ticks = [r["ticks"] for r in results]
    per_line = {line: r["ticks"] for r in results for line in r["lines"]}
    expected = sum(per_line.values()) * MODULES * METRICS + rows_before
    last, still = -1, time.monotonic()
    while time.monotonic() - still < 30:  # the historian may still work through its queue
        n = _rows(pg)
        if n >= expected:
            break
        if n != last:
            last, still = n, time.monotonic()
        time.sleep(0.5)
    t_stored = time.time()
    # a historian behind its backlog must keep its session: one connection after its
    # restart (issue #20: it used to reconnect every two keepalives while behind)
    sessions = _connections(mq, "fleet-modulecontrol-fleet", int(t_host_back),
                            int(t_stored) + 1)
    host.send_signal(signal.SIGTERM)
    host.wait(30)
    check = _query(pg, """
        WITH s AS (
          SELECT l.name AS line, x.id, s.ts, (s.value)::float AS v, s.received_at, s.historical,
                 lag((s.value)::float) OVER w AS pv, lag(s.received_at) OVER w AS pr
          FROM sample s JOIN metric x ON x.id = s.metric_id JOIN module m ON m.id = x.module_id
          JOIN line l ON l.id = m.line_id JOIN site t ON t.id = l.site_id
          WHERE t.name = %s WINDOW w AS (PARTITION BY x.id ORDER BY s.ts))
        SELECT line, count(*), count(DISTINCT id), min(v), max(v),
               count(*) FILTER (WHERE pv IS NOT NULL AND v <> pv + 1),
               count(*) FILTER (WHERE pr IS NOT NULL AND received_at < pr),
               count(*) FILTER (WHERE pr IS NOT NULL AND received_at < pr AND historical)
        FROM s GROUP BY line ORDER BY line""", SITE)
    lost = out_of_order = stored_back = replay_back = 0
    wrong: list[str] = []
    for line, n, metrics, vmin, vmax, gaps, back, back_hist in check:
        replay_back += back_hist
        want = per_line[line] * MODULES * METRICS
        lost += want - n
        out_of_order += gaps
        stored_back += back
        if metrics != MODULES * METRICS or vmin != 0 or vmax != per_line[line] - 1:
            wrong.append(f"{line}: {metrics} metrics, values {vmin}..{vmax}, "
                         f"{per_line[line]} ticks")
    hist = _query(pg, "SELECT count(*) FILTER (WHERE historical), count(*) FROM sample s "
                  "WHERE ts >= to_timestamp(%s) AND ts < to_timestamp(%s)", t_out, t_back)[0]
    gaps = log.read_text(errors="replace").count("asking for a rebirth")
    # where the holes are, if any: the time of each missing sample against the phases
    holes = _query(pg, """
        WITH s AS (SELECT metric_id, ts, (value)::float AS v,
                          lag((value)::float) OVER w AS pv, lag(ts) OVER w AS pts
                   FROM sample WINDOW w AS (PARTITION BY metric_id ORDER BY ts))
        SELECT round(extract(epoch FROM pts)::numeric, 1), count(*) FROM s
        WHERE pv IS NOT NULL AND v <> pv + 1 GROUP BY 1 ORDER BY 2 DESC LIMIT 8""")
    phases = {"outage": (t_out, t_back), "kill": (t_kill, t_host_back)}
    missing = _query(pg, """
        WITH s AS (SELECT l.name AS line, m.name AS module, x.name AS metric,
                          (s.value)::float AS v, lag((s.value)::float) OVER w AS pv
                   FROM sample s JOIN metric x ON x.id = s.metric_id
                   JOIN module m ON m.id = x.module_id JOIN line l ON l.id = m.line_id
                   WINDOW w AS (PARTITION BY x.id ORDER BY s.ts))
        SELECT line, module, metric, generate_series((pv + 1)::int, (v - 1)::int)::float
        FROM s WHERE pv IS NOT NULL AND v > pv + 1 LIMIT 10000""")
    time.sleep(2)
    witness.close()
    with witness._lock:
        reached = sum(1 for r in missing if tuple(r) in witness.seen)
    size = _query(pg, "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
                  "(SELECT count(*) FROM sample) FROM pg_inherits i JOIN pg_class c "
                  "ON c.oid = i.inhrelid WHERE i.inhparent = 'sample'::regclass")[0]
    return {
        "broker_max_queued_messages": QUEUED,
        "historian_seq_gaps_seen": gaps,
        "missing_samples_seen_by_a_second_subscriber": f"{reached} of {len(missing)}",
        "holes_after_sample_at_s_from_outage_start": [
            (round(float(t) - t_out, 1), n) for t, n in holes],
        "phases_s_from_outage_start": {k: (0.0 if k == "outage" else round(a - t_out, 1),
                                           round(b - t_out, 1))
                                       for k, (a, b) in phases.items()},
        "sample_bytes_per_row_with_indexes": round(int(size[0]) / max(1, int(size[1]))),
        "lines": LINES, "modules_per_line": MODULES, "metrics_per_module": METRICS,
        "edge_processes": len(edges), "samples_per_s_offered": LINES * MODULES * METRICS,
        "ddata_messages_per_s_offered": LINES * MODULES,
        "steady": {"seconds": STEADY, "rows_per_s_ingested": round(steady_rate),
                   "latency_s_p50": round(lat[0][0], 3), "latency_s_p95": round(lat[0][1], 3),
                   "latency_s_p99": round(lat[0][2], 3), "latency_rows": lat[1],
                   "processes": usage},
        "broker_outage": {"seconds": OUTAGE, "samples_taken_during_it": hist[1],
                          "of_them_marked_historical": hist[0]},
        "historian_kill": {"seconds": KILL,
                           "edges_went_offline_times": [r["offline_periods"] for r in results],
                           "max_buffered_per_edge": max(max(r["max_buffered"])
                                                        for r in results),
                           "drained_s_after_historian_back": round(t_drained - t_host_back, 1),
                           "historian_connections_after_its_restart": sessions},
        "end": {"ticks": ticks, "samples_expected": sum(per_line.values()) * MODULES * METRICS,
                "samples_stored": sum(r[1] for r in check), "lost": lost,
                "out_of_order_or_duplicated": out_of_order,
                # a DBIRTH carries each metric's current value (the specification asks
                # it), so that value is stored before the older replayed samples: these
                # rows are live (not historical) and at most one per metric and session
                "stored_ahead_births_current_value": stored_back - replay_back,
                "births_metric_values_sent": 2 * LINES * MODULES * METRICS,
                "replayed_stored_out_of_time_order": replay_back,
                "left_in_edge_buffers": sum(r["left"] for r in results),
                "lines_not_complete": wrong,
                "stored_s_after_edges_drained": round(t_stored - t_drained, 1),
                "all_drained": all(r["drained"] for r in results)},
        "kill_at": round(t_kill - t_steady, 1),
    }


def run(ceiling_only: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        folder = Path(tmp)
        # what docs/fleet.md asks of a fleet broker: the historian's persistent session
        # queues the whole backlog a replay brings (Mosquitto's default keeps 1000 messages
        # and drops the rest, silently for the edge, which has its PUBACK already)
        mq = Mosquitto(folder / "mq", extra=f"max_inflight_messages {INFLIGHT}\n"
                       f"max_queued_messages {QUEUED}\n")
        pg = Postgres()
        mq.start()
        try:
            pg.init()
            pg.start()
            out: dict[str, Any] = {"ceiling": ceiling(mq, pg, folder, CEILING),
                                   "broker_max_inflight_messages": INFLIGHT}
            if not ceiling_only:
                out["fleet"] = fleet(mq, pg, folder)
            return out
        finally:
            mq.stop()
            pg.stop()
            pg.remove()


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()
    print(json.dumps(run("--ceiling-only" in sys.argv), indent=2))
