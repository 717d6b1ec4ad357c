"""``SpecError``: an invalid study file or override, one line per problem naming its field."""

from __future__ import annotations

MAX_PROBLEMS = 30
"""The most problems one error lists; each is capped at ``MAX_PROBLEM_CHARS``."""
MAX_PROBLEM_CHARS = 600


def capped(text: str, most: int = MAX_PROBLEM_CHARS) -> str:
    """``text``, cut to ``most`` characters with a note of how many were cut."""
    return text if len(text) <= most else text[: most - 40] + f" ... ({len(text) - most + 40:,} characters cut)"


class SpecError(ValueError):
    """An invalid study file or override; ``str(e)`` lists every problem with its field."""

    def __init__(self, problems: list[str], source: str = "study") -> None:
        shown = [capped(p) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problem(s)")
        self.problems = shown
        super().__init__(f"invalid {capped(source, 300)}:\n" + "\n".join(f"  - {p}" for p in shown))
