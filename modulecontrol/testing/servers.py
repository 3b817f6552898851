"""Real Mosquitto and PostgreSQL servers for tests and benches, from Debian's binaries.

Each instance lives in its own temporary folder and listens on a free port of 127.0.0.1 only,
so a test can stop and restart it (a broker outage, a database restart) without touching
anything else on the machine. The binaries must be told their port, which another process
may take between its choice and the bind: without a port given, the first start picks one
and tries another while the chosen one turns out taken
(:func:`~modulecontrol.simulators.start_on_free_port`); later starts keep it.
:func:`missing` says which binaries are absent, for a skip with a reason;
``.ci/run`` installs the packages on a fresh machine.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from modulecontrol.simulators import free_port, start_on_free_port

_PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _which(name: str) -> str | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        for d in _PG_BIN:
            if (d / name).exists():
                return str(d / name)
    return found


def missing(*names: str) -> list[str]:
    """Which of ``names`` (``mosquitto``, ``initdb``, ``pg_ctl``) are not installed."""
    return [n for n in names if _which(n) is None]


__all__ = ["Mosquitto", "Postgres", "free_port", "missing"]

_IN_USE = "Address already in use"
"""What Mosquitto and PostgreSQL write when their port is taken."""


def _size(path: Path) -> int:
    """Bytes in ``path`` (0 if absent): where this start's lines of a log begin."""
    return path.stat().st_size if path.exists() else 0


def _taken(port: int, log: Path, since: int) -> OSError | None:
    """An ``EADDRINUSE`` error if ``log`` says, after byte ``since``, that the server found
    ``port`` taken, for :func:`start_on_free_port` to try another."""
    with contextlib.suppress(OSError), log.open("rb") as f:
        f.seek(since)
        if _IN_USE.encode() in f.read():
            return OSError(errno.EADDRINUSE, f"127.0.0.1:{port}: {_IN_USE} ({log})")
    return None


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """``mosquitto -c conf`` on 127.0.0.1:port; :meth:`stop` and :meth:`start` keep the port.

    Configured as docs/fleet.md asks of a fleet broker: persistence on, and QoS 0 messages
    **not** queued for a disconnected persistent session (``queue_qos0_messages false``,
    Mosquitto's default). With them queued, Mosquitto 2.0.11 (Debian 12) loses queued QoS 1
    messages when the session reconnects with more queued than its in-flight window: a
    Sparkplug birth (QoS 0 by the specification) queued for a killed historian cost samples
    it had not stored yet (issue #20, ``tests/fleet/test_historian_kill.py``). ``extra``
    lines come last and override these."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "",
                 anonymous: bool = True) -> None:
        self.folder = folder
        self.port = port or 0
        """0 until the first :meth:`start` found a free one (unless given)."""
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self._extra = extra
        self._anonymous = anonymous
        folder.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start on :attr:`port`, or, at the first start without one, on a free port."""
        if self.port:
            self._start(self.port)
        else:
            start_on_free_port(self._start)

    def _start(self, port: int) -> None:
        binary = _which("mosquitto")
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self._anonymous else 'false'}\n"
            f"persistence true\npersistence_location {self.folder}/\n"
            f"queue_qos0_messages false\n"
            f"max_queued_messages 100000\nlog_dest file {self.log}\n"
            # as root mosquitto would switch to its own user, who cannot write this folder
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            f"{self._extra}")
        since = _size(self.log)
        self._proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(port, 10.0, self._proc)
        except RuntimeError as exc:
            self._proc = None
            taken = _taken(port, self.log, since)
            if taken is not None:
                raise taken from exc
            raise
        self.port = port

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


_TEMPLATES: dict[tuple[str, ...], Path] = {}
"""(initdb, the user prefix) -> the data folder of a cluster made by that initdb in this
process, which :meth:`Postgres.init` copies; removed at exit."""


class Postgres:
    """A throwaway cluster (initdb; pg_ctl) with trust auth on 127.0.0.1:port only.

    As root the cluster runs as the ``postgres`` system user (PostgreSQL refuses root), in a
    folder of its own under the system temporary folder: pytest keeps its ``tmp_path`` tree
    closed to other users (and re-closes it whenever any pytest starts), so the cluster cannot
    live there. :meth:`remove` deletes the folder."""

    def __init__(self, port: int | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="modulecontrol-pg-"))
        self.data = self.folder / "data"
        self.port = port or 0
        """0 until the first :meth:`start` found a free one (unless given)."""
        self.log = self.folder / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], check=False, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()}")

    def init(self) -> None:
        """A fresh cluster in :attr:`data`: a copy of one ``initdb`` made once per process
        (initdb takes a second or two, the copy a fraction; the suite makes one per test)."""
        initdb = _which("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        key = (initdb, *self._as)
        template = _TEMPLATES.get(key)
        if template is None:
            folder = Path(tempfile.mkdtemp(prefix="modulecontrol-pg-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            if self._as:
                pw = pwd.getpwnam("postgres")
                os.chown(folder, pw.pw_uid, pw.pw_gid)
            template = folder / "data"
            self._run(initdb, "-D", str(template), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-sync")
            _TEMPLATES[key] = template
        self._run("cp", "-a", str(template), str(self.data))  # as the cluster's owner

    def start(self) -> None:
        """Start on :attr:`port`, or, at the first start without one, on a free port."""
        if self.port:
            self._start(self.port)
        else:
            start_on_free_port(self._start)

    def _start(self, port: int) -> None:
        pg_ctl = _which("pg_ctl")
        assert pg_ctl is not None
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} "
                f"-c unix_socket_directories={self.folder} -c fsync=off")
        since = _size(self.log)
        try:
            self._run(pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w",
                      "start")
        except RuntimeError as exc:
            taken = _taken(port, self.log, since)
            if taken is not None:
                raise taken from exc
            raise
        _wait_port(port, 30.0)
        self.port = port

    def stop(self) -> None:
        pg_ctl = _which("pg_ctl")
        if pg_ctl is not None and (self.data / "postmaster.pid").exists():
            self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
