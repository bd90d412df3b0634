"""A minimal unit description for the decision-logic tests (what the search objects need of a unit)."""

from dataclasses import dataclass

from seapeft_monailabel.search import UnitState

C, P, A = UnitState.CANDIDATE, UnitState.PROBATION, UnitState.ACTIVE


@dataclass(frozen=True)
class U:
    name: str
    site: str
    family: str
    level: str
    group: tuple[str, str]
    cost: int
    level_order: int


def unit(site: str, family: str, level: str, cost: int, order: int = 0) -> U:
    return U(f"{site}:{family}:{level}", site, family, level, (site, family), cost, order)
