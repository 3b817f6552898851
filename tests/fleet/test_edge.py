"""The Sparkplug B edge node against a real Mosquitto: births, data, seq/bdSeq, outages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pysparkplug as spb
import pytest

from modulecontrol.fleet import Broker, DataType, EdgeNode, MetricSpec, decode
from modulecontrol.testing.servers import Mosquitto
from tests._poll import wait_until
from tests.fleet._sub import Recorder

METRICS = [MetricSpec("T", DataType.DOUBLE, "degC", -10.0, 120.0, 0.5, "reactor temperature"),
           MetricSpec("Run", DataType.BOOLEAN),
           MetricSpec("Dosing.StateCur", DataType.INT32)]


def _edge(broker: Mosquitto, tmp_path: Path, **kw: object) -> EdgeNode:
    edge = EdgeNode(Broker.parse(broker.url), "SiteA", "Line1", tmp_path / "buf.db",
                    **kw)  # type: ignore[arg-type]
    edge.add_device("R1", METRICS)
    return edge


def test_births_are_read_by_an_independent_decoder(broker: Mosquitto, tmp_path: Path) -> None:
    rec = Recorder(broker.url)
    edge = _edge(broker, tmp_path)
    edge.update("R1", "T", 25.0, 1_700_000_000.0)
    edge.start()
    try:
        assert rec.wait(lambda: rec.of("DBIRTH") and rec.of("DDATA"))
        (ntopic, nraw), = rec.of("NBIRTH")
        assert ntopic == "spBv1.0/SiteA/NBIRTH/Line1"
        nbirth = spb.NBirth.decode(nraw)
        assert nbirth.seq == 0
        names = {m.name: m for m in nbirth.metrics}
        assert names["bdSeq"].datatype == spb.DataType.INT64
        (dtopic, draw), = rec.of("DBIRTH")
        assert dtopic == "spBv1.0/SiteA/DBIRTH/Line1/R1"
        dbirth = spb.DBirth.decode(draw)
        assert dbirth.seq == 1
        by_name = {m.name: m for m in dbirth.metrics}
        assert set(by_name) == {"T", "Run", "Dosing.StateCur"}
        assert by_name["T"].datatype == spb.DataType.DOUBLE
        assert by_name["T"].value == 25.0
        assert by_name["Run"].datatype == spb.DataType.BOOLEAN
        assert by_name["Dosing.StateCur"].datatype == spb.DataType.INT32
        # unit and limits travel as metric properties
        t = next(m for m in decode(draw).metrics if m.name == "T")
        assert t.properties == {"engUnit": "degC", "engLow": -10.0, "engHigh": 120.0,
                                "deadband": 0.5, "description": "reactor temperature"}
        ddata = spb.DData.decode(rec.of("DDATA")[0][1], birth=dbirth)
        assert ddata.seq == 2
        assert ddata.metrics[0].timestamp == 1_700_000_000_000
    finally:
        edge.stop()
        rec.close()


def test_deadband_and_seq_wrap(broker: Mosquitto, tmp_path: Path) -> None:
    rec = Recorder(broker.url)
    edge = _edge(broker, tmp_path, batch=1)
    edge.start()
    try:
        assert edge.update("R1", "T", 20.0)
        assert not edge.update("R1", "T", 20.4)  # inside the 0.5 degC deadband
        assert edge.update("R1", "T", 20.6)
        for i in range(300):  # one message each (batch=1): seq wraps past 255
            edge.update("R1", "Dosing.StateCur", i)
        assert edge.wait_drained(30)
        assert rec.wait(lambda: len(rec.of("DDATA")) == 302)
        seqs = [spb.DData.decode(p).seq for _, p in rec.of("DDATA")]
        expected = [(2 + i) % 256 for i in range(302)]  # NBIRTH 0, DBIRTH 1
        assert seqs == expected
        temps = [m.value for _, p in rec.of("DDATA")[:2] for m in decode(p).metrics]
        assert temps == [20.0, 20.6]
    finally:
        edge.stop()
        rec.close()


@pytest.fixture
def qos0_broker(broker: Mosquitto) -> Iterator[Mosquitto]:
    """The test broker, but keeping QoS 0 messages for a disconnected persistent session:
    the recorder reconnecting after a broker restart must still see the edge's new NBIRTH
    (QoS 0) sent meanwhile. Not a fleet broker's setting (docs/fleet.md: with it, Mosquitto
    2.0.11 lost QoS 1 messages of a long queue on reconnect); harmless for this short one."""
    broker.stop()
    server = Mosquitto(broker.folder / "qos0", extra="queue_qos0_messages true\n")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_broker_outage_loses_nothing_and_replays_as_historical(
        qos0_broker: Mosquitto, tmp_path: Path) -> None:
    broker = qos0_broker
    rec = Recorder(broker.url)
    edge = _edge(broker, tmp_path)
    edge.start()
    try:
        assert rec.wait(lambda: bool(rec.of("DBIRTH")))
        for i in range(50):
            edge.update("R1", "Dosing.StateCur", i, 1000.0 + i)
        assert edge.wait_drained(20)
        first_bd = decode(rec.of("NBIRTH")[0][1]).metrics[0].value
        broker.stop()
        for i in range(50, 150):  # the broker is gone: these wait on disk
            edge.update("R1", "Dosing.StateCur", i, 1000.0 + i)
        assert len(edge.buffer) >= 100
        broker.start()
        assert edge.wait_drained(60)
        assert rec.wait(lambda: _values(rec)[-1:] == [(149, 1_149_000)], 30)
    finally:
        edge.stop()
        rec.close()
    values = _values(rec)
    assert values == [(i, 1_000_000 + i * 1000) for i in range(150)]  # all, in order, once
    historical = [m.historical for p in _unique(rec) for m in decode(p).metrics]
    assert not any(historical[:50]) and all(historical[50:])
    births = [decode(p) for _, p in rec.of("NBIRTH")]
    assert len(births) == 2 and births[1].metrics[0].value == (first_bd + 1) % 256
    # the unexpected loss of the session was announced by the will, with the old bdSeq
    deaths = [decode(p) for _, p in rec.of("NDEATH")]
    assert deaths and deaths[0].metrics[0].value == first_bd


def _unique(rec: Recorder) -> list[bytes]:
    """DDATA payloads in order of arrival, a payload the broker delivered again (a
    subscriber's at-least-once across the broker restart) counted once; a repeat the broker
    did not flag as a redelivery would be the edge's and stays in."""
    seen: set[bytes] = set()
    out = []
    for _, p in rec.of("DDATA"):
        if p in seen and p in rec.redelivered:
            continue
        seen.add(p)
        out.append(p)
    return out


def _values(rec: Recorder) -> list[tuple[int, int]]:
    return [(m.value, m.timestamp) for p in _unique(rec) for m in decode(p).metrics]


def test_overflow_drops_the_oldest_and_says_so(broker: Mosquitto, tmp_path: Path) -> None:
    rec = Recorder(broker.url)  # its session outlives the outage (the broker persists it)
    broker.stop()  # nothing reachable: everything stays in the buffer
    edge = _edge(broker, tmp_path, max_buffered=10)
    edge.start()
    try:
        for i in range(25):
            edge.update("R1", "Dosing.StateCur", i, 1000.0 + i)
        assert len(edge.buffer) == 10
        assert edge.buffer.dropped == 15
        assert [r.value for r in edge.buffer.peek(100)] == list(range(15, 25))  # the newest
        broker.start()
        assert edge.wait_drained(30)
        assert rec.wait(lambda: len(_values(rec)) == 10, 30)
        nbirth = {m.name: m.value for m in decode(rec.of("NBIRTH")[-1][1]).metrics}
        assert nbirth["Buffer/Dropped"] == 15
        assert [v for v, _ in _values(rec)] == list(range(15, 25))
    finally:
        edge.stop()
        rec.close()


def test_rebirth_on_request_and_commands_off_by_default(broker: Mosquitto,
                                                        tmp_path: Path) -> None:
    from modulecontrol.fleet import Metric, encode, mqtt_client, topic

    rec = Recorder(broker.url)
    seen: list[tuple[str | None, Metric]] = []
    off = _edge(broker, tmp_path / "off")
    on = EdgeNode(Broker.parse(broker.url), "SiteA", "Line2", tmp_path / "on.db",
                  commands=lambda device, m: seen.append((device, m)))
    on.add_device("R1", METRICS)
    off.start()
    on.start()
    sender = mqtt_client("tester", Broker.parse(broker.url))
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    try:
        assert rec.wait(lambda: len(rec.of("NBIRTH")) == 2)
        cmd = encode([Metric("T", DataType.DOUBLE, 42.0, 1)], timestamp=1, seq=None)
        for node in ("Line1", "Line2"):
            sender.publish(topic("SiteA", "DCMD", node, "R1"), cmd, qos=1).wait_for_publish(5)
        rebirth = encode([Metric("Node Control/Rebirth", DataType.BOOLEAN, True, 1)],
                         timestamp=1, seq=None)
        sender.publish(topic("SiteA", "NCMD", "Line1"), rebirth, qos=1).wait_for_publish(5)
        assert rec.wait(lambda: len(rec.of("NBIRTH")) == 3)
        assert rec.of("NBIRTH")[-1][0] == "spBv1.0/SiteA/NBIRTH/Line1"
        assert rec.wait(lambda: bool(seen), 10)
        assert [(d, m.name, m.value) for d, m in seen] == [("R1", "T", 42.0)]  # Line2 only
    finally:
        sender.loop_stop()
        off.stop()
        on.stop()
        rec.close()


def test_stop_keeps_the_buffer_without_waiting_for_a_primary_host_that_is_offline(
        broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its primary host the edge publishes nothing: stop does not wait ``drain`` for
    it (it used to, every stop of a line whose fleet historian was gone), and the samples
    stay in the buffer file for the next start."""
    edge = _edge(broker, tmp_path, primary_host="no-such-host")
    edge.update("R1", "T", 25.0)
    edge.start()
    wait_until("the edge connected", edge._connected.is_set)
    waited: list[float] = []
    monkeypatch.setattr(edge, "wait_drained", waited.append)
    left = edge.stop(drain=3600.0)
    assert waited == [] and left == 1
