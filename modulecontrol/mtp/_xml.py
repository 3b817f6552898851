"""A small, safe XML reader that remembers where every element stood.

Why not ``ElementTree.parse``: its elements carry no line numbers, and a manifest error that
says only "attribute missing" is useless in a 500 kB file. Expat gives the line and column of
each start tag; we build a light tree of :class:`Node` from it.

Why so strict: a manifest comes from another vendor's tool or from the network. Documents
with a DOCTYPE (the vehicle of entity expansion, "billion laughs", and external entities) are
refused outright; CAEX files never need one. Files above :data:`MAX_MANIFEST_BYTES` are refused
before parsing.

Why bounded memory: a whole-document tree costs Python objects per element, about 80 times
the file's size, so a 63 MB file could exhaust 4 GB. The parser is fed in chunks (the file is
never held whole) and keeps only the elements, attributes and texts the reader uses
(:data:`_KEEP`, :data:`_ATTRIBUTES`, :data:`_TEXT`): role requirements, attribute types,
interface links, nested attributes and the class libraries' contents are skipped as they
stream past. Kept elements are capped at :data:`MAX_MANIFEST_ELEMENTS`, so the tree's size
is bounded whatever the file holds (figures in ``docs/reliability.md``).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO
from xml.parsers import expat

from modulecontrol.errors import ConfigError, Location

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""Largest manifest read (64 MiB); real manifests are a few MB at most."""
MAX_MANIFEST_ELEMENTS = 250_000
"""Most elements kept in the tree (the 541 kB reference manifest keeps about 4,000); with the
byte cap this bounds the tree to a few hundred MB in the worst case."""

_CHUNK = 1 << 20
_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})

_KEEP: dict[str, frozenset[str]] = {
    "CAEXFile": frozenset({"InstanceHierarchy", "SystemUnitClassLib", "InterfaceClassLib",
                           "AdditionalInformation"}),
    "InstanceHierarchy": frozenset({"InternalElement"}),
    "InternalElement": frozenset({"InternalElement", "ExternalInterface", "Attribute",
                                  "Description", "AdditionalInformation"}),
    "ExternalInterface": frozenset({"ExternalInterface", "Attribute"}),
    "Attribute": frozenset({"Value", "DefaultValue"}),
    "AdditionalInformation": frozenset({"Document"}),
    "SystemUnitClassLib": frozenset({"SystemUnitClass"}),
    "SystemUnitClass": frozenset({"SystemUnitClass"}),
    "InterfaceClassLib": frozenset({"InterfaceClass"}),
    "InterfaceClass": frozenset({"InterfaceClass"}),
}
"""Child elements kept under each kept parent (local names); every other subtree is skipped.
The root element is always kept, so a file that is not CAEX is still named as such."""
_ATTRIBUTES = frozenset({"Name", "ID", "RefBaseSystemUnitPath", "RefBaseClassPath",
                         "RefAttributeType", "AttributeDataType", "DocumentIdentifier",
                         "Version", "SchemaVersion"})
"""XML attributes the reader uses; others are dropped."""
_TEXT = frozenset({"Value", "DefaultValue", "Description", "AdditionalInformation"})
"""Elements whose text the reader uses."""


@dataclass(eq=False, slots=True)
class Node:
    """One XML element: local tag name (namespace stripped), attributes, text, children.

    Slotted, with the attribute map shared when empty and the child list made on the first
    child: a manifest holds hundreds of thousands of these, most of them leaves."""

    tag: str
    attrib: Mapping[str, str]
    line: int
    col: int
    parent: Node | None = None
    text: str = ""
    _children: list[Node] | None = None

    @property
    def children(self) -> list[Node]:
        return self._children if self._children is not None else []

    def append(self, child: Node) -> None:
        if self._children is None:
            self._children = [child]
        else:
            self._children.append(child)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrib.get(key, default)

    def find(self, tag: str) -> Node | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def findtext(self, tag: str) -> str | None:
        c = self.find(tag)
        return None if c is None else c.text

    def iter(self, tag: str | None = None) -> Iterator[Node]:
        """Depth-first, document order, self included (iteratively: no recursion limit)."""
        stack = [self]
        while stack:
            node = stack.pop()
            if tag is None or node.tag == tag:
                yield node
            stack.extend(reversed(node.children))

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    @property
    def path(self) -> str:
        """A readable element path, e.g. ``/CAEXFile/InstanceHierarchy[@Name='X']/...``."""
        parts = []
        for n in [self, *self.ancestors()]:
            name = n.attrib.get("Name")
            parts.append(f"{n.tag}[@Name='{name}']" if name is not None else n.tag)
        return "/" + "/".join(reversed(parts))


@dataclass
class XmlDoc:
    """A parsed document: its root, the file name used in errors, and the root namespace."""

    root: Node
    file: str
    namespace: str

    def locate(self, node: Node) -> Location:
        return Location(self.file, node.line, node.col)


def _local(name: str) -> tuple[str, str]:
    # expat with namespace_separator=" " reports "uri local"
    if " " in name:
        uri, local = name.split(" ", 1)
        return uri, local
    return "", name


