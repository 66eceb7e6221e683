"""CLI conventions (issue 16): one error prefix, --version, --quiet, --json, Ctrl-C -> 130, --regime
and --set, validate for every file kind, config rules users rely on (repeated keys, bool vs number,
unknown union tags, starts after the end), progress that changes nothing, and the README's commands.
Sweeps from the CLI and from scripts: tests/test_sweep_surfaces.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import sim.experiment.runs
from sim.experiment.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, _episode, _parser, main
from sim.experiment.errors import ConfigError
from sim.experiment.config import apply_sets, load_episode
from sim.experiment.io import parse_yaml
from clearing.margin.config import REGIME_NAMES
from test_cli import SMALL, write

ROOT = Path(__file__).resolve().parents[2]
EPISODES = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "bench").glob("*.yaml"))


def _args(*argv: str):
    return _parser().parse_args(list(argv))


# ------------------------------------------------------------------------------------ conventions
def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("clearsim ")


def _exit_code(argv: list[str]) -> int:
    """main's return value, or the status argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["sweep"], "the following arguments are required: grid"),
    (["run", "missing.yaml"], "missing.yaml: no such file"),
    (["run", "--regime", "bogus"], "unknown regime 'bogus'; choose one of: standard, standard_isolated, span"),
])
def test_every_error_has_the_one_prefix_on_stderr(capsys, argv, needle):
    code = _exit_code(argv)
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT and out == ""
    lines = [line for line in err.splitlines() if line.startswith("clearsim")]
    assert len(lines) == 1 and lines[0].startswith("clearsim: error: ") and needle in err, err
    assert "Traceback" not in err


def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.experiment.runs, "run", interrupted)
    assert main(["run", str(write(tmp_path, SMALL)), "--out", str(tmp_path / "r")]) == EXIT_INTERRUPTED
    out, err = capsys.readouterr()
    assert err == "clearsim: interrupted\n" and out == ""


