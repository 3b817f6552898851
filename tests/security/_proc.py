"""Helpers for tests that run the CLI in a subprocess: its command line and environment,
its output, its listening sockets. (No free ports chosen in advance: ``sim serve
--free-ports`` binds ports of the OS's choice and lists them.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> list[str]:
    """The command line of ``modulecontrol ARGS`` with this interpreter."""
    return [sys.executable, "-m", "modulecontrol.cli", *args]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(COLUMNS="250", PYTHONUNBUFFERED="1", **extra)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    return e


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by process ``pid``.

    Read from /proc: the socket inodes of the process's file descriptors, matched with the
    rows of /proc/<pid>/net/tcp and tcp6 (state 0A is LISTEN).
    """
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out: list[tuple[str, int]] = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:
                # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.append((addr, int(hexport, 16)))
    return out


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line contains ``needle``; return everything read."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            chunk = None
        if chunk:
            seen += chunk.decode(errors="replace")
            if needle in seen:
                return seen
        elif chunk == b"" or proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not printed within {timeout} s; output:\n{seen}")


def drain(proc: subprocess.Popen[str]) -> list[str]:
    """Keep reading ``proc``'s stdout in a daemon thread, so a chatty long-running server never
    blocks on a full pipe; returns the list the lines are collected into (for messages)."""
    assert proc.stdout is not None
    out = proc.stdout
    os.set_blocking(out.fileno(), True)
    lines: list[str] = []

    def pump() -> None:
        for line in out:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