def parse_bytes(data: bytes, file: str = "<manifest>") -> XmlDoc:
    """Parse XML bytes into a located :class:`Node` tree, refusing DTDs and entities."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ConfigError.single(
            f"file is {len(data)} bytes; manifests above {MAX_MANIFEST_BYTES} bytes are refused",
            Location(file),
        )
    return parse_stream(io.BytesIO(data), file)


def parse_stream(stream: IO[bytes], file: str = "<manifest>") -> XmlDoc:
    """Parse XML from ``stream`` in chunks, keeping only what the reader uses (see module doc);
    refuses DTDs, entities, more than :data:`MAX_MANIFEST_BYTES` bytes and more than
    :data:`MAX_MANIFEST_ELEMENTS` kept elements, each as a located :class:`ConfigError`."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    roots: list[Node] = []
    namespaces: list[str] = []
    texts: list[list[str] | None] = []
    skipping = 0
    """Depth inside a skipped subtree (0: not skipping)."""
    kept = 0
    names: dict[str, tuple[str, str]] = {}
    """(namespace, local name) of each expanded name seen, so tags are shared strings."""

    def split(name: str) -> tuple[str, str]:
        found = names.get(name)
        if found is None:
            found = names[name] = _local(name)
        return found

    def here() -> Location:
        return Location(file, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1)

    def refuse_doctype(*_: object) -> None:
        raise ConfigError.single(
            "the document has a DOCTYPE; manifests must not declare DTDs or entities "
            "(refused for safety)", here())

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal skipping, kept
        uri, tag = split(name)
        if skipping or (stack and tag not in _KEEP.get(stack[-1].tag, ())):
            skipping += 1
            return
        kept += 1
        if kept > MAX_MANIFEST_ELEMENTS:
            raise ConfigError.single(
                f"more than {MAX_MANIFEST_ELEMENTS} CAEX elements; a module's manifest holds "
                "a few thousand (refused to bound memory)", here())
        attrib: Mapping[str, str] = _NO_ATTRIBUTES
        if attrs:
            picked = {local: v for k, v in attrs.items() if (local := split(k)[1]) in _ATTRIBUTES}
            attrib = picked or _NO_ATTRIBUTES
        node = Node(tag, attrib, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1,
                    stack[-1] if stack else None)
        if stack:
            stack[-1].append(node)
        else:
            roots.append(node)
            namespaces.append(uri)
        stack.append(node)
        texts.append([] if tag in _TEXT else None)

    def end(_: str) -> None:
        nonlocal skipping
        if skipping:
            skipping -= 1
            return
        node = stack.pop()
        parts = texts.pop()
        if parts:
            node.text = "".join(parts).strip()

    def chars(data: str) -> None:
        if not skipping and texts:
            parts = texts[-1]
            if parts is not None:
                parts.append(data)

    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.ExternalEntityRefHandler = refuse_doctype  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    total = 0
    try:
        while True:
            chunk = stream.read(_CHUNK)
            total += len(chunk)
            if total > MAX_MANIFEST_BYTES:
                raise ConfigError.single(
                    f"more than {MAX_MANIFEST_BYTES} bytes; manifests above "
                    f"{MAX_MANIFEST_BYTES} bytes are refused", Location(file))
            parser.Parse(chunk, not chunk)
            if not chunk:
                break
    except expat.ExpatError as exc:
        raise ConfigError.single(
            f"not well-formed XML: {expat.errors.messages[exc.code]}",
            Location(file, exc.lineno, exc.offset + 1),
        ) from None
    except (ValueError, LookupError) as exc:
        # expat decodes UTF-8, UTF-16 and the single-byte encodings; a declared multi-byte
        # or unknown encoding (encoding="UTF-7") ends up here
        raise ConfigError.single(
            f"cannot decode the manifest ({exc}); save it as UTF-8", here()) from None
    if not roots:
        raise ConfigError.single("empty document", Location(file))
    return XmlDoc(roots[0], file, namespaces[0])


def _from_container(p: Path) -> XmlDoc:
    """The manifest inside an ``.mtp`` package (a ZIP); sizes are checked before inflating."""
    try:
        with zipfile.ZipFile(p) as z:
            names = [i for i in z.infolist() if i.filename.lower().endswith(".aml")]
            if not names:
                raise ConfigError.single("the MTP package holds no .aml manifest", Location(str(p)))
            names.sort(key=lambda i: (Path(i.filename).name.lower() != "manifest.aml", i.filename))
            info = names[0]
            if info.file_size > MAX_MANIFEST_BYTES:
                raise ConfigError.single(
                    f"{info.filename} is {info.file_size} bytes; manifests above "
                    f"{MAX_MANIFEST_BYTES} bytes are refused",
                    Location(str(p)),
                )
            with z.open(info) as f:  # streamed: the declared size may lie, the read cap not
                return parse_stream(f, f"{p}!{info.filename}")
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ConfigError.single(f"broken MTP package: {exc}", Location(str(p))) from None


def parse_file(path: str | Path) -> XmlDoc:
    """Read and parse a manifest (``.aml``, or the ``.aml`` inside an ``.mtp`` ZIP package);
    size is checked before the file is read whole."""
    p = Path(path)
    if p.is_file() and zipfile.is_zipfile(p):
        return _from_container(p)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError.single(
            f"cannot read manifest: {exc.strerror}", Location(str(p))
        ) from None
    if size > MAX_MANIFEST_BYTES:
        raise ConfigError.single(
            f"file is {size} bytes; manifests above {MAX_MANIFEST_BYTES} bytes are refused",
            Location(str(p)),
        )
    try:
        with p.open("rb") as f:
            return parse_stream(f, str(p))
    except OSError as exc:
        raise ConfigError.single(
            f"cannot read manifest: {exc.strerror}", Location(str(p))
        ) from None
