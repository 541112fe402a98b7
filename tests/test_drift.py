"""Drift statistics (runtime/drift.py): the reference a build stores, the running statistics of
an Encoder, `edgeslim drift BUNDLE FILE`. Real-model figures: edgeslim/drift_benchmark.py and the
real tier below."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import needs_stsb
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeslim.cli import EXIT_DRIFT, main
from edgeslim.errors import BundleError, InputError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest
from edgeslim.runtime.bundle import manifest_digest
from edgeslim.runtime.drift import MIN_DRIFT_ITEMS, DriftTracker, drift_reference
from edgeslim.runtime.manifest import DriftReference


def _gaussian(rng, n, dim=16, shift=0.0, scale=1.0):
    base = np.ones(dim) * 3.0
    return base + shift + scale * rng.standard_normal((n, dim))


def _reference(raw) -> DriftReference:
    return DriftReference.model_validate(drift_reference(raw, "synthetic"))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_in_domain_windows_are_rarely_flagged_and_a_moved_mean_always_is(seed):
    rng = np.random.default_rng(seed)
    reference = _reference(_gaussian(rng, 1000))
    flagged = 0
    for _ in range(20):
        tracker = DriftTracker(reference)
        tracker.update(_gaussian(rng, 100))
        flagged += tracker.score().drifted
    assert flagged <= 4  # calibrated at about 1.5% per window; 4 of 20 would be far out
    moved = DriftTracker(reference)
    moved.update(_gaussian(rng, 100, shift=rng.choice([-1, 1], 16) * 1.5))
    assert moved.score().drifted
    wider = DriftTracker(reference)
    wider.update(_gaussian(rng, 100, scale=3.0))  # same mean, other norms and spread
    assert wider.score().drifted


def test_running_statistics_are_thread_safe_and_equal_one_update():
    rng = np.random.default_rng(0)
    reference = _reference(_gaussian(rng, 400))
    parts = [_gaussian(rng, reference.window) for _ in range(8)]  # a window each, whatever the thread order
    shared = DriftTracker(reference)
    threads = [threading.Thread(target=shared.update, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    once = DriftTracker(reference)
    once.update(np.concatenate(parts))
    assert shared.count == once.count == 8 * reference.window
    rows = lambda tracker: sorted(tuple(stats.values()) for stats in tracker.statistics())  # noqa: E731
    assert np.allclose(rows(shared), rows(once))
    assert shared.score() == once.score()


def test_too_few_items_or_a_wrong_width_is_an_input_error():
    rng = np.random.default_rng(0)
    tracker = DriftTracker(_reference(_gaussian(rng, 200)))
    tracker.update(_gaussian(rng, MIN_DRIFT_ITEMS - 1))
    with pytest.raises(InputError, match=f"at least {MIN_DRIFT_ITEMS} items"):
        tracker.score()
    with pytest.raises(InputError, match=r"\(items, 16\)"):
        tracker.update(np.zeros((3, 8)))
    with pytest.raises(BundleError, match="at least 40 held-out items"):
        drift_reference(_gaussian(rng, 30), "too few")


def test_the_build_stores_a_drift_reference_from_held_out_data(tiny_run):
    manifest = read_manifest(tiny_run["out"] / "bundles" / "ort-int8-dynamic")
    drift = manifest.drift
    assert drift.items == 500 and drift.calibration_items == 500 and len(drift.mean) == manifest.embedding_dim
    assert "wordnet-heldout: 1000 held-out sentences drawn at random (seed 0), disjoint from calibration" in drift.source
    assert drift.thresholds.mean_shift > 0


def _in_domain_and_shifted(tmp_path, run):
    from edgeslim.evaldata import load_eval_data
    from edgeslim.recipe import load_recipe

    data = load_eval_data(load_recipe(run["recipe"])[0], "text")
    in_reference = set(data.drift_items) | set(data.calibration.texts)
    outside = [t for t in data.agreement.texts if t not in in_reference and t.strip() == t and len(t.splitlines()) == 1]
    in_domain = tmp_path / "in-domain.txt"
    assert len(outside) >= 150
    # Held-out WordNet sentences the reference never saw, shuffled: the corpus runs topic by topic,
    # and a window of one stretch of it is a real shift.
    picks = np.random.default_rng(0).permutation(len(outside))[:200]
    in_domain.write_text("\n".join(outside[i] for i in picks))
    shifted = tmp_path / "shifted.txt"
    shifted.write_text("\n".join(f"zzzz {i % 3}" for i in range(200)))
    return in_domain, shifted


def test_drift_cli_scores_a_file_and_exits_4_on_drift(tiny_run, tmp_path, capsys):
    bundle = tiny_run["out"] / "bundles" / "ort-int8-dynamic"
    in_domain, shifted = _in_domain_and_shifted(tmp_path, tiny_run)
    assert main(["drift", str(bundle), str(in_domain), "--json", str(tmp_path / "in.json")]) == 0
    out = capsys.readouterr().out
    count = len(in_domain.read_text().splitlines())
    assert f"{count} sentences" in out and "in domain" in out and "mean_shift" in out
    assert main(["drift", str(bundle), str(shifted), "--json", str(tmp_path / "out.json")]) == EXIT_DRIFT
    assert "DRIFT" in capsys.readouterr().out
    found = json.loads((tmp_path / "out.json").read_text())
    assert found["drifted"] and found["score"] > 1 and found["items"] == 200
    assert main(["drift", str(bundle), str(tmp_path)]) == 2
    assert "a text bundle reads a UTF-8 text file" in capsys.readouterr().err


def test_an_encoder_tracks_what_it_encodes_when_asked(tiny_run, tmp_path):
    encoder = load(tiny_run["out"] / "bundles" / "ort-int8-dynamic")
    in_domain, shifted = (p.read_text().splitlines() for p in _in_domain_and_shifted(tmp_path, tiny_run))
    with pytest.raises(InputError, match="track_drift"):
        encoder.drift()
    plain = encoder.encode(in_domain[:8])
    encoder.track_drift()
    assert np.array_equal(encoder.encode(in_domain[:8]), plain)  # tracking changes no vector
    threads = [threading.Thread(target=encoder.encode, args=(in_domain[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = encoder.drift(reset=True)
    assert found.items == 8 + len(in_domain) and not found.drifted
    untracked = load(tiny_run["out"] / "bundles" / "ort-int8-dynamic").encode(in_domain)
    assert np.array_equal(encoder.encode(in_domain), untracked)  # one call, batches sorted by length inside
    assert not encoder.drift(reset=True).drifted  # windows see the call's items in the caller's order
    encoder.encode(shifted)
    assert encoder.drift().drifted
    assert encoder.score_drift(in_domain).items == len(in_domain)  # a window of its own: the running statistics
    assert encoder.drift().items == len(shifted)  # are left alone


def test_a_manifest_drift_entry_is_checked(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    good = manifest["drift"]
    for change, match in (({"mean": good["mean"][:-1], "variance": good["variance"][:-1]}, "drift.mean has"),
                          ({"cosine_edges": good["cosine_edges"][::-1]}, "must not decrease"),
                          ({"items": 3}, "greater than or equal to 20")):
        manifest["drift"] = {**good, **change}
        manifest["manifest_sha256"] = manifest_digest(manifest)
        (tiny_bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
        with pytest.raises(BundleError, match=match):
            load(tiny_bundle)
    del manifest["drift"]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (tiny_bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no drift reference"):
        load(tiny_bundle).track_drift()


@pytest.mark.real
@needs_stsb
def test_real_model_drift_separates_stsb_from_shifted_text(real_run):
    """all-MiniLM-L6-v2 int8: no alarm on STS-B test sentences outside the reference; every
    shifted set (shuffled words, CLINC out-of-scope, Banking77, WordNet, Wikipedia) flagged."""
    from edgeslim.drift_benchmark import drift_figures

    figures = drift_figures(real_run["out"], "ort-int8-dynamic")
    for row in figures["rows"]:
        print(row["set"], row["flagged_windows"], row["windows"], row["score"])
    in_domain = [r for r in figures["rows"] if not r["shifted"]]
    shifted = [r for r in figures["rows"] if r["shifted"]]
    assert in_domain and all(not r["drifted"] and r["flagged_windows"] <= 0.2 * r["windows"] for r in in_domain)
    assert len(shifted) >= 4 and all(r["drifted"] for r in shifted)
