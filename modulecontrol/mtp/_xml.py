"""A small, safe XML reader that remembers where every element stood.

Why not ``ElementTree.parse``: its elements carry no line numbers, and a manifest error that
says only "attribute missing" is useless in a 500 kB file. Expat gives the line and column of
each start tag; we build a light tree of :class:`Node` from it.

Why so strict: a manifest comes from another vendor's tool or from the network. Documents
with a DOCTYPE (the vehicle of entity expansion, "billion laughs", and external entities) are
refused outright; CAEX files never need one. Files above :data:`MAX_MANIFEST_BYTES` are refused
before parsing.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from modulecontrol.errors import ConfigError, Location

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""Largest manifest read (64 MiB); real manifests are a few MB at most."""


@dataclass(eq=False)
class Node:
    """One XML element: local tag name (namespace stripped), attributes, text, children."""

    tag: str
    attrib: dict[str, str]
    line: int
    col: int
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    text: str = ""

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
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    roots: list[Node] = []
    namespaces: list[str] = []
    texts: list[list[str]] = []

    def refuse_doctype(*_: object) -> None:
        raise ConfigError.single(
            "the document has a DOCTYPE; manifests must not declare DTDs or entities "
            "(refused for safety)",
            Location(file, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1),
        )

    def start(name: str, attrs: dict[str, str]) -> None:
        uri, tag = _local(name)
        node = Node(
            tag,
            {_local(k)[1]: v for k, v in attrs.items()},
            parser.CurrentLineNumber,
            parser.CurrentColumnNumber + 1,
            stack[-1] if stack else None,
        )
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
            namespaces.append(uri)
        stack.append(node)
        texts.append([])

    def end(_: str) -> None:
        node = stack.pop()
        node.text = "".join(texts.pop()).strip()

    def chars(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.ExternalEntityRefHandler = refuse_doctype  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ConfigError.single(
            f"not well-formed XML: {expat.errors.messages[exc.code]}",
            Location(file, exc.lineno, exc.offset + 1),
        ) from None
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
            with z.open(info) as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
    except zipfile.BadZipFile as exc:
        raise ConfigError.single(f"broken MTP package: {exc}", Location(str(p))) from None
    return parse_bytes(data, f"{p}!{info.filename}")


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
    return parse_bytes(p.read_bytes(), str(p))
