"""The orchestrator: runs validated recipes across module proxies as state machines."""

from modulecontrol.events import Event, EventLog
from modulecontrol.orchestrator._estimate import Estimate, planned, remaining
from modulecontrol.orchestrator._interpreter import (
    RESUMABILITY,
    Position,
    Progress,
    Resumability,
    StepFailed,
)
from modulecontrol.orchestrator._monitor import OPERATING_POINT_CHANGE, SteadyStateDetector
from modulecontrol.orchestrator._operator import AUTO_USER, OperatorChannel, Prompt
from modulecontrol.orchestrator._plantalarms import AlarmEvent, PlantAlarms
from modulecontrol.orchestrator._runner import Orchestrator, Resume, RunResult

__all__ = [
    "AUTO_USER",
    "OPERATING_POINT_CHANGE",
    "RESUMABILITY",
    "AlarmEvent",
    "Estimate",
    "Event",
    "EventLog",
    "OperatorChannel",
    "Orchestrator",
    "PlantAlarms",
    "Position",
    "Progress",
    "Prompt",
    "Resumability",
    "Resume",
    "RunResult",
    "SteadyStateDetector",
    "StepFailed",
    "planned",
    "remaining",
]
