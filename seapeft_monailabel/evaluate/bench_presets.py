"""Settings of the benchmark: which methods, shots and folds, how much data, which run settings, how many processes.

Presets:

- ``gpu``: the full table (every fixed baseline that applies to the network, random sets of SEA-PEFT's
  cost, 1/5/10 shots, 3 folds, 8 test volumes) in both regimes (the MR-like ``target``, the CT-like
  ``target_ct``) with the ``gpu`` run settings, several runs at once on one GPU (one process each).
  Meant for SwinUNETR weights (``--weights``); it also runs on a CPU at small sizes.
- ``cpu``: both regimes, 8 test volumes and 4 source-site volumes each, with fewer methods (full
  fine-tuning, the reference; LoRA and decoder tuning, the PEFT baselines that led the head-only one by
  10 points and more on every earlier table; random sets), the small default backbone (the shipped UNet),
  shorter runs of the ``cpu`` run settings, the pointing game in fold 0; two single-threaded processes
  share two cores, within 25 minutes.
- ``tiny``: seconds; for the test suite.
- ``real``: real heads with brain masks from registry packages (:mod:`seapeft_monailabel.data.real`,
  prepared at bench time), leave one subject out; SEA-PEFT against head, LoRA and full on the shipped
  UNet, whose base task never labelled the brain, with the ``cpu`` run settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..data.sites import get_site
from ..search.config import preset

ALL_METHODS = ("head", "full", "bitfit", "ssf", "lora", "adaptformer", "salt", "adalora", "decoder", "random")

#: the shipped default base model, relative to the repository root
DEFAULT_WEIGHTS = "sample-data/base_model/model.pt"


@dataclass(frozen=True)
class BenchPreset:
    """One benchmark configuration.

    Attributes:
        name: preset name, recorded in the outputs.
        methods: fixed baselines compared with SEA-PEFT (``random`` = random unit sets of SEA-PEFT's cost).
        shots: support-set sizes k; each run consumes k + 1 labelled volumes (one for SEA-PEFT's audits).
        folds: support sets drawn per shot (fold f draws with seed ``data_seed * 1000 + 100 * f + k``).
        pool: generated target-site volumes the support sets are drawn from (indices ``0..pool-1``);
            ``real``: the subjects each fold draws from (all but its test subject).
        test: held-out target-site volumes (indices ``pool..pool+test-1``), used only for the test Dice;
            ``real``: 1, the fold's left-out subject.
        sites: target sites of the generator, one regime each (its own volumes, runs and tables);
            ``real``: a name for the reports.
        source_test: held-out source-site volumes (indices ``0..source_test-1`` of the data seed, subjects the
            base model never saw) on which every adapted model and the base model are scored for the structures
            the base knew (forgetting); 0: not measured.
        pointing_folds: SEA-PEFT's runs that play the pointing game on the test volumes: folds
            ``0..pointing_folds-1`` of every shot count (None: every fold).
        data: ``"phantom"`` (generated volumes) or ``"real"`` (the real subjects, leave one subject out).
        data_seed: generator seed of the benchmark's volumes (not sample-data's 2025, not pretraining's).
        run_preset: :func:`seapeft_monailabel.search.preset` name for every run, with ``run_changes``.
        workers: runs at once (one process each; 1 runs them in this process).
        threads: torch CPU threads per process.
        manifest: SEA-PEFT's unit library (a shipped manifest's name or a YAML path; default: the network's),
            which the ``random`` sets are drawn from as well.
    """

    name: str
    methods: tuple[str, ...]
    shots: tuple[int, ...] = (1, 5, 10)
    folds: int = 3
    pool: int = 16
    test: int = 6
    sites: tuple[str, ...] = ("target",)
    source_test: int = 0
    pointing_folds: int | None = None
    data: str = "phantom"
    data_seed: int = 3001
    run_preset: str = "cpu"
    run_changes: dict = field(default_factory=dict)
    workers: int = 1
    threads: int = 1
    manifest: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown bench method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"shots must be positive integers, got {self.shots}")
        if self.pool < max(self.shots) + 1:
            raise ValueError(f"a pool of {self.pool} volumes cannot give {max(self.shots)} shots plus an audit volume")
        if self.data not in ("phantom", "real"):
            raise ValueError(f"BenchPreset.data must be 'phantom' or 'real' (got {self.data!r})")
        if self.data == "real" and (self.test != 1 or self.folds > self.pool + 1):
            raise ValueError(f"a leave-one-subject-out preset tests on 1 subject and has at most pool + 1 = "
                             f"{self.pool + 1} folds (got test={self.test}, folds={self.folds})")
        if not self.sites or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"BenchPreset.sites must name one or more different sites (got {self.sites})")
        if self.data == "phantom":
            for site in self.sites:
                get_site(site)
        if self.source_test < 0 or (self.data == "real" and self.source_test):
            raise ValueError(f"BenchPreset.source_test must be >= 0, and 0 for real data (got {self.source_test})")
        if self.pointing_folds is not None and not 1 <= self.pointing_folds <= self.folds:
            raise ValueError(f"BenchPreset.pointing_folds must be None or 1..folds={self.folds} "
                             f"(got {self.pointing_folds})")
        for name in ("folds", "test", "workers", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchPreset.{name} must be >= 1 (got {getattr(self, name)})")
        preset(self.run_preset, **self.run_changes)  # the run settings are checked here, not in every run

    def with_(self, **changes) -> BenchPreset:
        return replace(self, **changes)

    def regime(self, site: str) -> BenchPreset:
        """This preset restricted to the one target site ``site``."""
        if site not in self.sites:
            raise ValueError(f"preset {self.name} has no site {site!r} (its sites: {', '.join(self.sites)})")
        return replace(self, sites=(site,))

    @property
    def site(self) -> str:
        """The target site of a one-regime preset (see :meth:`regime`)."""
        if len(self.sites) != 1:
            raise ValueError(f"preset {self.name} has {len(self.sites)} sites; take one with regime(site)")
        return self.sites[0]

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("methods", "shots", "sites"):
            data[key] = list(data[key])
        return data


BENCH_PRESETS: dict[str, BenchPreset] = {
    "gpu": BenchPreset("gpu", methods=ALL_METHODS, folds=3, pool=24, test=8, sites=("target", "target_ct"),
                       source_test=8, run_preset="gpu", workers=4, threads=2),
    "cpu": BenchPreset("cpu", methods=("full", "lora", "decoder", "random"), folds=3, pool=12,
                       test=8, sites=("target", "target_ct"), source_test=4, pointing_folds=1, run_preset="cpu",
                       run_changes={"max_steps": 120, "refine_steps": 40, "refine_patience": 40, "warmup_steps": 10},
                       workers=2, threads=1),
    "tiny": BenchPreset("tiny", methods=("head", "lora", "random"), shots=(1, 2), folds=1, pool=3, test=1,
                        source_test=1,
                        run_preset="tiny", run_changes={"max_steps": 8, "refine_steps": 2},
                        workers=1, threads=1),
    "real": BenchPreset("real", methods=("head", "full", "lora"), shots=(1,), folds=3, pool=2, test=1,
                        sites=("real",), data="real", run_preset="cpu",
                        run_changes={"max_steps": 120, "refine_steps": 40, "refine_patience": 40, "warmup_steps": 10},
                        workers=2, threads=1),
}


def bench_preset(name: str, **changes) -> BenchPreset:
    """A named bench preset (``gpu``, ``cpu``, ``tiny``, ``real``) with optional changes."""
    if name not in BENCH_PRESETS:
        raise ValueError(f"unknown bench preset '{name}' (known: {', '.join(BENCH_PRESETS)})")
    known = [f.name for f in fields(BenchPreset)]
    unknown = set(changes) - set(known)
    if unknown:
        raise ValueError(f"unknown bench setting(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    return BENCH_PRESETS[name].with_(**changes)
