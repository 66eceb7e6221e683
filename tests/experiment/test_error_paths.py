"""Validation errors name the path a user writes -- in YAML and in ``--set`` -- and say when the
bad value came from ``--set``.

Regressions: pydantic's discriminated-union tags were joined into the printed location
(``population.groups.2.noise.count``, ``margin.standard.tiers.0``), a path that ``--set`` could not
take (``--set population.groups.2.noise.count=5`` -> ``Extra inputs are not permitted``); and a bad
``--set`` value was blamed on the episode file (``configs/mango.yaml: invalid configuration``).
"""

from __future__ import annotations

import re

import pytest

from sim.experiment.cli import EXIT_BAD_INPUT, _episode, _parser, main
from sim.experiment.errors import ConfigError
from test_cli import SMALL, with_, write


def _printed_path(err: str) -> str:
    """The location of the one error line (``  path: reason`` or ``  path (from --set ...): reason``)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert len(lines) == 1, err
    return re.match(r"\s+([^\s:]+)", lines[0]).group(1)


def _settable(tmp_path, path: str, value: str) -> None:
    """``path`` given to --set on the good file is accepted and lands where it says."""
    good = write(tmp_path, SMALL, "good.yaml")
    args = _parser().parse_args(["run", str(good), "--set", f"{path}={value}"])
    data = _episode(args).model_dump(mode="json")
    node = data
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert str(node) == value or float(node) == float(value)


@pytest.mark.parametrize("change, expected, valid", [
    # a group (discriminated by ``type``): a plain field, and one inside a distribution (a union
    # told apart by a function, whose tags are ``number`` / ``dist`` and then ``uniform``)
    ({"population__groups__1__count": "many"}, "population.groups.1.count", "5"),
    ({"population__groups__2__entry_delay": {"dist": "uniform", "low": "soon", "high": 30.0}},
     "population.groups.2.entry_delay.low", "1.0"),
    # a margin regime (discriminated by ``regime``): a field, and a check on the whole tier
    ({"margin": {"regime": "standard", "tiers": [{"im_rate": "ten percent", "mm_rate": 0.05}]}},
     "margin.tiers.0.im_rate", "0.2"),
    ({"margin": {"regime": "standard", "tiers": [{"im_rate": 0.05, "mm_rate": 0.1}]}}, "margin.tiers.0", None),
    # a price model and a shock (discriminated by ``kind``)
    ({"paths__shocks__0__drop": "a lot"}, "paths.shocks.0.drop", "0.3"),
])
def test_the_printed_path_is_the_users_and_works_with_set(tmp_path, capsys, change, expected, valid):
    bad = write(tmp_path, with_(SMALL, **change) if "__" in next(iter(change)) else SMALL | change)
    assert main(["validate", str(bad)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert _printed_path(err) == expected, err
    for tag in (".noise.", ".leveraged.", ".standard.", ".crash.", ".dist.", ".uniform."):
        assert tag not in err, err
    if valid is not None:
        _settable(tmp_path, expected, valid)


def test_a_bad_set_value_is_reported_as_the_set_not_as_the_file(tmp_path, capsys):
    good = write(tmp_path, SMALL, "good.yaml")
    out = tmp_path / "out"
    assert main(["run", str(good), "--set", "population.groups.1.count=abc", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{good} with --set population.groups.1.count=abc: invalid configuration" in err, err
    assert "population.groups.1.count (from --set population.groups.1.count=abc): Input should be a valid integer" \
        in err, err
    assert not out.exists()
    # a check on a whole tier names the --set beneath it
    assert main(["run", str(good), "--set", "margin.tiers.0.mm_rate=0.5", "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "margin.tiers.0 (from --set margin.tiers.0.mm_rate=0.5): mm_rate 0.5 exceeds im_rate" in err, err


def test_a_compared_regimes_error_has_no_union_tag():
    from sim.experiment.config import load_episode  # noqa: F401 -- the packaged default
    from sim.experiment.runs import resolve
    from sim.experiment.variants import regime_variants

    with pytest.raises(ConfigError) as e:
        regime_variants(resolve(None), [{"regime": "standard", "tiers": [{"im_rate": 0.05, "mm_rate": 0.1}]}])
    assert "\n  tiers.0: mm_rate 0.1 exceeds im_rate 0.05" in str(e.value), str(e.value)
