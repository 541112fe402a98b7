"""Drift figures for a bundle of a finished run: does `edgeslim drift` tell in-domain input from
shifted input, and how often does it cry wolf?

    python -m edgeslim.drift_benchmark RUN_DIR [--variant NAME] [--json OUT]

The in-domain sample is never in the bundle's drift reference: the rest of the run's agreement
corpus when it has enough (e.g. the STS-B test sentences outside the reference's random 1,000),
else the run's calibration corpus (in domain, though calibration saw it, which the table says).
Shifted samples come from the modality (`Modality.drift_shifts`): other data of the modality and
the in-domain items corrupted. Each set is scored as `edgeslim drift` scores a file: windows of
the reference's calibration size (up to 20 per set), the score is their median. The share of an
in-domain set's windows flagged is the per-window false-alarm rate.
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


def drift_figures(run_dir: Path, variant: str | None = None, log=print) -> dict:
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
    if len(rest) >= reference.window:
        in_domain_name = f"{data.agreement.name}, items not in the reference (in domain)"
        in_domain = [rest[i] for i in rng.permutation(len(rest))[: reference.window * MAX_WINDOWS]]
    else:
        pool = list(data.calibration.texts)
        in_domain_name = f"{data.calibration.name} (in domain; calibration saw it)"
        in_domain = [pool[i] for i in rng.permutation(len(pool))[: reference.window * MAX_WINDOWS]]
    shifted_from = [data.drift_items[i] for i in rng.permutation(len(data.drift_items))[: reference.window * MAX_WINDOWS]]
    sets = {in_domain_name: (in_domain, False)}
    sets.update({name: (items, False) for name, items in data.modality.drift_in_domain().items()})
    sets.update({name: (items, True) for name, items in data.modality.drift_shifts(shifted_from).items()})
    rows = []
    for name, (items, shifted) in sets.items():
        tracker = DriftTracker(reference, keep=MAX_WINDOWS)
        tracker.update(encoder.encode_unnormalized(items))
        found = tracker.score()
        rows.append({"set": name, "shifted": shifted, "items": len(items), "windows": found.windows,
                     "flagged_windows": found.flagged_windows, "score": found.score, "drifted": found.drifted,
                     "statistics": found.statistics})
        log(f"  {name}: {found.flagged_windows}/{found.windows} windows flagged, score {found.score} "
            f"({'DRIFT' if found.drifted else 'in domain'})")
    return {"run": str(run_dir), "variant": variant, "bundle_id": encoder.identity, "modality": encoder.modality,
            "window": reference.window, "reference": reference.source, "reference_items": reference.items,
            "thresholds": reference.thresholds.model_dump(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--variant")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    figures = drift_figures(Path(args.run_dir), args.variant)
    print(f"\n{figures['bundle_id']} ({figures['modality']}), windows of {figures['window']}; reference: "
          f"{figures['reference']}")
    print(f"{'set':<66} {'kind':<9} {'windows flagged':>15} {'score':>6}  verdict")
    for row in figures["rows"]:
        print(f"{row['set'][:66]:<66} {'shifted' if row['shifted'] else 'in-domain':<9} "
              f"{row['flagged_windows']:>9}/{row['windows']:<5} {row['score']:>6.2f}  "
              f"{'DRIFT' if row['drifted'] else 'in domain'}")
    if args.json:
        write_atomic(Path(args.json), json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
