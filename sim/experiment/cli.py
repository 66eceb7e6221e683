"""The ``clearsim`` command line: run, compare, sweep, validate, margin, backtest, reverse-stress.

Conventions: every command validates its inputs completely first; a bad input prints one
``clearsim: error: field.path: reason`` to stderr and exits with status 2 without writing anything.
``--quiet`` prints nothing but errors, ``--json`` prints machine-readable output on stdout (and no
progress), ``--version`` prints the version. Ctrl-C exits with status 130 and one line. A sweep in
which any run failed exits with status 1 after writing its table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sim.experiment.allocator import keep_freed_memory
from sim.experiment.errors import ConfigError, error_line

if TYPE_CHECKING:
    from rich.console import Console

    from sim.experiment.api import ComparisonOutput
    from sim.experiment.schema.episode import EpisodeConfig

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("clearsim")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


class _Parser(argparse.ArgumentParser):
    """argparse with the one error prefix (``clearsim: error: ...``, not ``clearsim run: error:``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, error_line(message) + "\n")


def _parser() -> argparse.ArgumentParser:
    # A _Parser like the subcommands it is a parent of: argparse's add_parser takes parents of the
    # parser_class it builds. A parent only lends its arguments, so its error() is never called.
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout (no progress)")

    p = _Parser(prog="clearsim", description="Event-driven exchange clearing simulator.")
    p.add_argument("--version", action="version", version=f"clearsim {version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def episode_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--seed", type=int, help="override the episode seed")
        q.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override any field, e.g. --set margin.tiers.0.im_rate=0.05 "
                            "--set population.groups.1.count=50 --set paths.shocks.0.drop=0.3 (repeatable)")

    r = sub.add_parser("run", parents=[common], help="run one episode and write its results folder")
    r.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    r.add_argument("--out", help="results folder (default: results/<episode name>)")
    r.add_argument("--regime", help="replace the margin block with this regime's defaults (the episode's own "
                                    "settings are kept if it already uses that regime)")
    episode_options(r)
    r.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out")

    c = sub.add_parser("compare", parents=[common], help="run one episode under several margin regimes")
    c.add_argument("episode", nargs="?", help="episode YAML (default: the packaged default episode)")
    c.add_argument("--regimes", help="comma-separated [label=]regime items, or a YAML list of regime mappings "
                                     "(each may carry a label); default: the episode's compare_regimes")
    c.add_argument("--seeds", type=int, default=1,
                   help="paired seeds: every regime runs on the episode's seed, seed+1, ... (default 1)")
    c.add_argument("--backend", choices=("local", "ray", "dask"), default="local",
                   help="where the runs go: a local process pool, Ray or Dask (default: local)")
    c.add_argument("--workers", type=int, help="parallel runs (default: every core)")
    c.add_argument("--out", help="results folder (default: results/<episode name>/compare)")
    episode_options(c)
    c.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out")

    s = sub.add_parser("sweep", parents=[common], help="run a grid of episodes x seeds")
    s.add_argument("grid", help="sweep YAML")
    s.add_argument("--backend", choices=("local", "ray", "dask"), default="local",
                   help="where the runs go: a local process pool, Ray or Dask (default: local)")
    s.add_argument("--workers", type=int, default=1, help="parallel runs (default: 1)")
    s.add_argument("--address", help="an existing Ray or Dask cluster to run on (ray://head:10001, auto, "
                                     "tcp://scheduler:8786); needs --backend ray or dask")
    s.add_argument("--resume", action="store_true", help="skip runs already finished")
    s.add_argument("--out", help="output Parquet table (default: the grid's output)")
    s.add_argument("--report", action="store_true", help="also write <table>.html: each metric against the "
                                                          "swept parameters, seeds as bands")
    s.add_argument("--force", action="store_true", help="replace an earlier clearsim sweep table and its rows")
    s.add_argument("--retry-errors", action="store_true",
                   help="with --resume: run again every row that failed (not only infrastructure failures)")

    v = sub.add_parser("validate", parents=[common], help="check an episode, sweep, portfolio, backtest or "
                                                          "reverse-stress file without running it")
    v.add_argument("config", help="an episode, sweep, portfolio, backtest or reverse-stress YAML (which one is "
                                  "read from its keys)")

    m = sub.add_parser("margin", parents=[common], help="IM, MM and breakdown of a portfolio under each "
                                                        "margin regime")
    m.add_argument("portfolio", nargs="?", help="portfolio YAML (instruments, market, accounts); optional "
                                                "with --position")
    m.add_argument("--regime", help="one regime (default: every regime side by side)")
    m.add_argument("--position", action="append", default=[], metavar="SYMBOL=LOTS",
                   help="a position, e.g. --position BTC-PERP=+2 --position BTC-C-60000=-1 (repeatable; "
                        "instruments as in the portfolio file, or SYMBOL forms UND-PERP, UND-FUT-<days>d, "
                        "UND-C|P-<strike>[-<days>d] without one)")
    m.add_argument("--price", action="append", default=[], metavar="UND=PRICE",
                   help="underlying price for --position without a file (e.g. BTC=60000)")
    m.add_argument("--vol", action="append", default=[], metavar="UND=VOL",
                   help="underlying implied vol for --position without a file (default 0.6)")
    m.add_argument("--collateral", type=float, help="each account's equity now, quote currency (default: "
                                                     "exactly its IM under each regime)")
    m.add_argument("--breakdown", action="store_true", help="also the components of every regime and SPAN's "
                                                             "16-scenario risk array (default with --regime)")
    m.add_argument("--shock", action="append", default=[], metavar="UND=±X%,vol=±Y%",
                   help="what-if: move prices (and vols) and show the margin after, e.g. --shock BTC=-20%%,vol=+30%%")

    b = sub.add_parser("backtest", parents=[common], help="backtest margin regimes along a price path against "
                                                          "realised losses")
    b.add_argument("config", help="backtest YAML (see configs/backtest/)")
    b.add_argument("--out", help="results folder (default: the file's output, else results/backtest/<name>)")
    b.add_argument("--workers", type=int, default=1, help="processes (regime x block of portfolios tasks)")
    b.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out")

    rs = sub.add_parser("reverse-stress", parents=[common], help="search for the smallest stress that breaks the "
                                                                 "clearing house")
    rs.add_argument("config", help="reverse-stress YAML (see configs/reverse_stress/)")
    rs.add_argument("--backend", choices=("local", "ray", "dask"), default="local",
                   help="where the runs go: a local process pool, Ray or Dask (default: local)")
    rs.add_argument("--workers", type=int, default=None, help="parallel episodes (default: every core)")
    rs.add_argument("--resume", action="store_true", help="reuse the episodes an interrupted search finished")
    rs.add_argument("--out", help="results folder (default: the file's output, else results/reverse_stress/<name>)")
    rs.add_argument("--force", action="store_true", help="replace an earlier clearsim results folder at --out (and "
                                                          "start an earlier search's episodes over)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keep_freed_memory()  # the command's process is clearsim's own (sim.experiment.allocator)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OverflowError as exc:  # clearing.ledger.LedgerOverflowError: a drawn amount the ledger cannot hold
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_RUNS_FAILED
    except KeyboardInterrupt:
        print("clearsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _console(args: argparse.Namespace) -> Console:
    from rich.console import Console

    return Console(quiet=bool(args.quiet), soft_wrap=True)


def _emit_json(data: Any) -> None:
    from sim.experiment.io import dump_json

    sys.stdout.write(dump_json(data))


def _episode(args: argparse.Namespace) -> Any:
    """The episode file with --regime, --seed and --set applied, validated as one config.

    The file is loaded (and validated) as it is first, so whatever ``load_episode`` resolves
    (``extends``, paths relative to the file) is resolved the same way here; the flags then apply
    to the resolved config."""
    from sim.experiment.config import PACKAGED_DEFAULT, apply_regime, apply_sets, load_episode, parse_episode

    source = args.episode or str(PACKAGED_DEFAULT)
    cfg = load_episode(source)
    if getattr(args, "regime", None) is None and args.seed is None and not args.set:
        return cfg
    data = cfg.model_dump(mode="json")
    if getattr(args, "regime", None) is not None:
        data = apply_regime(data, args.regime)
    if args.seed is not None:
        data["seed"] = args.seed
    if args.set:
        data = apply_sets(data, args.set)
    return parse_episode(data, source, overrides=args.set)


def _dispatch(args: argparse.Namespace) -> int:
    console = _console(args)
    show_progress = not (args.quiet or args.json)
    if args.command == "validate":
        return _validate(args, console)
    if args.command == "margin":
        from sim.experiment.margin_cli import margin_command

        return margin_command(args.portfolio, args.regime, args.json, positions=args.position, prices=args.price,
                              vols=args.vol, shocks=args.shock, quiet=args.quiet, collateral=args.collateral,
                              breakdown=True if args.breakdown else None)
    if args.command == "backtest":
        return _backtest(args, console)
    if args.command == "reverse-stress":
        return _reverse_stress(args, console, show_progress)
    if args.command == "run":
        from sim.experiment.runs import run
        from sim.experiment.progress import EpisodeProgress

        cfg = _episode(args)
        runs = 2 if cfg.outputs.counterfactual else 1  # the episode and its no-feedback twin
        with EpisodeProgress(show_progress, runs=runs, description=cfg.name) as progress:
            run_out = run(cfg, output=args.out, observe=progress.observe(cfg.name), force=args.force)
        if args.json:
            _emit_json({"episode": cfg.name, "directory": str(run_out.directory), "summary": run_out.summary})
        else:
            _print_summary(console, cfg, run_out.summary, run_out.directory)
        return EXIT_OK
    if args.command == "compare":
        from sim.experiment.api import compare
        from sim.experiment.compare import parse_regimes_option

        cfg = _episode(args)
        regimes = parse_regimes_option(args.regimes) if args.regimes else None
        compare_out = compare(cfg, regimes, output=args.out, seeds=args.seeds, backend=args.backend,
                              workers=args.workers, progress=show_progress, force=args.force)
        if args.json:
            _emit_json({"episode": cfg.name, "directory": str(compare_out.directory),
                        "summaries": compare_out.summaries, "intervals": compare_out.stats})
        elif not args.quiet:
            _print_comparison(console, compare_out, cfg.market.quote.name)
        return EXIT_OK
    if args.command == "sweep":
        return _sweep(args, console, show_progress)
    raise AssertionError(args.command)


# ------------------------------------------------------------------------------------- validate
def _file_kind(data: Any) -> str:
    if isinstance(data, dict) and "grid" in data:
        return "sweep"
    if isinstance(data, dict) and "stress" in data and "criterion" in data:
        return "reverse-stress"
    if isinstance(data, dict) and "portfolios" in data and "days" in data:
        return "backtest"
    if isinstance(data, dict) and "accounts" in data and "population" not in data:
        return "portfolio"
    return "episode"


def _validate(args: argparse.Namespace, console: Console) -> int:
    from sim.experiment.fmt import counted
    from sim.experiment.io import parse_yaml

    path = Path(args.config)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    kind = _file_kind(parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    info: dict[str, Any] = {"file": str(path), "kind": kind, "ok": True}
    if kind == "sweep":
        from sim.experiment.sweep import plan

        sweep_cfg, tasks = plan(path)
        info.update(name=sweep_cfg.name, points=sweep_cfg.n_points(), seeds=len(sweep_cfg.seed_list()),
                    runs=len(tasks))
        text = (f"sweep {sweep_cfg.name!r}: {counted(sweep_cfg.n_points(), 'grid point')} x "
                f"{counted(len(sweep_cfg.seed_list()), 'seed')} = {counted(len(tasks), 'run')}, every point a valid "
                f"episode")
    elif kind == "backtest":
        from sim.experiment.backtest.run import prepare as prepare_backtest

        bt = prepare_backtest(path)
        info.update(name=bt.config.name, regimes=len(bt.regimes), portfolios=len(bt.book.names),
                    days=bt.config.days)
        text = (f"backtest {bt.config.name!r}: {counted(len(bt.regimes), 'regime')}, "
                f"{counted(len(bt.book.names), 'portfolio')}, {counted(bt.config.days, 'day')}")
    elif kind == "reverse-stress":
        from sim.experiment.reverse_stress import prepare as prepare_reverse_stress

        rs = prepare_reverse_stress(path)
        info.update(name=rs.config.name, regimes=len(rs.variants), seeds=len(rs.seeds), criterion=rs.config.criterion)
        text = (f"reverse stress {rs.config.name!r}: {counted(len(rs.variants), 'regime')} x "
                f"{counted(len(rs.seeds), 'seed')}, breaks when {rs.config.criterion}")
    elif kind == "portfolio":
        from sim.experiment.portfolio import read_portfolio

        pf = read_portfolio(path)
        info.update(name=pf.name, accounts=len(pf.accounts), instruments=len(pf.instruments))
        text = (f"portfolio {pf.name!r}: {counted(len(pf.accounts), 'account')}, "
                f"{counted(len(pf.instruments), 'instrument')}")
    else:
        from sim.experiment.runs import validate

        episode_cfg = validate(path)
        info.update(name=episode_cfg.name, duration=episode_cfg.duration,
                    instruments=len(episode_cfg.market.instruments), regime=episode_cfg.margin.regime)
        text = (f"episode {episode_cfg.name!r}, {episode_cfg.duration:,g} s, "
                f"{counted(len(episode_cfg.market.instruments), 'instrument')}, regime {episode_cfg.margin.regime}")
    if args.json:
        _emit_json(info)
    else:
        from rich.markup import escape

        console.print(f"[green]ok[/green] {escape(str(path))}: {escape(text)}")
    return EXIT_OK


# ------------------------------------------------------------------------------------- sweep
def _sweep(args: argparse.Namespace, console: Console, show_progress: bool) -> int:
    from sim.experiment.api import sweep
    from sim.experiment.sweep import load_sweep, output_path

    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    cfg, _ = load_sweep(args.grid)
    out = output_path(cfg, args.out)
    if args.address is not None and args.backend == "local":
        raise ConfigError("--address: a cluster address needs --backend ray or dask")
    table = sweep(args.grid, backend=args.backend, workers=args.workers, resume=args.resume, output=out,
                  progress=show_progress, force=args.force, retry_errors=args.retry_errors, address=args.address)
    status = table.column("status").to_pylist()
    failed = sum(1 for s in status if s != "ok")
    report = None
    if args.report:
        from sim.experiment.sweep_report import write_sweep_report

        report = write_sweep_report(table, list(cfg.grid), out.with_suffix(".html"), title=cfg.name)
    if args.json:
        _emit_json({"table": str(out.absolute()), "runs": len(status), "failed": failed,
                    "report": str(report) if report else None})
    else:
        console.print(f"{len(status):,} runs -> {out}")
        if report is not None:
            console.print(f"report: {report}")
    if failed:
        # a sweep with failed rows is not a success: scripts and CI must see it (stderr, non-zero exit)
        print(error_line(f"{failed:,} of {len(status):,} runs failed (status 'error', the traceback in the error "
                         f"column of {out}); --resume runs infrastructure failures again, --resume --retry-errors "
                         f"every failed run"), file=sys.stderr)
        return EXIT_RUNS_FAILED
    return EXIT_OK


# ------------------------------------------------------------------------------------- tables
def _headline_rows(summary: dict, quote: str) -> list[tuple[str, str]]:
    from sim.experiment.headline import rows

    return rows(summary, quote)


def _print_summary(console: Console, cfg: EpisodeConfig, summary: dict, directory: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"episode {escape(cfg.name)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in _headline_rows(summary, cfg.market.quote.name):
        table.add_row(escape(label), value)
    if not cfg.outputs.counterfactual:  # say why the twin's rows are empty, rather than leave a bare dash
        table.caption = "— against the no-feedback twin: not run (outputs.counterfactual: true runs it)"
    console.print(table)
    _print_location(console, directory)


def _print_location(console: Console, directory: Path | None) -> None:
    if directory is None:
        return
    report = Path(directory) / "report.html"
    console.print(f"results: {report if report.is_file() else directory}")


def _print_comparison(console: Console, out: ComparisonOutput, quote: str) -> None:
    """The headline metrics with mean, paired interval and verdict per regime; then the group table."""
    from rich.table import Table

    from sim.experiment.compare import short_verdict
    from sim.experiment.compare_report import unit_header
    from sim.experiment.fmt import difference, quantity

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
            text = quantity(s["mean"], s["unit"])
            if s["verdict"] not in ("baseline", "not measured"):
                text += f"\nΔ {difference(s['diff_mean'], s['unit'])}"
                if s["diff_low"] is not None and s["verdict"] != "identical on every seed":
                    text += f" [{difference(s['diff_low'], s['unit'])}, {difference(s['diff_high'], s['unit'])}]"
                if n > 1:  # with one seed the title says there is no interval
                    text += f"\n{s['verdict']}"
            row.append(text)
        table.add_row(f"{first['label']} ({unit_header(first['unit'], quote)})", *row)
    console.print(table)
    gtable = Table(title="per group: IM / gross (ratio; options at premium) and leverage held (gross / equity, ×)"
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
        gtable.add_row(cells[0]["label"], *(quantity(c["mean"], c["unit"])
                                             + (f"\n{short_verdict(c)}" if n > 1 and short_verdict(c) else "")
                                             for c in cells))
    if gtable.row_count:
        console.print(gtable)
    _print_location(console, out.directory)


# ------------------------------------------------------------------------------------- backtest
def _backtest(args: argparse.Namespace, console: Console) -> int:
    from sim.experiment.api import backtest

    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    out = backtest(args.config, output=args.out, workers=args.workers, force=args.force)
    if args.json:
        _emit_json({"backtest": out.summary.get("name"), "directory": str(out.directory) if out.directory else None,
                    "summary": out.summary})
    else:
        _print_backtest(console, out.summary, out.directory)
    return EXIT_OK


# ------------------------------------------------------------------------------------- reverse stress
def _reverse_stress(args: argparse.Namespace, console: Console, show_progress: bool) -> int:
    """Lines (regime x seed) whose episodes failed are reported; like a sweep with failed runs, the
    results are still written and the exit status is 1."""
    from sim.experiment.api import reverse_stress

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    progress = (lambda msg: console.print(f"[dim]{msg}[/dim]")) if show_progress else None
    out = reverse_stress(args.config, backend=args.backend, workers=args.workers, resume=args.resume,
                         output=args.out, progress=progress, force=args.force)
    failed = sum(int(r.get("errors") or 0) for r in out.summary["regimes"].values())
    if args.json:
        _emit_json({"reverse_stress": out.summary.get("name"),
                    "directory": str(out.directory) if out.directory else None, "failed_lines": failed,
                    "summary": out.summary})
    else:
        _print_reverse_stress(console, out.summary, out.directory)
        if failed:
            console.print(f"[red]{failed:,} regime x seed lines failed[/red] (an episode raised; see "
                          f"evaluations.parquet's error column)")
    if failed:
        if args.quiet:
            print(error_line(f"{failed} regime x seed lines failed (see {out.directory})"), file=sys.stderr)
        return EXIT_RUNS_FAILED
    return EXIT_OK


def _print_backtest(console: Console, summary: dict, directory: Path | None) -> None:
    """One row per regime. The pooled figures are over the tested portfolios (their denominators in
    the headers), the untested beside them; money in the quote currency. No figure is cut short:
    each figure column is as wide as its widest figure (or header word) and its header wraps."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text  # labels and title as Text: not read as markup

    from sim.experiment.fmt import number, quantity

    heads = ("exceedance rate (of tested × runs)", "Kupiec / Christoffersen rejects (of tested)",
             "green / yellow / red (tested)", "untested", f"largest shortfall ({summary['quote_currency']})")
    rows = []
    significance = None
    for label, r in summary["regimes"].items():
        z = r["zones"]
        significance = r["significance"]
        rows.append((label, quantity(r["exceedance_rate"], "fraction"),
                     f"{r['kupiec_rejected']:,} / {r['christoffersen_rejected']:,}",
                     f"{z['green']:,}/{z['yellow']:,}/{z['red']:,}", f"{r['untested']:,}",
                     number(r["largest_shortfall"])))
    widths = [max([cell_len(row[k]) for row in rows] + [cell_len(word) for word in head.split()])
              for k, head in enumerate(heads, start=1)]
    # the labels take the room the figures leave (a rule and two padding cells per column, and the
    # closing rule) and fold within it; at least 6 cells, so a narrow terminal still shows them
    longest = max((cell_len(row[0]) for row in rows), default=6)
    room = console.width - sum(widths) - 3 * (len(heads) + 1) - 1
    # Text that wraps (no_wrap=False, "fold"): the CLI's soft-wrapping console would not wrap a str
    caption = (f"untested: no requirement and no profit or loss on any run (a flat book), so no test of the "
               f"model; a test rejects at p < {significance:g}") if rows else ""
    table = Table(title=Text(f"backtest {summary['name']}: {summary['portfolios']:,} portfolios × "
                             f"{summary['runs']:,} runs, {100 * summary['coverage']:g}% coverage", no_wrap=False,
                             overflow="fold"),
                  caption=Text(caption, style="table.caption", no_wrap=False, overflow="fold"))
    # every column a fixed width: rich then never squeezes one to nothing to fit the others, and on
    # a terminal too narrow for them all it narrows each a little and "fold" breaks a figure over
    # two lines rather than eliding it
    table.add_column("regime", width=max(min(longest, room), min(longest, 6)), overflow="fold")
    for head, width in zip(heads, widths):
        table.add_column(head, justify="right", width=width, overflow="fold")
    for row in rows:
        table.add_row(Text(row[0]), *row[1:])
    console.print(table)
    _print_location(console, directory)


def _print_reverse_stress(console: Console, summary: dict, directory: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"reverse stress {escape(summary['name'])}: breaks when {escape(summary['criterion'])}")
    for col in ("regime", "breaking scale (median)", "band over seeds", "held", "broke at low", "errors"):
        table.add_column(col, justify="left" if col == "regime" else "right")
    for label, r in summary["regimes"].items():
        b = r["breaking_scale"]
        band = "-" if b["band"] is None else f"{b['band'][0]:.6g} - {b['band'][1]:.6g}"
        table.add_row(escape(label), "-" if b["median"] is None else f"{b['median']:.6g}", band, str(r["held"]),
                      str(r["broken_at_low"]), str(r["errors"]))
    console.print(table)
    _print_location(console, directory)


if __name__ == "__main__":
    raise SystemExit(main())
