"""YAML in and out with line numbers, and pydantic errors turned into located problems.

ruamel.yaml is used (rather than PyYAML) because its round-trip loader keeps the line and
column of every key and item, which is what lets an error say ``plant.yaml:14:7`` instead of
``modules.3.endpoint.port``. It also refuses duplicate keys, which PyYAML silently merges.

Why the limits: every loader (``validate``, ``run``, ``sim serve``) reads files from other
people, and YAML aliases let a few hundred bytes stand for billions of nodes (a "billion
laughs" alias bomb took 1.7 GB and 21 s in ``validate``). The composer below counts every
node as it would be *expanded* (an alias counts as the whole subtree it names) and refuses
the document at the alias that crosses :data:`MAX_YAML_NODES`, before any Python object of
the expansion is built. Aliases, nesting depth and tags are bounded the same way.

Why a cache: the pure-Python round-trip parser takes about 15 ms per shipped document, and
``validate`` of the lomustine campaign reads fifteen (its recipe, plant and species and the
built-in module types). A parsed document (its plain data and every line and column) is
stored as JSON under the SHA-256 of its text, the parser's version and this module's, in
the user's own cache directory (:func:`modulecontrol.cachedir.user_cache_folder`,
``MODULECONTROL_YAML_CACHE`` names another one, or ``off``). Only documents that parsed
without error are stored, so every syntax and limit error is found by the parser each time;
the same text under the same parser can only give the same result. ruamel.yaml itself is
imported only when a document is not in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from modulecontrol.cachedir import user_cache_folder
from modulecontrol.errors import ConfigError, Location, Problem, did_you_mean

if TYPE_CHECKING:
    from ruamel.yaml import YAML

PathKey = tuple[str | int, ...]

MAX_YAML_BYTES = 1_000_000
"""Largest YAML document read (characters). The largest shipped document is 11 kB; ruamel's
pure-Python scanner takes seconds per 100 kB of dense keys, so this also bounds the time."""
MAX_YAML_LINE = 10_000
"""Longest line (characters): ruamel's comment scanning grows faster than linearly with the
length of one line (a 200 kB comment line took 4 s)."""
MAX_YAML_NODES = 200_000
"""Most nodes a document may hold once every alias is expanded (the largest shipped plant has
a few thousand); bounds the memory and time of everything that walks the loaded data."""
MAX_YAML_ALIASES = 1_000
"""Most alias uses (``*name``, including ``<<: *name`` merges) in one document."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists (shipped documents nest fewer than 10 levels)."""

CACHE_ENV = "MODULECONTROL_YAML_CACHE"
"""Where parsed documents are cached: a directory, or ``off``. Default:
``$XDG_CACHE_HOME/modulecontrol/yaml`` (``~/.cache/...``)."""
MAX_CACHED_DOCUMENTS = 256
"""Most documents kept in the cache; the least recently written are dropped beyond it."""
MIN_CACHED_CHARS = 200
"""Shorter documents are not cached: they parse in a few milliseconds, about what a cache
entry costs to write (and generated inputs, such as the fuzz tests', would fill it)."""

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null"))
"""Explicit tags a node may carry (scalars these, sequences ``!!seq``, mappings ``!!map``):
our documents are plain data, and any other tag (``!!set`` on a scalar, ``!!python/...``,
``!custom``) either cannot be built or would not mean anything to the models."""


