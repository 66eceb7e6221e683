"""Loading episode files: YAML, ``extends`` chains, and errors that name the field and the reason.

``extends: base.yaml`` (relative to the file) loads the base first and deep-merges this file over
it: mappings merge key by key, anything else (lists included) replaces. A crisis episode is then a
base episode plus a few overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.schema.episode import EpisodeConfig

PACKAGED_DEFAULT = Path(__file__).parent / "episodes" / "default.yaml"


class ConfigError(ValueError):
    """A config that cannot run; ``str()`` lists every problem as ``field.path: reason``."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: extends forms a cycle ({chain})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
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


def load_episode(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> EpisodeConfig:
    """Read and validate an episode file (the packaged default when ``path`` is None)."""
    path = PACKAGED_DEFAULT if path is None else Path(path)
    data = read_yaml(path)
    if overrides:
        data = deep_merge(data, overrides)
    return parse_episode(data, str(path), root=path.absolute().parent)
