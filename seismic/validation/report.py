"""What the validator found: problems (each naming a file, a key and a reason) and notes, deduplicated.

The same broken key usually fails in many compositions (every environment, every option of the other
groups); it is reported once, with the CLIs and the number of configurations it broke and one example.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str  # where to fix it: a config file (relative to the root), a model folder, a deploy manifest
    key: str  # dotted config key (or a manifest's document), "" when the whole file is at fault
    reason: str


class Report:
    def __init__(self) -> None:
        self._problems: dict[Problem, list[str]] = defaultdict(list)
        self._notes: dict[str, list[str]] = defaultdict(list)
        self.configurations = 0  # compositions checked
        self.clis: list[str] = []
        self.envs: set[str] = set()
        self.yaml_files = 0
        self.model: str | None = None

    def problem(self, file: str, key: str, reason: str, context: str = "") -> None:
        contexts = self._problems[Problem(file, key, " ".join(reason.split()))]
        if context not in contexts:
            contexts.append(context)

    def note(self, text: str, context: str = "") -> None:
        if context not in self._notes[text]:
            self._notes[text].append(context)

    @property
    def problems(self) -> list[Problem]:
        return sorted(self._problems)

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    @property
    def ok(self) -> bool:
        return not self._problems

    def has_problems_in(self, file: str) -> bool:
        return any(p.file == file for p in self._problems)

    @staticmethod
    def _where(contexts: list[str]) -> str:
        contexts = [c for c in contexts if c]
        if not contexts:
            return ""
        clis = sorted({c.split()[0] for c in contexts})
        if len(contexts) == 1:
            return f" [{contexts[0]}]"
        return f" [{', '.join(clis)}: {len(contexts)} configurations, e.g. {contexts[0]}]"

    def format(self) -> str:
        scope = (
            f"{len(self.clis)} CLIs ({', '.join(self.clis)}) x {len(self.envs) or 1} environments "
            f"({', '.join(sorted(self.envs)) or '-'}): {self.configurations} configurations composed and "
            f"checked; {self.yaml_files} deployment YAML/JSON files parsed"
        )
        if self.model:
            scope += f"; model {self.model} checked against serve, predict and monitor"
        lines = [f"validate: {scope}"]
        if self._notes:
            lines.append("notes:")
            lines += [f"  - {text}{self._where(ctx)}" for text, ctx in self._notes.items()]
        if self.ok:
            lines.append("OK: no problems")
            return "\n".join(lines)
        lines.append(f"{len(self._problems)} problem(s):")
        for n, p in enumerate(self.problems, 1):
            key = f"{p.key}: " if p.key else ""
            lines.append(f"{n}. {p.file}: {key}{p.reason}{self._where(self._problems[p])}")
        return "\n".join(lines)
