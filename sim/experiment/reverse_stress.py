"""Reverse stress tests: the smallest stress that breaks the clearing house, per margin regime.

``reverse_stress(config, backend="local", workers=N, resume=False, output=None)``:

1. The config (``sim.experiment.reverse_stress_config``), the episode, every regime, the criterion key and
   the episode at both ends of the scale are validated before anything runs.
2. The stress family maps a scalar s to an episode: each listed dotted config path moves linearly
   from its value at s = 0 to its value at s = 1 (both ends integers: rounded to an integer).
3. Per (regime, seed) -- a *line* -- the search evaluates ``scan_points`` evenly spaced scales over
   [low, high]; the first scale that breaks and the one before it bracket the breaking point (a
   line that never breaks *holds*; one that breaks at ``low`` *broke at low*). Each further round
   evaluates ``points_per_round`` evenly spaced scales inside every open bracket and keeps the
   sub-interval below the first that breaks, until the bracket is at most ``tolerance`` wide.
   Every round's episodes, all lines together, run in parallel on the sweep backends
   (``sim.experiment.sweep.execute``: local process pool, Ray or Dask).
4. Each finished episode's row is written to ``<output>.parts/`` as it finishes (synced in batches,
   ``sim.experiment.parts``);
   ``resume=True`` reuses rows whose config is unchanged, so an interrupted search resumed walks
   the same brackets without re-running them.
5. The breaking point of a line is the upper end of its final bracket (the smallest scale seen to
   break, within ``tolerance`` of the crossing). Per regime: median, mean, min, max over seeds, the
   ``confidence`` band (empirical quantiles over seeds) and a Student-t interval for the mean;
   the episode at the median seed's breaking point is run again and written in full.

Results folder (atomic): ``summary.json``, ``evaluations.parquet`` (every episode run: regime,
scale, seed and its flattened summary, as a sweep table), ``config.yaml``, ``report.html`` and
``<regime>/breaking_episode/`` (a ``clearsim run`` results folder).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from sim.experiment.config import PACKAGED_DEFAULT, format_validation_error, parse_episode
from sim.experiment.errors import ConfigError
from sim.experiment.io import read_yaml
from sim.experiment.reverse_stress_config import ReverseStressConfig, parse_criterion

__all__ = ["reverse_stress", "prepare", "check_summary_key", "check_group_key", "stressed_episode",
           "ReverseStressOutput"]

RUNNER = "sim.experiment.sweep:run_and_summarise"
_OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                   ">=": operator.ge}


# ------------------------------------------------------------------------------------ validation
def check_summary_key(key: str, empty_summary: Mapping[str, Any],
                      twin_summary: Mapping[str, Any] | None = None, groups: Sequence[str] | None = None) -> None:
    """Raise ``ConfigError`` unless ``key`` names a number in an episode summary.

    ``empty_summary`` is the summary of the episode with no events: every key it has is known. A
    key that reaches into a mapping that is empty there (e.g. ``groups.<group>``, filled from the
    run's accounts) is accepted; a run that leaves it absent has no value for it, and the search
    reports that line as an error rather than read a number it never computed.
    ``twin_summary``: the same with a no-feedback twin; a key only it has is measured against a
    twin, which the search's episodes never run, so the criterion could never be evaluated.
    ``groups``: the episode's population group names; a ``groups.<name>.<figure>`` key must name one
    of them and a figure every group has (``check_group_key``).
    """
    from sim.experiment.metrics import flatten

    if groups is not None:
        check_group_key(key, groups)
    if twin_summary is not None and key not in flatten(empty_summary) and key in flatten(twin_summary):
        raise ConfigError(f"criterion: {key!r} is measured against the episode's no-feedback twin, which a "
                          f"reverse stress search does not run, so it would have no value; choose a key of the "
                          f"episode's own summary (e.g. insurance_fund.min, bad_debt.total)")
    node: Any = empty_summary
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, Mapping) and not node:
            return  # data-dependent section
        if not isinstance(node, Mapping):
            raise ConfigError(f"criterion: {'.'.join(parts[:depth])} is a value, not a section, so {key!r} "
                              f"does not exist")
        if part not in node:
            import difflib

            known = [k for k in flatten(empty_summary) if not isinstance(flatten(empty_summary)[k], list)]
            near = difflib.get_close_matches(key, known, n=4, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; known keys include {', '.join(known[:12])}, ..."
            raise ConfigError(f"criterion: {key!r} is not a key of an episode summary{hint}")
        node = node[part]
    if isinstance(node, Mapping):
        raise ConfigError(f"criterion: {key!r} is a section of the summary; name one of its numbers "
                          f"({', '.join(list(node)[:8])})")
    if isinstance(node, (list, str, bool)):
        raise ConfigError(f"criterion: {key!r} is not a number in the summary")


def check_group_key(key: str, groups: Sequence[str]) -> None:
    """Raise ``ConfigError`` unless a ``groups.<name>.<figure>`` key names one of the population
    ``groups`` and a number every group's summary has (other keys pass).

    The empty summary has no groups -- they are filled from a run's accounts -- so without this a
    misspelt group passed the up-front check and was found only when the first episodes came back,
    as an error on every line. A configured group with no accounts at some scale (``count`` stressed
    to 0) passes: its absence there is the run's, reported on that line."""
    from sim.experiment.metrics.groups import GROUP_FIELDS

    if not key.startswith("groups."):
        return
    figures = [f for f in GROUP_FIELDS if f != "agent_type"]  # agent_type is the group's type, a word
    rest = key[len("groups."):]
    for name in sorted(groups, key=len, reverse=True):  # longest first: a group name may hold a dot
        if rest == name:
            raise ConfigError(f"criterion: {key!r} is a group's section of the summary; name one of its numbers "
                              f"({', '.join(figures)})")
        if rest.startswith(f"{name}."):
            figure = rest[len(name) + 1:]
            if figure not in figures:
                raise ConfigError(f"criterion: {key!r}: {figure!r} is not a number of a group's summary; choose "
                                  f"one of {', '.join(figures)}")
            return
    import difflib

    known = ", ".join(groups) if groups else "none (it has no population groups)"
    near = difflib.get_close_matches(rest.split(".")[0], list(groups), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise ConfigError(f"criterion: {key!r} names no population group of the episode (its groups: {known}){hint}")


def _value(summary_flat: Mapping[str, Any], key: str) -> float | None:
    """``key``'s value in a run's flattened summary; None where the run did not compute it (absent:
    a twin-only figure, a section this run did not fill) or it is undefined (null) -- never a
    number it does not have."""
    v = summary_flat.get(key)
    return None if v is None else float(v)


def _stress_value(ends: tuple[float, float], s: float) -> float | int:
    a, b = ends
    v = a + s * (b - a)
    return int(round(v)) if isinstance(a, int) and isinstance(b, int) else float(v)


def stressed_episode(data: Mapping[str, Any], stress: Mapping[str, tuple[float, float]], s: float) -> dict[str, Any]:
    """The episode dict at scale ``s`` (a deep copy; ``data`` is not changed)."""
    from sim.experiment.io import set_path

    out = copy.deepcopy(dict(data))
    for path, ends in stress.items():
        set_path(out, path, _stress_value(ends, s))
    return out


@dataclass(slots=True)
class _Plan:
    config: ReverseStressConfig
    variants: dict[str, dict[str, Any]]  # regime label -> episode dict (margin set)
    key: str
    op: str
    threshold: float
    seeds: list[int]


def load(source: ReverseStressConfig | Mapping[str, Any] | str | Path) -> tuple[ReverseStressConfig, Path, str]:
    if isinstance(source, ReverseStressConfig):
        return source, Path.cwd(), "<reverse-stress>"
    if isinstance(source, Mapping):
        data, root, where = dict(source), Path.cwd(), "<reverse-stress>"
    else:
        data, root, where = read_yaml(Path(source)), Path(source).parent, str(source)
    try:
        return ReverseStressConfig.model_validate(data), root, where
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, ReverseStressConfig)) from None


