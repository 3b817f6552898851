"""NCMD/DCMD through the line service: off by default; when on, each command runs as the
mapped service user, through the same methods as the API (limits, CommandEn, operator mode),
its role checked every time, every command in the audit trail. A real Mosquitto, the real
service with the simulated lomustine plant, commands published by a plain MQTT client."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modulecontrol._servicecli import SparkplugOptions, check_command_user, sparkplug_extension
from modulecontrol.cli import app
from modulecontrol.fleet import Broker, DataType, Metric, decode, encode, mqtt_client, topic
from modulecontrol.records import AuditTrail
from modulecontrol.service import ServiceOptions
from modulecontrol.testing.servers import Mosquitto
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests._poll import wait_until
from tests.fleet._sub import Recorder

ROOT = Path(__file__).parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


def _until(what: str, check: Any, within: float = 90.0) -> Any:
    return wait_until(what, check, within)


def _served(broker: Mosquitto, folder: Path, commands_as: str | None, line: str = "L1"
            ) -> tuple[ServiceThread, ServedLine]:
    thread = ServiceThread(
        ServiceOptions(plant=PLANT, simulate=True, speed=60.0, db=folder / "line.db",
                       recipes=ROOT / "recipes", report_dir=folder / "reports"),
        extensions=[sparkplug_extension(SparkplugOptions(
            broker.url, "Basel", line, primary_host=None, commands_as=commands_as))])
    return thread, thread.start()


def _send(url: str, kind: str, device: str | None, name: str, value: Any,
          datatype: DataType, line: str = "L1") -> None:
    c = mqtt_client(f"operator-console-{time.monotonic_ns()}", Broker.parse(url))
    c.connect("127.0.0.1", Broker.parse(url).port)
    c.loop_start()
    now = int(time.time() * 1000)
    info = c.publish(topic("Basel", kind, line, device),
                     encode([Metric(name, datatype, value, now)], timestamp=now, seq=None), qos=1)
    info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def _audit(db: Path) -> list[tuple[str, str, str, str]]:
    with AuditTrail(db) as trail:
        return [(e.user, e.action, e.object, e.reason or "") for e in trail.entries()]


def _p1(s: Any) -> Any:
    return s.line.proxies["P1"]


def _flow_sp(thread: ServiceThread) -> Any:
    return thread.call(lambda s: _p1(s).value("FlowSP"))


def _dosing(thread: ServiceThread) -> str:
    return str(thread.call(lambda s: _p1(s).services["Dosing"].state.label))


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    from modulecontrol.testing.servers import missing

    if missing("mosquitto"):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
    server = Mosquitto(tmp_path_factory.mktemp("mq"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def commanded(module_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[ServiceThread, ServedLine, Recorder]]:
    rec = Recorder(module_broker.url, "commands-recorder")
    thread, line = _served(module_broker, tmp_path_factory.mktemp("on"), "operator-user")
    _until("the line's births", lambda: rec.of("DBIRTH"))
    yield thread, line, rec
    thread.stop()
    rec.close()


def test_the_birth_names_the_station_and_the_modules(
        commanded: tuple[ServiceThread, ServedLine, Recorder]) -> None:
    _, line, rec = commanded
    birth = decode(rec.of("NBIRTH")[-1][1])
    station = {m.name: m.value for m in birth.metrics}["Line/Station"]
    assert station == line.url + "/"

    def born() -> set[str]:
        return {t.split("/")[-1] for t, _ in rec.of("DBIRTH")}

    # the fixture waits for the first DBIRTH only; the edge births one device after another,
    # and on a loaded machine the test came before R1's and CR1's (seen: P1, P2, P3, M1)
    _until("the births of P1, R1 and CR1", lambda: {"P1", "R1", "CR1"} <= born())
    assert {"P1", "R1", "CR1"} <= born()


def test_a_set_point_by_dcmd_goes_through_limits_and_audit(
        commanded: tuple[ServiceThread, ServedLine, Recorder],
        module_broker: Mosquitto) -> None:
    thread, line, _ = commanded
    _send(module_broker.url, "DCMD", "P1", "FlowSP", 20.0, DataType.DOUBLE)  # limits 0..10
    refused = _until("the refusal in the audit trail", lambda: [
        e for e in _audit(line.db) if e[1] == "refused: set P1.FlowSP over Sparkplug"])
    assert refused[0][0] == "operator-user" and "outside its limits" in refused[0][3]
    assert _flow_sp(thread) != 20.0
    _send(module_broker.url, "DCMD", "P1", "FlowSP", 0.75, DataType.DOUBLE)
    _until("FlowSP 0.75", lambda: _flow_sp(thread) == 0.75)
    done = _until("the operator action", lambda: [
        e for e in _audit(line.db) if e[1] == "set in operator mode" and e[2] == "P1.FlowSP"
        and "Sparkplug" in e[3]])
    assert done[0][0] == "operator-user"


def test_a_service_command_by_dcmd_follows_command_en(
        commanded: tuple[ServiceThread, ServedLine, Recorder],
        module_broker: Mosquitto) -> None:
    thread, line, _ = commanded
    _send(module_broker.url, "DCMD", "P1", "Dosing.Command", "unhold", DataType.STRING)
    refused = _until("unhold refused", lambda: [
        e for e in _audit(line.db) if e[1] == "refused: unhold P1.Dosing over Sparkplug"])
    assert "not enabled in Idle" in refused[0][3]
    _send(module_broker.url, "DCMD", "P1", "Dosing.Command", "start", DataType.STRING)
    _until("Dosing executes", lambda: _dosing(thread) == "Execute")
    _send(module_broker.url, "DCMD", "P1", "Dosing.Command", "stop", DataType.STRING)
    _until("Dosing stops", lambda: _dosing(thread) in ("Stopped", "Idle"))
    actions = {(e[1], e[2]) for e in _audit(line.db) if e[0] == "operator-user"}
    assert ("Start in operator mode", "P1.Dosing") in actions
    assert ("Stop in operator mode", "P1.Dosing") in actions


def test_node_commands_other_than_rebirth_are_refused(
        commanded: tuple[ServiceThread, ServedLine, Recorder],
        module_broker: Mosquitto) -> None:
    _, line, _ = commanded
    _send(module_broker.url, "NCMD", None, "Run/Abort", True, DataType.BOOLEAN)
    refused = _until("the refusal", lambda: [
        e for e in _audit(line.db) if e[1] == "refused: Run/Abort over Sparkplug"])
    assert "address a module" in refused[0][3]


def test_the_role_is_checked_on_every_command(
        commanded: tuple[ServiceThread, ServedLine, Recorder],
        module_broker: Mosquitto) -> None:
    """An admin demotes the mapped user while the service runs: its next command is
    refused (and audited), the set point stays."""
    thread, line, _ = commanded
    before = _flow_sp(thread)
    with sqlite3.connect(line.db) as conn:
        conn.execute("UPDATE service_users SET role = 'viewer' WHERE name = 'operator-user'")
    try:
        _send(module_broker.url, "DCMD", "P1", "FlowSP", 0.25, DataType.DOUBLE)
        refused = _until("the refusal", lambda: [
            e for e in _audit(line.db) if e[1] == "refused: FlowSP over Sparkplug"])
        assert "role viewer" in refused[0][3]
        assert _flow_sp(thread) == before
    finally:
        with sqlite3.connect(line.db) as conn:
            conn.execute("UPDATE service_users SET role = 'operator' "
                         "WHERE name = 'operator-user'")


def test_commands_are_off_by_default(module_broker: Mosquitto, tmp_path: Path) -> None:
    rec = Recorder(module_broker.url, "off-recorder")
    thread, line = _served(module_broker, tmp_path, None, "L9")  # not the other test's L1

    def births() -> int:
        return len([t for t, _ in rec.of("NBIRTH") if t.endswith("/L9")])

    try:
        _until("the births", births)
        before = _flow_sp(thread)
        n = births()
        _send(module_broker.url, "DCMD", "P1", "FlowSP", 0.5, DataType.DOUBLE, "L9")
        _send(module_broker.url, "NCMD", None, "Node Control/Rebirth", True, DataType.BOOLEAN,
              "L9")
        _until("the rebirth (which is always taken)", lambda: births() > n)
        assert _flow_sp(thread) == before  # sent after the DCMD, so the DCMD was seen
        assert not [e for e in _audit(line.db) if "Sparkplug" in e[1] + e[3]]
    finally:
        thread.stop()
        rec.close()


def test_the_mapped_user_must_exist_and_may_command(tmp_path: Path) -> None:
    from modulecontrol.service import ServiceStore, hash_password

    db = tmp_path / "line.db"
    store = ServiceStore(db)
    store.add_user("watcher", "viewer", hash_password("a long password"))
    store.close()
    with pytest.raises(ValueError, match="no user 'nobody'"):
        check_command_user(db, "nobody")
    with pytest.raises(ValueError, match="is a viewer"):
        check_command_user(db, "watcher")
    res = CliRunner().invoke(app, ["serve", str(PLANT), "--simulate", "--db", str(db),
                                   "--sparkplug", "mqtt://127.0.0.1:1", "--site", "S",
                                   "--sparkplug-commands-as", "watcher"])
    assert res.exit_code == 2 and "may not command" in res.output
    res = CliRunner().invoke(app, ["serve", str(PLANT), "--db", str(db),
                                   "--sparkplug-commands-as", "watcher"])
    assert res.exit_code == 2 and "only with --sparkplug" in res.output
