"""Allocator: budget never exceeded, one level per group, hysteresis, harmful units, guard-free solve."""

import numpy as np
import pytest

from seapeft_monailabel.search import Allocator, UnitController

from search_units import A, C, P, U, unit


def random_library(rng: np.random.Generator, n_groups: int) -> list[U]:
    units = []
    for g in range(n_groups):
        base = int(rng.integers(1, 50))
        for order in range(int(rng.integers(1, 4))):
            units.append(unit(f"s{g}", "fam", f"l{order}", base * 2**order, order))
    return units


def random_states(rng, units, budget) -> tuple[dict, dict]:
    """Random controller-consistent states: one on level per group at most, ACTIVE cost <= budget."""
    states, guards, active_cost = {}, {}, 0
    seen_groups = set()
    for u in rng.permutation(len(units)):
        u = units[u]
        s = C
        if u.group not in seen_groups and rng.random() < 0.4:
            s = P if rng.random() < 0.3 else A
            if s is A and active_cost + u.cost > budget:
                s = P
            if s is A:
                active_cost += u.cost
            seen_groups.add(u.group)
        states[u.name] = s
        guards[u.name] = int(rng.integers(0, 4)) if rng.random() < 0.3 else 0
    return states, guards


@pytest.mark.parametrize("seed", range(60))
def test_budget_never_exceeded_and_one_level_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = random_library(rng, int(rng.integers(2, 30)))
    by_name = {u.name: u for u in units}
    budget = int(rng.integers(0, sum(u.cost for u in units)))
    alloc = Allocator(units, budget)
    for _ in range(20):
        states, guards = random_states(rng, units, budget)
        robust = {u.name: float(rng.normal(0, 1e-3)) for u in units if rng.random() < 0.8}
        unc = {n: float(abs(rng.normal(0, 5e-4))) for n in robust}
        res = alloc.allocate(robust, unc, states, guards)
        assert res.cost == sum(by_name[n].cost for n in res.desired) <= budget
        groups = [by_name[n].group for n in res.desired]
        assert len(groups) == len(set(groups))
        locked = {n for n, s in states.items() if s is A and guards[n] > 0}
        assert locked <= res.desired
        free = alloc.solve_guard_free(robust, unc)
        assert free.cost <= budget
        assert all(robust[n] + 0.5 * unc[n] > 0 for n in free.desired)


@pytest.mark.parametrize("seed", range(20))
def test_budget_holds_along_controller_runs(seed: int) -> None:
    """Allocator + controller for many allocations: the desired cost and the ACTIVE cost stay <= B."""
    rng = np.random.default_rng(100 + seed)
    units = random_library(rng, 25)
    budget = sum(u.cost for u in units) // 4
    alloc = Allocator(units, budget)
    ctl = UnitController(units, budget, probe_allowance=budget)
    for _ in range(60):
        cands = [u.name for u in units if ctl.state(u.name) is C]
        ctl.probe(list(rng.permutation(cands)[:3]))
        robust = {u.name: float(rng.normal(2e-4, 1e-3)) for u in units}
        unc = {n: float(abs(rng.normal(0, 5e-4))) for n in robust}
        res = alloc.allocate(robust, unc, ctl.states(), ctl.guards())
        assert res.cost <= budget
        ctl.apply(res.desired, res.order)
        assert ctl.active_cost() <= budget
        on_groups = [next(u.group for u in units if u.name == n) for n in ctl.on_units()]
        assert len(on_groups) == len(set(on_groups))


def test_overbudget_states_rejected() -> None:
    units = [unit("a", "f", "l0", 10)]
    with pytest.raises(ValueError):
        Allocator(units, 5).allocate({}, {}, {units[0].name: A}, {})


def test_best_level_per_group_and_tie_to_on_level() -> None:
    a4, a8 = unit("a", "lora", "r4", 10, 0), unit("a", "lora", "r8", 20, 1)
    alloc = Allocator([a4, a8], budget=100)
    res = alloc.allocate({a4.name: 1e-3, a8.name: 2e-3}, {}, {a4.name: A, a8.name: C}, {})
    assert res.desired == {a8.name}  # rank change wanted: the higher value wins
    res = alloc.allocate({a4.name: 1e-3, a8.name: 1e-3}, {}, {a4.name: C, a8.name: A}, {})
    assert res.desired == {a8.name}  # tie goes to the level that is on
    res = alloc.allocate({a4.name: 1e-3, a8.name: 5e-3}, {}, {a4.name: A, a8.name: C}, {a4.name: 2})
    assert res.desired == {a4.name}  # a locked level represents its group


