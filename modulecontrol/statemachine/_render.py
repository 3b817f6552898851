"""Renderings of :func:`modulecontrol.mtpcore.state_table` for terminals (rich or plain)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from modulecontrol.mtpcore import SCA


def _outgoing(table: dict[str, Any], state_name: str) -> str:
    return ", ".join(
        f"{row['trigger']}{'*' if row['note'] else ''}->{row['to']}"
        for row in table["transitions"]
        if row["from"] == state_name
    )


def render_state_table(table: dict[str, Any]) -> Table:
    """A rich Table of ``state_table(...)``: one row per state with CommandEn and exits."""
    out = Table(title=f"{table['standard']} service states", show_lines=False)
    out.add_column("State")
    out.add_column(SCA.STATE_CUR, justify="right")
    out.add_column(SCA.COMMAND_EN, justify="right")
    out.add_column("Enabled commands")
    out.add_column("Transitions (* = self-completing only)")
    for state in table["states"]:
        out.add_row(
            state["name"] + (" (acting)" if state["acting"] else ""),
            str(state["code"]),
            str(state["command_en"]),
            ", ".join(state["enabled"]),
            _outgoing(table, state["name"]),
        )
    return out


def state_table_text(table: dict[str, Any]) -> str:
    """Plain-text rendering of ``state_table(...)`` for logs and terminals without rich."""
    lines = [f"{table['standard']} service states", ""]
    header = f"{'State':<12} {SCA.STATE_CUR:>8} {SCA.COMMAND_EN:>9}  Enabled / transitions"
    lines += [header, "-" * len(header)]
    for state in table["states"]:
        marker = "~" if state["acting"] else " "
        lines.append(
            f"{state['name']:<11}{marker} {state['code']:>8} {state['command_en']:>9}  "
            f"{', '.join(state['enabled']) or '-'}"
        )
        lines.append(f"{'':<32}{_outgoing(table, state['name'])}")
    lines += ["", "~ acting state (leaves by SC); * only for self-completing procedures"]
    lines.append("options: " + ", ".join(f"{k}={v}" for k, v in table["options"].items()))
    return "\n".join(lines)