def prepare(source: ReverseStressConfig | Mapping[str, Any] | str | Path) -> _Plan:
    """Validate everything (raises ``ConfigError`` naming the field and the reason)."""
    from sim.experiment.variants import regime_variants
    from sim.experiment.metrics import summarise

    cfg, root, where = load(source)
    if cfg.episode is None:
        episode_path = PACKAGED_DEFAULT
    else:
        episode_path = Path(cfg.episode) if Path(cfg.episode).is_absolute() else root / cfg.episode
    try:
        base = parse_episode(read_yaml(episode_path), str(episode_path))
    except ConfigError as exc:
        raise ConfigError(f"{where}: episode: {exc}") from None
    key, op, threshold = parse_criterion(cfg.criterion)
    # every group name the criterion could read: the regimes and the stress change no group's name
    groups = [g.group_name for g in base.population.groups]
    check_summary_key(key, summarise(base, {}, {}), summarise(base, {}, {}, counterfactual={}), groups)
    specs = cfg.regimes or [base.margin.model_dump(mode="json")]
    variants = {label: v.model_dump(mode="json") for label, v in regime_variants(base, specs).items()}
    for label, data in variants.items():
        for s in (cfg.scale.low, cfg.scale.high):
            try:
                episode = stressed_episode(data, cfg.stress, s)
            except KeyError as exc:
                raise ConfigError(f"{where}: stress: {exc.args[0]}") from None
            try:
                parse_episode(episode, f"{where}: the episode under {label} at scale {s:g}")
            except ConfigError as exc:
                raise ConfigError(str(exc)) from None
    return _Plan(cfg, variants, key, op, threshold, cfg.seed_list())


