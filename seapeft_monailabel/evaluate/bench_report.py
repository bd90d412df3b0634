"""The benchmark's outputs from its run records: summary statistics, the goals check, JSON, Markdown and a plot.

Dice values are fractions in the records and x 100 in the table and plot. "mean ± sd" is over folds
(each fold's value being the mean over the test volumes); "mean over shots" averages the per-shot means.
The strongest PEFT baseline is the fixed parameter-efficient method (full fine-tuning, the reference, and
random sets excluded) with the best mean over shots. Forgetting is an adapted model's Dice on held-out
source-site volumes for the structures the base knew, against the base model's on the same volumes.

A bench of several target sites writes one report per regime (``<out>/<site>/``) and the regimes side by
side in ``<out>`` (:func:`write_regimes_report`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import staged_folder
from ..data.sites import SITES
from ..figures import plt, save_figure
from .machine import describe_machine

SEARCH = "sea-peft"
GOAL_GAP = 3.0  # Dice points SEA-PEFT must gain over the strongest PEFT baseline and over random sets of its cost
GOAL_PERCENT = 0.5  # at most this % of the backbone trained
GOAL_FORGETTING = 1.0  # SEA-PEFT's source-site Dice at most this many points below the base model's
REFERENCE = "full"  # full fine-tuning: reported as the reference, not a PEFT baseline


def _mean_sd(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarise(results: dict) -> dict:
    """Per method: per shot and structure ``[mean, sd]`` over folds (x 100), cost, time; plus the goals check."""
    structures = [n for n, _ in sorted(results["labels"].items(), key=lambda kv: kv[1]) if n != "background"]
    shots = results["preset"]["shots"]
    methods = {}
    for method in results["methods"]:
        runs = [r for r in results["runs"] if r["job"]["method"] == method]
        if not runs:
            continue
        per_shot, per_volume = {}, {}
        for k in shots:
            fold_runs = [r for r in runs if r["job"]["shots"] == k]
            if fold_runs:
                per_shot[str(k)] = {s: list(_mean_sd([100 * r["dice"][s] for r in fold_runs]))
                                    for s in structures + ["mean"]}
                per_shot[str(k)]["folds"] = len(fold_runs)
                per_volume[str(k)] = _per_volume(fold_runs, [v["id"] for v in results.get("test_volumes") or []])
        over_shots = {s: float(np.mean([v[s][0] for v in per_shot.values()])) for s in structures + ["mean"]}
        methods[method] = {
            "source": _source(runs, shots),
            "adapter_bytes": float(np.mean([r["bytes"]["adapter"] for r in runs])) if _has(runs, "bytes") else None,
            "model_bytes": float(np.mean([r["bytes"]["model"] for r in runs])) if _has(runs, "bytes") else None,
            "per_shot": per_shot,
            "per_volume": per_volume,
            "over_shots": over_shots,
            "cost": float(np.mean([r["cost"] for r in runs])),
            "trainable": float(np.mean([r["trainable"] for r in runs])),
            "percent": float(np.mean([r["percent"] for r in runs])),
            "max_percent": float(max(r["percent"] for r in runs)),
            "budget_used": float(np.mean([r["cost"] / r["budget"] for r in runs])),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
            "runs": len(runs),
        }
    base = results.get("base_source_dice")
    base_source = None if base is None else {k: 100 * v for k, v in base.items() if k != "volumes"}
    return {"structures": structures, "methods": methods, "goals": _goals(methods, base_source),
            "pointing": _pointing(results, structures), "base_source": base_source}


def _has(runs: list[dict], key: str) -> bool:
    return all(r.get(key) is not None for r in runs)


def _source(runs: list[dict], shots: list[int]) -> dict | None:
    """Source-site Dice x 100 (the seen structures' mean): ``per_shot`` ``[mean, sd]`` over folds and
    ``over_shots``; None when the runs were not scored on source volumes."""
    if not _has(runs, "source_dice"):
        return None
    per_shot = {str(k): list(_mean_sd([100 * r["source_dice"]["mean"] for r in runs if r["job"]["shots"] == k]))
                for k in shots if any(r["job"]["shots"] == k for r in runs)}
    return {"per_shot": per_shot, "over_shots": float(np.mean([v[0] for v in per_shot.values()]))}


def _per_volume(runs: list[dict], ids: list[str]) -> list[list[float]]:
    """Dice x 100 of each test volume in ``ids`` (one row of structures each), mean over the runs that tested it
    (every fold, or under leave-one-subject-out the one fold that left it out). Records without test ids
    are matched by position."""
    rows: dict = {}
    for run in runs:
        for sid, row in zip(run.get("test") or range(len(run["dice_volumes"])), run["dice_volumes"]):
            rows.setdefault(sid, []).append(row)
    return [(100 * np.mean(rows[sid], axis=0)).tolist() for sid in ids or list(rows) if sid in rows]


def _folds_played(folds: int) -> str:
    return "fold 0" if folds == 1 else f"folds 0 to {folds - 1}"


def _pointing(results: dict, structures: list[str]) -> dict:
    """Pointing-game hit rates (%) per structure: the base model, and SEA-PEFT's models per shot (mean over the
    folds that played it)."""
    table = {}
    if results.get("base_pointing"):
        table["base model"] = {s: 100 * results["base_pointing"][s] for s in structures}
    for k in results["preset"]["shots"]:
        runs = [r for r in results["runs"] if r["job"]["method"] == SEARCH and r["job"]["shots"] == k
                and r.get("pointing")]
        if runs:
            table[f"SEA-PEFT, {k} shot{'s' * (k != 1)}"] = {s: float(np.mean([100 * r["pointing"][s] for r in runs]))
                                                          for s in structures}
    return table


def _goals(methods: dict, base_source: dict | None = None) -> dict:
    if SEARCH not in methods:
        return {}
    ours = methods[SEARCH]
    peft = {m: v for m, v in methods.items() if m not in (SEARCH, "random", REFERENCE)}
    goals: dict = {"sea_peft_mean": ours["over_shots"]["mean"], "sea_peft_max_percent": ours["max_percent"],
                   "sea_peft_budget_used": ours["budget_used"]}
    goals["percent_met"] = ours["max_percent"] <= GOAL_PERCENT
    if peft:
        best = max(peft, key=lambda m: peft[m]["over_shots"]["mean"])
        goals.update(strongest_peft=best, strongest_peft_mean=peft[best]["over_shots"]["mean"])
        goals["gap"] = ours["over_shots"]["mean"] - peft[best]["over_shots"]["mean"]
        goals["gap_met"] = goals["gap"] >= GOAL_GAP
    if REFERENCE in methods:
        goals["reference_mean"] = methods[REFERENCE]["over_shots"]["mean"]
    if "random" in methods:
        goals["random_mean"] = methods["random"]["over_shots"]["mean"]
        goals["random_gap"] = ours["over_shots"]["mean"] - goals["random_mean"]
        goals["random_gap_met"] = goals["random_gap"] >= GOAL_GAP
    if base_source is not None and ours["source"] is not None:
        goals["base_source_mean"] = base_source["mean"]
        goals["sea_peft_source_mean"] = ours["source"]["over_shots"]
        goals["forgetting"] = ours["source"]["over_shots"] - base_source["mean"]
        goals["forgetting_met"] = goals["forgetting"] >= -GOAL_FORGETTING
        if REFERENCE in methods and methods[REFERENCE]["source"] is not None:
            goals["reference_forgetting"] = methods[REFERENCE]["source"]["over_shots"] - base_source["mean"]
    return goals


def _cell(stat: list[float] | None) -> str:
    return "–" if stat is None else f"{stat[0]:.1f} ± {stat[1]:.1f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _sizes(ml: dict[str, float], structures: list[str]) -> str:
    return " / ".join(f"{ml[s]:.0f}" for s in structures)


def _per_volume_lines(results: dict, summary: dict, order: list[str], tag: dict[str, str]) -> list[str]:
    """The per-test-volume table (one structure's size can move a mean over a few volumes by points)."""
    volumes = results.get("test_volumes")
    if not volumes:
        return []
    structures = summary["structures"]
    lines = ["", "Per test volume (Dice x 100, mean over folds; " + " / ".join(f"{s}{tag[s]}" for s in structures)
             + "; the structures' volumes in ml under each name):", "",
             "| method | shots | " + " | ".join(f"{v['id']} ({_sizes(v['ml'], structures)} ml)" for v in volumes) + " |",
             "|---|---" + "|---" * len(volumes) + "|"]
    for m in order:
        for k, table in summary["methods"][m]["per_volume"].items():
            lines.append(f"| {m} | {k} | " + " | ".join(" / ".join(f"{d:.1f}" for d in row) for row in table) + " |")
    return lines


def _selection_lines(results: dict) -> list[str]:
    """SEA-PEFT's own verdict on its choice (selection patches, whole selection volume) beside its test Dice,
    run by run: how far the selection can be trusted. Records made before the whole-volume check have no
    selection-volume Dice; the column is left out when none has it."""
    runs = sorted((r for r in results["runs"] if r["job"]["method"] == SEARCH),
                  key=lambda r: (r["job"]["shots"], r["job"]["fold"]))
    if not runs:
        return []
    whole = any(r.get("selection_volume_dice") is not None for r in runs)

    def cell(value):
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["", "SEA-PEFT's selection against the test (mean Dice x 100 over structures; selection patches: the "
             "audit's soft Dice that ranked the candidates; "
             + ("selection volume: the chosen set on the whole selection volume; " if whole else "")
             + "test: the held-out volumes):", "",
             "| shots | fold | selection volume id | selection patches | " + ("selection volume | " if whole else "")
             + "test | test - patches |",
             "|---" * (6 + whole) + "|"]
    for r in runs:
        lines.append(f"| {r['job']['shots']} | {r['job']['fold']} | {r['selection']} | {cell(r['selection_dice'])} | "
                     + (f"{cell(r.get('selection_volume_dice'))} | " if whole else "")
                     + f"{cell(r['dice']['mean'])} | {100 * (r['dice']['mean'] - r['selection_dice']):+.1f} |")
    return lines


def _met(flag: bool) -> str:
    return f"**{'met' if flag else 'not met'}**"


def goal_lines(g: dict) -> list[str]:
    """The goals check of one regime, one sentence per goal."""
    lines = []
    if "gap" in g:
        lines.append(f"SEA-PEFT mean over shots {g['sea_peft_mean']:.1f} vs the strongest PEFT baseline "
                     f"({g['strongest_peft']}) {g['strongest_peft_mean']:.1f}: {g['gap']:+.1f} points "
                     f"(goal ≥ +{GOAL_GAP:.0f}): {_met(g['gap_met'])}.")
    if "random_gap" in g:
        lines.append(f"SEA-PEFT vs random unit sets of its cost ({g['random_mean']:.1f}): {g['random_gap']:+.1f} "
                     f"points (goal ≥ +{GOAL_GAP:.0f}): {_met(g['random_gap_met'])}.")
    lines.append(f"SEA-PEFT trains at most {g['sea_peft_max_percent']:.3f} % of the backbone (goal ≤ "
                 f"{GOAL_PERCENT} %): {_met(g['percent_met'])}; its sets use "
                 f"{100 * g['sea_peft_budget_used']:.0f} % of the budget on average.")
    if "forgetting" in g:
        reference = (f"; full fine-tuning {g['reference_forgetting']:+.1f}" if "reference_forgetting" in g else "")
        lines.append(f"SEA-PEFT's source-site Dice {g['sea_peft_source_mean']:.1f} vs the base model's "
                     f"{g['base_source_mean']:.1f}: {g['forgetting']:+.1f} points (goal ≥ -{GOAL_FORGETTING:.0f})"
                     f": {_met(g['forgetting_met'])}{reference}.")
    if "reference_mean" in g:
        lines.append(f"Full fine-tuning, the reference (every weight, one whole model per site): "
                     f"{g['reference_mean']:.1f} ({g['sea_peft_mean'] - g['reference_mean']:+.1f} points for SEA-PEFT).")
    return lines


def _kib(value: float | None) -> str:
    return "–" if value is None else f"{value / 1024:,.0f}"


def _forgetting_lines(results: dict, summary: dict, order: list[str]) -> list[str]:
    """Forgetting (source-site Dice of the seen structures, per shot) and what each site stores."""
    base = summary.get("base_source")
    methods = summary["methods"]
    if base is None or not any(methods[m]["source"] for m in order):
        return []
    shots = [str(k) for k in results["preset"]["shots"]]
    seen = ", ".join(results["seen"])
    lines = ["", f"Forgetting and storage: Dice x 100 of each adapted model on {len(results['source_volumes'])} "
             f"held-out `source` volumes for the structures the base knew ({seen}; mean ± sd over folds), against "
             f"the base model's {base['mean']:.1f} on the same volumes; KiB a site stores beside the shared base "
             "(its adapter files: units and head) against the merged model:", "",
             "| method | " + " | ".join(f"{k} shot{'s' * (k != '1')}" for k in shots)
             + " | mean over shots | vs base | KiB per site | model KiB |", "|---" * (5 + len(shots)) + "|",
             "| base model | " + " | ".join(f"{base['mean']:.1f}" for _ in shots) + f" | {base['mean']:.1f} | – | "
             "0 | – |"]
    for m in order:
        source = methods[m]["source"]
        if source is None:
            continue
        lines.append(f"| {m} | " + " | ".join(_cell(source["per_shot"].get(k)) for k in shots)
                     + f" | {source['over_shots']:.1f} | {source['over_shots'] - base['mean']:+.1f} | "
                     f"{_kib(methods[m]['adapter_bytes'])} | {_kib(methods[m]['model_bytes'])} |")
    return lines


def markdown(results: dict, summary: dict, command: bool = True) -> str:
    """The result tables and the goals check as Markdown (``command``: end with the command line)."""
    shots = [str(k) for k in results["preset"]["shots"]]
    structures = summary["structures"]
    seen, novel = set(results["seen"]), set(results["novel"])
    tag = {s: " (seen)" if s in seen else " (novel)" if s in novel else "" for s in structures}
    methods = summary["methods"]
    order = [SEARCH] * (SEARCH in methods) + sorted((m for m in methods if m != SEARCH),
                                                    key=lambda m: -methods[m]["over_shots"]["mean"])
    lib = results["library"]
    folds = results["preset"]["folds"]
    lines = [
        f"Test Dice x 100 on {results['preset']['test']} held-out `{results['preset']['sites'][0]}` volumes, "
        f"mean ± sd over {folds} fold(s); network `{results['network']['name']}` "
        f"({_count(lib['backbone_parameters'])} parameters); budget {_count(lib['budget'])} parameters "
        f"({100 * results['run_config']['budget_fraction']:.2f} %), unit library `{lib['manifest']}` "
        f"({lib['units']} units, {_count(lib['max_concurrent_cost'])} parameters at most at once).",
        "",
        "| method | trained parameters (units) | % of backbone | "
        + " | ".join(f"{k} shot{'s' * (k != '1')}" for k in shots)
        + " | mean over shots | " + " | ".join(f"{s}{tag[s]}" for s in structures) + " | time per run (s) |",
        "|---" * (5 + len(shots) + len(structures)) + "|",
    ]
    for m in order:
        v = methods[m]
        cells = [_cell(v["per_shot"].get(k, {}).get("mean")) for k in shots]
        lines.append(f"| {'**SEA-PEFT**' if m == SEARCH else m} | {_count(v['cost'])} | {v['percent']:.3f} | "
                     + " | ".join(cells) + f" | {v['over_shots']['mean']:.1f} | "
                     + " | ".join(f"{v['over_shots'][s]:.1f}" for s in structures) + f" | {v['seconds']:.0f} |")
    lines += ["", "Per structure and shot count (mean ± sd over folds):", "",
              "| method | shots | " + " | ".join(f"{s}{tag[s]}" for s in structures) + " | mean |",
              "|---|---" + "|---" * (len(structures) + 1) + "|"]
    for m in order:
        for k, stat in methods[m]["per_shot"].items():
            lines.append(f"| {m} | {k} | " + " | ".join(_cell(stat[s]) for s in structures + ["mean"]) + " |")
    lines += _per_volume_lines(results, summary, order, tag)
    lines += _forgetting_lines(results, summary, order)
    lines += _selection_lines(results)
    g = summary["goals"]
    if g:
        lines += ["", "Goals:", ""]
        lines += [f"- {line}" for line in goal_lines(g)]
    if summary["pointing"]:
        folds = results["preset"].get("pointing_folds") or results["preset"]["folds"]
        lines += ["", f"Pointing game (share of the {results['preset']['test']} test volumes whose Grad-CAM maximum "
                  f"lies inside the structure, %; SEA-PEFT: mean over {_folds_played(folds)}):", "",
                  "| model | " + " | ".join(f"{s}{tag[s]}" for s in structures) + " |",
                  "|---" * (1 + len(structures)) + "|"]
        for name, rates in summary["pointing"].items():
            lines.append(f"| {name} | " + " | ".join(f"{rates[s]:.0f}" for s in structures) + " |")
    if results.get("skipped_methods"):
        lines += ["", "Not applicable to this network: "
                  + "; ".join(f"{m} ({why})" for m, why in results["skipped_methods"].items()) + "."]
    lines += ["", f"Machine: {describe_machine(results['machine'])} per run process. Bench wall time {results['seconds'] / 60:.1f} min "
              f"(this invocation); {sum(r['seconds'] for r in results['runs']) / 60:.1f} min of run time in all "
              f"({results['preset']['workers']} run(s) at once)."]
    if results.get("command") and command:
        lines += ["", "Command:", "", "```bash", results["command"], "```"]
    return "\n".join(lines) + "\n"


def plot(results: dict, summary: dict, png_path: str | Path) -> Path:
    """Dice by method and shot: mean over structures, the seen and the novel structure (error bars: sd over folds)."""
    structures = summary["structures"]
    seen, novel = set(results["seen"]), set(results["novel"])
    panels = [("mean", "mean over structures")] + [(s, f"{s} ({'seen' if s in seen else 'novel' if s in novel else ''})")
                                                    for s in structures]
    shots = [str(k) for k in results["preset"]["shots"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True)
    axes = np.atleast_1d(axes)
    methods = summary["methods"]
    for ax, (key, title) in zip(axes, panels):
        for i, (m, v) in enumerate(methods.items()):
            ks = [k for k in shots if k in v["per_shot"]]
            means = [v["per_shot"][k][key][0] for k in ks]
            sds = [v["per_shot"][k][key][1] for k in ks]
            style = dict(color="k", lw=2.5, zorder=5) if m == SEARCH else dict(color=f"C{i % 10}", lw=1.2,
                                                                                ls="--" if m == "random" else "-")
            ax.errorbar([int(k) for k in ks], means, yerr=sds, marker="o", ms=4, capsize=3,
                        label="SEA-PEFT" if m == SEARCH else m, **style)
        ax.set_title(title)
        ax.set_xlabel("shots (labelled training volumes)")
        ax.set_xticks([int(k) for k in shots])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test Dice x 100")
    axes[-1].legend(fontsize=8, loc="lower right")
    return save_figure(fig, f"SEA-PEFT vs fixed baselines ({results['network']['name']}, preset "
                            f"{results['preset']['name']}, {results['preset']['sites'][0]})", png_path, dpi=110)


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json`` (every run and the summary), ``results.md`` and ``results.png`` into ``out_dir``."""
    out = Path(out_dir)
    summary = summarise(results)
    results["summary"] = summary
    names = {"json": "results.json", "markdown": "results.md", "plot": "results.png"}
    with staged_folder(out) as staging:
        (staging / names["json"]).write_text(json.dumps(results, indent=1) + "\n")
        (staging / names["markdown"]).write_text(markdown(results, summary), encoding="utf-8")
        plot(results, summary, staging / names["plot"])
    return {key: out / name for key, name in names.items()}


def _regime_title(site: str) -> str:
    known = SITES.get(site)
    return f"`{site}`" + (f" ({known.modality}): {known.description}" if known else "")


def regimes_markdown(results: dict) -> str:
    """The regimes side by side (what the goals ask in each), then each regime's tables."""
    regimes = results["regimes"]
    lines = ["Regimes side by side (test Dice x 100, mean over shots and folds; source: Dice x 100 on held-out "
             "source-site volumes for the structures the base knew; KiB a site stores beside the shared base):", "",
             "| regime | SEA-PEFT | strongest PEFT baseline | SEA-PEFT - it | random sets | SEA-PEFT - random | "
             "full (reference) | source: base / SEA-PEFT / full | KiB per site: SEA-PEFT / full |",
             "|---" * 9 + "|"]
    for site, regime in regimes.items():
        summary, g = regime["summary"], regime["summary"]["goals"]
        methods = summary["methods"]

        def value(key, fmt="{:.1f}"):
            return fmt.format(g[key]) if key in g else "–"

        def source(m):
            return f"{methods[m]['source']['over_shots']:.1f}" if m in methods and methods[m]["source"] else "–"

        base = f"{summary['base_source']['mean']:.1f}" if summary.get("base_source") else "–"
        best = f"{g['strongest_peft']} {g['strongest_peft_mean']:.1f}" if "strongest_peft" in g else "–"
        sizes = " / ".join(_kib(methods[m]["adapter_bytes"]) if m in methods else "–" for m in (SEARCH, REFERENCE))
        lines.append(f"| `{site}` | {value('sea_peft_mean')} | {best} | {value('gap', '{:+.1f}')} | "
                     f"{value('random_mean')} | {value('random_gap', '{:+.1f}')} | {value('reference_mean')} | "
                     f"{base} / {source(SEARCH)} / {source(REFERENCE)} | {sizes} |")
    lines += ["", "Goals per regime:", ""]
    for site, regime in regimes.items():
        lines += [f"- `{site}`: {line}" for line in goal_lines(regime["summary"]["goals"])]
    lines += ["", f"Bench wall time {results['seconds'] / 60:.1f} min for {len(regimes)} regime(s) (this invocation)."]
    if results.get("command"):
        lines += ["", "Command:", "", "```bash", results["command"], "```"]
    for site, regime in regimes.items():
        lines += ["", f"### Regime {_regime_title(site)}", "",
                  markdown(regime, regime["summary"], command=False).rstrip("\n"),
                  "", f"![Dice by method and shot, {site}]({site}/results.png)"]
    return "\n".join(lines) + "\n"


def write_regimes_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json`` (each regime's summary; its runs stay in ``<site>/results.json``) and
    ``results.md`` (the regimes side by side, then each regime's tables) into ``out_dir``."""
    out = Path(out_dir)
    slim = {**results, "regimes": {site: {"summary": r["summary"], "seconds": r["seconds"],
                                          "results": f"{site}/results.json"} for site, r in results["regimes"].items()}}
    names = {"json": "results.json", "markdown": "results.md"}
    with staged_folder(out) as staging:
        (staging / names["json"]).write_text(json.dumps(slim, indent=1) + "\n")
        (staging / names["markdown"]).write_text(regimes_markdown(results), encoding="utf-8")
    return {key: out / name for key, name in names.items()}