def test_json_and_quiet(tmp_path, capsys):
    data = dict(SMALL, duration=90.0, outputs={"sample_interval": 30.0, "report": False})
    path = write(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "a"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["episode"] == "small" and doc["directory"] == str((tmp_path / "a").absolute())
    assert doc["summary"] == json.loads((tmp_path / "a" / "summary.json").read_text())
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["run", str(path), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "bad debt (USD)" in out and "None" not in out and "e+0" not in out


def test_validate_reports_each_file_kind(capsys):
    assert main(["validate", str(ROOT / "configs" / "sweeps" / "small.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "sweep"
    assert main(["validate", str(ROOT / "configs" / "portfolios" / "span_mcmillan.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "portfolio"
    assert main(["validate", str(ROOT / "configs" / "mango.yaml")]) == 0
    assert "episode 'mango'" in capsys.readouterr().out


def test_validate_refuses_a_bad_portfolio_and_a_bad_sweep(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"underlyings": {"BTC": {"price": -1, "vol": 0.5}},
                                   "instruments": [{"symbol": "P", "kind": "perpetual", "underlying": "BTC"}],
                                   "accounts": [{"name": "a", "positions": {"P": 1}}]}))
    assert main(["validate", str(bad)]) == EXIT_BAD_INPUT
    assert "underlyings.BTC.price" in capsys.readouterr().err
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "s", "base": str(write(tmp_path, SMALL)),
                                          "grid": {"margin": ["standard", "bogus"]}}))
    assert main(["validate", str(sweep_file)]) == EXIT_BAD_INPUT
    assert "unknown regime 'bogus'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ --regime / --set
@pytest.mark.parametrize("episode", EPISODES, ids=lambda p: p.stem)
def test_regime_flag_validates_for_every_regime_on_every_shipped_episode(episode):
    own = load_episode(episode)
    for name in REGIME_NAMES:
        cfg = _episode(_args("run", str(episode), "--regime", name))
        assert cfg.margin.regime == name
        if name != own.margin.regime:  # replaced by the regime's defaults, not merged into the old block
            assert cfg.margin == type(cfg.margin)(regime=name)
        else:  # the episode's own tuned settings are kept
            assert cfg.margin == own.margin


def test_set_overrides_margin_population_and_shocks():
    episode = str(ROOT / "configs" / "default.yaml")
    cfg = _episode(_args("run", episode, "--set", "margin.tiers.0.im_rate=0.07", "--set",
                         "population.groups.1.count=3", "--set", "paths.shocks.0.drop=0.5", "--set",
                         "outputs.report=false", "--seed", "9"))
    assert cfg.margin.tiers[0].im_rate == 0.07 and cfg.population.groups[1].count == 3
    assert cfg.paths.shocks[0].drop == 0.5 and cfg.outputs.report is False and cfg.seed == 9
    with pytest.raises(ConfigError, match=r"--set margin.tiers.9.im_rate: .*out of range"):
        _episode(_args("run", episode, "--set", "margin.tiers.9.im_rate=0.1"))
    with pytest.raises(ConfigError, match="expected path=value"):
        apply_sets({}, ["no_equals_sign"])


# ------------------------------------------------------------------------------------ config rules
def test_a_repeated_yaml_key_is_an_error_naming_the_key_and_line(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nseed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'seed' \(first given on line 2\)"):
        parse_yaml(path.read_text(), str(path))
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    assert "duplicate key 'seed'" in capsys.readouterr().err
    nested = "margin:\n  regime: standard\n  regime: span\n"
    with pytest.raises(ConfigError, match="duplicate key 'regime'"):
        parse_yaml(nested, "x")
    assert parse_yaml("a: {b: 1}\nc: {b: 2}\n", "x") == {"a": {"b": 1}, "c": {"b": 2}}  # same key, two mappings


@pytest.mark.parametrize("path, value, needle", [
    ("outputs.report", "yes", "report: expected true or false, got 'yes'"),
    ("outputs.report", 1, "report: expected true or false, got 1"),
    ("clearing.loss_absorption.insurance_fund", True, "insurance_fund: expected a number, got the boolean true"),
    ("seed", False, "seed: expected a number, got the boolean false"),
])
def test_bool_and_number_fields_do_not_stand_in_for_each_other(tmp_path, path, value, needle):
    data = json.loads(json.dumps(SMALL))
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    with pytest.raises(ConfigError) as exc:
        load_episode(write(tmp_path, data))
    assert needle in str(exc.value)


def test_a_true_bool_and_a_whole_number_still_pass(tmp_path):
    data = dict(SMALL, outputs={"sample_interval": 20, "report": True})  # an int where a float is meant
    cfg = load_episode(write(tmp_path, data))
    assert cfg.outputs.sample_interval == 20.0 and cfg.outputs.report is True


def test_shock_or_agents_starting_after_the_end_are_refused(tmp_path):
    late_shock = dict(SMALL, duration=50.0)  # SMALL's crash starts at 60 s
    with pytest.raises(ConfigError, match=r"paths.shocks.0 \(crash\): starts at 60 s, at or after the end"):
        load_episode(write(tmp_path, late_shock))
    data = json.loads(json.dumps(SMALL))
    data["population"]["groups"][1]["start"] = 240.0
    with pytest.raises(ConfigError, match=r"population.groups.1 \(noise\): starts at 240 s"):
        load_episode(write(tmp_path, data))


def test_an_unknown_tag_names_the_choices(tmp_path):
    data = json.loads(json.dumps(SMALL))
    data["paths"]["shocks"][0]["kind"] = "meteor"
    with pytest.raises(ConfigError, match=r"unknown kind 'meteor'; choose one of: 'crash'"):
        load_episode(write(tmp_path, data))


# ------------------------------------------------------------------------------------ the README
def _readme_commands() -> list[list[str]]:
    import re
    import shlex

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("clearsim "):
                out.append(shlex.split(line.replace("[", "").replace("]", ""))[1:])  # optional parts included
    return out


def test_readme_commands_parse_and_their_inputs_validate(capsys, monkeypatch):
    """Every `clearsim ...` line in the README: its arguments parse and its files validate (episodes
    with their --regime/--set, backtest and reverse-stress files; margin commands run, they are quick)."""
    monkeypatch.chdir(ROOT)
    commands = _readme_commands()
    assert len(commands) >= 8
    for argv in commands:
        args = _parser().parse_args(argv)
        if args.command in ("run", "compare"):
            _episode(args)
        elif args.command == "sweep":
            from sim.experiment.sweep import plan

            plan(args.grid)
        elif args.command == "backtest":  # validated, not run: ten years of daily margin runs
            from sim.experiment.backtest.run import prepare

            prepare(args.config)
        elif args.command == "reverse-stress":  # validated, not run: a search over many episodes
            from sim.experiment.reverse_stress import prepare

            prepare(args.config)
        else:
            assert main(argv) == 0, (argv, capsys.readouterr().err)


def test_progress_shows_simulated_time_and_changes_no_result(tmp_path):
    import io

    from rich.console import Console

    from sim.experiment.runs import run
    from sim.experiment.config import parse_episode
    from sim.experiment.progress import EpisodeProgress

    cfg = parse_episode(dict(SMALL, duration=120.0))
    screen = io.StringIO()
    with EpisodeProgress(True, console=Console(file=screen, force_terminal=True, width=120)) as progress:
        watched = run(cfg, write=False, observe=progress.observe("small"))
    plain = run(cfg, write=False)
    assert watched.summary == plain.summary
    assert watched.result.stats["events"] == plain.result.stats["events"]
    assert "small" in screen.getvalue()
    quiet = EpisodeProgress(False)
    assert quiet.observe("x") is None  # disabled: the run takes no callback at all


def test_every_unit_rule_of_the_headline_names_a_headline_figure():
    """The unit sets must follow the metrics' renames: a key that no longer exists would leave its
    replacement shown without its currency or % (capital_efficiency -> im_over_gross did)."""
    from sim.experiment.headline import MONEY_KEYS, PERCENT_KEYS
    from sim.experiment.metrics import HEADLINE

    keys = {key for key, _label in HEADLINE}
    assert not (MONEY_KEYS | PERCENT_KEYS) - keys
    assert {k for k in keys if k.startswith(("losses.who_paid.", "losses.borne_by"))} <= MONEY_KEYS


def test_every_option_and_argument_says_what_it_is_for():
    """`clearsim <command> --help` describes everything a command takes: no option or argument
    without a help text (three --backend and a --workers once had none)."""
    import argparse

    from sim.experiment.cli import _parser

    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {'/'.join(action.option_strings) or action.dest}"
            for name, sub in commands.choices.items() for action in sub._actions
            if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    assert not bare, bare
