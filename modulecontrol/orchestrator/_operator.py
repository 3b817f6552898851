"""The operator channel: prompts that need an answer, alarm acknowledgements, decisions.

The orchestrator never blocks on a terminal: it posts a prompt and awaits a future that the
CLI (or a test, or a future HMI) resolves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

AUTO_USER = "auto"
"""Who answered a prompt the program answered itself (``--yes``, no terminal): never the
operator, so a record shows which decisions a person took."""


@dataclass
class Prompt:
    id: int
    source: str
    message: str
    choices: list[str]
    future: asyncio.Future[str] = field(repr=False)
    answered_by: str = ""
    """The user who answered (:data:`AUTO_USER` for an automatic answer)."""
    automatic: str | None = None
    """For an automatic answer, the option that gave it (``--yes``, ``no terminal``)."""

    def answer_data(self) -> dict[str, str]:
        """``user`` (and ``automatic``) for the OPERATOR_ACTION event of this answer."""
        data = {"user": self.answered_by}
        if self.automatic is not None:
            data["automatic"] = self.automatic
        return data


class OperatorChannel:
    def __init__(self, user: str = "operator", auto_answer: str | None = None, *,
                 auto_reason: str = "--yes") -> None:
        self.user = user
        self.auto_answer = auto_answer
        """Answer every prompt at once with this choice (unattended runs, ``--yes``)."""
        self.auto_reason = auto_reason
        """The option (or circumstance: ``no terminal``) that made answers automatic."""
        self.pending: dict[int, Prompt] = {}
        self._next = 1
        self._changed = asyncio.Event()

    def ask(self, source: str, message: str, choices: list[str]) -> Prompt:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        prompt = Prompt(self._next, source, message, list(choices), fut)
        self._next += 1
        self.pending[prompt.id] = prompt
        if self.auto_answer is not None:
            answer = self.auto_answer if self.auto_answer in choices else choices[0]
            prompt.answered_by, prompt.automatic = AUTO_USER, self.auto_reason
            fut.set_result(answer)
            self.pending.pop(prompt.id, None)
        self._changed.set()
        return prompt

    def answer(self, prompt_id: int, choice: str, *, automatic: str | None = None) -> None:
        """Answer an open prompt: by the operator, or (``automatic``: the reason, e.g. a
        Ctrl-C without a terminal) by the program as :data:`AUTO_USER`."""
        prompt = self.pending.get(prompt_id)
        if prompt is None:
            raise KeyError(f"no open prompt {prompt_id}")
        if choice not in prompt.choices:
            raise ValueError(f"'{choice}' is not one of {', '.join(prompt.choices)}")
        self.pending.pop(prompt_id)
        prompt.answered_by = AUTO_USER if automatic is not None else self.user
        prompt.automatic = automatic
        if not prompt.future.done():
            prompt.future.set_result(choice)
        self._changed.set()

    def answer_all(self, choice: str | None = None, *, automatic: str | None = None) -> int:
        n = 0
        for pid, prompt in list(self.pending.items()):
            self.answer(pid, choice if choice in prompt.choices else prompt.choices[0],
                        automatic=automatic)
            n += 1
        return n
