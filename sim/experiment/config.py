"""Loading episode files into ``EpisodeConfig``: regime overrides, ``--set`` assignments, and
validation errors that name the field and the reason. Reading the YAML itself (``extends`` chains,
deep merges by regime family, repeated keys refused) is ``sim.experiment.io``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sim.experiment.errors import ConfigError
from sim.experiment.io import deep_merge, parse_yaml, read_yaml
from sim.experiment.schema.episode import EpisodeConfig

PACKAGED_DEFAULT = Path(__file__).parents[1] / "episodes" / "default.yaml"




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

    from sim.experiment.io import set_path

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
