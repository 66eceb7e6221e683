"""Loading episode files into ``EpisodeConfig``: regime overrides, ``--set`` assignments, and
validation errors that name the field and the reason. Reading the YAML itself (``extends`` chains,
deep merges by regime family, repeated keys refused) is ``sim.experiment.io``'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sim.experiment.errors import ConfigError
from sim.experiment.io import deep_merge, parse_yaml, read_yaml
from sim.experiment.schema.episode import EpisodeConfig

PACKAGED_DEFAULT = Path(__file__).parents[1] / "episodes" / "default.yaml"




# core-schema nodes that wrap one inner schema without adding a step to an error's location
_WRAPPERS = {"default": "schema", "nullable": "schema", "model": "schema", "function-after": "schema",
             "function-before": "schema", "function-wrap": "schema", "definitions": "schema",
             "lax-or-strict": "lax_schema", "json-or-python": "python_schema"}


def _refs(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (ref, schema) a core schema defines (``definition-ref`` nodes point at them)."""
    if isinstance(node, dict):
        if isinstance(node.get("ref"), str):
            yield node["ref"], node
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _refs(value)


def _child(node: dict[str, Any], step: str | int) -> Any:
    """The schema one location ``step`` below ``node`` (a field, an item, a value), or None."""
    kind = node.get("type")
    if kind == "model-fields":
        field = node["fields"].get(step) if isinstance(step, str) else None
        return None if field is None else field.get("schema")
    if kind in ("list", "set", "frozenset"):
        return node.get("items_schema")
    if kind == "dict":
        return node.get("values_schema")
    if kind == "tuple" and isinstance(step, int):
        items = node.get("items_schema") or []
        return items[step] if step < len(items) else None
    return None


def user_location(loc: Sequence[str | int], schema: dict[str, Any] | None) -> list[str | int]:
    """An error location as the user writes the path in YAML and ``--set``: the steps pydantic adds
    for a union -- a discriminated union's tag (``population.groups.2.noise.count``, the group's
    ``type``; ``margin.standard.tiers.0``, the regime) or a plain union's member -- are dropped.
    They are found by walking ``schema`` (the validated model's core schema) along ``loc``: a step
    taken at a union node is the union's own, whatever its tags are called. Without a schema, or
    where the walk cannot follow, only plain unions' generated member names (``function-...``) go."""
    refs = dict(_refs(schema)) if schema is not None else {}
    node: Any = schema
    out: list[str | int] = []
    for step in loc:
        while isinstance(node, dict) and (node.get("type") in _WRAPPERS or node.get("type") == "definition-ref"):
            node = refs.get(node["schema_ref"]) if node["type"] == "definition-ref" else node.get(_WRAPPERS[node["type"]])
        kind = node.get("type") if isinstance(node, dict) else None
        if kind == "tagged-union":
            choices = node["choices"]
            chosen = next((v for k, v in choices.items() if str(k) == str(step)), None)
            while isinstance(chosen, (str, int)):  # older pydantic-core: a tag naming another tag
                chosen = choices.get(chosen)
            if chosen is not None:
                node = chosen  # the tag is pydantic's, not a step of the user's path
                continue
        if kind == "union":
            labelled = [c for c in node["choices"] if isinstance(c, (tuple, list)) and c[1] == step]
            node = labelled[0][0] if labelled else None  # a member's label: the union's step either way
            continue
        if isinstance(step, str) and step.startswith("function-") and node is None:
            continue  # a plain union's member name, off the walked schema
        out.append(step)
        node = _child(node, step) if isinstance(node, dict) else None
    return out


def _schema_of(model: Any) -> dict[str, Any] | None:
    """The core schema of a model class or a ``TypeAdapter`` (None for anything else)."""
    if isinstance(model, TypeAdapter):
        return dict(model.core_schema)
    schema = getattr(model, "__pydantic_core_schema__", None)
    return schema if isinstance(schema, dict) else None


def _touches(path: Sequence[str | int], assignment: str) -> bool:
    """Whether the ``--set`` ``assignment`` (``a.b.0=value``) set ``path`` or something inside or
    around it (a model check at ``margin.tiers.0`` fails on the ``mm_rate`` set below it)."""
    set_at = [str(int(p)) if p.strip().isdigit() else p.strip() for p in assignment.partition("=")[0].split(".")]
    at = [str(p) for p in path]
    n = min(len(set_at), len(at))
    return n > 0 and set_at[:n] == at[:n]


def format_validation_error(exc: ValidationError, source: str = "", model: Any = None,
                            overrides: Sequence[str] = ()) -> str:
    """One line per error, ``path: reason``, the path as the user writes it (``user_location``;
    ``model``: the model class or ``TypeAdapter`` that raised, whose schema gives the union tags to
    drop). ``overrides``: the ``--set`` assignments applied to the file's data; an error at a path
    one of them set names it, and the heading says the file was read with them."""
    schema = _schema_of(model)
    lines = []
    for err in exc.errors():
        path = user_location(err["loc"], schema)
        loc = ".".join(str(p) for p in path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":  # a discriminated union: name the choices, not the union
            ctx = err.get("ctx", {})
            what = str(ctx.get("discriminator", "kind")).strip("'")
            msg = f"unknown {what} {ctx.get('tag')!r}; choose one of: {ctx.get('expected_tags', '')}"
        given = [a for a in overrides if _touches(path, a)]
        by = f" (from --set {', --set '.join(given)})" if given else ""
        lines.append(f"  {loc or '<top level>'}{by}: {msg}")
    where = source
    if overrides:
        sets = " ".join(f"--set {a}" for a in overrides)
        where = f"{source} with {sets}" if source else sets
    head = f"{where}: invalid configuration" if where else "invalid configuration"
    return head + "\n" + "\n".join(lines)


def margin_adapter() -> TypeAdapter:
    """The margin block's validator on its own (a regime spec outside an episode: ``compare``'s
    regimes, a backtest's), for ``format_validation_error`` to read its errors' paths."""
    from clearing.margin.config import MarginConfig

    return TypeAdapter(MarginConfig)


def parse_episode(data: dict[str, Any], source: str = "", root: str | Path | None = None,
                  trusted: bool = False, overrides: Sequence[str] = ()) -> EpisodeConfig:
    """Validate an episode dict. ``root``: the folder relative file paths (replay CSVs) resolve
    against and are confined to (default: the working directory). ``trusted``: ``data`` is the dump
    of an already validated config, whose file paths were confined then and are absolute now.
    ``overrides``: the ``--set`` assignments applied to ``data``, named in an error they caused."""
    context = {"root": None if root is None else str(root), "trusted": trusted}
    try:
        return EpisodeConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, EpisodeConfig, overrides)) from None


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
