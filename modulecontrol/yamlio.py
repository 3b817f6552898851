"""YAML in and out with line numbers, and pydantic errors turned into located problems.

ruamel.yaml is used (rather than PyYAML) because its round-trip loader keeps the line and
column of every key and item, which is what lets an error say ``plant.yaml:14:7`` instead of
``modules.3.endpoint.port``. It also refuses duplicate keys, which PyYAML silently merges.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from modulecontrol.errors import ConfigError, Location, Problem, did_you_mean

PathKey = tuple[str | int, ...]

MAX_YAML_BYTES = 5_000_000


@dataclass
class YamlDoc:
    """Plain data loaded from YAML, plus where each key and value stood in the file."""

    data: Any
    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        """Best location for ``path``: the exact node, else its nearest located ancestor."""
        p = tuple(path)
        while True:
            table = self.keys if key else self.values
            if p in table:
                line, col = table[p]
                return Location(self.file, line + 1, col + 1)
            if key and p in self.values:
                line, col = self.values[p]
                return Location(self.file, line + 1, col + 1)
            if not p:
                return Location(self.file, 1, 1)
            p = p[:-1]

    def sub(self, prefix: PathKey) -> YamlDoc:
        """A view of the part of the document below ``prefix`` (paths made relative)."""
        n = len(prefix)
        data: Any = self.data
        for part in prefix:
            data = data[part]
        return YamlDoc(
            data,
            self.file,
            {k[n:]: v for k, v in self.values.items() if k[:n] == prefix},
            {k[n:]: v for k, v in self.keys.items() if k[:n] == prefix},
        )


def _text(value: str, path: PathKey, doc: YamlDoc) -> str:
    """A string that can be written back as UTF-8: YAML escapes (``"\\ud800"``) can make
    lone surrogates, which break every later encode (logs, records, reports)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError.single("text with an invalid character (a lone UTF-16 surrogate, "
                                 "e.g. from a \\ud800 escape)", doc.locate(path)) from None
    return value


def _plain(node: Any, path: PathKey, doc: YamlDoc) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for k in node:
            kpath = (*path, str(k))
            try:
                doc.keys[kpath] = node.lc.key(k)
                doc.values[kpath] = node.lc.value(k)
            except (KeyError, TypeError, AttributeError):
                pass
            out[_text(str(k), kpath, doc)] = _plain(node[k], kpath, doc)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, item in enumerate(node):
            ipath = (*path, i)
            with contextlib.suppress(KeyError, TypeError, AttributeError, IndexError):
                doc.values[ipath] = node.lc.item(i)
            items.append(_plain(item, ipath, doc))
        return items
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return _text(str(node), path, doc)
    if node is None:
        return None
    return _text(str(node), path, doc)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def load_yaml_text(text: str, file: str = "<string>") -> YamlDoc:
    """Parse YAML text; syntax errors become a located :class:`ConfigError`."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError.single(f"file is larger than {MAX_YAML_BYTES} bytes", Location(file))
    if text.lstrip("\ufeff \t\r\n").startswith("<"):  # no document of ours is a scalar
        raise ConfigError.single(
            "this is XML, not YAML: for an MTP manifest (AutomationML) use 'modulecontrol "
            "mtp check' or 'modulecontrol mtp import'", Location(file, 1, 1))
    try:
        raw = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError.single(f"YAML syntax: {what}", loc) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError.single(f"YAML syntax: {exc}", Location(file)) from None
    doc = YamlDoc(None, file)
    doc.data = _plain(raw, (), doc)
    return doc


def load_yaml(path: str | Path) -> YamlDoc:
    """Read and parse a YAML file, naming it in every error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single("file not found", Location(str(path))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(f"cannot read file: {exc}", Location(str(path))) from None
    return load_yaml_text(text, str(path))


def _walk_model(model: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    """The pydantic model class found at ``path`` below ``model``, for listing allowed keys."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in fields:
            return None
        current = _inner_model(fields[part].annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if args:
        for a in reversed(args):
            found = _inner_model(a)
            if found is not None:
                return found
    return None


def allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def validation_problems(
    exc: ValidationError,
    doc: YamlDoc,
    model: type[BaseModel] | None = None,
    prefix: PathKey = (),
    rewrite: Callable[[PathKey], PathKey] | None = None,
) -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into located, actionable problems.

    ``rewrite`` maps pydantic's error path onto the document's path; models with
    callable-discriminated unions need it to drop the tag pydantic inserts after each item.
    """
    problems: list[Problem] = []
    seen: set[tuple[PathKey, str]] = set()
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(
            p for p in err["loc"] if isinstance(p, str | int) and not _is_union_tag(p)
        )
        if rewrite is not None:
            loc = rewrite(loc)
        full = (*prefix, *loc)
        etype = err["type"]
        if etype == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            parent = _walk_model(model, loc[:-1]) if model else None
            hint = did_you_mean(key, allowed_keys(parent)) if parent else ""
            msg = f"unknown key '{key}'{hint}"
            where = doc.locate(full, key=True)
        elif etype == "missing":
            key = str(loc[-1]) if loc else "?"
            msg = f"missing required key '{key}'"
            where = doc.locate(full[:-1])
        elif etype == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tag = str(ctx.get("tag", ""))
            expected = str(ctx.get("expected_tags", ""))
            choices = [c.strip().strip("'\"") for c in expected.split(",")]
            disc = str(ctx.get("discriminator", "kind")).strip("'")
            msg = (
                f"{_name(loc)}: unknown {disc} '{tag}'; expected one of {expected}"
                f"{did_you_mean(tag, [c for c in choices if c])}"
            )
            where = doc.locate((*full, disc))
        elif etype == "literal_error":
            expected = str(err.get("ctx", {}).get("expected", ""))
            choices = [c.strip().strip("'\"") for c in expected.replace(" or ", ",").split(",")]
            given = err.get("input")
            hint = did_you_mean(str(given), [c for c in choices if c]) if given else ""
            msg = f"{_name(loc)}: '{given}' is not allowed; expected {expected}{hint}"
            where = doc.locate(full)
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, ") :]
            elif text.startswith("Assertion failed, "):
                text = text[len("Assertion failed, ") :]
            msg = f"{_name(loc)}: {text}" if loc else text
            where = doc.locate(full)
        if (full, msg) in seen:
            continue
        seen.add((full, msg))
        problems.append(Problem(msg, where))
    return problems


def _is_union_tag(part: Any) -> bool:
    """pydantic inserts union member names like ``function-after[...]`` into locations."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _name(loc: PathKey) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


class _Dumper:
    """Dump plain data as block-style YAML with stable key order."""

    def __init__(self) -> None:
        self._y = YAML(typ="safe", pure=True)
        self._y.default_flow_style = False
        self._y.sort_base_mapping_type_on_output = False  # type: ignore[assignment]

    def dump(self, data: Any) -> str:
        buf = io.StringIO()
        self._y.dump(_clean_for_dump(data), buf)
        return buf.getvalue()


def _clean_for_dump(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _clean_for_dump(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_clean_for_dump(v) for v in data]
    if isinstance(data, float) and math.isfinite(data) and data.is_integer() and abs(data) < 1e15:
        return data
    return data


def dump_yaml(data: Any) -> str:
    """YAML text for plain data (dicts, lists, scalars)."""
    return _Dumper().dump(data)


def iter_paths(data: Any, prefix: PathKey = ()) -> Iterator[PathKey]:
    """Every path in a plain-data tree; used by tests and fuzzers."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from iter_paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from iter_paths(v, (*prefix, i))
