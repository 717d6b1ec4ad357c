"""Reading YAML the way study files need it: safe (no Python objects), scientific-notation floats,
a key repeated in one mapping refused; canonical JSON keys and dotted-key assignment."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from typing import Any

import yaml

from .validation import MAX_INT


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


def _bounded_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    """YAML's int, refused before Python converts it when it has more digits than any setting could
    take (Python refuses past 4,300 digits with a ValueError, and converting is quadratic)."""
    digits = sum(c.isalnum() for c in str(node.value))
    if digits > 40:
        raise YAMLLimitError(f"an integer of {digits:,} digits (line {node.start_mark.line + 1}): no setting takes one "
                             f"past {MAX_INT:,} ({len(str(MAX_INT))} digits)")
    return loader.construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


MAX_BYTES = 1_000_000
"""The largest YAML text read (study files are a few KB)."""
MAX_NODES = 100_000
"""The most values a document may hold once every alias is expanded (a 'billion laughs' file
of nested aliases expands exponentially from a few hundred bytes)."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists."""


class YAMLLimitError(yaml.YAMLError):
    """A YAML text past one of the bounds above; ``str(e)`` is one line saying which."""


def _check_bounds(node: yaml.Node | None) -> None:
    """Count the document's values with every alias expanded (each shared node counted once per
    use, in time linear in the number of distinct nodes) and its depth; refuse past the bounds."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, depth)
    active: set[int] = set()

    def walk(n: yaml.Node) -> tuple[int, int]:
        k = id(n)
        if k in sizes:
            return sizes[k]
        if k in active:
            raise YAMLLimitError(f"a recursive alias (line {n.start_mark.line + 1}) would expand forever")
        if isinstance(n, yaml.ScalarNode):
            return 1, 0
        active.add(k)
        children = [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else n.value
        count, depth = 1, 0
        for c in children:
            cc, cd = walk(c)
            count, depth = count + cc, max(depth, cd + 1)
            if count > MAX_NODES:
                raise YAMLLimitError(f"the YAML expands to more than {MAX_NODES:,} values (aliases nested in aliases "
                                     f"near line {n.start_mark.line + 1}?); a study file needs far fewer")
            if depth > MAX_DEPTH:
                raise YAMLLimitError(f"the YAML nests deeper than {MAX_DEPTH} levels (near line "
                                     f"{n.start_mark.line + 1}); a study file needs far fewer")
        active.discard(k)
        sizes[k] = (count, depth)
        return sizes[k]

    if node is not None:
        walk(node)


def safe_load(text: str) -> Any:
    """Safe YAML (no arbitrary objects) with scientific-notation floats; a key repeated in one
    mapping is an error. Bounded: at most ``MAX_BYTES`` of text, ``MAX_NODES`` values with aliases
    expanded, ``MAX_DEPTH`` levels (``YAMLLimitError``, raised before anything is built)."""
    if len(text) > MAX_BYTES:
        raise YAMLLimitError(f"the YAML text is {len(text):,} characters; at most {MAX_BYTES:,} are read")
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):  # events, not nodes: no recursion, nothing built
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YAMLLimitError(f"the YAML nests deeper than {MAX_DEPTH} levels (line "
                                     f"{event.start_mark.line + 1}); a study file needs far fewer")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YAMLLimitError(f"the YAML nests too deeply to read (more than {MAX_DEPTH} levels are refused)") from None
        _check_bounds(node)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


class FileRefused(ValueError):
    """A file that is not read: not a regular file, or past the size bound; ``str(e)`` is one line."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_text(path: str | os.PathLike, most: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path`` if it is a regular file of at most ``most`` bytes, else
    ``FileRefused`` (a FIFO is opened without waiting for a writer, /dev/zero is never read);
    OSError and UnicodeDecodeError as reading raises them."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd)
        if not stat.S_ISREG(mode.st_mode):
            kind = next((k for test, k in _KINDS if test(mode.st_mode)), "not a regular file")
            raise FileRefused(f"{os.fspath(path)!r} is {kind}, not a file; give a YAML file")
        if mode.st_size > most:
            raise FileRefused(f"{os.fspath(path)!r} is {mode.st_size:,} bytes; at most {most:,} are read")
        chunks, size = [], 0
        while size <= most:
            chunk = os.read(fd, min(1 << 20, most + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > most:
            raise FileRefused(f"{os.fspath(path)!r} holds more than {most:,} bytes; at most {most:,} are read")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")


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
