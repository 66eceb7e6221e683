"""One episode from a config: resolve it (a model, a YAML path or the packaged default), validate
it, run it with its no-feedback twin when configured, and write its results folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.experiment.assembled import EpisodeResult
from sim.experiment.config import load_episode, parse_episode
from sim.experiment.io import deep_merge
from sim.experiment.schema.episode import EpisodeConfig
from sim.experiment.variants import run_with_twin


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


def run(config: EpisodeLike = None, output: str | Path | None = None, write: bool = True,
        overrides: dict[str, Any] | None = None, observe: Any = None, force: bool = False) -> RunOutput:
    """Run one episode (and its no-feedback twin when configured); write its results folder unless
    ``write`` is False. ``observe`` (optional) is called with each episode as it starts (see
    ``sim.experiment.progress``). An existing folder is replaced only if clearsim wrote it and ``force`` is
    given -- checked before the episode runs."""
    from sim.core.arithmetic import profile
    from sim.experiment.metrics import timing
    from sim.experiment.outdir import check_folder
    from sim.experiment.results import write_results

    cfg = resolve(config, overrides)
    directory = Path(output or cfg.outputs.directory or Path("results") / cfg.name) if write else None
    if directory is not None:
        check_folder(directory, force)
    result, summary = run_with_twin(cfg, observe)
    if directory is not None:
        write_results(directory, cfg, result.tables, summary, timing=timing(result.stats) | {"arithmetic": profile()},
                      report=cfg.outputs.report, parquet=cfg.outputs.parquet, force=force)
    return RunOutput(result, summary, directory)
