"""UnitController: votes, guards, budget, allowance, demotion and rank changes."""

import pytest

from seapeft_monailabel.search import UnitController

from search_units import A, C, P, unit


A4, A8 = unit("a", "lora", "r4", 10, 0), unit("a", "lora", "r8", 20, 1)
B4 = unit("b", "lora", "r4", 10, 0)
D1 = unit("d", "ssf", "l1", 30, 0)
UNITS = [A4, A8, B4, D1]


def run(ctl: UnitController, desired: set[str], times: int) -> list:
    out = []
    for _ in range(times):
        out += ctl.apply(desired)
    return out


def test_probe_then_guard_then_two_votes_to_active() -> None:
    ctl = UnitController(UNITS, budget=40, probe_allowance=20)
    (t,) = ctl.probe([A4.name])
    assert (t.from_state, t.to_state, t.reason, t.first_on) == (C, P, "probe", True)
    assert ctl.guard(A4.name) == 3
    run(ctl, {A4.name}, 3)  # guarded: no votes collected
    assert ctl.state(A4.name) is P and ctl.votes(A4.name) == 0 and ctl.guard(A4.name) == 0
    ctl.apply({A4.name})
    assert ctl.state(A4.name) is P and ctl.votes(A4.name) == 1
    (t,) = ctl.apply({A4.name})
    assert (t.to_state, t.reason) == (A, "votes") and ctl.guard(A4.name) == 3
    assert ctl.active_cost() == 10 and ctl.active_units() == [A4.name]


def test_disagreeing_decision_resets_votes() -> None:
    ctl = UnitController(UNITS, budget=40, probe_allowance=20, initial_active=[A4.name])
    ctl.apply(set())
    ctl.apply(set())
    assert ctl.votes(A4.name) == -2
    ctl.apply({A4.name})
    assert ctl.votes(A4.name) == 0 and ctl.state(A4.name) is A
    run(ctl, set(), 2)
    assert ctl.state(A4.name) is A
    (t,) = ctl.apply(set())  # third consecutive rejection: demotion
    assert (t.from_state, t.to_state, t.reason) == (A, C, "votes")
    # a candidate wanted twice then not wanted starts again from zero
    ctl2 = UnitController(UNITS, budget=40, probe_allowance=20)
    run(ctl2, {B4.name}, 2)
    ctl2.apply(set())
    assert ctl2.votes(B4.name) == 0
    run(ctl2, {B4.name}, 2)
    assert ctl2.state(B4.name) is C
    (t,) = ctl2.apply({B4.name})
    assert (t.to_state, t.reason) == (P, "votes")  # never straight to ACTIVE


def test_guard_blocks_flip_for_g_allocations() -> None:
    ctl = UnitController(UNITS, budget=40, probe_allowance=20, initial_active=[A4.name])
    run(ctl, set(), 3)
    assert ctl.state(A4.name) is C and ctl.guard(A4.name) == 3
    for _ in range(3):  # wanted, but guarded: nothing happens, no votes
        assert ctl.apply({A4.name}) == [] and ctl.votes(A4.name) == 0
    assert ctl.guard(A4.name) == 0
    run(ctl, {A4.name}, 2)
    assert ctl.state(A4.name) is C and ctl.votes(A4.name) == 2
    (t,) = ctl.apply({A4.name})
    assert t.to_state is P


def test_guarded_unit_cannot_be_probed() -> None:
    ctl = UnitController(UNITS, budget=40, probe_allowance=20, initial_active=[B4.name])
    run(ctl, set(), 3)
    assert ctl.state(B4.name) is C and ctl.guard(B4.name) == 3
    assert ctl.probe([B4.name]) == []
    run(ctl, set(), 3)
    assert [t.unit for t in ctl.probe([B4.name])] == [B4.name]


def test_promotion_blocked_by_budget_keeps_votes() -> None:
    ctl = UnitController(UNITS, budget=35, probe_allowance=40, initial_active=[D1.name])
    ctl.probe([A4.name])
    run(ctl, {A4.name, D1.name}, 3)
    run(ctl, {A4.name, D1.name}, 3)  # votes 1, 2, 3: 30 + 10 > 35 so it stays in probation
    assert ctl.state(A4.name) is P and ctl.votes(A4.name) == 3
    assert ctl.active_cost() == 30
    # D1 rejected three times: demoted first, then A4 is promoted in the same allocation
    ctl.apply({A4.name})
    ctl.apply({A4.name})
    trans = ctl.apply({A4.name})
    assert [(t.unit, t.to_state) for t in trans] == [(D1.name, C), (A4.name, A)]
    assert ctl.active_cost() == 10


def test_probe_allowance_counts_probation() -> None:
    ctl = UnitController(UNITS, budget=100, probe_allowance=25)
    got = ctl.probe([A8.name, B4.name, D1.name])
    assert [t.unit for t in got] == [A8.name]  # B4 would make 30 > 25, D1 alone is 30
    with pytest.raises(ValueError):
        ctl.probe([A8.name])


def test_rank_change_warm_starts_and_keeps_one_level_per_group() -> None:
    ctl = UnitController(UNITS, budget=100, probe_allowance=20, initial_active=[A4.name])
    trans = ctl.probe([A8.name])
    assert [(t.unit, t.from_state, t.to_state, t.reason, t.warm_start_from) for t in trans] == [
        (A4.name, A, C, "rank_change", None),
        (A8.name, C, P, "probe", A4.name),
    ]
    assert ctl.on_units() == [A8.name] and ctl.active_cost() == 0
    run(ctl, {A8.name}, 5)
    assert ctl.state(A8.name) is A
    # rank down: r4 replaces r8 without a warm start (r8 is not the smaller level)
    run(ctl, set(), 3)  # A8 guarded for 3 allocations, A4 free again
    trans = ctl.probe([A4.name])
    assert [(t.unit, t.reason, t.warm_start_from) for t in trans] == [
        (A8.name, "rank_change", None),
        (A4.name, "probe", None),
    ]
    assert ctl.on_units() == [A4.name]


def test_warm_start_from_sibling_demoted_in_same_step() -> None:
    ctl = UnitController(UNITS, budget=100, probe_allowance=20, initial_active=[A4.name])
    trans = run(ctl, {A8.name}, 3)  # A4 loses 3 votes while A8 wins 3: same allocation
    assert [(t.unit, t.reason, t.warm_start_from) for t in trans] == [
        (A4.name, "votes", None),
        (A8.name, "votes", A4.name),
    ]


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        UnitController(UNITS, budget=15, probe_allowance=5, initial_active=[D1.name])
    with pytest.raises(ValueError):
        UnitController(UNITS, budget=100, probe_allowance=5, initial_active=[A4.name, A8.name])
    ctl = UnitController(UNITS, budget=100, probe_allowance=5)
    with pytest.raises(ValueError):
        ctl.apply({A4.name, A8.name})
    with pytest.raises(KeyError):
        ctl.state("nope")


def test_probe_guard_is_shorter_than_the_transition_guard() -> None:
    units = [unit("a", "lora", "r4", 10), unit("b", "lora", "r4", 10)]
    ctl = UnitController(units, budget=100, probe_allowance=50, guard=3, probe_guard=1)
    ctl.probe([units[0].name])
    assert ctl.guard(units[0].name) == 1
    ctl.apply({units[0].name})  # the guard runs out at this allocation: no vote yet
    ctl.apply({units[0].name})
    transitions = ctl.apply({units[0].name})  # two agreeing votes: probation -> active
    assert [(t.unit, t.to_state) for t in transitions] == [(units[0].name, A)]
    assert ctl.guard(units[0].name) == 3
