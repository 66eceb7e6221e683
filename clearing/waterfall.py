"""CCP default waterfall (METHODS.md section 8) and default-fund sizing (Cover-1 / Cover-2).

Order in which a clearing member's default loss is absorbed, after its own margin (already in its
account: the loss passed to ``absorb`` is what is left once the margin is spent):

    1. defaulter_default_fund   the defaulter's own default-fund contribution
    2. ccp_skin_in_game         the CCP's own capital, up to skin_in_game_fraction of it
    3. survivors_default_fund   the surviving members' contributions, pro rata to what is left
    4. assessments              calls on survivors' cash, capped at assessment_cap x contribution
    5. vm_gains_haircut         haircut of variation-margin gains (accounts with gains, pro rata)
    6. uncovered                whatever is left: stays the defaulter's deficit, for the caller to
                                record as bad debt (``last_uncovered``; not in the returned list)

Each layer is a ``ledger.transfer`` into the defaulter's account with reason
``"waterfall: <layer>"``; allocations among members are exact integer largest-remainder splits.

Members are either trader accounts (``member_of`` None: each contributing account is a member and
pays from its own cash) or clearing members that clear groups of accounts (``member_of``: account
-> member id). Then a member's contribution and assessments are its firm's own capital: deposited
into the default fund when paid in, deposited and passed on when assessed; an account's default is
its member's (the member did not cover its client's loss), and that member is no longer a survivor.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from clearing.ledger import FIRST_TRADER, QUOTE, Ledger, SystemAccount
from clearing.socialised import allocate_pro_rata, haircut_depositors

__all__ = ["size_default_fund", "DefaultWaterfall", "LAYERS"]

LAYERS = ("defaulter_default_fund", "ccp_skin_in_game", "survivors_default_fund", "assessments",
          "vm_gains_haircut", "uncovered")

_DF = int(SystemAccount.DEFAULT_FUND)
_CCP = int(SystemAccount.CCP_CAPITAL)


def _floor_times(amount: int, factor: float) -> int:
    f = Fraction(factor).limit_denominator(10**12)
    return int(amount) * f.numerator // f.denominator


def size_default_fund(stress_losses: np.ndarray, margins: np.ndarray, cover: int = 2,
                      allocate_by: str = "uncovered") -> tuple[int, np.ndarray]:
    """Size the default fund by stress test and split it among members.

    ``stress_losses`` and ``margins`` are per member, in quote minor units (stress loss as a
    positive number). Uncovered loss = ``max(stress loss - margin, 0)``, rounded up to a whole
    minor unit. The fund is the sum of the ``cover`` largest uncovered losses (Cover-1: the
    largest; Cover-2: the two largest). Contributions are allocated pro rata to each member's
    uncovered loss (``allocate_by="uncovered"``) or margin (``"margin"``, floored to minor units)
    with exact largest remainder (ties to the lower member index), so they sum to the fund exactly;
    if every weight is zero while the fund is positive, members share equally.

    Returns ``(fund_total, contributions)`` with ``contributions`` an int64 array per member.
    """
    stress = np.asarray(stress_losses, dtype=np.float64)
    margin = np.asarray(margins, dtype=np.float64)
    if stress.ndim != 1 or stress.shape != margin.shape:
        raise ValueError(f"stress_losses and margins must be aligned 1-d arrays, got {stress.shape}, {margin.shape}")
    if not (np.all(np.isfinite(stress)) and np.all(np.isfinite(margin))):
        raise ValueError("stress_losses and margins must be finite")
    if int(cover) < 1:
        raise ValueError(f"cover must be >= 1 (Cover-1, Cover-2, ...), got {cover}")
    if allocate_by not in ("uncovered", "margin"):
        raise ValueError(f"allocate_by must be 'uncovered' or 'margin', got {allocate_by!r}")
    n = stress.shape[0]
    uncovered = np.ceil(np.maximum(stress - margin, 0.0)).astype(np.int64)
    if n == 0:
        return 0, np.zeros(0, dtype=np.int64)
    top = np.sort(uncovered)[::-1][: int(cover)]
    fund_total = int(top.sum())
    if allocate_by == "uncovered":
        weights = uncovered
    else:
        weights = np.floor(np.maximum(margin, 0.0)).astype(np.int64)
    if fund_total > 0 and int(weights.sum()) == 0:
        weights = np.ones(n, dtype=np.int64)
    return fund_total, allocate_pro_rata(fund_total, weights)


class DefaultWaterfall:
    """Default fund, CCP capital and assessment powers for a set of clearing members.

    ``contributions`` maps member account id -> default-fund contribution (minor units). ``fund()``
    puts the money in place; ``absorb(defaulter, loss)`` then runs the waterfall. State kept:
    ``remaining`` (each member's unused contribution), ``skin_remaining`` (CCP capital still
    committed to the waterfall), ``assessment_remaining`` (unused assessment power per member),
    ``defaulted`` (members that have defaulted: no longer survivors) and ``log`` of every absorb.

    ``vm_gains`` (constructor default, overridable per ``absorb``) tells layer 5 who has gains:
    an array indexed by account id, or a callable ``f(ledger) -> array``, of the amounts that may be
    haircut (non-positive entries pay nothing). None: layer 5 is skipped.
    """

    def __init__(self, ledger: Ledger, contributions: dict[int, int], ccp_capital: int,
                 skin_in_game_fraction: float = 0.25, assessment_cap: float = 1.0,
                 deposit: bool = True,
                 vm_gains: np.ndarray | Callable[[Ledger], np.ndarray] | None = None,
                 member_of: dict[int, int] | None = None) -> None:
        if not 0.0 <= skin_in_game_fraction <= 1.0:
            raise ValueError(f"skin_in_game_fraction must be in [0, 1], got {skin_in_game_fraction}")
        if assessment_cap < 0:
            raise ValueError(f"assessment_cap must be >= 0, got {assessment_cap}")
        if int(ccp_capital) < 0:
            raise ValueError(f"ccp_capital must be >= 0, got {ccp_capital}")
        for member, amount in contributions.items():
            if int(amount) < 0:
                raise ValueError(f"contribution of member {member} must be >= 0, got {amount}")
            if member_of is None and not FIRST_TRADER <= int(member) < ledger.n_accounts:
                raise ValueError(f"member {member} is not a trader account of the ledger")
        if member_of is not None:
            unknown = sorted({int(m) for m in member_of.values()} - {int(m) for m in contributions})
            if unknown:
                raise ValueError(f"member_of names members without a contribution: {unknown[:5]}")
            if not deposit:
                raise ValueError("clearing members pay in from their own capital: deposit must be True")
        self.ledger = ledger
        self.contributions = {int(m): int(a) for m, a in sorted(contributions.items())}
        self.ccp_capital = int(ccp_capital)
        self.skin_in_game_fraction = skin_in_game_fraction
        self.assessment_cap = assessment_cap
        self.deposit = deposit
        self.vm_gains = vm_gains
        self.member_of = None if member_of is None else {int(a): int(m) for a, m in member_of.items()}
        self.remaining = dict(self.contributions)
        self.skin_remaining = _floor_times(self.ccp_capital, skin_in_game_fraction)
        self.assessment_remaining = {m: _floor_times(a, assessment_cap) for m, a in self.contributions.items()}
        self.defaulted: set[int] = set()
        self.log: list[tuple[float, int, list[tuple[str, int]]]] = []  # includes ("uncovered", x)
        self.last_uncovered = 0
        self.last_charges: dict[int, int] = {}  # trader account -> its own cash taken by the last absorb
        self.funded = False
        self.sizing: dict | None = None  # how the fund was sized, when a stress test sized it

    # ------------------------------------------------------------------ funding
    def fund(self) -> None:
        """Put contributions in the DEFAULT_FUND row and the CCP's capital in CCP_CAPITAL.

        ``deposit=True``: each member deposits its contribution (a ledger deposit into its account
        followed by a transfer to DEFAULT_FUND, so the journal shows who paid). ``deposit=False``:
        the contribution is taken from the member's existing quote cash (``ValueError``, nothing
        moved, if any member holds less). The CCP's capital is always a fresh deposit: the CCP has
        no trader account to take it from. Call once.
        """
        if self.funded:
            raise RuntimeError("the default waterfall is already funded")
        if not self.deposit:
            short = {m: int(self.ledger.cash[m, QUOTE]) for m, a in self.contributions.items()
                     if int(self.ledger.cash[m, QUOTE]) < a}
            if short:
                raise ValueError(f"members hold less quote cash than their contribution: {short}")
        for member, amount in self.contributions.items():
            if amount and self.member_of is not None:
                self.ledger.deposit(_DF, QUOTE, amount)  # the member firm's own capital
            elif amount:
                if self.deposit:
                    self.ledger.deposit(member, QUOTE, amount)
                self.ledger.transfer(member, _DF, QUOTE, amount, "default fund contribution")
        if self.ccp_capital:
            self.ledger.deposit(_CCP, QUOTE, self.ccp_capital)
        self.funded = True

    # ------------------------------------------------------------------ absorption
    def survivors(self) -> list[int]:
        return [m for m in self.contributions if m not in self.defaulted]

    def absorb(self, defaulter: int, loss: int,
               vm_gains: np.ndarray | Callable[[Ledger], np.ndarray] | None = None) -> list[tuple[str, int]]:
        """Cover ``loss`` (minor units) for ``defaulter`` layer by layer; returns the layers used.

        Returns ``[(layer, amount)]`` in waterfall order for every layer that paid something (each
        entry is money actually moved into the defaulter's account). What the layers could not
        cover, ``loss - sum(amounts)``, is left in the defaulter's account for the caller to
        record as bad debt, and is also kept in ``last_uncovered`` and in ``log``.
        """
        if not self.funded:
            raise RuntimeError("fund() the default waterfall before absorbing a default")
        defaulter, rest = int(defaulter), int(loss)
        if rest < 0:
            raise ValueError(f"loss must be >= 0, got {loss}")
        member = defaulter if self.member_of is None else self.member_of.get(defaulter)
        if member is not None:
            self.defaulted.add(member)
        layers: list[tuple[str, int]] = []
        ledger = self.ledger
        # trader accounts whose own cash paid (assessments, VM haircut): breach attribution reads it
        charges: dict[int, int] = {}  # assessments and VM haircut, by account
        self.last_charges = charges

        def pay(layer: str, source: int, amount: int) -> None:
            ledger.transfer(source, defaulter, QUOTE, amount, f"waterfall: {layer}")

        # 1. the defaulter's own default-fund contribution
        own = min(rest, self.remaining.get(member, 0)) if member is not None else 0
        if own > 0 and member is not None:  # (own > 0 only for a member: the test tells the type checker)
            pay("defaulter_default_fund", _DF, own)
            self.remaining[member] -= own
            rest -= own
            layers.append(("defaulter_default_fund", own))

        # 2. CCP skin in the game
        skin = min(rest, self.skin_remaining)
        if skin > 0:
            pay("ccp_skin_in_game", _CCP, skin)
            self.skin_remaining -= skin
            rest -= skin
            layers.append(("ccp_skin_in_game", skin))

        # 3. survivors' default-fund contributions, pro rata to what each has left
        survivors = self.survivors()
        if rest > 0 and survivors:
            left = np.array([self.remaining[m] for m in survivors], dtype=np.int64)
            take = min(rest, int(left.sum()))
            if take > 0:
                shares = allocate_pro_rata(take, left, keys=survivors)
                for m, s in zip(survivors, shares.tolist()):
                    self.remaining[m] -= s
                pay("survivors_default_fund", _DF, take)
                rest -= take
                layers.append(("survivors_default_fund", take))

        # 4. capped assessments, from survivors' cash, pro rata to remaining assessment power
        if rest > 0 and survivors:
            power = np.array([self.assessment_remaining[m] for m in survivors], dtype=np.int64)
            take = min(rest, int(power.sum()))
            if take > 0:
                shares = allocate_pro_rata(take, power, keys=survivors)
                for m, s in zip(survivors, shares.tolist()):
                    if s:
                        self.assessment_remaining[m] -= s
                        if self.member_of is not None:  # the member firm pays from its own capital
                            ledger.deposit(_DF, QUOTE, s)
                            pay("assessments", _DF, s)
                        else:
                            pay("assessments", m, s)
                            charges[m] = charges.get(m, 0) + s
                rest -= take
                layers.append(("assessments", take))

        # 5. variation-margin gains haircutting
        gains_src = vm_gains if vm_gains is not None else self.vm_gains
        if rest > 0 and gains_src is not None:
            gains = gains_src(ledger) if callable(gains_src) else gains_src
            charged = haircut_depositors(ledger, rest, defaulter, np.asarray(gains),
                                         reason="waterfall: vm_gains_haircut")
            taken = sum(charged.values())
            for m, s in charged.items():
                charges[m] = charges.get(m, 0) + s
            if taken > 0:
                rest -= taken
                layers.append(("vm_gains_haircut", taken))

        # 6. what is left goes back to the caller (no money moves: it stays the defaulter's deficit)
        self.last_uncovered = rest
        self.log.append((float(ledger.now), defaulter, layers + ([("uncovered", rest)] if rest else [])))
        return layers
