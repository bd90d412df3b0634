"""What one audit costs on this CPU, and the levers of issue 19 that act on it, measured in one run.

On the shipped UNet base model and the audit patches of one sample-data volume (the ``cpu`` preset's four
48^3 patches), with a seeded set of trained units on (the size of a search's set), it times:

1. **one audit** of a seeded sample of units (the ``cpu`` preset's 13) as the search runs it (each distinct
   unit set once, toggles from the baseline's recorded prefix, :mod:`seapeft_monailabel.search.audit`)
   against one full forward per set the audit compares (the code before issue 19), and checks that the
   deltas are equal;
2. **batched toggles**: the seconds per patch of one eval forward at batch 1, 2, 4 and 8 (several toggles
   in one forward would be a larger batch of the same patches);
3. **thread layout**: an eval forward and a training step (forward and backward of the preset's two
   patches) on 1 and on 2 threads, and the speed-up of the second core for each (an audit beside the
   training, one core each, would run the training on one core);
4. **what a search trains**: a training step with the units on against one with the LoRA baseline's
   units (the denominator of ``seapeft overhead``), the floor of the ratio however cheap the audits get;
5. where the time of one forward goes: the top up-sampling layer (``model.2``, the head: every toggle
   recomputes it) against the rest.

  .venv/bin/python benchmarks/audit_cost.py [--repeats 5]

About two minutes on 2 CPU cores, nothing else running. docs/BENCHMARKS.md holds its output.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from seapeft_monailabel.data.datastore import make_datalist  # noqa: E402
from seapeft_monailabel.evaluate.machine import cpu_model  # noqa: E402
from seapeft_monailabel.metrics import dice_from_sums, soft_dice_sums  # noqa: E402
from seapeft_monailabel.models import load_base_model  # noqa: E402
from seapeft_monailabel.peft import UnitRegistry  # noqa: E402
from seapeft_monailabel.search import preset  # noqa: E402
from seapeft_monailabel.search.audit import Auditor  # noqa: E402
from seapeft_monailabel.search.baselines import method_manifest  # noqa: E402
from seapeft_monailabel.search.patches import audit_patches  # noqa: E402

ON_UNITS = 28  # units on, about a search's set after the prior's start (33 at the start, 25 at the end)


def median_seconds(run, repeats: int) -> float:
    """Median wall seconds of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def full_forward_audit(auditor: Auditor, selected: list[str], on: set[str]) -> dict[str, float]:
    """The deltas of :meth:`Auditor.audit` with one full forward per set compared (no sharing, no prefix)."""
    registry = auditor.registry

    def dice(names) -> float:
        sums = torch.zeros(3, auditor.n_classes - 1, dtype=torch.float64)
        with torch.no_grad(), registry.gates(names):
            for i in range(0, len(auditor.images), auditor.batch):
                logits = registry.network(auditor.images[i:i + auditor.batch])
                sums += soft_dice_sums(logits.float(), auditor.labels[i:i + auditor.batch])
        return dice_from_sums(sums)

    baseline = dice(on)
    deltas = {}
    for name in selected:
        if name in on:
            deltas[name] = baseline - dice(on - {name})
            continue
        group = registry.unit(name).group
        rest = {n for n in on if registry.unit(n).group != group}
        reference = baseline if rest == on else dice(rest)
        deltas[name] = dice(rest | {name}) - reference
    return deltas