# ------------------------------------------------------------------------------------ the search
def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class _Line:
    regime: str
    seed: int
    status: str = "scanning"  # scanning | bracketed | held | broken_at_low | error
    lo: float | None = None  # largest scale seen to hold below the bracket
    hi: float | None = None  # smallest scale seen to break
    error: str | None = None

    def bracket(self) -> tuple[float, float]:
        """(lo, hi) of a "bracketed" line, which has both ends (the scan sets them with the status)."""
        assert self.lo is not None and self.hi is not None
        return self.lo, self.hi


@dataclass(slots=True)
class ReverseStressOutput:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    directory: Path | None
    lines: list[_Line] = field(default_factory=list)


class _Search:
    def __init__(self, plan: _Plan, backend: str, workers: int, parts: Path, resume: bool, client: Any,
                 progress: Callable[[str], None] | None) -> None:
        self.plan, self.backend, self.workers, self.parts, self.client = plan, backend, workers, parts, client
        self.progress = progress
        self.rows: dict[str, dict[str, Any]] = {}
        self.cached: dict[str, dict[str, Any]] = {}
        if resume:
            from sim.experiment.parts import Rows

            self.cached = {rid: row for rid, row in Rows(parts).items() if row.get("status") == "ok"}
        self.episodes = 0

    def task(self, regime: str, seed: int, scale: float) -> dict[str, Any]:
        from sim.experiment.sweep import run_id_of

        data = stressed_episode(self.plan.variants[regime], self.plan.config.stress, scale)
        data["seed"] = seed
        point = {"regime": regime, "scale": scale}
        return {"run_id": run_id_of(point, seed), "point": point, "seed": seed, "data": data,
                "config_hash": _hash(data), "runner": RUNNER}

    def evaluate(self, wanted: list[tuple[str, int, float]]) -> None:
        from sim.experiment.parts import PartWriter
        from sim.experiment.sweep import error_row, execute, run_task

        todo = []
        for regime, seed, scale in wanted:
            t = self.task(regime, seed, scale)
            if t["run_id"] in self.rows:
                continue
            hit = self.cached.get(t["run_id"])
            if hit is not None and hit.get("config_hash") == t["config_hash"]:
                self.rows[t["run_id"]] = hit
                continue
            todo.append(t)
        if not todo:
            return
        if self.progress:
            self.progress(f"{len(todo)} episodes ({len(wanted) - len(todo)} already known)")

        # a segment per round: its rows are synced in batches and all of them when the round ends
        with PartWriter(self.parts) as writer:
            def on_done(row: dict[str, Any]) -> None:
                self.rows[row["run_id"]] = writer.write(row)

            # sweep-shaped tasks: one episode + its flattened summary per worker call, a dead worker an error row
            execute(todo, self.backend, self.workers, on_done, client=self.client, fn=run_task, error_row=error_row)
        self.episodes += len(todo)

    def outcome(self, regime: str, seed: int, scale: float) -> tuple[bool | None, str | None]:
        """(broken, error) of an evaluated point."""
        row = self.rows[self.task(regime, seed, scale)["run_id"]]
        if row["status"] != "ok":
            return None, row.get("error") or "failed"
        if self.plan.key not in row["metrics"]:
            # a key of a section this run did not fill: there is no number to compare, and reading
            # one in (0) would decide the line on a figure nobody measured
            return None, (f"criterion: {self.plan.key!r} is not in this episode's summary (its section was not "
                          f"filled), so the criterion cannot be evaluated")
        v = _value(row["metrics"], self.plan.key)
        if v is None:
            return False, None  # computed but undefined (e.g. no fund series): the criterion cannot hold
        return _OPS[self.plan.op](v, self.plan.threshold), None

    def _first_break(self, ln: _Line, xs: list[float]) -> float | None:
        """The first of the ascending scales ``xs`` at which the line breaks (None: it held at all of
        them); an evaluation that failed ends the line with status ``error``."""
        for x in xs:
            broken, err = self.outcome(ln.regime, ln.seed, x)
            if err is not None:
                ln.status, ln.error = "error", err
                return None
            if broken:
                return x
        return None

    def run(self) -> list[_Line]:
        cfg = self.plan.config
        lines = [_Line(r, s) for r in self.plan.variants for s in self.plan.seeds]
        grid = [float(x) for x in np.linspace(cfg.scale.low, cfg.scale.high, cfg.scan_points)]
        self.evaluate([(ln.regime, ln.seed, x) for ln in lines for x in grid])
        for ln in lines:
            hi = self._first_break(ln, grid)
            if ln.status == "error":
                continue
            if hi is None:
                ln.status, ln.lo = "held", grid[-1]
            else:
                ln.hi, ln.lo = hi, _last_below(grid, hi)
                ln.status = "broken_at_low" if ln.lo is None else "bracketed"
        k = cfg.points_per_round
        for _round in range(cfg.max_rounds):
            brackets = [(ln, *ln.bracket()) for ln in lines if ln.status == "bracketed"]  # (line, lo, hi)
            open_ = [(ln, lo, hi) for ln, lo, hi in brackets if hi - lo > cfg.tolerance]
            if not open_:
                break
            inner = {id(ln): [lo + (hi - lo) * (i + 1) / (k + 1) for i in range(k)] for ln, lo, hi in open_}
            self.evaluate([(ln.regime, ln.seed, x) for ln, _, _ in open_ for x in inner[id(ln)]])
            for ln, lo, _ in open_:
                xs = inner[id(ln)]
                hi = self._first_break(ln, xs)
                if ln.status == "error":
                    continue
                if hi is None:
                    ln.lo = xs[-1]
                else:
                    ln.hi = hi
                    ln.lo = _last_below(xs, hi, lo)
        return lines


