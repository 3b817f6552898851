"""The operator channel: prompts that need an answer, alarm acknowledgements, decisions.

The orchestrator never blocks on a terminal: it posts a prompt and awaits a future that the
CLI (or a test, or a future HMI) resolves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Prompt:
    id: int
    source: str
    message: str
    choices: list[str]
    future: asyncio.Future[str] = field(repr=False)


class OperatorChannel:
    def __init__(self, user: str = "operator", auto_answer: str | None = None) -> None:
        self.user = user
        self.auto_answer = auto_answer
        """Answer every prompt at once with this choice (unattended runs, ``--yes``)."""
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
            fut.set_result(answer)
            self.pending.pop(prompt.id, None)
        self._changed.set()
        return prompt

    def answer(self, prompt_id: int, choice: str) -> None:
        prompt = self.pending.get(prompt_id)
        if prompt is None:
            raise KeyError(f"no open prompt {prompt_id}")
        if choice not in prompt.choices:
            raise ValueError(f"'{choice}' is not one of {', '.join(prompt.choices)}")
        self.pending.pop(prompt_id)
        if not prompt.future.done():
            prompt.future.set_result(choice)
        self._changed.set()

    def answer_all(self, choice: str | None = None) -> int:
        n = 0
        for pid, prompt in list(self.pending.items()):
            self.answer(pid, choice if choice in prompt.choices else prompt.choices[0])
            n += 1
        return n
