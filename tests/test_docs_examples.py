"""The YAML examples in the docs load through the real loaders, so they cannot rot silently.

Most YAML blocks in docs/ are deliberately partial (a key table, a step list with ``...``):
they are not checked. A block is checked when the line before its fence is a marker, an
HTML comment that renders as nothing:

- ``<!-- docs-check: document -->``: a whole document, loaded by its ``kind`` (a Scenario or
  a Recipe is checked against the lomustine plant, so its module tags and faults must exist);
- ``<!-- docs-check: figures -->``: a ``figures:`` mapping, validated as a ``FigureSpec``;
- ``<!-- docs-check: endpoint -->``: an ``endpoint:`` mapping, validated as a plant endpoint;
- ``<!-- docs-check: twin -->``: a recipe's ``twin:`` block, which must be the lomustine
  campaign's and validate in it.

The recipes tutorial is checked as a whole: its blocks, put together the way the text says,
validate against the plant and make the shipped ``recipes/examples/lomustine_campaign.yaml``.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from modulecontrol.descriptors import Endpoint, load_handshake, load_plant
from modulecontrol.mtpcore import HandshakePolicy
from modulecontrol.recipe import load_recipe
from modulecontrol.records import FigureSpec
from modulecontrol.simulators import load_scenario
from modulecontrol.yamlio import dump_yaml, load_yaml, load_yaml_text

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
TUTORIAL_RECIPE = ROOT / "recipes" / "examples" / "lomustine_campaign.yaml"
CAMPAIGN = ROOT / "recipes" / "lomustine" / "campaign.yaml"

_FENCE = re.compile(r"^(?P<indent> *)```yaml[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
_MARKER = re.compile(r"^ *<!-- docs-check: (?P<kind>[a-z]+) -->\n", re.M)


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    marker: str | None
    text: str        # the block with the indentation of its fence (a list item's) removed

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    source = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(source):
        before = source[:m.start()]
        previous = before[before.rstrip("\n").rfind("\n") + 1:]
        marker = _MARKER.fullmatch(previous)
        indent = len(m.group("indent"))
        text = "\n".join(line[indent:] for line in m.group("body").split("\n"))
        out.append(Block(path.name, before.count("\n") + 1,
                         marker.group("kind") if marker else None, text))
    return out


_ALL = [b for p in sorted(DOCS.glob("*.md")) for b in _blocks(p)]
_MARKED = [b for b in _ALL if b.marker is not None]


def test_markers_sit_on_yaml_blocks() -> None:
    # A marker not directly above a ```yaml fence would silently check nothing.
    markers = sum(len(_MARKER.findall(p.read_text(encoding="utf-8")))
                  for p in DOCS.glob("*.md"))
    assert markers == len(_MARKED)
    assert {b.marker for b in _MARKED} == {"document", "figures", "endpoint", "handshake",
                                            "twin"}


@pytest.mark.parametrize("block", _MARKED, ids=str)
def test_marked_yaml_example_loads(block: Block, tmp_path: Path) -> None:
    doc = load_yaml_text(block.text, file=str(block))
    data: Any = doc.data
    if block.marker == "document":
        path = tmp_path / "example.yaml"
        path.write_text(block.text, encoding="utf-8")
        assert data["kind"] in ("Scenario", "Recipe"), (
            f"{block}: add a loader for kind {data['kind']}")
        if data["kind"] == "Recipe":  # validated against the lomustine plant
            assert load_recipe(path, PLANT, {}).recipe.procedure
        else:
            scenario = load_scenario(path, load_plant(PLANT))
            assert scenario.faults
    elif block.marker == "figures":
        FigureSpec.model_validate(data["figures"])
    elif block.marker == "endpoint":
        TypeAdapter(Endpoint).validate_python(data["endpoint"])
    elif block.marker == "handshake":  # a file for mtp check --handshake
        path = tmp_path / "handshake.yaml"
        path.write_text(block.text, encoding="utf-8")
        policy = load_handshake(path).policy()
        assert policy != HandshakePolicy(), f"{block}: the example declares nothing"
    elif block.marker == "twin":  # a recipe's twin block: the lomustine campaign's, as shipped
        campaign = load_yaml(CAMPAIGN).data
        assert data["twin"] == campaign["twin"], f"{block}: differs from {CAMPAIGN.name}'s"
        path = tmp_path / "campaign.yaml"
        path.write_text(dump_yaml({**campaign, "plant": str(PLANT), "twin": data["twin"]}),
                        encoding="utf-8")
        assert load_recipe(path).recipe.twin is not None
    else:  # pragma: no cover - guarded by test_markers_sit_on_yaml_blocks
        pytest.fail(f"{block}: unknown marker {block.marker}")


def _tutorial() -> str:
    """The tutorial's blocks put together as the text says: header and parameters, the
    top-level guards (step 5), then the procedure (steps 2-4, 6, 7) and the cleanup."""
    source = (DOCS / "recipes.md").read_text(encoding="utf-8")
    start = source.index("## Tutorial")
    blocks = [b for b in _blocks(DOCS / "recipes.md")
              if b.line > source[:start].count("\n")]
    top, procedure, cleanup = "", "", ""
    for b in blocks:
        if b.text.startswith("  - "):                  # more unit procedures
            body, _, rest = b.text.partition("\ncleanup:")
            procedure += body + "\n"
            cleanup += "cleanup:" + rest if rest else ""
        elif b.text.startswith("procedure:"):
            procedure += b.text
        else:
            top += b.text
    return top + procedure + cleanup


def _without_names(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "name"} for s in steps]


def test_recipes_tutorial_builds_the_shipped_recipe(tmp_path: Path) -> None:
    path = tmp_path / "my_campaign.yaml"
    path.write_text(_tutorial(), encoding="utf-8")
    built = load_recipe(path, plant=PLANT).recipe
    shipped = load_recipe(TUTORIAL_RECIPE).recipe
    assert built.parameters == shipped.parameters
    assert built.steady_state == shipped.steady_state
    assert built.divert == shipped.divert
    assert built.cleanup == shipped.cleanup
    # The shipped file names a few more steps and adds the guards step 5 describes in words.
    mine, theirs = load_yaml(path).data, load_yaml(TUTORIAL_RECIPE).data
    assert [u["name"] for u in mine["procedure"]] == [u["name"] for u in theirs["procedure"]]
    for a, b in zip(mine["procedure"], theirs["procedure"], strict=True):
        assert _without_names(a["steps"]) == _without_names(b["steps"]), a["name"]


def test_tutorial_assembly_is_not_vacuous() -> None:
    text = _tutorial()
    assert text.count("- name:") >= 7, textwrap.shorten(text, 200)


# -- code taken from files -------------------------------------------------------------------
# A fenced block of any language under ``<!-- docs-source: PATH -->`` (PATH from the
# repository root) must be that file's own text: the walk-through of docs/writing-a-driver.md
# shows the example device package, whose tests the suite runs, so the code on the page runs.
_SOURCE_MARKER = re.compile(r"^<!-- docs-source: (?P<path>\S+) -->\n", re.M)
_SOURCED = re.compile(r"^<!-- docs-source: (?P<path>\S+) -->\n```[a-z]*\n(?P<body>.*?)^```",
                      re.S | re.M)


def _sourced() -> list[Any]:
    out = []
    for p in sorted(DOCS.glob("*.md")):
        source = p.read_text(encoding="utf-8")
        for m in _SOURCED.finditer(source):
            line = source[:m.start()].count("\n") + 1
            out.append(pytest.param(m.group("path"), m.group("body"), id=f"{p.name}:{line}"))
    return out


def test_source_markers_sit_on_code_blocks() -> None:
    markers = sum(len(_SOURCE_MARKER.findall(p.read_text(encoding="utf-8")))
                  for p in DOCS.glob("*.md"))
    assert markers == len(_sourced()) > 0


@pytest.mark.parametrize(("path", "body"), _sourced())
def test_sourced_block_is_the_files_text(path: str, body: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    assert body.strip("\n") in text, f"the block is no longer in {path}: update the page"
