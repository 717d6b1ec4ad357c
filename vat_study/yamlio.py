"""Reading YAML the way study files need it: safe (no Python objects), scientific-notation floats,
a key repeated in one mapping refused; canonical JSON keys and dotted-key assignment."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads 1e-3 / 5E+2 as floats (YAML 1.1 wants a dot: '1.0e-3')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _mapping_without_repeats(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A YAML mapping; a key given twice in one mapping is an error (YAML says keys are unique,
    PyYAML would silently keep the last value)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:  # the keys written here (merged-in ones may be overridden)
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # PyYAML refuses unhashable keys itself
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}): "
                            "give it once", key_node.start_mark)
        seen[key] = line
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def safe_load(text: str) -> Any:
    """Safe YAML (no arbitrary objects) with scientific-notation floats; a key repeated in one
    mapping is an error."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  _Loader is a SafeLoader


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any) -> str:
    return hashlib.sha1(canonical(obj).encode()).hexdigest()[:16]


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[parts[-1]] = value