def training_step(registry: UnitRegistry, images: torch.Tensor) -> None:
    """Forward and backward of ``images`` ``(P, 1, *patch)`` to the gradients of the head and of the units that are on."""
    network = registry.network
    network.train()
    loss = network(images).float().logsumexp(1).mean()
    torch.autograd.grad(loss, registry.trainable_parameters())
    network.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = preset("cpu")
    base = load_base_model(ROOT / "sample-data/base_model/model.pt")
    network = base.network
    registry = UnitRegistry(network, base.spec.name, base.head_names,
                            example=torch.zeros(1, 1, *config.patch_size))
    images, labels = audit_patches(make_datalist(ROOT / "sample-data")[0], config.patch_size, config.audit_patches,
                                   len(base.labels), seed=0)
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained units: small seeded weights, so every toggle changes the output
        for unit in registry:
            for p in unit.trainable_parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=generator))
    names = sorted(registry.units)
    groups: dict = {}
    for name in rng.sample(names, len(names)):  # one level per group on, as the controller keeps it
        groups.setdefault(registry.unit(name).group, name)
    on = set(list(groups.values())[:ON_UNITS])
    selected = rng.sample(names, 13)
    auditor = Auditor(registry, images, labels, len(base.labels))
    network.eval()

    rows = []
    search = median_seconds(lambda: auditor.audit(selected, on), args.repeats)
    full = median_seconds(lambda: full_forward_audit(auditor, selected, on), args.repeats)
    before = auditor.evaluations
    _, deltas = auditor.audit(selected, on)
    sets = auditor.evaluations - before
    reference = full_forward_audit(auditor, selected, on)
    worst = max(abs(deltas[n] - reference[n]) for n in selected)
    rows.append(f"| one audit of {len(selected)} units, {len(on)} on: as the search runs it ({sets} sets) | "
                f"{search:.2f} s | full forwards per set: {full:.2f} s | **{search / full:.2f}x** "
                f"(largest delta difference {worst:.1e}) |")

    with torch.inference_mode():
        per_patch = {b: median_seconds(lambda b=b: network(images[:1].expand(b, -1, -1, -1, -1).contiguous()),
                                       args.repeats) / b for b in (1, 2, 4, 8)}
    rows.append("| eval forward, seconds per patch at batch 1 / 2 / 4 / 8 | "
                + " / ".join(f"{per_patch[b]:.3f}" for b in (1, 2, 4, 8)) + " | batch 8 against batch 2 | "
                f"**{per_patch[8] / per_patch[2]:.2f}x** per patch |")

    registry.enable_only(on)

    def train_step():
        return training_step(registry, images[:config.patches_per_step])

    def eval_forward():
        with torch.inference_mode():
            network(images[:2])

    for label, run in (("eval forward of 2 patches", eval_forward), ("training step of 2 patches", train_step)):
        seconds = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seconds[threads] = median_seconds(run, args.repeats)
        torch.set_num_threads(2)
        rows.append(f"| {label}, 1 / 2 threads | {seconds[1]:.3f} / {seconds[2]:.3f} s | second core | "
                    f"**{seconds[1] / seconds[2]:.2f}x** faster |")

    lora = load_base_model(ROOT / "sample-data/base_model/model.pt").network
    lora_registry = UnitRegistry(lora, method_manifest("lora", base.spec.name), base.head_names,
                                 example=torch.zeros(1, 1, *config.patch_size))
    lora_registry.enable_only(lora_registry.units)
    searched = median_seconds(lambda: training_step(registry, images[:config.patches_per_step]), args.repeats)
    fixed = median_seconds(lambda: training_step(lora_registry, images[:config.patches_per_step]), args.repeats)
    rows.append(f"| training step of 2 patches: {len(on)} library units on / the LoRA baseline's "
                f"{len(lora_registry.units)} | {searched:.3f} / {fixed:.3f} s | per step | "
                f"**{searched / fixed:.2f}x** |")

    head = dict(network.named_modules())["model.2"]
    spent = {}
    head.register_forward_pre_hook(lambda *_: spent.__setitem__("start", time.perf_counter()))
    head.register_forward_hook(lambda *_: spent.__setitem__("head", spent.get("head", 0.0)
                                                           + time.perf_counter() - spent["start"]))
    with torch.inference_mode():
        network(images[:2])
        spent["head"] = 0.0
        whole = median_seconds(lambda: network(images[:2]), args.repeats)
    head_share = spent["head"] / (args.repeats + 1) / whole
    rows.append(f"| eval forward of 2 patches: the top up-sampling layer (head, every toggle recomputes it) | "
                f"{head_share * whole:.3f} of {whole:.3f} s | share | **{100 * head_share:.0f} %** |")
    registry.enable_only([])

    print(f"Machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} after a warm-up; `.venv/bin/python benchmarks/audit_cost.py`\n")
    print("| measured | this | against | ratio |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