class _LimitError(Exception):
    """A bound of the composer was crossed; ``mark`` is where (turned into a Location)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


@cache
def _bounded_composer() -> type[Any]:
    """The composer class, defined on first use so that ruamel.yaml is imported only when a
    document is parsed (not when it comes from the cache)."""
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.events import (
        AliasEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceStartEvent,
    )

    allowed_tags: dict[type, frozenset[str]] = {
        ScalarEvent: _SCALAR_TAGS,
        SequenceStartEvent: frozenset({f"{_CORE}seq"}),
        MappingStartEvent: frozenset({f"{_CORE}map"}),
    }

    class _BoundedComposer(Composer):
        """ruamel's composer, counting expanded nodes, aliases and depth while it composes.

        An anchored node's expanded size is known once it is composed; each alias then adds
        that size to the running total, so the total is the size of the fully expanded
        document without building it. An alias to a node still being composed is a cycle,
        refused too.
        """

        def compose_document(self) -> Any:
            self._nodes = 0
            self._aliases = 0
            self._depth = 0
            self._sizes: dict[int, int] = {}
            return super().compose_document()

        def _count(self, n: int, mark: Any, alias: str | None = None) -> None:
            self._nodes += n
            if self._nodes > MAX_YAML_NODES:
                what = (f"alias '*{alias}' ({n} nodes once expanded)" if alias is not None
                        else "this node")
                raise _LimitError(
                    f"{what} takes the document over {MAX_YAML_NODES} nodes with every alias "
                    "expanded (refused: a small file must not stand for a huge one; write the "
                    "data out or use fewer nested aliases)", mark)

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent):
                target = self.anchors.get(event.anchor)
                if target is not None:  # an undefined alias is ruamel's own located error
                    size = self._sizes.get(id(target))
                    if size is None:
                        raise _LimitError(f"alias '*{event.anchor}' refers to the node that "
                                          "contains it (a cycle); remove the alias",
                                          event.start_mark)
                    self._aliases += 1
                    if self._aliases > MAX_YAML_ALIASES:
                        raise _LimitError(f"more than {MAX_YAML_ALIASES} aliases (at "
                                          f"'*{event.anchor}'); write the data out instead",
                                          event.start_mark)
                    self._count(size, event.start_mark, str(event.anchor))
                return super().compose_node(parent, index)
            tag = event.ctag
            if tag is not None and str(tag) != "!":
                allowed = allowed_tags.get(type(event), frozenset())
                if str(tag) not in allowed:
                    raise _LimitError(
                        f"tag '{_shown_tag(str(tag))}' is not supported here: documents hold "
                        "plain mappings, lists, strings and numbers; remove the tag",
                        event.start_mark)
            if self._depth >= MAX_YAML_DEPTH:
                raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep",
                                  event.start_mark)
            before = self._nodes
            self._count(1, event.start_mark)
            self._depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            if event.anchor is not None:
                self._sizes[id(node)] = self._nodes - before
            return node

    return _BoundedComposer


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
    from ruamel.yaml.comments import CommentedMap, CommentedSeq  # imported by the parser

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
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    y.Composer = _bounded_composer()
    return y


def _indent_tab(text: str, line: int | None) -> tuple[int, int] | None:
    """(line, column), 0-based, of a tab in the indentation of ``line`` or of a line before it.

    The parser reports a tab where it stops, which can be lines after the tab that caused it,
    and calls it a character "that cannot start any token": the reader needs the tab itself.
    """
    if line is None:
        return None
    for n, row in enumerate(text.splitlines()[: line + 1]):
        indent = row[: len(row) - len(row.lstrip(" \t"))]
        if "\t" in indent and row.strip():
            return n, indent.index("\t")
    return None


def _explain(what: str, text: str, line: int | None, tab: bool) -> str:
    """The parser's message, preceded by what it usually means and how to fix it."""
    if tab:
        return ("YAML syntax: YAML does not allow tab characters for indentation: use spaces"
                f" (parser: {what})")
    lines = text.splitlines()
    if line is None or line >= len(lines) or not (
            "expected <block end>" in what or "mapping values are not allowed" in what):
        return f"YAML syntax: {what}"
    row = lines[line]
    col = len(row) - len(row.lstrip(" "))
    prev = next((r for r in reversed(lines[:line]) if r.strip() and
                 not r.lstrip().startswith("#")), None)
    above = "" if prev is None else (
        f"; it starts in column {col + 1}, the line above in column"
        f" {len(prev) - len(prev.lstrip(' ')) + 1}")
    hint = ("check the indentation of this line relative to the previous key: keys of one"
            f" mapping start in the same column, a nested key further right{above}")
    if "mapping values" in what:
        hint += "; or quote a value that contains ': '"
    elif prev is not None and prev.lstrip().startswith("- ") != row.lstrip().startswith("- "):
        hint += ("; a block is a list ('- item' lines) or a mapping ('key: value' lines),"
                 " not both at one indentation")
    return f"YAML syntax: {hint} (parser: {what})"