def _last_below(xs: list[float], x: float, default: float | None = None) -> float | None:
    """The largest of the ascending ``xs`` below ``x`` (``default`` when none is)."""
    below = [v for v in xs if v < x]
    return below[-1] if below else default


# ------------------------------------------------------------------------------------ results
def _band(values: np.ndarray, confidence: float) -> dict[str, Any]:
    from scipy.stats import t as student_t

    if values.size == 0:
        return {"seeds": 0, "median": None, "mean": None, "min": None, "max": None, "band": None,
                "mean_interval": None}
    q = (1.0 - confidence) / 2.0
    out: dict[str, Any] = {"seeds": int(values.size), "median": float(np.median(values)),
                           "mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
                           "band": [float(np.quantile(values, q)), float(np.quantile(values, 1.0 - q))],
                           "mean_interval": None}
    if values.size >= 2:
        half = float(student_t.ppf(1.0 - q, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
        out["mean_interval"] = [out["mean"] - half, out["mean"] + half]
    return out


def summarise_search(plan: _Plan, search: _Search, lines: list[_Line]) -> dict[str, Any]:
    from sim.experiment.metrics import HEADLINE, rnd

    cfg = plan.config
    measures = [plan.key] + [k for k, _ in HEADLINE if k != plan.key]
    out: dict[str, Any] = {"name": cfg.name, "criterion": cfg.criterion, "stress": {k: list(v) for k, v in cfg.stress.items()},
                           "scale": cfg.scale.model_dump(), "tolerance": cfg.tolerance, "confidence": cfg.confidence,
                           "seeds": plan.seeds, "episodes": len(search.rows), "regimes": {}}
    grid = [float(x) for x in np.linspace(cfg.scale.low, cfg.scale.high, cfg.scan_points)]
    for label in plan.variants:
        mine = [ln for ln in lines if ln.regime == label]
        points = np.array([ln.hi for ln in mine if ln.status == "bracketed"], dtype=np.float64)
        result: dict[str, Any] = {
            "breaking_scale": _band(points, cfg.confidence),
            "by_seed": {str(ln.seed): {"status": ln.status, "breaking_scale": ln.hi, "last_holding_scale": ln.lo,
                                       **({"error": ln.error.strip().splitlines()[-1]} if ln.error else {})}
                        for ln in mine},
            "held": sum(ln.status == "held" for ln in mine),
            "broken_at_low": sum(ln.status == "broken_at_low" for ln in mine),
            "errors": sum(ln.status == "error" for ln in mine),
        }
        median = result["breaking_scale"]["median"]
        result["stress_at_breaking_point"] = None if median is None else {
            path: _stress_value(ends, median) for path, ends in cfg.stress.items()}
        profile = []
        for x in grid:  # how the measures grow along the scale: the scan, every seed
            found = [search.rows.get(search.task(label, s, x)["run_id"]) for s in plan.seeds]
            rows = [r for r in found if r is not None and r["status"] == "ok"]
            entry: dict[str, Any] = {"scale": x, "broken": 0}
            for key in measures:
                vals = [v for v in (_value(r["metrics"], key) for r in rows) if v is not None]
                entry[key] = float(np.median(vals)) if vals else None
            entry["broken"] = sum(bool(search.outcome(label, s, x)[0]) for s in plan.seeds
                                  if search.task(label, s, x)["run_id"] in search.rows)
            profile.append(entry)
        result["profile"] = profile
        out["regimes"][label] = result
    return rnd(out)


def _breaking_seed(lines: list[_Line], label: str) -> _Line | None:
    """The line whose breaking point is the (lower) median over seeds."""
    mine = sorted((ln for ln in lines if ln.regime == label and ln.status == "bracketed"), key=lambda ln: (ln.hi, ln.seed))
    return mine[(len(mine) - 1) // 2] if mine else None


def _claim_parts(parts: Path, resume: bool, force: bool = False) -> None:
    """The episodes folder beside the output, before anything runs: with ``resume`` its episodes are
    read and added to, if it is an earlier search's (its marker) -- any other non-empty folder is
    refused; without, an earlier search's folder is replaced only with ``force``, and any other is
    refused, never removed (``sim.experiment.outdir.claim_rows_folder``)."""
    from sim.experiment.outdir import claim_rows_folder

    claim_rows_folder(parts, PARTS_KIND, resume, what="reverse-stress episodes folder", force=force,
                      hint="pass --resume (resume=True) to continue that search or --force (force=True) to "
                           "start it over")


PARTS_KIND = "reverse-stress-parts"
KIND = "reverse-stress"  # the results folder's marker


def reverse_stress(source: ReverseStressConfig | Mapping[str, Any] | str | Path, backend: str = "local",
                   workers: int | None = None, resume: bool = False, output: str | Path | None = None,
                   write: bool = True, client: Any = None,
                   progress: Callable[[str], None] | None = None, force: bool = False) -> ReverseStressOutput:
    """Run a reverse stress test; see the module docstring. An existing results folder is replaced
    only if clearsim wrote it and ``force`` is given -- or, with ``resume``, if it is an earlier
    reverse stress search's (resuming continues that search, as a sweep's ``--resume`` replaces its
    table); both checked before anything runs (``sim.experiment.outdir``)."""
    import os

    from sim.experiment.outdir import check_folder
    from sim.experiment.sweep import parts_dir, require_backend

    if backend not in ("local", "ray", "dask"):
        raise ConfigError(f"backend: must be local, ray or dask, not {backend!r}")
    require_backend(backend)  # a missing ray / dask extra is named before anything is written
    plan = prepare(source)
    cfg = plan.config
    workers = max(1, int(workers or os.cpu_count() or 1))
    out = Path(output or cfg.output or Path("results") / "reverse_stress" / cfg.name)
    if write:  # the results folder first: a refusal there leaves the episodes folder as it was
        check_folder(out, force, same_kind=KIND if resume else None)
    parts = parts_dir(out)
    _claim_parts(parts, resume, force)
    search = _Search(plan, backend, workers, parts, resume, client, progress)
    lines = search.run()
    summary = summarise_search(plan, search, lines)
    rows = sorted(search.rows.values(), key=lambda r: (r["point"]["regime"], r["point"]["scale"], r["seed"]))
    directory = None
    if write:
        directory = _write(out, plan, summary, rows, lines, force=force, resume=resume)
    return ReverseStressOutput(summary, rows, directory, lines)


def _write(directory: Path, plan: _Plan, summary: dict[str, Any], rows: list[dict[str, Any]], lines: list[_Line],
           force: bool = False, resume: bool = False) -> Path:
    import pyarrow.parquet as pq

    from sim.experiment.runs import run
    from sim.experiment.results import _atomic_folder
    from sim.experiment.io import write_text as _write_text, dump_json
    from sim.experiment.sweep import assemble_table

    cfg = plan.config
    # an earlier clearsim folder only with force -- or, resuming, this command's own (the search it
    # continues); a user's folder never (sim.experiment.outdir)
    with _atomic_folder(directory, KIND, force, replace_same_kind=resume) as tmp:
        for label in plan.variants:
            ln = _breaking_seed(lines, label)
            if ln is None:
                continue
            data = stressed_episode(plan.variants[label], cfg.stress, ln.bracket()[1])
            data["seed"] = ln.seed
            folder = tmp / label / "breaking_episode"
            run(parse_episode(data), output=folder)
            summary["regimes"][label]["breaking_episode"] = {"seed": ln.seed, "scale": ln.hi,
                                                             "folder": f"{label}/breaking_episode"}
        _write_text(tmp / "summary.json", dump_json(summary))
        _write_text(tmp / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        table = assemble_table(rows, ["regime", "scale"])
        pq.write_table(table, tmp / "evaluations.parquet")
        if cfg.report:
            from sim.experiment.reverse_stress_report import reverse_stress_report

            quote = str(next(iter(plan.variants.values()))["market"]["quote"]["name"])
            _write_text(tmp / "report.html", reverse_stress_report(cfg, summary, rows, plan.key, quote))
    return directory.absolute()
