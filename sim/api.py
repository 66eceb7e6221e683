"""The Python API, mirroring the CLI: ``run``, ``compare``, ``sweep``, ``validate``.

Everything here takes an ``EpisodeConfig``, a path to an episode YAML, or None (the packaged
default episode), validates it completely before running anything, and writes results atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.config import ConfigError, deep_merge, load_episode, parse_episode
from sim.episode import EpisodeResult
from sim.episode import run as run_episode
from sim.schema.episode import EpisodeConfig
from sim.schema.margin import parse_margin_config

EpisodeLike = EpisodeConfig | str | Path | None


def resolve(config: EpisodeLike, overrides: dict[str, Any] | None = None) -> EpisodeConfig:
    """An ``EpisodeConfig`` from a model, a YAML path or None (the packaged default)."""
    if isinstance(config, EpisodeConfig):
        if not overrides:
            return config
        # the config's file paths were confined when it was validated; an override of paths is checked again
        return parse_episode(deep_merge(config.model_dump(mode="json"), overrides), config.name,
                             trusted="paths" not in overrides)
    return load_episode(config, overrides)


def validate(config: EpisodeLike) -> EpisodeConfig:
    """Raise ``ConfigError`` (field path + reason) unless the episode can run."""
    return resolve(config)


@dataclass
class RunOutput:
    result: EpisodeResult
    summary: dict[str, Any]
    directory: Path | None


def _counterfactual(config: EpisodeConfig) -> EpisodeConfig:
    """The same episode with every liquidation moved off-book at mark: no price impact."""
    data = config.model_dump(mode="json")
    liq = data["clearing"]["liquidation"]
    liq["policy"] = "backstop"
    # a vault deep enough to take everything: 1e12 quote units, or half the room the exact ledger
    # leaves beside the episode's other amounts (sim.schema.bounds), whichever is smaller
    from sim.schema.bounds import backstop_room

    capital = min(1e12, 0.5 * backstop_room(config))
    liq["backstop"].update(enabled=True, discount=0.0, equity_fraction_of_mm=1.0, capital=capital)
    data["outputs"]["counterfactual"] = False
    return parse_episode(data, f"{config.name} (counterfactual)", trusted=True)


def run(config: EpisodeLike = None, output: str | Path | None = None, write: bool = True,
        overrides: dict[str, Any] | None = None, force: bool = False) -> RunOutput:
    """Run one episode; write its results folder unless ``write`` is False. An existing folder is
    replaced only if clearsim wrote it and ``force`` is given -- checked before the episode runs."""
    from sim.metrics import summarise, timing
    from sim.outdir import check_folder
    from sim.results import write_results

    cfg = resolve(config, overrides)
    directory = Path(output or cfg.outputs.directory or Path("results") / cfg.name) if write else None
    if directory is not None:
        check_folder(directory, force)
    result = run_episode(cfg)
    counterfactual = run_episode(_counterfactual(cfg)).tables if cfg.outputs.counterfactual else None
    summary = summarise(cfg, result.tables, result.stats, counterfactual=counterfactual)
    if directory is not None:
        write_results(directory, cfg, result.tables, summary, timing=timing(result.stats),
                      report=cfg.outputs.report, parquet=cfg.outputs.parquet, force=force)
    return RunOutput(result, summary, directory)


@dataclass
class ComparisonOutput:
    summaries: dict[str, dict[str, Any]]
    directory: Path | None


def regime_variants(config: EpisodeConfig, regimes: list[str | dict] | None) -> dict[str, EpisodeConfig]:
    """One config per regime: the same path, traders and seed; only ``margin`` differs."""
    chosen = regimes if regimes else [r.model_dump(mode="json") for r in config.compare_regimes]
    if not chosen:
        chosen = [config.margin.model_dump(mode="json")]
    variants: dict[str, EpisodeConfig] = {}
    for spec in chosen:
        try:
            margin = parse_margin_config(spec)
        except Exception as exc:  # pydantic ValidationError: name the regime that failed
            raise ConfigError(f"regime {spec!r}: {exc}") from None
        if isinstance(spec, str) and spec == config.margin.regime:
            margin = config.margin  # a bare name of the episode's own regime keeps its settings
        label = margin.regime
        k = 2
        while label in variants:
            label = f"{margin.regime}_{k}"
            k += 1
        data = config.model_dump(mode="json")
        data["margin"] = margin.model_dump(mode="json")
        data["name"] = f"{config.name}.{label}"
        variants[label] = parse_episode(data, f"{config.name} under {label}", trusted=True)
    return variants


def compare(config: EpisodeLike = None, regimes: list[str | dict] | None = None,
            output: str | Path | None = None, write: bool = True, force: bool = False) -> ComparisonOutput:
    """Run the same episode under several margin regimes; one comparison table and report."""
    from sim.metrics import summarise
    from sim.outdir import check_folder
    from sim.results import write_comparison

    cfg = resolve(config)
    variants = regime_variants(cfg, regimes)  # all validated before anything runs
    directory = None
    if write:
        directory = Path(output or (Path(cfg.outputs.directory or Path("results") / cfg.name) / "compare"))
        check_folder(directory, force)
    runs: dict[str, tuple[dict[str, Any], dict]] = {}
    for label, variant in variants.items():
        result = run_episode(variant)
        runs[label] = (summarise(variant, result.tables, result.stats), result.tables)
    if directory is not None:
        write_comparison(directory, cfg, runs, report=cfg.outputs.report, parquet=cfg.outputs.parquet, force=force)
    return ComparisonOutput({k: v[0] for k, v in runs.items()}, directory)


def sweep(grid: Any, backend: str = "local", workers: int = 1, resume: bool = False,
          output: str | Path | None = None, progress: bool = True, force: bool = False,
          retry_errors: bool = False):
    """A grid x seeds sweep; returns a pyarrow Table with one row per run (see ``sim.sweep``)."""
    from sim.sweep import sweep as run_sweep

    return run_sweep(grid, backend=backend, workers=workers, resume=resume, out=output, progress=progress,
                     force=force, retry_errors=retry_errors)