def load_yaml_text(text: str, file: str = "<string>") -> YamlDoc:
    """Parse YAML text; syntax errors become a located :class:`ConfigError`."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError.single(f"file is larger than {MAX_YAML_BYTES} bytes", Location(file))
    if text.lstrip("\ufeff \t\r\n").startswith("<"):  # no document of ours is a scalar
        raise ConfigError.single(
            "this is XML, not YAML: for an MTP manifest (AutomationML) use 'modulecontrol "
            "mtp check' or 'modulecontrol mtp import'", Location(file, 1, 1))
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_YAML_LINE:
            raise ConfigError.single(
                f"line is longer than {MAX_YAML_LINE} characters (refused: YAML lines that "
                "long make the parser slow); split it", Location(file, number, 1))
    key = _cache_key(text) if len(text) >= MIN_CACHED_CHARS else None
    if key is not None:
        cached = _cache_get(key, file)
        if cached is not None:
            return cached
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        raw = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        at: int | None = mark.line if mark else None
        col: int = mark.column if mark else 0
        tab = _indent_tab(text, at)
        if tab is not None:
            at, col = tab
        loc = Location(file, at + 1, col + 1) if at is not None else Location(file)
        raise ConfigError.single(_explain(what, text, at, tab is not None), loc) from None
    except _LimitError as exc:
        loc = (Location(file, exc.mark.line + 1, exc.mark.column + 1) if exc.mark is not None
               else Location(file))
        raise ConfigError.single(exc.message, loc) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError.single(f"YAML syntax: {exc}", Location(file)) from None
    doc = YamlDoc(None, file)
    doc.data = _plain(raw, (), doc)
    if key is not None:
        _cache_put(key, doc)
    return doc


@cache
def _parser_stamp() -> str:
    """What the parse of a text depends on besides the text: the parser's version (its
    installed file) and this module (the composer's bounds and checks). A stat each, not an
    import: an upgrade or an edit of either makes every cached document a miss."""
    from importlib.util import find_spec

    parts = []
    spec = find_spec("ruamel.yaml")
    for origin in (spec.origin if spec else None, __file__):
        try:
            st = os.stat(origin) if origin else None
        except OSError:
            st = None
        parts.append(f"{origin}:{st.st_size}:{st.st_mtime_ns}" if st else f"{origin}:?")
    return "|".join(parts)


def _cache_key(text: str) -> str:
    """SHA-256 of the parser's stamp, the composer's bounds (read now: a test or an embedding
    program may set them) and the text."""
    bounds = f"{MAX_YAML_NODES}/{MAX_YAML_ALIASES}/{MAX_YAML_DEPTH}|"
    digest = hashlib.sha256((bounds + _parser_stamp()).encode())
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _cache_get(key: str, file: str) -> YamlDoc | None:
    """The cached parse of the text with ``key``, or None (absent, unreadable or malformed:
    the document is then parsed, and a malformed entry is dropped)."""
    folder = user_cache_folder("yaml", CACHE_ENV)
    if folder is None:
        return None
    entry = folder / f"{key}.json"
    try:
        raw = json.loads(entry.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        entry.unlink(missing_ok=True)
        return None
    try:
        values = {tuple(p): (int(lc[0]), int(lc[1])) for p, lc in raw["values"]}
        keys = {tuple(p): (int(lc[0]), int(lc[1])) for p, lc in raw["keys"]}
        return YamlDoc(raw["data"], file, values, keys)
    except (KeyError, TypeError, ValueError, IndexError):
        entry.unlink(missing_ok=True)
        return None


def _cache_put(key: str, doc: YamlDoc) -> None:
    """Store a parsed document (written whole then renamed, so a reader never sees half an
    entry); beyond :data:`MAX_CACHED_DOCUMENTS` the oldest entries go. Any failure only
    means the next process parses again."""
    folder = user_cache_folder("yaml", CACHE_ENV)
    if folder is None:
        return
    payload = json.dumps({"data": doc.data,
                          "values": [[list(p), list(lc)] for p, lc in doc.values.items()],
                          "keys": [[list(p), list(lc)] for p, lc in doc.keys.items()]})
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, folder / f"{key}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        entries = sorted(folder.glob("*.json"), key=lambda e: e.stat().st_mtime_ns)
        for stale in entries[:-MAX_CACHED_DOCUMENTS]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


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
        from ruamel.yaml import YAML

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
