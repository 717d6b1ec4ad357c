"""Turning pydantic validation errors into one line per bad field (shared by trial configs and
study files; imports nothing but pydantic)."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, ValidationError

Known = Callable[[tuple[str, ...]], Iterable[str]]
"""The keys allowed at a location (its path as a tuple, list indices as ``*``): for "did you mean"."""


def close_key(key: str, known: Iterable[str]) -> str | None:
    """The allowed key ``key`` was most likely meant to be (``stpes`` -> ``steps``), or None."""
    import difflib

    got = difflib.get_close_matches(key, sorted(set(known)), n=1, cutoff=0.6)
    return got[0] if got else None


def _model_in(annotation) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Executor``, ``Search | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def model_keys(model: type[BaseModel], at: Mapping[tuple[str, ...], Callable[[], Iterable[str]]] | None = None
               ) -> Known:
    """``Known`` for a pydantic model: the fields of the model found by following the path through
    its fields (``at``: the keys of a path the annotations cannot tell, e.g. every method's settings
    under ``method``)."""
    def known(parts: tuple[str, ...]) -> Iterable[str]:
        if at and parts in at:
            return at[parts]()
        m: type[BaseModel] | None = model
        for p in parts:
            field = m.model_fields.get(p) if m is not None else None
            m = _model_in(field.annotation) if field is not None else None
            if m is None:
                return ()
        return m.model_fields if m is not None else ()
    return known


class DataError(ValueError):
    """A dataset cannot be loaded or split as configured; the message says what to change."""


class DataFileError(DataError):
    """A data file is there but defective (truncated, not the format, empty): downloading again
    would not help; the message names the file."""


_NAMED = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)


_SHAPE_ERRORS = ("list_type", "dict_type", "model_type", "model_attributes_type", "extra_forbidden")


def format_validation_error(e: ValidationError, prefix: str = "", join_named: bool = False,
                            shapes: Callable[[tuple[str, ...]], str | None] | None = None,
                            known: Known | None = None) -> list[str]:
    """One line per problem: the dotted field name, what is wrong or allowed, and the value given.
    ``join_named``: a check of a whole section whose message starts with the field it is about
    (``"model: ..."`` in ``task``) is reported at that field (``task.model: ...``). ``shapes``: the
    right shape of a field (its location with list indices as ``*``) for a value of the wrong
    kind, as an example appended to the line (``grid is a list of blocks: grid: [{eps: [1, 2]}]``).
    ``known``: the keys allowed at a location, for "did you mean" after an unknown key."""
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
            meant = close_key(parts[-1], known(parts[:-1])) if known is not None and parts else None
            if meant is not None:
                msg = f"unknown key (not a setting); did you mean {'.'.join((*parts[:-1], meant))}?"
        given = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(given, Mapping) else f" (got {given!r})"
        lines.append(f"{loc}: {msg}{shown}" + (f"; {hint}" if hint else ""))
    return lines
