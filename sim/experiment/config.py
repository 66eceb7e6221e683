"""Loading episode files: YAML, ``extends`` chains, and errors that name the field and the reason.

``extends: base.yaml`` (relative to the file) loads the base first and deep-merges this file over
it: mappings merge key by key, anything else (lists included) replaces. A crisis episode is then a
base episode plus a few overrides. A mapping that names a regime of another family than the one
it overrides (``margin: {regime: span, ...}`` over a standard margin) replaces it whole: another
regime's parameters mean nothing to it. Variants of one family (``standard`` /
``standard_isolated``, ``portfolio`` / ``portfolio_joint``, ``var`` / ``var_apc``) still merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.experiment.schema.episode import EpisodeConfig

PACKAGED_DEFAULT = Path(__file__).parents[1] / "episodes" / "default.yaml"


class ConfigError(ValueError):
    """A config that cannot run; ``str()`` lists every problem as ``field.path: reason``."""


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


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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


def format_validation_error(exc: ValidationError, source: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":  # a discriminated union: name the choices, not the union
            ctx = err.get("ctx", {})
            what = str(ctx.get("discriminator", "kind")).strip("'")
            msg = f"unknown {what} {ctx.get('tag')!r}; choose one of: {ctx.get('expected_tags', '')}"
        lines.append(f"  {loc or '<top level>'}: {msg}")
    head = f"{source}: invalid configuration" if source else "invalid configuration"
    return head + "\n" + "\n".join(lines)


def parse_episode(data: dict[str, Any], source: str = "", root: str | Path | None = None,
                  trusted: bool = False) -> EpisodeConfig:
    """Validate an episode dict. ``root``: the folder relative file paths (replay CSVs) resolve
    against and are confined to (default: the working directory). ``trusted``: ``data`` is the dump
    of an already validated config, whose file paths were confined then and are absolute now."""
    context = {"root": None if root is None else str(root), "trusted": trusted}
    try:
        return EpisodeConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def apply_regime(data: dict[str, Any], name: str) -> dict[str, Any]:
    """``data`` with its ``margin`` block replaced by regime ``name``'s defaults -- or kept when the
    episode already uses that regime (as ``compare`` and sweeps treat a bare regime name), so
    ``--regime standard`` on a tuned standard episode keeps its tiers."""
    from clearing.margin.config import REGIME_NAMES

    if name not in REGIME_NAMES:
        raise ConfigError(f"--regime: unknown regime {name!r}; choose one of: {', '.join(REGIME_NAMES)}")
    out = dict(data)
    current = out.get("margin")
    if not (isinstance(current, dict) and current.get("regime", "standard") == name):
        out["margin"] = {"regime": name}
    return out


def apply_sets(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``data`` with each ``dotted.path=value`` applied (the value read as YAML: ``0.2``, ``true``,
    ``[a, b]``, ``{regime: span}``); lists are indexed by position (``population.groups.1.count=50``)."""
    import copy

    from sim.experiment.sweep import set_path

    out = copy.deepcopy(data)
    for item in assignments:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep or not path:
            raise ConfigError(f"--set {item!r}: expected path=value (like margin.tiers.0.im_rate=0.05)")
        value = parse_yaml(text, f"--set {path}") if text.strip() else None
        try:
            set_path(out, path, value)
        except KeyError as exc:
            raise ConfigError(f"--set {path}: {exc.args[0]}") from None
    return out


def load_episode(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> EpisodeConfig:
    """Read and validate an episode file (the packaged default when ``path`` is None)."""
    path = PACKAGED_DEFAULT if path is None else Path(path)
    data = read_yaml(path)
    if overrides:
        data = deep_merge(data, overrides)
    return parse_episode(data, str(path), root=path.absolute().parent)
