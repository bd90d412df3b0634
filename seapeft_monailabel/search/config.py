"""Settings of one SEA-PEFT run (search and fixed baselines share them), with CPU and GPU presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

#: how audit patches can be placed (see search/patches.audit_patches)
AUDIT_WINDOWS = ("random", "centred")


@dataclass(frozen=True)
class SearchConfig:
    """Everything a run needs besides the data and the network.

    Budget: ``budget`` parameters if given, else ``budget_fraction`` of the backbone's parameters
    (default 0.5 %). Cadences are in training steps: probes every ``probe_every`` (S), audits every
    ``audit_every`` (A), allocations every ``allocate_every`` (2A). ``max_steps`` bounds the search;
    ``refine_steps`` the final fine-tune of the chosen set on all labelled volumes. Block units (full,
    decoder tuning) train at ``lr``; the head and every other unit at ``lr * adapter_lr_scale`` (see
    :mod:`.trainer`), in SEA-PEFT and in the fixed baselines alike. With ``prior_start`` the search
    starts from the saliency prior's knapsack under the budget (see :mod:`.episode`) instead of an
    empty set. AdaLoRA units run AdaLoRA's rank schedule over ``max_steps + refine_steps`` steps of their
    own clock, down to ``adalora_target_ratio`` of their rank, masking every ``adalora_every`` steps
    (:mod:`~seapeft_monailabel.peft.adalora_allocator`), in SEA-PEFT and in the ``adalora`` baseline.
    """

    budget_fraction: float = 0.005
    budget: int | None = None
    max_steps: int = 400
    warmup_steps: int = 20
    probe_every: int = 10
    audit_every: int = 10
    allocate_every: int = 20
    refine_steps: int = 100
    refine_patience: int = 40
    reinit_refine: bool = False
    patch_size: tuple[int, int, int] = (64, 64, 64)
    spacing: tuple[float, float, float] | None = None
    patches_per_step: int = 2
    audit_patches: int = 4
    #: how the audit patches are placed: ``random`` voxels of each class, or ``centred`` on each class first
    #: (see search/patches.audit_patches)
    audit_windows: str = "random"
    saliency_batches: int = 2
    lr: float = 1e-3
    adapter_lr_scale: float = 10.0
    weight_decay: float = 0.0
    orthogonality_weight: float = 0.1
    adalora_target_ratio: float = 0.5
    adalora_every: int = 10
    ema_beta: float | None = None
    window: int = 5
    robust_lambda: float = 0.25
    uncertainty_bonus: float = 0.5
    hysteresis: float = 0.1
    votes: int = 3
    probation_votes: int = 2
    guard: int = 3
    probe_guard: int = 1
    audit_fraction: float = 0.2
    debt_horizon: int = 6
    probe_fraction: float = 0.25
    prior_start: bool = True
    history: int = 5
    selection_tolerance: float = 0.001
    #: a candidate whose predicted volume of a structure on the whole selection volume lies more than this
    #: factor outside the labelled volumes' range cannot win (0 switches the check off; see search/plausibility)
    selection_volume_ratio: float = 2.0
    stop_patience: int = 4
    time_limit_s: float | None = None
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_steps", "probe_every", "audit_every", "allocate_every", "patches_per_step", "audit_patches",
                     "adalora_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.allocate_every % self.audit_every:
            raise ValueError("SearchConfig.allocate_every must be a multiple of audit_every (an audit precedes every allocation)")
        if self.lr <= 0 or self.adapter_lr_scale <= 0:
            raise ValueError(f"SearchConfig.lr and adapter_lr_scale must be > 0 "
                             f"(got {self.lr}, {self.adapter_lr_scale})")
        if not 0 < self.adalora_target_ratio <= 1:
            raise ValueError(f"SearchConfig.adalora_target_ratio must be in (0, 1] (got {self.adalora_target_ratio})")
        if not 0 < self.budget_fraction < 1:
            raise ValueError(f"SearchConfig.budget_fraction must be in (0, 1) (got {self.budget_fraction})")
        if self.selection_volume_ratio and self.selection_volume_ratio <= 1:
            raise ValueError(f"SearchConfig.selection_volume_ratio must be 0 (off) or > 1 "
                             f"(got {self.selection_volume_ratio})")
        if self.audit_windows not in AUDIT_WINDOWS:
            raise ValueError(f"SearchConfig.audit_windows must be one of {', '.join(AUDIT_WINDOWS)} "
                             f"(got {self.audit_windows!r})")
        if len(self.patch_size) != 3:
            raise ValueError(f"SearchConfig.patch_size must have 3 values (got {self.patch_size})")

    def resolve_budget(self, backbone_parameters: int) -> int:
        """The budget in parameters."""
        return int(self.budget if self.budget is not None else self.budget_fraction * backbone_parameters)

    def beta_for(self, shots: int) -> float:
        """EMA factor: 0.95 for one shot, 0.93 otherwise, unless set."""
        return self.ema_beta if self.ema_beta is not None else (0.95 if shots == 1 else 0.93)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SearchConfig keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        for key in ("patch_size", "spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def with_(self, **changes) -> "SearchConfig":
        return replace(self, **changes)


PRESETS: dict[str, SearchConfig] = {
    # 2 CPU cores: small patches, short search, few audit patches.
    "cpu": SearchConfig(max_steps=240, warmup_steps=20, probe_every=10, audit_every=10, allocate_every=20,
                        refine_steps=80, patch_size=(48, 48, 48), patches_per_step=2, audit_patches=4),
    # One GPU: the paper's cadences scaled to a few thousand steps, 96^3 patches.
    "gpu": SearchConfig(max_steps=4000, warmup_steps=200, probe_every=100, audit_every=100, allocate_every=200,
                        refine_steps=400, patch_size=(96, 96, 96), patches_per_step=4, audit_patches=8, bf16=True),
    # Tests: seconds.
    "tiny": SearchConfig(max_steps=24, warmup_steps=2, probe_every=2, audit_every=2, allocate_every=4,
                         refine_steps=4, refine_patience=100, patch_size=(16, 16, 16), patches_per_step=1,
                         audit_patches=2, saliency_batches=1, adalora_every=2),
}


def preset(name: str, **changes) -> SearchConfig:
    """A named preset (``cpu``, ``gpu``, ``tiny``) with optional changes."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    unknown = set(changes) - {f.name for f in fields(SearchConfig)}
    if unknown:
        raise ValueError(f"unknown run setting(s) {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(f.name for f in fields(SearchConfig))})")
    return PRESETS[name].with_(**changes)
