"""Compiled conditions: closures over SI floats, a windowed signal history, ``for`` timers.

Why closures: the tree is turned once into plain Python functions that only compare and add
floats, so evaluating a condition every cycle is cheap and can never run arbitrary code.
Units are resolved at compile time; at run time every number is an SI float (temperatures
in kelvin). Logic is three-valued: a missing or bad value gives ``None`` (unknown), which
spreads through arithmetic and comparisons, and through ``and``/``or`` unless the other side
decides the result (``false and unknown`` is false).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from modulecontrol.units import parse_unit, ureg

from ._ast import (
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    Expr,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    Signal,
    String,
    unparse,
)
from ._check import Checker, ParameterValue, Problem, SignalInfo, start_col, tree_depth
from ._parse import MAX_DEPTH, parse

__all__ = [
    "Condition",
    "ConditionError",
    "HistoryProvider",
    "SignalHistory",
    "compile_condition",
    "to_si",
]

Value = float | bool | str
Sample = tuple[float, Value | None]

_TIME_EPS = 1e-9  # seconds; absorbs float noise in 'for' timers and window starts


class HistoryProvider(Protocol):
    """Where a condition reads signals: the latest value and samples over a time window."""

    def latest(self, name: str) -> Value | None:
        """Current value of ``name``; None when missing or of bad quality."""
        ...

    def window(self, name: str, start: float, end: float) -> Sequence[Sample] | None:
        """Samples covering ``[start, end]``: the last sample at or before ``start`` (the value
        held at the window start) followed by every later sample up to ``end``. None when the
        history does not reach back to ``start``."""
        ...


class SignalHistory:
    """Time-bounded ring buffers of samples, one per signal.

    Keeps every sample newer than ``retention`` seconds plus the one sample just older, which
    holds the value at the start of the longest window. ``max_samples`` bounds memory even
    if a caller records far faster than expected; a window that no longer fits is unknown.
    """

    def __init__(
        self, retention: float, names: Iterable[str] = (), max_samples: int = 100_000
    ) -> None:
        if not retention >= 0 or not math.isfinite(retention):
            raise ValueError(f"retention must be a finite number of seconds >= 0, got {retention}")
        if max_samples < 2:
            raise ValueError("max_samples must be at least 2")
        self.retention = retention
        self.max_samples = max_samples
        self._names = frozenset(names)
        self._buffers: dict[str, deque[Sample]] = {}
        self._last_time: float | None = None

    def record(self, now: float, values: Mapping[str, Value | None]) -> None:
        """Add one sample per signal at time ``now``.

        Signals declared in ``names`` but absent from ``values`` are recorded as bad (None);
        NaN and infinities are bad too. Time must not go backwards.
        """
        if not math.isfinite(now):
            raise ValueError(f"time must be finite, got {now}")
        if self._last_time is not None and now < self._last_time:
            raise ValueError(f"time went backwards: {now} < {self._last_time}")
        self._last_time = now
        cutoff = now - self.retention
        for name in self._names | values.keys():
            value = _clean(values.get(name))
            buf = self._buffers.get(name)
            if buf is None:
                buf = self._buffers[name] = deque(maxlen=self.max_samples)
            if buf and buf[-1][0] == now:
                buf[-1] = (now, value)
            else:
                buf.append((now, value))
            while len(buf) >= 2 and buf[1][0] <= cutoff:
                buf.popleft()

    def latest(self, name: str) -> Value | None:
        buf = self._buffers.get(name)
        return buf[-1][1] if buf else None

    def window(self, name: str, start: float, end: float) -> list[Sample] | None:
        buf = self._buffers.get(name)
        if not buf:
            return None
        out: list[Sample] = []
        for t, v in reversed(buf):
            if t > end:
                continue
            out.append((t, v))
            if t <= start + _TIME_EPS:
                out.reverse()
                return out
        return None

    def clear(self) -> None:
        """Forget all samples (for example when a recipe step restarts)."""
        self._buffers.clear()
        self._last_time = None


def _clean(value: object) -> Value | None:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    raise TypeError(f"signal values must be float, bool, str or None, got {type(value).__name__}")


class ConditionError(ValueError):
    """A condition failed its static check; ``problems`` lists every mistake with its column."""

    def __init__(self, text: str, problems: Sequence[Problem]) -> None:
        self.text = text
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid condition '{text}':\n{lines}")


@dataclass(slots=True)
class _Ctx:
    now: float
    history: HistoryProvider


Fn = Callable[[_Ctx], Value | None]


class _HoldTimer:
    """State of one ``for``: when the inner condition last became continuously true."""

    __slots__ = ("duration", "since")

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.since: float | None = None

    def step(self, now: float, inner: Value | None) -> bool | None:
        if inner is None:
            self.since = None
            return None
        if inner is not True:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.duration - _TIME_EPS


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _numbers(samples: Sequence[Sample] | None) -> list[tuple[float, float]] | None:
    if not samples:
        return None
    out: list[tuple[float, float]] = []
    for t, v in samples:
        if not isinstance(v, float):
            return None  # a bad or missing sample inside the window
        out.append((t, v))
    return out


def _time_mean(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Mean of the held (zero-order hold) signal over [start, end]."""
    if end <= start:
        return samples[-1][1]
    total = 0.0
    for i, (t, v) in enumerate(samples):
        t0 = max(t, start)
        t1 = samples[i + 1][0] if i + 1 < len(samples) else end
        total += v * (min(t1, end) - t0)
    return total / (end - start)


