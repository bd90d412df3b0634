"""One SEA-PEFT episode: warm start, saliency prior (and the starting set it ranks first), then search /
audit / allocate until the stop rule, final selection among candidate sets, and the refine stage.

The decision objects (estimator, controller, allocator, sampler, proposer, stop rule) are pure logic;
this loop is the only place where they meet the network: it applies the controller's transitions to
the registry's gates, warm-starts rank changes, resets the optimiser state of units that turn on,
and feeds audit measurements of trained units to the estimator.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from ..peft import AdaLoRAUnit, UnitRegistry
from ..peft.adalora_allocator import RankAllocator
from .allocator import Allocator
from .audit import Auditor
from .config import SearchConfig
from .controller import Transition, UnitController, UnitState
from .distributed import DistContext
from .estimator import UtilityEstimator
from .events import EventLog
from .patches import PatchStream, audit_patches
from .plausibility import PlausibilityCheck
from .probes import ProbeProposer
from .saliency import saliency_prior
from .sampler import AuditSampler
from .stopping import StopRule
from .timing import StageClock
from .trainer import UnitTrainer

Progress = Callable[[str, int, int, dict], None]


@dataclass
class Candidate:
    """A unit set considered at the final selection."""

    source: str
    units: tuple[str, ...]
    cost: int
    dice: float | None = None  # soft Dice on the audit (selection) patches
    volume_dice: float | None = None  # hard Dice on the whole selection volume (mean over structures)
    plausible: bool = True  # predicted structure volumes within the labelled range (search/plausibility)
    checked: bool = False  # segmented by that guard (those ranked below the first plausible set are not)
    implausible: str | None = None  # why not


@dataclass
class EpisodeOutcome:
    """What the episode decided and measured."""

    chosen: list[str]
    selection_dice: float
    head_only_dice: float  # the Dice of the candidate without units at the final selection
    candidates: list[Candidate]
    stop_reason: str
    search_steps: int
    refine_steps: int
    prior: dict[str, float] = field(default_factory=dict)


def train_steps(trainer: UnitTrainer, stream, steps: int, events: EventLog, stage: str,
                progress: Progress | None, offset: int = 0, decay: bool = True, patience: int | None = None,
                ctx: DistContext = DistContext()) -> int:
    """Train up to ``steps`` steps; returns the steps run.

    With ``decay`` the learning rate follows a cosine to zero over the stage; with ``patience`` the stage
    stops early once the smoothed loss (EMA 0.9) has not improved for that many steps (under
    ``torch.distributed``, rank 0's smoothed loss decides for every rank).
    """
    if decay:
        trainer.start_decay(steps)
    best, since_best, smoothed = float("inf"), 0, None
    done = 0
    for image, label in islice(stream, steps):
        loss = trainer.step(image, label)
        done += 1
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
        events.write("train", stage=stage, step=offset + done, loss=loss, lr=trainer.current_lr())
        if progress:
            progress(stage, done, steps, {"loss": loss})
        if smoothed < best - 1e-4:
            best, since_best = smoothed, 0
        else:
            since_best += 1
        if patience is not None and ctx.broadcast(since_best >= patience):
            break
    return done


def rank_allocator(registry: UnitRegistry, config: SearchConfig) -> RankAllocator:
    """AdaLoRA's importance and budgeted masking for the registry's AdaLoRA units, on the run's schedule
    (a trainer hook: it acts on the units that are on)."""
    return RankAllocator([u for u in registry if isinstance(u, AdaLoRAUnit)], config.max_steps + config.refine_steps,
                         config.adalora_target_ratio, config.adalora_every)


class SearchEpisode:
    """Runs the loop of docs/DESIGN.md ("The loop") on one support set and one audit volume.

    Under ``torch.distributed`` (``ctx.active``) every rank runs this object; the decision objects are
    consulted on rank 0 only and their results (probe and allocation transitions, the audit selection,
    the candidates, the winner, the stop decision) are broadcast, so all ranks apply the same gates.
    """

    def __init__(self, registry: UnitRegistry, support: Sequence[dict], audit_item: dict, config: SearchConfig,
                 n_classes: int, shots: int, events: EventLog, device, progress: Progress | None = None,
                 refine_data: Sequence[dict] | None = None, auditor: Auditor | None = None,
                 ctx: DistContext = DistContext(), label_names: Sequence[str] | None = None):
        self.registry = registry
        self.config = config
        self.events = events
        self.progress = progress if ctx.is_main else None
        self.device = device
        self.ctx = ctx
        self.shots = shots
        self.support = list(support)
        self.audit_item = audit_item
        self.n_classes = n_classes
        self.label_names = label_names
        self.refine_data = list(refine_data) if refine_data is not None else self.support + [audit_item]
        self.budget = config.resolve_budget(registry.backbone_parameters)
        if auditor is None:
            images, labels = audit_patches(audit_item, config.patch_size, config.audit_patches, n_classes, config.seed,
                                           config.spacing, config.audit_windows)
            auditor = Auditor(registry, images, labels, n_classes, device=device, ctx=ctx)
        self.auditor = auditor
        self.trainer = UnitTrainer(registry, config.lr, config.warmup_steps, config.weight_decay,
                                   config.orthogonality_weight, device=device, bf16=config.bf16,
                                   adapter_lr_scale=config.adapter_lr_scale, ctx=ctx)
        self.ranks = rank_allocator(registry, config)
        self.trainer.after_backward.append(self.ranks)
        self.allowance = max(int(config.probe_fraction * self.budget), 1)
        self.units = [u for u in registry if u.cost <= self.budget]
        if not self.units:
            raise ValueError(f"budget {self.budget} is smaller than every unit of manifest '{registry.manifest.name}'")
        self.controller = self._controller(())
        self.estimator = UtilityEstimator(beta=config.beta_for(shots), window=config.window, lam=config.robust_lambda)
        self.allocator = Allocator(self.units, self.budget, beta_unc=config.uncertainty_bonus,
                                   hysteresis=config.hysteresis)
        self.sampler = AuditSampler([u.name for u in self.units], fraction=config.audit_fraction,
                                    horizon=config.debt_horizon, measurable_only=True)
        self.proposer = ProbeProposer(self.units, self.allowance, beta_unc=config.uncertainty_bonus)
        unreachable = self.proposer.unreachable()
        if unreachable and ctx.is_main:
            warnings.warn(f"{len(unreachable)} units cost more than the probe allowance ({self.allowance} parameters), "
                          f"alone and as a rank-up from a smaller level: no probe can switch them on "
                          f"({', '.join(unreachable)}); raise probe_fraction to reach them", stacklevel=2)
            events.write("unreachable", allowance=self.allowance, units=unreachable)
        self.stop = StopRule(config.max_steps, patience=config.stop_patience, time_limit_s=config.time_limit_s)
        self.trained: set[str] = set()
        self.on_since: dict[str, int] = {}
        self.prior: dict[str, float] = {}
        self.history: list[tuple[int, tuple[str, ...]]] = []
        self.clock = StageClock()

    # ----------------------------------------------------------------- helpers
    def _controller(self, start: Sequence[str]) -> UnitController:
        """The unit controller, with ``start`` ACTIVE under the probe guard."""
        cfg = self.config
        return UnitController(self.units, self.budget, self.allowance, v_active=cfg.votes,
                              v_probation=cfg.probation_votes, guard=cfg.guard, probe_guard=cfg.probe_guard,
                              initial_active=start, initial_guard=cfg.probe_guard)

    def _decide(self, decide: Callable[[], tuple]) -> tuple:
        """Run ``decide`` on rank 0 and hand its result to every rank."""
        return self.ctx.broadcast(decide() if self.ctx.is_main else None)

    def _apply(self, transitions: list[Transition], step: int, on: list[str] | None = None) -> None:
        """Apply transitions to the network: warm starts, fresh optimiser state, and the gates ``on``."""
        for t in transitions:
            if t.to_state.on and not t.from_state.on:
                if t.warm_start_from is not None:
                    self.registry.unit(t.unit).warm_start_from(self.registry.unit(t.warm_start_from))
                self.trainer.forget([t.unit])
                self.trained.add(t.unit)
                self.on_since[t.unit] = step
            self.events.write("transition", step=step, unit=t.unit, source=t.from_state.value, target=t.to_state.value,
                              reason=t.reason, warm_start_from=t.warm_start_from)
        self.registry.enable_only(self.controller.on_units() if on is None else on)

    def _cost(self, names) -> int:
        return sum(self.registry.unit(n).cost for n in names)

    # ----------------------------------------------------------------- stages
    def _warm_start(self, stream) -> dict[str, float]:
        self.registry.enable_only([])
        with self.clock("train"):
            for i, (image, label) in enumerate(islice(stream, self.config.warmup_steps), 1):
                loss = self.trainer.step(image, label)
                self.events.write("train", stage="warmup", step=i, loss=loss, lr=self.trainer.current_lr())
        with self.clock("prior"):
            batches = list(islice(stream, self.config.saliency_batches))
            prior = saliency_prior(self.registry, self.trainer.loss_fn, batches, self.config.lr, self.device, self.ctx,
                                   lr_scale=self.trainer.lr_scale)
        self.events.write("prior", values={u.name: prior[u.name] for u in self.units})
        return prior

    def _start_from_prior(self) -> None:
        """Switch on the knapsack of the saliency prior under the budget, ACTIVE from step 0.

        The prior ranks units by predicted loss drop per parameter; the greedy fill (one level per group,
        positive prior only) makes the budget bind from the first search step, so the set that is
        finally chosen has trained for most of the search instead of only after a few probe rounds.
        The audits then judge these units like any other (their start guard is the probe guard).
        """
        start = self._decide(lambda: tuple(sorted(self.allocator.solve_guard_free(self.prior, {}).desired)))
        self.controller = self._controller(start)
        self._apply([Transition(n, UnitState.CANDIDATE, UnitState.ACTIVE, "start", first_on=True) for n in start], 0)

    def _audit(self, step: int) -> None:
        def choose():
            on = self.controller.on_units()
            selected = self.sampler.sample(on, self.estimator.uncertainties(), self.trained)
            # a never-trained unit is exactly zero, and one switched on moments ago barely differs from zero:
            # measuring either would feed the estimator zeros that say nothing about the unit
            settled = max(1, self.config.audit_every // 2)
            measured = [n for n in selected if n in self.trained
                        and (n not in on or step - self.on_since.get(n, 0) >= settled)]
            return on, selected, measured

        on, selected, measured = self._decide(choose)
        before = self.auditor.evaluations
        baseline, deltas = self.auditor.audit(measured, on)
        if not self.ctx.is_main:
            return
        samples = {}
        for name, delta in deltas.items():
            utility = self.estimator.update(name, delta, self.registry.unit(name).cost)
            samples[name] = {"delta": delta, "utility": utility, "robust": self.estimator.robust(name),
                             "uncertainty": self.estimator.uncertainty(name)}
        self.sampler.record(selected)
        self.events.write("audit", step=step, baseline_dice=baseline, on=on, units=samples,
                          selected=len(selected), measured=len(measured), sets=self.auditor.evaluations - before)
        self.events.write("coverage", step=step, **self.sampler.coverage())

    def _allocate(self, step: int) -> str | None:
        def decide():
            result = self.allocator.allocate(self.estimator.robust_scores(), self.estimator.uncertainties(),
                                             self.controller.states(), self.controller.guards())
            return result, self.controller.apply(result.desired, result.order), self.controller.on_units()

        result, transitions, on = self._decide(decide)
        self._apply(transitions, step, on)
        if not self.ctx.is_main:
            return self._decide(lambda: None)
        active = tuple(self.controller.active_units())
        self.history.append((step, active))
        assert self.controller.active_cost() <= self.budget, "controller exceeded the budget"
        self.events.write("allocation", step=step, desired=sorted(result.desired), active=list(active),
                          probation=self.controller.probation_units(), active_cost=self.controller.active_cost(),
                          desired_cost=result.cost, budget=self.budget)
        pending = bool(self.controller.probation_units()) or bool(self.proposer.unexplored(self.trained))
        self.stop.observe_allocation(self.controller.on_units(), pending)
        return self._decide(lambda: self.stop.check(step))

    def _probe(self, step: int) -> None:
        def decide():
            names = self.proposer.propose(self.controller.states(), self.controller.guards(), self.trained,
                                          self.estimator.robust_scores(), self.estimator.uncertainties(), self.prior,
                                          self.controller.probe_charges())
            made = self.controller.probe(names)
            self.proposer.record(t.unit for t in made if t.reason == "probe")
            return made, self.controller.on_units()

        made, on = self._decide(decide)
        self._apply(made, step, on)

    def _candidates(self) -> list[Candidate]:
        seen: set[tuple[str, ...]] = set()
        candidates = []
        for step, units in reversed(self.history):
            if units not in seen and len(candidates) < self.config.history:
                seen.add(units)
                candidates.append(Candidate(f"allocation@{step}", units, self._cost(units)))
        free = self.allocator.solve_guard_free(self.estimator.robust_scores(), self.estimator.uncertainties(),
                                               on=self.controller.on_units())
        units = tuple(sorted(free.desired))
        if units not in seen:
            candidates.append(Candidate("guard-free", units, self._cost(units)))
        if not any(c.units == () for c in candidates):
            candidates.append(Candidate("head-only", (), 0))
        return candidates

    def _select(self) -> list[Candidate]:
        candidates = self._decide(self._candidates)
        check = self._plausibility()
        for c in candidates:
            c.dice = self.auditor.dice(c.units)
        if check is not None:
            # down the ranking until the first plausible candidate: the ones ranked below it cannot win, so
            # they are not segmented (each check is a whole-volume inference); every rank segments (the
            # network runs on all of them) and rank 0's verdict decides for all
            pending = list(candidates)
            while pending:
                top = self._ranked(pending)[0]
                verdict = self.ctx.broadcast(check(top.units))
                top.checked, top.volume_dice = True, sum(verdict.dice) / len(verdict.dice)
                top.plausible, top.implausible = verdict.plausible, verdict.why
                if top.plausible:
                    break
                pending.remove(top)
        candidates = self._ranked(candidates)
        self.events.write("selection", candidates=[c.__dict__ for c in candidates],
                          all_implausible=not any(c.plausible for c in candidates))
        return candidates

    def _ranked(self, candidates: list[Candidate]) -> list[Candidate]:
        """Plausible sets first (all compete when none is; a set not segmented counts as plausible), then by
        Dice, then by fewer parameters: Dice within the tolerance of the best counts as a tie, since
        differences that small on a few audit patches are noise, not evidence."""
        competing = [c for c in candidates if c.plausible] or candidates
        best = max(c.dice for c in competing)
        tolerance = self.config.selection_tolerance
        return sorted(candidates, key=lambda c: (not c.plausible, c.dice < best - tolerance,
                                                 c.cost if c.dice >= best - tolerance else 0, -c.dice, c.units))

    def _plausibility(self) -> PlausibilityCheck | None:
        """The whole-volume check of the final candidates (None when switched off)."""
        cfg = self.config
        if not cfg.selection_volume_ratio:
            return None
        return PlausibilityCheck(self.registry, self.audit_item, self.refine_data, self.n_classes, cfg.patch_size,
                                 cfg.spacing, cfg.selection_volume_ratio, device=self.device,
                                 label_names=self.label_names)

    # ----------------------------------------------------------------- run
    def _stream(self, data: Sequence[dict], seed: int):
        """Each rank draws its own patches."""
        cfg = self.config
        return iter(PatchStream(data, cfg.patch_size, cfg.patches_per_step, seed + 7919 * self.ctx.rank, cfg.spacing))

    def run(self) -> EpisodeOutcome:
        cfg = self.config
        stream = self._stream(self.support, cfg.seed)
        started = time.monotonic()
        self.prior = self._warm_start(stream)
        if cfg.prior_start:
            self._start_from_prior()
        reason, step = "step_limit", 0
        clock = self.clock
        for step in range(1, cfg.max_steps + 1):
            with clock("train"):
                image, label = next(stream)
                loss = self.trainer.step(image, label)
            self.events.write("train", stage="search", step=step, loss=loss, lr=self.trainer.current_lr(),
                              on_cost=self.registry.enabled_cost())
            if step % cfg.probe_every == 0:
                with clock("allocate"):
                    self._probe(step)
            if step % cfg.audit_every == 0:
                with clock("audit"):
                    self._audit(step)
            if step % cfg.allocate_every == 0:
                with clock("allocate"):
                    stop = self._allocate(step)
            elif self.ctx.active:  # ranks agree on stopping only at allocations (and at the step limit)
                stop = "step_limit" if step >= cfg.max_steps else None
            else:
                stop = self.stop.check(step)
            if self.progress:
                self.progress("search", step, cfg.max_steps, {"loss": loss, "active": len(self.controller.active_units())})
            if stop is not None:
                reason = stop
                break
        with clock("evaluate"):
            candidates = self._select()
        winner = candidates[0]
        # the head alone, as the selection measured it (the same head as every other candidate): one number
        # for config.yaml's head-only candidate and the run's head_only_dice
        head_only = next(c.dice for c in candidates if c.units == ())
        self.registry.enable_only(winner.units)
        if cfg.reinit_refine:
            for name in winner.units:
                self.registry.unit(name).reset_parameters()
        self.trainer.forget(winner.units)
        with clock("refine"):
            refined = train_steps(self.trainer, self._stream(self.refine_data, cfg.seed + 1), cfg.refine_steps,
                                  self.events, "refine", self.progress, offset=step, patience=cfg.refine_patience,
                                  ctx=self.ctx)
            self.ranks.finish()
        self.events.write("timing", seconds=dict(clock.seconds))
        self.events.write("done", stop_reason=reason, search_steps=step, refine_steps=refined,
                          seconds=time.monotonic() - started, chosen=list(winner.units), cost=winner.cost,
                          budget=self.budget, selection_dice=winner.dice, head_only_dice=head_only)
        return EpisodeOutcome(list(winner.units), winner.dice, head_only, candidates, reason, step, refined, self.prior)
