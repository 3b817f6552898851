"""The orchestrator: runs validated recipes across module proxies as state machines."""

from modulecontrol.events import Event, EventLog
from modulecontrol.orchestrator._interpreter import Progress, StepFailed
from modulecontrol.orchestrator._operator import OperatorChannel, Prompt
from modulecontrol.orchestrator._runner import Orchestrator, RunResult

__all__ = [
    "Event",
    "EventLog",
    "OperatorChannel",
    "Orchestrator",
    "Progress",
    "Prompt",
    "RunResult",
    "StepFailed",
]
