"""Drift figures for a bundle of a finished run: does `edgeslim drift` tell in-domain input from
shifted input, and how often does it cry wolf?

    python -m edgeslim.benchmarks.drift RUN_DIR [--variant NAME] [--window 100] [--json OUT]

The in-domain sample is never in the bundle's drift reference: the rest of the run's agreement
corpus when it has enough (e.g. the STS-B test sentences outside the reference's random 1,000),
else the run's calibration corpus (in domain, though calibration saw it, which the table says).
Shifted samples come from the modality (`Modality.drift_shifts`): other data of the modality and
the in-domain items corrupted. Each set is scored as whole windows of `--window` items (up to
20 per set, disjoint): the alarm rate is the share of windows scored as drift; an in-domain
set's alarm rate is the false-alarm rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgeslim.benchmarks.compare import load_report
from edgeslim.errors import InputError
from edgeslim.outputs import write_atomic

MAX_WINDOWS = 20


def _windows(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items) - size + 1, size)][:MAX_WINDOWS]


def drift_figures(run_dir: Path, variant: str | None = None, window: int = 100, log=print) -> dict:
    from edgeslim.calibration_data import load_corpus
    from edgeslim.evaldata import load_eval_data
    from edgeslim.recipe import parse_recipe
    from edgeslim.runtime import load
    from edgeslim.runtime.drift import DriftTracker

    report = load_report(run_dir)
    import yaml

    recipe = parse_recipe(yaml.safe_dump(report.recipe), Path(report.recipe_file))
    names = [r.name for r in report.results]
    variant = variant or next((r.name for r in report.results if r.required), names[0])
    if variant not in names:
        raise InputError(f"no variant {variant!r} in {run_dir}; its variants: {', '.join(names)}")
    encoder = load(Path(run_dir) / "bundles" / variant, threads=1)
    reference = encoder.manifest.drift
    if reference is None:
        raise InputError(f"{variant} has no drift reference (built before drift statistics); rerun the recipe")
    data = load_eval_data(recipe, encoder.modality)
    in_reference = set(data.drift_items)
    calibration = set(data.calibration.texts)
    rest = [t for t in load_corpus(data.agreement.name).texts if t not in in_reference and t not in calibration]
    rng = np.random.default_rng(1)
    if len(rest) >= window:
        in_domain_name = f"{data.agreement.name}, items not in the reference (in domain)"
        in_domain = [rest[i] for i in rng.permutation(len(rest))[: window * MAX_WINDOWS]]
    else:
        pool = list(data.calibration.texts)
        in_domain_name = f"{data.calibration.name} (in domain; calibration saw it)"
        in_domain = [pool[i] for i in rng.permutation(len(pool))[: window * MAX_WINDOWS]]
    shifted_from = [data.drift_items[i] for i in rng.permutation(len(data.drift_items))[: window * MAX_WINDOWS]]
    sets = {in_domain_name: (in_domain, False)}
    sets.update({name: (items, True) for name, items in data.modality.drift_shifts(shifted_from).items()})
    rows = []
    for name, (items, shifted) in sets.items():
        raw = encoder.encode_unnormalized(items)
        scores = []
        for part in _windows(list(range(len(raw))), window):
            tracker = DriftTracker(reference)
            tracker.update(raw[part])
            scores.append(tracker.score())
        if not scores:
            log(f"  {name}: fewer than {window} items, skipped")
            continue
        alarms = sum(s.drifted for s in scores)
        whole = DriftTracker(reference)
        whole.update(raw)
        rows.append({"set": name, "shifted": shifted, "items": len(items), "windows": len(scores), "alarms": alarms,
                     "alarm_rate": round(alarms / len(scores), 3),
                     "median_window_score": round(float(np.median([s.score for s in scores])), 3),
                     "whole_set_score": whole.score().score})
        log(f"  {name}: {alarms}/{len(scores)} windows flagged, median score {rows[-1]['median_window_score']}, "
            f"whole set {rows[-1]['whole_set_score']}")
    return {"run": str(run_dir), "variant": variant, "bundle_id": encoder.identity, "modality": encoder.modality,
            "window": window, "reference": reference.source, "reference_items": reference.items,
            "thresholds": reference.thresholds.model_dump(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--variant")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    figures = drift_figures(Path(args.run_dir), args.variant, args.window)
    print(f"\n{figures['bundle_id']} ({figures['modality']}), windows of {figures['window']}; reference: "
          f"{figures['reference']}")
    print(f"{'set':<70} {'kind':<9} {'flagged':>9} {'median':>7} {'whole':>7}")
    for row in figures["rows"]:
        print(f"{row['set'][:70]:<70} {'shifted' if row['shifted'] else 'in-domain':<9} "
              f"{row['alarms']:>3}/{row['windows']:<5} {row['median_window_score']:>7.2f} {row['whole_set_score']:>7.2f}")
    if args.json:
        write_atomic(Path(args.json), json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
