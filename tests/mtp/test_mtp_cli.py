"""The ``mtp`` sub-app: import, export, check, and their exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.descriptors import builtin_types, dump_model, load_module_type, validate_file
from modulecontrol.mtp import mtp_projection
from modulecontrol.mtp.cli import app

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"
runner = CliRunner()


def test_import_writes_a_loadable_module_type(tmp_path: Path) -> None:
    out = tmp_path / "hc30.yaml"
    result = runner.invoke(app, ["import", str(HC30), "-o", str(out)])
    assert result.exit_code == 0, result.output
    mt = validate_file(out)
    assert mt.name == "HC30_Stirring_V8"
    assert [s.name for s in mt.services] == ["Stirring"]


def test_export_builtin_then_check_then_import(tmp_path: Path) -> None:
    aml = tmp_path / "cr.aml"
    result = runner.invoke(
        app, ["export", "CoilReactor", "-o", str(aml), "--endpoint", "opc.tcp://127.0.0.1:4841"]
    )
    assert result.exit_code == 0, result.output
    assert b"opc.tcp://127.0.0.1:4841" in aml.read_bytes()
    result = runner.invoke(app, ["check", str(aml)])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    yaml_out = tmp_path / "cr.yaml"
    assert runner.invoke(app, ["import", str(aml), "-o", str(yaml_out), "-q"]).exit_code == 0
    assert load_module_type(yaml_out) == mtp_projection(builtin_types().get("CoilReactor"))


def test_export_from_a_yaml_file(tmp_path: Path) -> None:
    src = tmp_path / "pat.yaml"
    src.write_text("kind: ModuleType\n" + dump_model(builtin_types().get("PATAnalyzer")))
    aml = tmp_path / "pat.aml"
    assert runner.invoke(app, ["export", str(src), "-o", str(aml)]).exit_code == 0
    assert aml.read_bytes().startswith(b"<?xml")


def test_unknown_type_exits_1() -> None:
    result = runner.invoke(app, ["export", "NoSuchType"])
    assert result.exit_code == 1
    assert "unknown module type 'NoSuchType'" in result.output


def test_check_fails_on_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aml"
    text = HC30.read_text(encoding="utf-8-sig")
    bad.write_text(text.replace('Name="ProcedureID"', 'Name="Nummer"'), encoding="utf-8")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "procedure-ids" in result.output


def test_import_of_a_broken_manifest_exits_1_with_located_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aml"
    bad.write_text("<CAEXFile SchemaVersion='3.0'><Oops></CAEXFile>", encoding="utf-8")
    result = runner.invoke(app, ["import", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:1:" in result.output
    assert "Traceback" not in result.output