def test_sibling_must_beat_the_on_level_by_tau() -> None:
    a4, a8 = unit("a", "lora", "r4", 10, 0), unit("a", "lora", "r8", 20, 1)
    alloc = Allocator([a4, a8], budget=100, beta_unc=0.0, hysteresis=0.1)
    states = {a4.name: A, a8.name: C}  # tau = 0.1 * 1e-3 = 1e-4
    assert alloc.allocate({a4.name: 1e-3, a8.name: 1.05e-3}, {}, states, {}).desired == {a4.name}
    assert alloc.allocate({a4.name: 1e-3, a8.name: 1.2e-3}, {}, states, {}).desired == {a8.name}


def test_hysteresis_fires_on_falling_utility() -> None:
    """Values ~1e-5 per parameter (the scale where the reference's -0.02 never fired)."""
    units = [unit(f"s{i}", "lora", "r4", 100) for i in range(4)]
    names = [u.name for u in units]
    alloc = Allocator(units, budget=400, beta_unc=0.0, hysteresis=0.1)
    states = {n: A for n in names}
    robust = {names[0]: 2e-5, names[1]: 3e-5, names[2]: 4e-5, names[3]: 3e-5}
    res = alloc.allocate(robust, {}, states, {})
    assert res.desired == set(names)
    robust[names[3]] = 2e-6  # falls below tau = 0.1 * median(2e-5, 3e-5, 4e-5, 2e-6) = 2.5e-6
    res = alloc.allocate(robust, {}, states, {})
    assert res.diagnostics["tau"] == pytest.approx(2.5e-6)
    assert res.desired == set(names[:3]) and res.diagnostics["dropped_by_threshold"] == [names[3]]
    # the hysteresis band: 4e-6 keeps an ACTIVE unit but does not let a CANDIDATE in (needs > 2 tau)
    robust[names[3]] = 4e-6
    assert names[3] in alloc.allocate(robust, {}, states, {}).desired
    states[names[3]] = C
    assert names[3] not in alloc.allocate(robust, {}, states, {}).desired
    robust[names[3]] = 7e-6  # tau is now 0.1 * 3e-5 = 3e-6; 7e-6 > 2 tau enters
    assert names[3] in alloc.allocate(robust, {}, states, {}).desired


def test_harmful_and_useless_active_units_dropped() -> None:
    good, bad, zero = unit("a", "f", "l0", 10), unit("b", "f", "l0", 10), unit("c", "f", "l0", 10)
    alloc = Allocator([good, bad, zero], budget=30)
    states = {good.name: A, bad.name: A, zero.name: A}
    robust = {good.name: 1e-3, bad.name: -1e-4, zero.name: 0.0}
    res = alloc.allocate(robust, {}, states, {})
    assert res.desired == {good.name}
    # a harmful unit whose optimism bonus still leaves it <= 0 is dropped even when alone
    res = alloc.allocate({bad.name: -1e-4}, {bad.name: 1e-4}, {bad.name: A}, {})
    assert res.desired == set()


def test_entry_needs_room_and_repair_displaces_low_value_incumbent() -> None:
    inc, new = unit("a", "f", "l0", 60), unit("b", "f", "l0", 60)
    alloc = Allocator([inc, new], budget=100)
    states = {inc.name: A, new.name: P}
    res = alloc.allocate({inc.name: 1e-5, new.name: 1e-3}, {}, states, {})
    assert res.desired == {new.name} and res.diagnostics["repaired"] == [inc.name]
    res = alloc.allocate({inc.name: 1e-5, new.name: 1e-3}, {}, states, {inc.name: 1})
    assert res.desired == {inc.name}  # locked incumbent stays; the newcomer does not fit


def test_never_audited_not_eligible_and_guard_free_ignores_locks() -> None:
    a, b = unit("a", "f", "l0", 50), unit("b", "f", "l0", 50)
    alloc = Allocator([a, b], budget=50)
    res = alloc.allocate({a.name: None, b.name: 1e-4}, {}, {a.name: C, b.name: C}, {})
    assert res.desired == {b.name}
    states, guards = {a.name: A, b.name: C}, {a.name: 3}
    robust = {a.name: -1e-4, b.name: 1e-4}
    assert alloc.allocate(robust, {}, states, guards).desired == {a.name}
    assert alloc.solve_guard_free(robust, {}, on=[a.name]).desired == {b.name}
