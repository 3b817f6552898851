"""OPC UA's standard address space, built once per process and copied node by node on use.

Why: ``asyncua.Server.init()`` fills every new server with the ~6,200 nodes of the standard
address space (Part 5), which takes about a second of pure Python per server. A simulated plant
serves several PEAs (the lomustine line has four) and a test session starts many, so this fill
was most of ``modulecontrol run --simulate``'s start-up time.

What: the first server of the process builds the standard nodes once (in a worker thread, as
asyncua does) into a template that is never handed out. Every server then gets a
:class:`StandardNodes` mapping as its node store: a node is deep-copied from the template the
first time that server touches it (a PEA touches a few dozen), and from then on the server
reads and writes only its own copy. So each server still has a complete, independent address
space — a write, a callback or a deleted node on one server is never seen by another — and
nothing is shared across processes or written to disk. asyncua's own ``shelf_file`` option
works the same way with a file on disk as the template; this keeps the template in memory.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AddressSpace, NodeData, NodeManagementService
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server

__all__ = ["StandardNodes", "init_server", "standard_template"]

_template: dict[ua.NodeId, NodeData] | None = None
_template_lock = threading.Lock()


def standard_template() -> dict[ua.NodeId, NodeData]:
    """The standard nodes, built on first use (thread-safe); must never be modified."""
    global _template
    with _template_lock:
        if _template is None:
            from asyncua.server.standard_address_space import standard_address_space

            aspace = AddressSpace()
            standard_address_space.fill_address_space(  # type: ignore[no-untyped-call]
                NodeManagementService(aspace))
            nodes = aspace._nodes
            if any(n.call is not None or any(
                    a.value_callback or a.value_setter or a.datachange_callbacks
                    for a in n.attributes.values()) for n in nodes.values()):
                # a callback would be copied into every server: not a plain template
                raise RuntimeError("asyncua's standard address space carries callbacks; "
                                   "it cannot be shared as a template")
            _template = nodes
        return _template


class StandardNodes(MutableMapping[ua.NodeId, NodeData]):
    """One server's nodes: its own (copied or added) nodes over the shared template.

    Behaves as the plain dict asyncua's :class:`AddressSpace` keeps, except that a standard
    node is copied from the template when first looked up (``[]``, ``get``); membership,
    iteration and length answer without copying.
    """

    def __init__(self, template: dict[ua.NodeId, NodeData]) -> None:
        self._template = template
        self._own: dict[ua.NodeId, NodeData] = {}
        self._deleted: set[ua.NodeId] = set()
        """Template nodes this server deleted (and has not added again)."""
        self.copied = 0
        """How many template nodes were copied (for tests and curiosity)."""

    def __getitem__(self, nodeid: ua.NodeId) -> NodeData:
        try:
            return self._own[nodeid]
        except KeyError:
            pass
        if nodeid in self._deleted:
            raise KeyError(nodeid)
        node = copy.deepcopy(self._template[nodeid])  # KeyError: not a node of this server
        self._own[nodeid] = node
        self.copied += 1
        return node

    def get(self, nodeid: ua.NodeId, default: Any = None) -> Any:
        """As ``dict.get`` (asyncua's hot path: one call per attribute read or write)."""
        node = self._own.get(nodeid)
        if node is not None:
            return node
        try:
            return self[nodeid]
        except KeyError:
            return default

    def __setitem__(self, nodeid: ua.NodeId, node: NodeData) -> None:
        self._own[nodeid] = node
        self._deleted.discard(nodeid)

    def __delitem__(self, nodeid: ua.NodeId) -> None:
        if nodeid not in self:
            raise KeyError(nodeid)
        self._own.pop(nodeid, None)
        if nodeid in self._template:
            self._deleted.add(nodeid)

    def __contains__(self, nodeid: object) -> bool:
        if nodeid in self._own:
            return True
        return nodeid in self._template and nodeid not in self._deleted

    def __iter__(self) -> Iterator[ua.NodeId]:
        yield from self._own
        for nodeid in self._template:
            if nodeid not in self._own and nodeid not in self._deleted:
                yield nodeid

    def __len__(self) -> int:
        added = sum(1 for nodeid in self._own if nodeid not in self._template)
        return len(self._template) - len(self._deleted) + added

    def clear(self) -> None:
        self._own.clear()
        self._deleted = set(self._template)


async def _load_standard_nodes(iserver: InternalServer) -> None:
    template = await asyncio.to_thread(standard_template)
    # asyncua types the store as a dict; its own shelf loader puts a mapping there too
    iserver.aspace._nodes = StandardNodes(template)  # type: ignore[assignment]


async def init_server(server: Server) -> None:
    """``await server.init()``, with the standard nodes from the process's template.

    Everything else ``init`` does (the address-space fixes, namespace array, operation
    limits, history and condition methods) runs as usual, on this server's own copies.
    """
    iserver = server.iserver

    async def load(shelf_file: Any = None) -> None:
        await _load_standard_nodes(iserver)

    iserver.load_standard_address_space = load  # type: ignore[method-assign]
    await server.init()
