"""Alarm management after ISA-18.2 / IEC 62682: the life cycle of every alarm, the plant's
alarm philosophy, and the KPIs read from the records (docs/alarms.md).

Below the records and the orchestrator: the orchestrator feeds the board from its detection,
the service commands it for people, and the records compute the KPIs of a run or a day with
the same definitions, without importing anything above them.
"""

from modulecontrol.alarms._board import (
    AUTO,
    PROCESS,
    AlarmBoard,
    AlarmChange,
    AlarmSpec,
    UnknownAlarm,
)
from modulecontrol.alarms._kpis import AlarmKpis, alarm_kpis
from modulecontrol.alarms._lifecycle import (
    AlarmRefused,
    AlarmState,
    Lifecycle,
    Trigger,
    diagram_rows,
)
from modulecontrol.alarms._philosophy import AlarmPhilosophy, Chattering, Duration, seconds

__all__ = [
    "AUTO",
    "PROCESS",
    "AlarmBoard",
    "AlarmChange",
    "AlarmKpis",
    "AlarmPhilosophy",
    "AlarmRefused",
    "AlarmSpec",
    "AlarmState",
    "Chattering",
    "Duration",
    "Lifecycle",
    "Trigger",
    "UnknownAlarm",
    "alarm_kpis",
    "diagram_rows",
    "seconds",
]
