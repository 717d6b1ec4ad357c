"""Turning pydantic validation errors into one line per bad field (shared by trial configs and
study files; imports nothing but pydantic)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def format_validation_error(e: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: the dotted field name, what is wrong or allowed, and the value given."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        loc = prefix + loc if loc else (prefix.rstrip(".") or "config")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a setting; check its spelling)"
        given = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(given, Mapping) else f" (got {given!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines
