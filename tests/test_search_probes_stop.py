"""ProbeProposer ordering and limits; StopRule."""

import pytest

from seapeft_monailabel.search import ProbeProposer, StopRule

from search_units import A, C, P, U, unit as make_unit


def unit(site: str, family: str = "lora", level: str = "r4", cost: int = 10, order: int = 0) -> U:
    """Probe tests mostly need LoRA r4 units of cost 10."""
    return make_unit(site, family, level, cost, order)


def test_order_interleaves_unmeasured_by_prior_and_overdue_measured_by_value() -> None:
    units = [unit(s) for s in "abcdefg"]
    names = [u.name for u in units]
    states = {n: C for n in names}
    trained = {names[4], names[5], names[6]}
    robust = {names[4]: 1e-4, names[5]: 3e-4, names[6]: -5e-4}  # g: useless even optimistically
    prior = {names[0]: 0.1, names[1]: 0.3, names[2]: 0.2, names[3]: 0.05}
    prop = ProbeProposer(units, probe_allowance=1000)
    got = prop.propose(states, {}, trained, robust, {names[6]: 1e-4}, prior)
    assert got == [names[1], names[5], names[2], names[4], names[0], names[3]]
    # once probed, measured units are not overdue until revisit_after search steps have passed
    prop.record([names[5], names[4]])
    got = prop.propose(states, {}, trained, robust, {}, prior)
    assert got == [names[1], names[2], names[0], names[3], names[5], names[4]]


def test_limits_allowance_group_on_guard_and_one_per_group() -> None:
    a4, a8 = unit("a", level="r4", cost=10), unit("a", level="r8", cost=20, order=1)
    b4, c4, d4 = unit("b", cost=10), unit("c", cost=10), unit("d", cost=40)
    units = [a4, a8, b4, c4, d4]
    prior = {a8.name: 5.0, a4.name: 4.0, b4.name: 3.0, c4.name: 2.0, d4.name: 9.0}
    states = {u.name: C for u in units}
    prop = ProbeProposer(units, probe_allowance=35)
    # d4 (40) exceeds the allowance; a8 taken, a4 same group skipped; b4 fits (30); c4 would be 40
    assert prop.propose(states, {}, set(), {}, {}, prior) == [a8.name, b4.name]
    states[b4.name] = P  # PROBATION cost counts against the allowance: 35 - 10 = 25 left
    assert prop.propose(states, {}, set(), {}, {}, prior) == [a8.name]
    states[a4.name] = A  # group a has a unit on: skipped entirely
    assert prop.propose(states, {c4.name: 2}, set(), {}, {}, prior) == []
    assert prop.unexplored(set()) == sorted([a4.name, a8.name, b4.name, c4.name])


def test_stop_rule() -> None:
    now = [0.0]
    rule = StopRule(max_steps=1000, patience=2, time_limit_s=60.0, clock=lambda: now[0])
    rule.observe_allocation({"a"}, probe_pending=False)
    rule.observe_allocation({"a"}, probe_pending=False)
    assert rule.check(10) is None and rule.stable_allocations == 1
    rule.observe_allocation({"a"}, probe_pending=True)
    assert rule.check(10) is None  # stable but a probe is pending
    rule.observe_allocation({"a"}, probe_pending=False)
    assert rule.check(10) == "converged"
    rule.observe_allocation({"a", "b"}, probe_pending=False)
    assert rule.check(10) is None and rule.check(1000) == "step_limit"
    now[0] = 61.0
    assert rule.check(10) == "time_limit"
    with pytest.raises(ValueError):
        StopRule(max_steps=0)


def test_rank_up_probe_only_from_a_measured_useful_unguarded_active_level() -> None:
    a4, a8 = unit("a", level="r4", cost=10), unit("a", level="r8", cost=20, order=1)
    prop = ProbeProposer([a4, a8], probe_allowance=20)
    states = {a4.name: A, a8.name: C}
    prior = {a8.name: 1.0}
    assert prop.propose(states, {}, {a4.name}, {a4.name: 1e-4}, {}, prior) == [a8.name]
    assert prop.propose(states, {a4.name: 1}, {a4.name}, {a4.name: 1e-4}, {}, prior) == []
    assert prop.propose(states, {}, {a4.name}, {a4.name: -1e-4}, {}, prior) == []
    states = {a4.name: P, a8.name: C}
    assert prop.propose(states, {}, {a4.name}, {a4.name: 1e-4}, {}, prior) == []
    # never a rank-down probe
    states = {a4.name: C, a8.name: A}
    assert prop.propose(states, {}, {a8.name}, {a8.name: 1e-4}, {}, {a4.name: 1.0}) == []


def test_a_rank_up_probe_is_charged_its_increment_and_unreachable_units_are_named() -> None:
    from seapeft_monailabel.search import UnitController

    a2, a4, a8 = (unit("a", level=f"r{r}", cost=10 * r, order=r) for r in (2, 4, 8))  # 20, 40, 80
    b8 = unit("b", level="r8", cost=80)
    units = [a2, a4, a8, b8]
    prop = ProbeProposer(units, probe_allowance=30)
    ctl = UnitController(units, budget=200, probe_allowance=30, initial_active=[a2.name])
    measured = {a2.name: 1e-4}
    # a4 costs 40 > 30 on its own, but replacing the ACTIVE a2 it adds 20: it is probed, and charged 20
    assert prop.propose(ctl.states(), {}, {a2.name}, measured, {}, {a4.name: 1.0}) == [a4.name]
    made = ctl.probe([a4.name])
    assert [(t.unit, t.warm_start_from) for t in made if t.reason == "probe"] == [(a4.name, a2.name)]
    assert ctl.probe_charges() == {a4.name: 20} and ctl.probation_cost() == 40
    # the 10 left of the allowance fit a probe of 10, not one of 11 (counted at full cost, a4 would leave none)
    c1, d1 = unit("c", cost=10), unit("d", cost=11)
    prop2 = ProbeProposer(units + [c1, d1], probe_allowance=30)
    states = {**ctl.states(), c1.name: C, d1.name: C}
    prior = {c1.name: 1.0, d1.name: 2.0}
    assert prop2.propose(states, {}, {a2.name}, measured, {}, prior, ctl.probe_charges()) == [c1.name]
    assert prop2.propose(states, {}, {a2.name}, measured, {}, prior) == []
    # a8 costs 80, 40 more than a4 and 60 more than a2: out of reach of a 30 allowance, as is b8 (no smaller level)
    assert prop.unreachable() == sorted([a8.name, b8.name])
    assert ProbeProposer(units, probe_allowance=40).unreachable() == [b8.name]
