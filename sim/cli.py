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
EXIT_RUNS_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clearsim", description="Event-driven exchange clearing simulator.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one episode and write its results folder")
    r.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    r.add_argument("--out", help="results folder (default: results/<episode name>)")
    r.add_argument("--seed", type=int, help="override the episode seed")
    r.add_argument("--regime", help="override the margin regime by name")
    r.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out")

    c = sub.add_parser("compare", help="run one episode under several margin regimes")
    c.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    c.add_argument("--regimes", help="comma-separated regime names (default: the episode's compare_regimes)")
    c.add_argument("--out", help="results folder (default: results/<episode name>/compare)")
    c.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out")

    s = sub.add_parser("sweep", help="run a grid of episodes x seeds")
    s.add_argument("grid", help="sweep YAML")
    s.add_argument("--backend", choices=("local", "ray", "dask"), default="local")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--resume", action="store_true", help="skip runs already finished")
    s.add_argument("--out", help="output Parquet table (default: the grid's output)")
    s.add_argument("--force", action="store_true", help="replace an earlier clearsim sweep table and its rows")
    s.add_argument("--retry-errors", action="store_true",
                   help="with --resume: run again every row that failed (not only infrastructure failures)")

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
    except OverflowError as exc:  # clearing.ledger.LedgerOverflowError: a drawn amount the ledger cannot hold
        print(f"clearsim: {exc}", file=sys.stderr)
        return EXIT_RUNS_FAILED


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
        out = run(cfg, output=args.out, force=args.force)
        _print_summary(console, cfg.name, out.summary, out.directory)
        return 0
    if args.command == "compare":
        from sim.api import compare, resolve

        cfg = resolve(args.episode)
        regimes = [r.strip() for r in args.regimes.split(",") if r.strip()] if args.regimes else None
        out = compare(cfg, regimes, output=args.out, force=args.force)
        _print_comparison(console, out.summaries, out.directory)
        return 0
    if args.command == "sweep":
        from sim.api import sweep

        if args.workers < 1:
            raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
        table = sweep(args.grid, backend=args.backend, workers=args.workers, resume=args.resume,
                      output=args.out, progress=True, force=args.force, retry_errors=args.retry_errors)
        failed = table.num_rows - table.column("status").to_pylist().count("ok")
        console.print(f"{table.num_rows} runs")
        if failed:
            # a sweep with failed rows is not a success: scripts and CI must see it
            print(f"clearsim: {failed} of {table.num_rows} runs failed (see the error column); --resume runs "
                  f"infrastructure failures again, --resume --retry-errors every failed run", file=sys.stderr)
            return EXIT_RUNS_FAILED
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


def _print_comparison(console, summaries: dict[str, dict], directory: Path | None) -> None:
    from rich.table import Table

    from sim.metrics import headline

    heads = {regime: headline(s) for regime, s in summaries.items()}
    keys = list(next(iter(heads.values())).keys()) if heads else []
    table = Table(title="regime comparison")
    table.add_column("metric")
    for regime in heads:
        table.add_column(regime, justify="right")
    for key in keys:
        row = []
        for regime in heads:
            value = heads[regime].get(key)
            row.append(f"{value:,.6g}" if isinstance(value, float) else str(value))
        table.add_row(key, *row)
    console.print(table)
    if directory is not None:
        console.print(f"results: {directory}/report.html")


if __name__ == "__main__":
    raise SystemExit(main())
