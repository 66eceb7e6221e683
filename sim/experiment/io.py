"""Files in and out, in one place: YAML documents (repeated keys refused, ``extends`` chains, deep
merges, dotted-path edits), durable and atomic writes, stable JSON, and Arrow columns.

``extends: base.yaml`` (relative to the file) loads the base first and deep-merges this file over
it: mappings merge key by key, anything else (lists included) replaces. A crisis episode is then a
base episode plus a few overrides. A mapping that names a regime of another family than the one
it overrides (``margin: {regime: span, ...}`` over a standard margin) replaces it whole: another
regime's parameters mean nothing to it. Variants of one family (``standard`` /
``standard_isolated``, ``portfolio`` / ``portfolio_joint``, ``var`` / ``var_apc``) still merge.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from sim.experiment.errors import ConfigError


# ------------------------------------------------------------------------------------ YAML documents


def _family(regime: Any) -> Any:
    """``standard_isolated`` -> ``standard``: the parameter family of a regime name."""
    return regime.split("_")[0] if isinstance(regime, str) else regime


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if (isinstance(value, dict) and isinstance(out.get(key), dict)
                and _family(value.get("regime", out[key].get("regime"))) == _family(out[key].get("regime"))):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last silently, so a
    pasted second ``margin:`` block would quietly replace the first)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: let the base constructor report it
            continue
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as Python data; a syntax error or a repeated key is a ``ConfigError`` naming the
    file and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: extends forms a cycle ({chain})")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends must be a file name")
        base = read_yaml(path.parent / parent, (*_seen, resolved))
        data = deep_merge(base, data)
    return data

_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ------------------------------------------------------------------------------------ dotted paths
def set_path(data: dict[str, Any], path: str, value: Any, merge: bool = False) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists (missing mappings are created; list indices must exist).
    With ``merge``, a mapping value is deep-merged into an existing mapping instead of replacing it."""
    parts = path.split(".")
    node: Any = data
    for depth, key in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, key, where)]
            continue
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        elif not isinstance(nxt, (dict, list)):
            raise KeyError(f"{where} is a {type(nxt).__name__}, not a mapping")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        i = _index(node, last, path)
        node[i] = deep_merge(node[i], value) if merge and isinstance(node[i], dict) and isinstance(value, dict) \
            else value
        return
    current = node.get(last)
    if merge and isinstance(current, dict) and isinstance(value, dict):
        node[last] = deep_merge(current, value)
    else:
        node[last] = value


def _index(node: list, key: str, where: str) -> int:
    try:
        i = int(key)
    except ValueError:
        raise KeyError(f"{where}: a list needs an integer index, got {key!r}") from None
    if not -len(node) <= i < len(node):
        raise KeyError(f"{where}: index {i} is out of range (the list has {len(node)} items)")
    return i


# ------------------------------------------------------------------------------------ durable writes
def dump_json(data: Any) -> str:
    """Stable JSON text: sorted keys, two-space indent, no NaN, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def fsync_dir(path: Path) -> None:
    """fsync a directory (so renames in it are durable); errors are ignored (not every OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Write text and fsync it (the caller renames the folder or file into place)."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename: readers see the old file or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temp file behind (after the rename: none)
    fsync_dir(path.parent)  # make the rename itself durable


# ------------------------------------------------------------------------------------ Arrow columns
class ColumnKind:
    """The Arrow type of a column of plain values, decided value by value, so that a table written in
    batches (``sim.experiment.sweep``) types each column by all its values without holding them:
    bool, int64 (every value an int that fits), float64 (ints and floats), string, or JSON text
    for anything else (lists, mixed kinds); a column of nothing but nulls is a string column."""

    __slots__ = ("kinds", "ints_fit")

    def __init__(self) -> None:
        self.kinds: set[type] = set()
        self.ints_fit = True

    def add(self, value: Any) -> None:
        if value is None:
            return
        kind = type(value)
        self.kinds.add(kind)
        if kind is int and not -(2**63) <= value < 2**63:
            self.ints_fit = False

    def type(self) -> str:
        kinds = self.kinds
        if not kinds:
            return "null"
        if kinds == {bool}:
            return "bool"
        if kinds <= {int} and self.ints_fit:
            return "int"
        if kinds <= {int, float}:
            return "float"
        if kinds == {str}:
            return "str"
        return "json"

    def array(self, values: list[Any]) -> pa.Array:
        """``values`` (some or all of the column's) as this column's Arrow array."""
        kind = self.type()
        if kind == "null":
            return pa.array([None] * len(values), type=pa.string())
        if kind == "bool":
            return pa.array(values, type=pa.bool_())
        if kind == "int":
            return pa.array(values, type=pa.int64())
        if kind == "float":
            return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
        if kind == "str":
            return pa.array(values, type=pa.string())
        return pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values],
                        type=pa.string())


def arrow_column(values: list[Any]) -> pa.Array:
    """A typed column: bool, int64, float64 or string; anything else (lists, mixed) as JSON text."""
    kind = ColumnKind()
    for v in values:
        kind.add(v)
    return kind.array(values)


def _column(values: np.ndarray) -> pa.Array:
    """A numpy column as Arrow (object and text columns as strings)."""
    a = np.asarray(values)
    if a.dtype == object or a.dtype.kind in ("U", "S"):
        return pa.array([None if v is None else str(v) for v in a.tolist()], type=pa.string())
    if a.ndim != 1:
        raise ValueError(f"columns must be one-dimensional, got shape {a.shape}")
    return pa.array(a)


def table_to_arrow(table: Mapping[str, np.ndarray]) -> pa.Table:
    """A dict of equal-length column arrays as an Arrow table (object/str columns as strings)."""
    names = list(table)
    lengths = {len(np.asarray(table[n])) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal length: { {n: len(np.asarray(table[n])) for n in names} }")
    return pa.table({n: _column(table[n]) for n in names})