class _Compiler:
    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.timers: list[_HoldTimer] = []
        self.max_window = 0.0

    def const(self, node: Expr) -> float:
        value = self.checker.types[id(node)].value
        if not isinstance(value, float):
            # The checker accepted it, so it is constant; it only failed to fold (x / 0).
            raise ConditionError(
                "", [Problem(start_col(node), f"'{unparse(node)}' has no finite value")]
            )
        return value

    def compile(self, node: Expr) -> Fn:
        t = self.checker.types[id(node)]
        if t.const and t.value is not None:
            value = t.value
            return lambda ctx: value
        if isinstance(node, Number | BoolLit | String | Param):
            raise AssertionError(f"constant without a value: {unparse(node)}")
        if isinstance(node, Signal):
            name = node.name
            return lambda ctx: ctx.history.latest(name)
        if isinstance(node, Neg):
            f = self.compile(node.operand)

            def neg(ctx: _Ctx) -> Value | None:
                v = f(ctx)
                return -v if isinstance(v, float) else None

            return neg
        if isinstance(node, Not):
            f = self.compile(node.operand)

            def not_(ctx: _Ctx) -> Value | None:
                v = f(ctx)
                return (not v) if isinstance(v, bool) else None

            return not_
        if isinstance(node, BoolOp):
            return self._boolop(node)
        if isinstance(node, Hold):
            return self._hold(node)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def _boolop(self, node: BoolOp) -> Fn:
        fl, fr = self.compile(node.left), self.compile(node.right)
        decisive = node.op == "or"  # the value that decides the result on its own

        def boolop(ctx: _Ctx) -> Value | None:
            # Both sides are always evaluated so that every 'for' timer sees every cycle.
            a, b = fl(ctx), fr(ctx)
            if a is decisive or b is decisive:
                return decisive
            if a is None or b is None:
                return None
            return not decisive

        return boolop

    def _hold(self, node: Hold) -> Fn:
        inner = self.compile(node.condition)
        duration = self.const(node.duration)
        timer = _HoldTimer(duration)
        self.timers.append(timer)
        return lambda ctx: timer.step(ctx.now, inner(ctx))

    def _compare(self, node: Compare) -> Fn:
        fl, fr = self.compile(node.left), self.compile(node.right)
        op = node.op

        def compare(ctx: _Ctx) -> Value | None:
            a, b = fl(ctx), fr(ctx)
            if a is None or b is None or type(a) is not type(b):
                return None
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            assert isinstance(a, float) and isinstance(b, float)
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            return a >= b

        return compare

    def _binary(self, node: Binary) -> Fn:
        fl, fr = self.compile(node.left), self.compile(node.right)
        op = node.op

        def binary(ctx: _Ctx) -> Value | None:
            a, b = fl(ctx), fr(ctx)
            if not isinstance(a, float) or not isinstance(b, float):
                return None
            if op == "+":
                return _finite(a + b)
            if op == "-":
                return _finite(a - b)
            if op == "*":
                return _finite(a * b)
            return _finite(a / b) if b != 0 else None

        return binary

    def _call(self, node: Call) -> Fn:
        if node.name == "abs":
            f = self.compile(node.args[0])

            def abs_(ctx: _Ctx) -> Value | None:
                v = f(ctx)
                return abs(v) if isinstance(v, float) else None

            return abs_
        first = node.args[0]
        assert isinstance(first, Signal)
        name = first.name
        window = self.const(node.args[-1])
        self.max_window = max(self.max_window, window)
        kind = node.name
        band = self.const(node.args[1]) if kind == "stable" else 0.0

        def windowed(ctx: _Ctx) -> Value | None:
            start = ctx.now - window
            samples = _numbers(ctx.history.window(name, start, ctx.now))
            if samples is None:
                return None
            values = [v for _, v in samples]
            if kind == "mean":
                return _finite(_time_mean(samples, start, ctx.now))
            if kind == "min":
                return min(values)
            if kind == "max":
                return max(values)
            if kind == "stable":
                return max(values) - min(values) <= band
            change = values[-1] - values[0]
            return _finite(change if kind == "delta" else change / window)

        return windowed


