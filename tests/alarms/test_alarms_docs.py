"""docs/alarms.md and docs/compliance.md cannot rot: the state table is the machine's, the
examples load and run, and every test the compliance table names exists."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import TypeAdapter

from modulecontrol.alarms import AlarmPhilosophy, diagram_rows
from modulecontrol.descriptors import ModuleAlarm, load_plant
from modulecontrol.recipe import load_recipe
from modulecontrol.yamlio import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_BLOCK = re.compile(r"<!-- alarms-doc: (?P<kind>[a-z-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```",
                    re.S)


def _examples() -> dict[str, str]:
    found = {m["kind"]: m["body"] for m in _BLOCK.finditer((DOCS / "alarms.md").read_text())}
    assert set(found) == {"module-alarms", "philosophy", "recipe-alarms", "python"}
    return found


def test_the_state_table_of_the_docs_is_the_machines() -> None:
    text = (DOCS / "alarms.md").read_text()
    table = text[text.index("| trigger | from | to | condition |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(tuple(c.strip() for c in line.strip("|").split("|")))
    assert rows == diagram_rows()


def test_the_yaml_examples_of_the_docs_load(tmp_path: Path) -> None:
    ex = _examples()
    module = load_yaml_text(ex["module-alarms"], file="docs/alarms.md").data
    TypeAdapter(list[ModuleAlarm]).validate_python(module["alarms"])
    phil = AlarmPhilosophy.model_validate(
        load_yaml_text(ex["philosophy"], file="docs/alarms.md").data["alarm_philosophy"])
    assert phil.max_shelve == 4 * 3600 and phil.chattering.policy == "shelve"
    # in a plant file, on R1, with the philosophy: the plant loads
    folder = tmp_path / "lomustine"
    shutil.copytree(ROOT / "recipes" / "lomustine", folder)
    plant = folder / "plant.yaml"
    anchor = "  - tag: R1\n    type: CoilReactor\n"
    module_text = "".join(f"    {line}\n" for line in ex["module-alarms"].splitlines())
    plant.write_text(plant.read_text().replace(anchor, anchor + module_text, 1)
                     + ex["philosophy"])
    cfg = load_plant(plant)
    assert cfg.plant.module("R1").alarms[0].name == "r1_overtemperature"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: Recipe\nname: r\nversion: 1.0.0\nplant: lomustine/plant.yaml\n"
                      + ex["recipe-alarms"] + "procedure:\n  - name: b\n    steps:\n"
                      "      - name: heat_reactors\n        wait: {duration: 1 min}\n")
    assert load_recipe(recipe, cfg).recipe.alarms[0].suppressed_in == ["heat_reactors"]


def test_the_python_example_of_the_docs_runs() -> None:
    done = subprocess.run([sys.executable, "-c", _examples()["python"]], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned: unacknowledged by auto (shelf time ran out)"


def test_every_test_the_compliance_table_names_exists() -> None:
    text = (DOCS / "compliance.md").read_text()
    section = text[text.index("## ISA-18.2 / IEC 62682 alarm management"):]
    rows = [line for line in section.splitlines() if line.startswith("| §")]
    assert len(rows) >= 15
    for line in rows:
        node = line.rstrip(" |").rsplit("|", 1)[1].strip().strip("`")
        path, _, name = node.partition("::")
        tree = ast.parse((ROOT / path).read_text())
        names = {f.name for f in ast.walk(tree)
                 if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in names, node
