"""Variants of one episode config: the same paths, traders and seed under another margin regime
(``regime_variants``, one per regime of a comparison), and the no-feedback twin
(``counterfactual_config``: every liquidation filled outside the market at the mark). ``run_variant``
runs a config and, when ``outputs.counterfactual`` is on, its twin, and summarises the pair."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from clearing.margin.config import parse_margin_config
from sim.experiment.assembled import EpisodeResult
from sim.experiment.config import format_validation_error, margin_adapter, parse_episode
from sim.experiment.episode import run as run_episode
from sim.experiment.errors import ConfigError
from sim.experiment.regime_labels import regime_label
from sim.experiment.schema.episode import EpisodeConfig


def slug(label: str) -> str:
    """A folder name for a regime label ('standard 5%/2.5%' -> 'standard_5pct_2.5pct')."""
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "_", label.replace("%", "pct")).strip("._")
    return s or "regime"


def counterfactual_config(config: EpisodeConfig) -> EpisodeConfig:
    """The no-feedback twin of an episode: the same config -- paths, agents, seed, hence the same
    random streams and account ids -- with ``clearing.liquidation.absorb_outside``: every
    liquidation order that would go to the book is filled at the mark outside the market instead,
    so no liquidation moves a price anyone else sees."""
    data = config.model_dump(mode="json")
    data["clearing"]["liquidation"]["absorb_outside"] = True
    data["outputs"]["counterfactual"] = False
    return parse_episode(data, f"{config.name} (no-feedback twin)", trusted=True)


def run_with_twin(cfg: EpisodeConfig, observe: Any = None) -> tuple[EpisodeResult, dict[str, Any]]:
    """Run ``cfg``, then its no-feedback twin when ``outputs.counterfactual`` is on; summarise with it.
    ``observe`` is called with each episode as it starts (progress displays)."""
    from sim.experiment.metrics import summarise

    result = run_episode(cfg, observe=observe)
    twin = run_episode(counterfactual_config(cfg), observe=observe).tables if cfg.outputs.counterfactual else None
    return result, summarise(cfg, result.tables, result.stats, counterfactual=twin)


def run_variant(cfg: EpisodeConfig, observe: Any = None) -> tuple[dict[str, Any], dict]:
    """One variant of a run or comparison: the episode, its no-feedback twin when
    ``outputs.counterfactual`` is on, and the summary against the twin. Returns (summary, tables)."""
    result, summary = run_with_twin(cfg, observe)
    return summary, result.tables


def regime_variants(config: EpisodeConfig, regimes: list[str | dict] | None) -> dict[str, EpisodeConfig]:
    """One config per regime, keyed by its label: the same path, traders and seed; only ``margin``
    differs. Labels follow ``sim.experiment.regime_labels``, the backtest's rule: a regime's
    ``label`` if it has one, else its name, and for an unlabelled repeat its name and what differs
    from the entry holding the name (``var_filtered_es_97.5`` beside ``var``; ``standard_2`` only
    when nothing does); two equal labels are refused, naming the entry."""
    where = "regimes"  # the caller's list (--regimes, a reverse-stress file's regimes)
    chosen = regimes
    if not chosen:
        where, chosen = "compare_regimes", [r.model_dump(mode="json") for r in config.compare_regimes]
    if not chosen:
        where, chosen = "margin", [config.margin.model_dump(mode="json")]
    variants: dict[str, EpisodeConfig] = {}
    taken: dict[str, tuple[Any, float]] = {}  # label -> (margin, scale): what the next label is told apart from
    for k, spec in enumerate(chosen):
        try:
            margin = parse_margin_config(spec)
        except ValidationError as exc:  # name the regime that failed, and the choices
            raise ConfigError(format_validation_error(exc, f"regime {spec!r}", margin_adapter())) from None
        if isinstance(spec, str) and spec == config.margin.regime:
            margin = config.margin  # a bare name of the episode's own regime keeps its settings
        elif isinstance(spec, dict) and set(spec) <= {"regime", "label"} and spec.get("regime") == config.margin.regime:
            margin = config.margin.model_copy(update={"label": spec.get("label")})  # so does a labelled bare name
        label = regime_label(margin, taken, "margin" if where == "margin" else f"{where}.{k}")
        taken[label] = (margin, 1.0)  # a comparison has no scale: every regime at its own size
        data = config.model_dump(mode="json")
        data["margin"] = margin.model_dump(mode="json")
        data["name"] = f"{config.name}.{slug(label)}"
        variants[label] = parse_episode(data, f"{config.name} under {label}", trusted=True)
    return variants