class Condition:
    """A checked, compiled condition; stateful because of ``for`` timers.

    Use :meth:`update` to feed current values and let the condition keep its own history,
    or :meth:`evaluate` with an external :class:`HistoryProvider` shared by many conditions.
    Do not mix the two on one instance.
    """

    def __init__(
        self,
        text: str,
        expr: Expr,
        fn: Fn,
        timers: list[_HoldTimer],
        signals: Mapping[str, SignalInfo],
        max_window: float,
    ) -> None:
        self.text = text
        self.expr = expr
        self.signals: Mapping[str, SignalInfo] = dict(signals)
        self.max_window = max_window
        self._fn = fn
        self._timers = timers
        self._history = SignalHistory(max_window, names=self.signals)
        self._last_now: float | None = None

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def update(self, now: float, values: Mapping[str, Value | None]) -> bool | None:
        """Record SI ``values`` at ``now`` (seconds) and evaluate.

        A signal this condition reads that is absent from ``values`` or None is recorded as
        bad and makes the parts that read it unknown.
        """
        for name, value in values.items():
            info = self.signals.get(name)
            if info is None or value is None:
                continue
            ok = (
                isinstance(value, bool)
                if info.kind == "bool"
                else isinstance(value, str)
                if info.kind == "str"
                else isinstance(value, int | float) and not isinstance(value, bool)
            )
            if not ok:
                raise TypeError(
                    f"signal '{name}' is a {info.kind}, got {type(value).__name__} {value!r}"
                )
        self._history.record(now, {k: v for k, v in values.items() if k in self.signals})
        return self.evaluate(now, self._history)

    def evaluate(self, now: float, history: HistoryProvider) -> bool | None:
        """True, False, or None when unknown; ``now`` must not go backwards."""
        if not math.isfinite(now):
            raise ValueError(f"time must be finite, got {now}")
        if self._last_now is not None and now < self._last_now:
            raise ValueError(f"time went backwards: {now} < {self._last_now}")
        self._last_now = now
        result = self._fn(_Ctx(now, history))
        return result if isinstance(result, bool) else None

    def reset(self) -> None:
        """Restart every ``for`` timer and forget the history this condition recorded."""
        for timer in self._timers:
            timer.since = None
        self._history.clear()
        self._last_now = None

    def to_si(self, name: str, value: float) -> float:
        """Convert a reading of ``name`` in its catalogue unit to the SI float to feed in."""
        return float(ureg.Quantity(value, parse_unit(self.signals[name].unit)).to_base_units().m)


def to_si(value: float, unit: str) -> float:
    """SI magnitude of ``value`` in ``unit`` (``60 degC`` gives 333.15, ``98 %`` 0.98)."""
    return float(ureg.Quantity(float(value), parse_unit(unit)).to_base_units().magnitude)


def compile_condition(
    source: str | Expr,
    signals: Mapping[str, SignalInfo],
    parameters: Mapping[str, ParameterValue] | None = None,
) -> Condition:
    """Parse (if text), check and compile a condition.

    Raises :class:`ExprSyntaxError` for bad syntax and :class:`ConditionError` listing every
    problem found by the checker. Parameters must have values here: they are fixed for the run.
    """
    expr = parse(source) if isinstance(source, str) else source
    if isinstance(source, str):
        text = source
    else:
        text = unparse(source) if tree_depth(source) <= MAX_DEPTH else "<deeply nested expression>"
    checker = Checker(signals, parameters or {})
    checker.run(expr)
    problems = sorted(checker.problems, key=lambda p: p.col)
    if not problems:
        problems = _unvalued_params(expr, checker)
    if problems:
        raise ConditionError(text, problems)
    compiler = _Compiler(checker)
    try:
        fn = compiler.compile(expr)
    except ConditionError as exc:
        raise ConditionError(text, exc.problems) from None
    used = {n.name for n in _walk(expr) if isinstance(n, Signal)}
    return Condition(
        text, expr, fn, compiler.timers, {n: signals[n] for n in used}, compiler.max_window
    )


def _walk(node: Expr) -> Iterable[Expr]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, Neg | Not):
            stack.append(n.operand)
        elif isinstance(n, Binary | Compare | BoolOp):
            stack.extend((n.left, n.right))
        elif isinstance(n, Hold):
            stack.extend((n.condition, n.duration))
        elif isinstance(n, Call):
            stack.extend(n.args)


def _unvalued_params(expr: Expr, checker: Checker) -> list[Problem]:
    return [
        Problem(n.col, f"parameter '${{{n.name}}}' has no value yet; give it one to compile")
        for n in _walk(expr)
        if isinstance(n, Param) and checker.types[id(n)].value is None
    ]
