"""Distress spells: the nodes of a liquidation cascade.

A liquidation event ends when its account is restored, flat or bankrupt; an account that is
restored by a partial step and breaches again a little later is the same distress, not a new
one. A *spell* is one account's distress from its first breach until it is flat (``closed``),
bankrupt, or has stayed at or above maintenance for ``quiet`` seconds (docs/METHODOLOGY.md,
"Cascades over distress spells"):

* events of one account in breach-time order belong to the same spell while the previous event
  ended ``restored`` or ``restored_by_cancel`` and the next breach came less than ``quiet`` seconds
  after that end (an event still ``open`` at the end of the episode keeps its spell open);
* a spell is named by the id of its first liquidation;
* a spell's parent is the spell holding the parent liquidation of its *first* event (a spell whose
  first breach was exogenous is a root, whatever later re-breaches inside it were);
* generation 0 for roots, parent's generation + 1 otherwise. A parent liquidation always precedes
  its child's breach, so the parent spell's id is smaller: spells form a forest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESTORED = ("restored", "restored_by_cancel")


def assign_spells(liq_id: np.ndarray, account: np.ndarray, breach_time: np.ndarray, end_time: np.ndarray,
                  outcome: np.ndarray, quiet: float) -> np.ndarray:
    """The spell id (first liquidation id of the spell) of each event, in the input's order."""
    n = liq_id.size
    spell = np.empty(n, dtype=np.int64)
    if n == 0:
        return spell
    order = np.lexsort((liq_id, breach_time, account))
    prev = -1
    for k in order.tolist():
        if prev >= 0 and account[prev] == account[k] and str(outcome[prev]) in RESTORED \
                and breach_time[k] - end_time[prev] < quiet:
            spell[k] = spell[prev]
        else:
            spell[k] = liq_id[k]
        prev = k
    return spell


@dataclass(frozen=True, slots=True)
class SpellForest:
    """Spells as nodes: id, parent spell (-1 for roots), generation, notional and events, by spell id."""

    spell: np.ndarray
    parent: np.ndarray
    generation: np.ndarray
    notional: np.ndarray
    events: np.ndarray
    root: np.ndarray  # the root spell of each spell's tree

    @property
    def count(self) -> int:
        return int(self.spell.size)

    def per_tree(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per spell) summed over each tree, at its root spell's position (0 elsewhere)."""
        root_pos = np.searchsorted(self.spell, self.root)  # spells are sorted ids (np.unique)
        return np.bincount(root_pos, weights=values, minlength=self.count)


def spell_forest(liq_id: np.ndarray, parent: np.ndarray, spell: np.ndarray, notional: np.ndarray) -> SpellForest:
    """Build the spell forest from each event's parent liquidation and spell (see the module doc)."""
    ids = np.unique(spell)
    spell_of = dict(zip(liq_id.tolist(), spell.tolist()))
    parent_of_event = dict(zip(liq_id.tolist(), parent.tolist()))
    index = {int(s): k for k, s in enumerate(ids.tolist())}
    m = ids.size
    spell_parent = np.full(m, -1, dtype=np.int64)
    for k, s in enumerate(ids.tolist()):
        p = parent_of_event.get(s, -1)  # the spell's first event has the spell's id
        if p >= 0 and p in spell_of and spell_of[p] != s:
            spell_parent[k] = spell_of[p]
    generation = np.zeros(m, dtype=np.int64)
    root = np.arange(m)
    for k in range(m):  # ids ascending: a parent spell comes before its children
        p = int(spell_parent[k])
        if p >= 0:
            generation[k] = generation[index[p]] + 1
            root[k] = root[index[p]]
    position = np.array([index[int(s)] for s in spell.tolist()], dtype=np.int64)
    spell_notional = np.bincount(position, weights=notional.astype(np.float64), minlength=m)
    events = np.bincount(position, minlength=m)
    return SpellForest(ids.astype(np.int64), spell_parent, generation, spell_notional, events,
                       ids[root].astype(np.int64))


def liquidation_spells(liq_id: np.ndarray, spell: np.ndarray) -> np.ndarray:
    """The liquidations' spells as the table gives them; every liquidation its own spell for tables
    from before spells (no ``spell`` column)."""
    return spell if spell.size == liq_id.size else liq_id


def spell_generations(liq_id: np.ndarray, parent: np.ndarray, spell: np.ndarray, notional: np.ndarray) -> np.ndarray:
    """Each liquidation's cascade generation as the headline counts it: its distress spell's (a
    re-breach inside a spell is the same node, however the event's own parent link runs)."""
    forest = spell_forest(liq_id, parent, spell, notional)
    return forest.generation[np.searchsorted(forest.spell, spell)]
