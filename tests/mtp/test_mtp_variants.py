"""Vendors' variants of the standard: each is imported, checked and served."""

from __future__ import annotations

from pathlib import Path

from asyncua.client.client import Client

from modulecontrol.descriptors import OpcUaBinding
from modulecontrol.mtp import (
    LiveOptions,
    check_manifest,
    check_manifest_async,
    format_results,
    import_manifest_report,
    serve_manifest,
)
from tests.mtp.variants import STRING_VIEW, STRING_VIEW_NODE, with_string_view_text


def test_string_view_text_is_its_value(tmp_path: Path) -> None:
    """The fixture's own class library defines StringView with ``Text``: it binds as V."""
    report = import_manifest_report(with_string_view_text(tmp_path))
    da = report.module_type.assembly(STRING_VIEW)
    assert da.class_ == "StringView"
    binding = da.bindings["V"].get("opcua", OpcUaBinding)
    assert binding is not None
    assert binding.identifier == f"s={STRING_VIEW_NODE}"
    assert report.warnings == []


def test_string_view_text_passes_the_static_check(tmp_path: Path) -> None:
    results = check_manifest(with_string_view_text(tmp_path))
    assert all(r.status == "pass" for r in results), format_results(results)


async def test_string_view_text_is_served_at_the_manifests_node(tmp_path: Path) -> None:
    path = with_string_view_text(tmp_path)
    async with await serve_manifest(path, insecure=True) as pea:
        async with Client(pea.url, timeout=5) as client:
            ns = (await client.get_namespace_array()).index(
                "http://www.siemens.com/simatic-s7-opcua"
            )
            node = client.get_node(f"ns={ns};s={STRING_VIEW_NODE}")
            assert isinstance(await node.read_value(), str)
        results = await check_manifest_async(path, live=LiveOptions(pea.url, insecure=True))
    assert all(r.status == "pass" for r in results), format_results(results)
