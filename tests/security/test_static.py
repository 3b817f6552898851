"""No module of the package evaluates code: no eval/exec/compile of anything.

Why a test and not a review rule: recipes, plants and scenarios are user files, and one
``eval`` of a condition string would turn a recipe into a program. Conditions are parsed by
the recipe's own grammar; this test keeps it that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import modulecontrol

_FORBIDDEN = frozenset({"eval", "exec", "compile", "__import__"})
_ROOT = Path(modulecontrol.__file__).resolve().parent


def _offences(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in _FORBIDDEN:
            found.append((node.lineno, f.id))
        elif (isinstance(f, ast.Attribute) and f.attr in _FORBIDDEN
              and isinstance(f.value, ast.Name) and f.value.id == "builtins"):
            found.append((node.lineno, f"builtins.{f.attr}"))
        elif (isinstance(f, ast.Name) and f.id == "getattr" and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in _FORBIDDEN):
            found.append((node.lineno, f"getattr(..., {node.args[1].value!r})"))
    return found


def test_detector_finds_what_it_must() -> None:
    src = "import builtins\neval('1')\nexec('x=1')\nbuiltins.compile('', '', 'exec')\n" \
          "getattr(builtins, 'eval')('2')\nre.compile('x')\nself.exec_step()\n"
    assert [name for _, name in _offences(ast.parse(src))] == [
        "eval", "exec", "builtins.compile", "getattr(..., 'eval')"]


def test_no_eval_exec_compile_in_package() -> None:
    files = sorted(_ROOT.rglob("*.py"))
    assert len(files) > 50, f"package not found under {_ROOT}"
    bad: list[str] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad += [f"{path.relative_to(_ROOT.parent)}:{line}: {name}"
                for line, name in _offences(tree)]
    assert not bad, "code evaluation found:\n" + "\n".join(bad)
