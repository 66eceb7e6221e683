"""The ``clearsim`` command line: run, compare, sweep, validate, margin.

Every command validates its inputs completely first; a bad input prints ``field.path: reason``
to stderr and exits with status 2 without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.config import ConfigError

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clearsim", description="Event-driven exchange clearing simulator.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one episode and write its results folder")
    r.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    r.add_argument("--out", help="results folder (default: results/<episode name>)")
    r.add_argument("--seed", type=int, help="override the episode seed")
    r.add_argument("--regime", help="override the margin regime by name")

    c = sub.add_parser("compare", help="run one episode under several margin regimes")
    c.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    c.add_argument("--regimes", help="comma-separated [label=]regime items, or a YAML list of regime mappings "
                                     "(each may carry a label); default: the episode's compare_regimes")
    c.add_argument("--seeds", type=int, default=1,
                   help="paired seeds: every regime runs on the episode's seed, seed+1, ... (default 1)")
    c.add_argument("--backend", choices=("local", "ray", "dask"), default="local")
    c.add_argument("--workers", type=int, help="parallel runs (default: every core)")
    c.add_argument("--out", help="results folder (default: results/<episode name>/compare)")

    s = sub.add_parser("sweep", help="run a grid of episodes x seeds")
    s.add_argument("grid", help="sweep YAML")
    s.add_argument("--backend", choices=("local", "ray", "dask"), default="local")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--resume", action="store_true", help="skip runs already finished")
    s.add_argument("--out", help="output Parquet table (default: the grid's output)")

    v = sub.add_parser("validate", help="check an episode file without running it")
    v.add_argument("config")

    m = sub.add_parser("margin", help="IM, MM and breakdown of a portfolio under each margin regime")
    m.add_argument("portfolio")
    m.add_argument("--regime", help="one regime (default: every regime side by side)")
    m.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"clearsim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=False)
    if args.command == "validate":
        from sim.api import validate

        cfg = validate(args.config)
        console.print(f"[green]ok[/green] {args.config}: episode {cfg.name!r}, {cfg.duration:g} s, "
                      f"{len(cfg.market.instruments)} instruments, regime {cfg.margin.regime}")
        return 0
    if args.command == "margin":
        from sim.margin_cli import margin_command

        return margin_command(args.portfolio, args.regime, args.json)
    if args.command == "run":
        from sim.api import resolve, run

        overrides: dict = {}
        if args.seed is not None:
            overrides["seed"] = args.seed
        if args.regime is not None:
            overrides["margin"] = {"regime": args.regime}
        cfg = resolve(args.episode, overrides or None)
        out = run(cfg, output=args.out)
        _print_summary(console, cfg.name, out.summary, out.directory)
        return 0
    if args.command == "compare":
        from sim.api import compare, resolve
        from sim.compare import parse_regimes_option

        cfg = resolve(args.episode)
        regimes = parse_regimes_option(args.regimes) if args.regimes else None
        out = compare(cfg, regimes, output=args.out, seeds=args.seeds, backend=args.backend,
                      workers=args.workers, progress=True)
        _print_comparison(console, out, cfg.market.quote.name)
        return 0
    if args.command == "sweep":
        from sim.api import sweep

        if args.workers < 1:
            raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
        table = sweep(args.grid, backend=args.backend, workers=args.workers, resume=args.resume,
                      output=args.out, progress=True)
        console.print(f"{table.num_rows} runs")
        return 0
    raise AssertionError(args.command)


def _print_summary(console, name: str, summary: dict, directory: Path | None) -> None:
    from rich.table import Table

    from sim.metrics import headline

    table = Table(title=f"episode {name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in headline(summary).items():
        table.add_row(key, f"{value:,.6g}" if isinstance(value, float) else str(value))
    console.print(table)
    if directory is not None:
        console.print(f"results: {directory}/report.html")


def _print_comparison(console, out, quote: str) -> None:
    """The headline metrics with mean, paired interval and verdict per regime; then the group table."""
    from rich.table import Table

    from sim.compare import short_verdict
    from sim.compare_report import fmt_diff, fmt_value, unit_header

    labels = list(out.summaries)
    by = {(s["regime"], s["metric"]): s for s in out.stats}
    n = len(out.seeds)
    title = (f"regime comparison: mean of {n} paired seeds; Δ vs {labels[0]} with its 95% interval" if n > 1 else
             f"regime comparison: one seed, Δ vs {labels[0]} (no interval: run --seeds N for one)")
    table = Table(title=title)
    table.add_column("metric", min_width=24)
    for regime in labels:
        table.add_column(regime, justify="right")
    groups = []
    for key in dict.fromkeys(s["metric"] for s in out.stats):
        first = by[(labels[0], key)]
        if key.startswith("groups."):
            groups.append(key)
            continue
        row = []
        for regime in labels:
            s = by[(regime, key)]
            text = fmt_value(s["mean"], s["unit"])
            if s["verdict"] not in ("baseline", "not measured"):
                text += f"\nΔ {fmt_diff(s['diff_mean'], s['unit'])}"
                if s["diff_low"] is not None and s["verdict"] != "identical on every seed":
                    text += f" [{fmt_diff(s['diff_low'], s['unit'])}, {fmt_diff(s['diff_high'], s['unit'])}]"
                if n > 1:  # with one seed the title says there is no interval
                    text += f"\n{s['verdict']}"
            row.append(text)
        table.add_row(f"{first['label']} ({unit_header(first['unit'], quote)})", *row)
    console.print(table)
    gtable = Table(title="per group: IM / gross (ratio) and leverage allowed (gross / equity, ×)"
                         + ("; under each mean, its paired difference vs the first regime" if n > 1 else ""))
    gtable.add_column("group")
    for regime in labels:
        gtable.add_column(regime, justify="right")
    for key in groups:
        if not key.endswith((".im_over_gross", ".leverage")):
            continue
        cells = [by[(r, key)] for r in labels]
        if all(c["mean"] is None or c["mean"] == 0 for c in cells):
            continue
        gtable.add_row(cells[0]["label"], *(fmt_value(c["mean"], c["unit"])
                                             + (f"\n{short_verdict(c)}" if n > 1 and short_verdict(c) else "")
                                             for c in cells))
    if gtable.row_count:
        console.print(gtable)
    if out.directory is not None:
        console.print(f"results: {out.directory}/report.html")


if __name__ == "__main__":
    raise SystemExit(main())
