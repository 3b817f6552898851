"""The shared standard address space: every server still has a complete, independent one."""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.server.address_space import NodeData
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from modulecontrol.simulators._aspace import StandardNodes, init_server, standard_template

NS_ARRAY = ua.NodeId.from_string(f"i={ObjectIds.Server_NamespaceArray}")
MAX_READ = ua.NodeId.from_string(
    f"i={ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead}")
STATE = ua.NodeId.from_string(f"i={ObjectIds.Server_ServerStatus_State}")


def value(server: Server, nodeid: ua.NodeId) -> Any:
    variant = server.read_attribute_value(nodeid).Value
    assert variant is not None
    return variant.Value


async def test_same_nodes_as_asyncuas_own_init() -> None:
    plain, shared = Server(), Server()
    await plain.init()
    await init_server(shared)
    a, b = plain.iserver.aspace._nodes, shared.iserver.aspace._nodes
    assert isinstance(b, StandardNodes)
    assert set(b) == set(a)
    assert len(b) == len(a)
    for nodeid in (NS_ARRAY, MAX_READ, STATE):
        assert b[nodeid].attributes.keys() == a[nodeid].attributes.keys()
        assert value(shared, nodeid) == value(plain, nodeid)


async def test_servers_do_not_share_writes_or_namespaces() -> None:
    one, two = Server(), Server()
    await init_server(one)
    await init_server(two)
    before = await two.get_namespace_array()
    await one.register_namespace("urn:test:only-on-one")
    await one.write_attribute_value(MAX_READ, ua.DataValue(ua.Variant(7, ua.VariantType.UInt32)))
    assert await one.get_namespace_array() == [*before, "urn:test:only-on-one"]
    assert await two.get_namespace_array() == before
    assert value(one, MAX_READ) == 7
    assert value(two, MAX_READ) == 10000
    # the template keeps asyncua's values: a third server starts clean
    template_dv = standard_template()[MAX_READ].attributes[AttributeIds.Value].value
    assert template_dv is not None and template_dv.Value is not None
    assert template_dv.Value.Value != 7
    three = Server()
    await init_server(three)
    assert await three.get_namespace_array() == before


def test_mapping_copies_on_lookup_only() -> None:
    template = standard_template()
    nodes = StandardNodes(template)
    assert len(nodes) == len(template)
    assert NS_ARRAY in nodes and nodes.copied == 0
    assert sum(1 for _ in nodes) == len(template) and nodes.copied == 0
    node = nodes[NS_ARRAY]
    assert node is not template[NS_ARRAY] and nodes.copied == 1
    assert nodes[NS_ARRAY] is node and nodes.get(NS_ARRAY) is node and nodes.copied == 1
    assert node.references == template[NS_ARRAY].references
    assert node.references is not template[NS_ARRAY].references


def test_mapping_delete_add_clear() -> None:
    template = standard_template()
    nodes = StandardNodes(template)
    del nodes[NS_ARRAY]
    assert NS_ARRAY not in nodes and nodes.get(NS_ARRAY) is None
    assert len(nodes) == len(template) - 1
    assert NS_ARRAY in template  # the template is untouched
    mine = ua.NodeId.from_string("ns=2;s=mine")
    nodes[mine] = NodeData(mine)
    nodes[NS_ARRAY] = NodeData(NS_ARRAY)
    assert len(nodes) == len(template) + 1
    assert mine in set(nodes) and NS_ARRAY in nodes
    nodes.clear()
    assert len(nodes) == 0 and MAX_READ not in nodes and list(nodes) == []
    assert nodes.get(MAX_READ) is None
    assert len(template) > 6000
