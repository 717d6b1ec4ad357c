"""Turning pydantic validation errors into one line per bad field (shared by trial configs and
study files; imports nothing but pydantic)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import ValidationError


_NAMED = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)


def format_validation_error(e: ValidationError, prefix: str = "", join_named: bool = False) -> list[str]:
    """One line per problem: the dotted field name, what is wrong or allowed, and the value given.
    ``join_named``: a check of a whole section whose message starts with the field it is about
    (``"model: ..."`` in ``task``) is reported at that field (``task.model: ...``)."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        named = _NAMED.fullmatch(msg) if join_named and err["type"] == "value_error" else None
        if named:
            loc, msg = (f"{loc}.{named[1]}" if loc else named[1]), named[2]
        loc = prefix + loc if loc else (prefix.rstrip(".") or "config")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a setting; check its spelling)"
        given = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(given, Mapping) else f" (got {given!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines
