"""Turning pydantic validation errors into one line per bad field (shared by trial configs and
study files; imports nothing but pydantic)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from pydantic import ValidationError


class DataError(ValueError):
    """A dataset cannot be loaded or split as configured; the message says what to change."""


class DataFileError(DataError):
    """A data file is there but defective (truncated, not the format, empty): downloading again
    would not help; the message names the file."""


_NAMED = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)


_SHAPE_ERRORS = ("list_type", "dict_type", "model_type", "model_attributes_type", "extra_forbidden")


def format_validation_error(e: ValidationError, prefix: str = "", join_named: bool = False,
                            shapes: Callable[[tuple[str, ...]], str | None] | None = None) -> list[str]:
    """One line per problem: the dotted field name, what is wrong or allowed, and the value given.
    ``join_named``: a check of a whole section whose message starts with the field it is about
    (``"model: ..."`` in ``task``) is reported at that field (``task.model: ...``). ``shapes``: the
    right shape of a field (its location with list indices as ``*``) for a value of the wrong
    kind, as an example appended to the line (``grid is a list of blocks: grid: [{eps: [1, 2]}]``)."""
    lines = []
    for err in e.errors():
        parts = tuple("*" if isinstance(p, int) else str(p) for p in err["loc"]
                      if not str(p).startswith("function-after"))
        hint = shapes(parts) if shapes is not None and err["type"] in _SHAPE_ERRORS else None
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
        lines.append(f"{loc}: {msg}{shown}" + (f"; {hint}" if hint else ""))
    return lines
