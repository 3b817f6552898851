"""Line-based ASCII request/response framing, checksums and reply parsing.

Kept free of I/O so that the same code frames requests in the driver, checks them in the
emulator (``modulecontrol.simulators``, hence a public module) and can be fuzzed on its own:
every way a reply can be wrong ends in one of two typed errors, :class:`BadReply` (the reply
is not what the descriptor describes) or :class:`~modulecontrol.drivers.DeviceRejected` (the
device said no).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from modulecontrol.descriptors import SerialCommand, SerialEndpoint
from modulecontrol.drivers._base import BadReply, DeviceRejected

Checksum = Literal["none", "sum8", "xor", "crc16-modbus"]
CHECKSUM_DIGITS: dict[str, int] = {"none": 0, "sum8": 2, "xor": 2, "crc16-modbus": 4}
MAX_LINE = 4096
"""Longest reply accepted; a device streaming bytes without a terminator is not answering."""

_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})


def checksum_hex(kind: Checksum, data: bytes) -> str:
    """The checksum of ``data`` as uppercase hex (``""`` for ``none``).

    ``sum8``: sum of the bytes modulo 256; ``xor``: XOR of the bytes; ``crc16-modbus``: CRC-16
    with polynomial 0xA001 (reflected 0x8005) and initial value 0xFFFF, written high byte first
    (``123456789`` gives ``4B37``).
    """
    if kind == "none":
        return ""
    if kind == "sum8":
        return f"{sum(data) & 0xFF:02X}"
    if kind == "xor":
        x = 0
        for b in data:
            x ^= b
        return f"{x:02X}"
    if kind == "crc16-modbus":
        crc = 0xFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        return f"{crc:04X}"
    raise ValueError(f"unknown checksum '{kind}'; use one of {', '.join(get_args(Checksum))}")


@dataclass(frozen=True)
class Framing:
    """How a request is wrapped and a reply unwrapped on one serial line."""

    write_terminator: bytes = b"\r"
    read_terminator: bytes = b"\r"
    address: int | None = None
    checksum: Checksum = "none"
    error_pattern: re.Pattern[str] | None = re.compile(r"^[A-Z]?(?P<code>\?[A-Z]*)$")

    @classmethod
    def from_endpoint(cls, ep: SerialEndpoint) -> Framing:
        return cls(
            write_terminator=_encode(ep.write_terminator),
            read_terminator=_encode(ep.read_terminator),
            address=ep.address,
            checksum=ep.checksum,
            error_pattern=None if ep.error_pattern is None else re.compile(ep.error_pattern),
        )

    def frame(self, text: str) -> bytes:
        """``[AA]text[checksum]terminator`` as bytes."""
        body = _encode(("" if self.address is None else f"{self.address:02d}") + text)
        return body + checksum_hex(self.checksum, body).encode("ascii") + self.write_terminator

    def unframe(self, line: bytes) -> str:
        """The reply text without terminator, checksum and address; raises :class:`BadReply`."""
        if line.endswith(self.read_terminator):
            line = line[: -len(self.read_terminator)]
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise BadReply(f"reply is not ASCII: {line[:40]!r}", reply=repr(line)) from None
        if not text.isprintable():
            raise BadReply(f"reply holds control characters: {text[:40]!r}", reply=text)
        n = CHECKSUM_DIGITS[self.checksum]
        if n:
            body, got = text[:-n], text[-n:]
            want = checksum_hex(self.checksum, body.encode("ascii"))
            if len(text) < n or got.upper() != want:
                raise BadReply(
                    f"{self.checksum} checksum mismatch in reply {text!r} (expected {want}); "
                    "check the endpoint's 'checksum' setting and the line for noise",
                    reply=text,
                )
            text = body
        if self.address is not None:
            prefix = f"{self.address:02d}"
            if not text.startswith(prefix):
                raise BadReply(
                    f"reply {text!r} does not start with the address {prefix}; is another "
                    "device on the chain answering, or is the endpoint's 'address' wrong?",
                    reply=text,
                )
            text = text[len(prefix):]
        return text

    def check_error(self, text: str) -> None:
        """Raise :class:`DeviceRejected` when ``text`` is an error reply."""
        if self.error_pattern is None:
            return
        m = self.error_pattern.search(text)
        if m is None:
            return
        code = m.groupdict().get("code") or m.group(0)
        raise DeviceRejected(f"device rejected the request with {code!r}", code=code)


def _encode(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not ASCII; serial command text must be ASCII") from None


def render(cmd: SerialCommand, value: Any = None) -> str:
    """The request text of ``cmd`` for ``value`` (``None`` for a read)."""
    if isinstance(value, bool) and cmd.true_command is not None and cmd.false_command is not None:
        return cmd.true_command if value else cmd.false_command
    if cmd.command is None:
        raise ValueError("a boolean command needs a boolean value")
    if value is None:
        return cmd.command
    whole = isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or (cmd.conversion == "int" and whole):
        value = int(value)
    try:
        return cmd.command.format(value=value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot fill {cmd.command!r} with {value!r}: {exc}") from None


def parse_value(cmd: SerialCommand, text: str) -> Any:
    """Match ``text`` against the command's response pattern and convert the value.

    The pattern is searched (anchor it with ``^...$`` to reject trailing garbage); the value is
    the named group ``value``, else group 1, else the whole match. Without a pattern the whole
    text is the value.
    """
    raw = text
    if cmd.response is not None:
        m = re.search(cmd.response, text)
        if m is None:
            raise BadReply(f"reply {text!r} does not match {cmd.response!r}", reply=text)
        groups = m.groupdict()
        if "value" in groups:
            found = groups["value"]
        elif m.re.groups:
            found = m.group(1)
        else:
            found = m.group(0)
        if found is None:
            raise BadReply(f"reply {text!r} matched {cmd.response!r} without a value",
                           reply=text)
        raw = found
    return convert(cmd.conversion, raw.strip(), reply=text)


def convert(conversion: str, raw: str, *, reply: str | None = None) -> Any:
    """``raw`` as float, int, bool or str; unconvertible text is a :class:`BadReply`."""
    try:
        if conversion == "float":
            v = float(raw)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError("not finite")
            return v
        if conversion == "int":
            return int(raw, 10)
        if conversion == "bool":
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("not a boolean")
    except ValueError:
        raise BadReply(f"cannot read {raw!r} as {conversion}",
                       reply=raw if reply is None else reply) from None
    return raw


def parse_reply(framing: Framing, cmd: SerialCommand | None, line: bytes) -> tuple[Any, str]:
    """The value and reply text of one raw reply line (``None`` value when ``cmd`` is None or a
    write without a response pattern). Raises only :class:`BadReply` or ``DeviceRejected``."""
    text = framing.unframe(line)
    framing.check_error(text)
    if cmd is None:
        return None, text
    return parse_value(cmd, text), text
