"""The clearing house satisfies what each of its parts declares it reads of it.

Settlement, the pre-trade bounds, the liquidation engine and loss absorption each name the house's
members they use in a ``typing.Protocol`` rather than importing ``ClearingHouse``. Nothing checks a
Protocol at run time, so a member renamed on the house (or declared wrongly on a Protocol) would
only fail deep inside an episode's crash; this holds every declared member to the real house:
present, and a method with the same parameters."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from clearing.absorption import AbsorbingHouse
from clearing.house import ClearingHouse
from clearing.liquidation import LiquidatingHouse
from clearing.pretrade import ValuedAccounts
from clearing.settlement import SettlingHouse
from tests.clearing.fakes import make_house

PROTOCOLS = [SettlingHouse, ValuedAccounts, LiquidatingHouse, AbsorbingHouse]


def _mismatches(protocol: type, house: ClearingHouse) -> list[str]:
    """Each member ``protocol`` declares (its own annotations and methods) that ``house`` lacks, or
    whose method takes other parameters."""
    found = []
    for name in inspect.get_annotations(protocol):
        if not hasattr(house, name):
            found.append(f"{protocol.__name__}.{name}: missing")
    for name, member in protocol.__dict__.items():
        if not inspect.isfunction(member) or name.startswith("__"):
            continue
        actual = getattr(type(house), name, None)
        if not callable(actual):
            found.append(f"{protocol.__name__}.{name}(): missing")
        elif list(inspect.signature(actual).parameters) != list(inspect.signature(member).parameters):
            found.append(f"{protocol.__name__}.{name}{inspect.signature(member)}: "
                         f"the house's is {name}{inspect.signature(actual)}")
    return found


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_house_has_every_member_a_part_declares(protocol: type) -> None:
    assert inspect.get_annotations(protocol) or any(
        inspect.isfunction(m) for m in protocol.__dict__.values()), f"{protocol.__name__} declares nothing"
    assert _mismatches(protocol, make_house()) == []


def test_the_check_fails_for_a_member_the_house_lacks() -> None:
    """The control: a Protocol naming an attribute the house does not have, a method it does not
    have, and a method with other parameters is caught on all three."""

    class WantsMore(Protocol):
        not_on_the_house: int

        def not_a_method_of_the_house(self) -> None: ...

        def equities(self, rows, full) -> None: ...  # the house's takes ``rows`` only

    assert [m.split(":")[0].split("(")[0] for m in _mismatches(WantsMore, make_house())] == [
        "WantsMore.not_on_the_house", "WantsMore.not_a_method_of_the_house", "WantsMore.equities"]
