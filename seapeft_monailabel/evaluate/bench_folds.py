"""The bench's folds: for each fold, the pool its support sets are drawn from and its held-out test volumes.

- ``phantom`` presets: one generated pool and one generated test set (:func:`.bench_data.prepare_volumes`),
  the same for every fold; folds differ by the support set drawn from the pool.
- ``real`` presets: the real subjects of :mod:`seapeft_monailabel.data.real`, leave one subject out:
  fold ``f`` tests on subject ``f`` and draws its support and selection volumes from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.real import LABELS, SOURCES, default_cache, prepare_real_data
from ..data.sites import get_site
from .bench_data import prepare_volumes
from .bench_presets import BenchPreset


@dataclass(frozen=True)
class BenchFolds:
    """The task and the volumes of every fold.

    Attributes:
        labels: label name -> value of every volume.
        seen: structures the base model was trained on; novel: those it was not.
        folds: ``(pool, test)`` datalists (``{"id", "image", "label"}``) of fold 0, 1, ...
        source: held-out source-site volumes labelled with the seen structures' values (empty: forgetting is
            not measured).
    """

    labels: dict[str, int]
    seen: tuple[str, ...]
    novel: tuple[str, ...]
    folds: tuple[tuple[list[dict], list[dict]], ...]
    source: tuple[dict, ...] = ()

    def test_items(self) -> list[dict]:
        """Every volume that some fold tests on, once each, in fold order."""
        seen_ids: dict[str, dict] = {}
        for _, test in self.folds:
            for item in test:
                seen_ids.setdefault(item["id"], item)
        return list(seen_ids.values())


def leave_one_out(items: list[dict], folds: int) -> tuple[tuple[list[dict], list[dict]], ...]:
    """The first ``folds`` leave-one-subject-out splits: fold ``f`` tests on ``items[f]``, pools the rest."""
    if not 1 <= folds <= len(items):
        raise ValueError(f"leave-one-subject-out over {len(items)} subjects gives 1..{len(items)} folds, not {folds}")
    return tuple(([i for j, i in enumerate(items) if j != f], [items[f]]) for f in range(folds))


def bench_folds(bench: BenchPreset, root: str | Path) -> BenchFolds:
    """Prepare (or reuse) the volumes of the one-site ``bench`` under ``root`` and split them into its folds."""
    root = Path(root)
    if bench.data == "real":
        items = prepare_real_data(root / "real", list(SOURCES), cache=default_cache())
        if len(items) != bench.pool + bench.test:
            raise ValueError(f"preset {bench.name}: pool {bench.pool} + test {bench.test} must be the "
                             f"{len(items)} real subjects")
        return BenchFolds(dict(LABELS), (), tuple(n for n in LABELS if n != "background"),
                          leave_one_out(items, bench.folds))
    site = get_site(bench.site)
    pool, test, source = prepare_volumes(root, bench)
    return BenchFolds(dict(site.label_names), tuple(site.seen), tuple(site.novel), ((pool, test),) * bench.folds,
                      tuple(source))
