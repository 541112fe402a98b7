"""`edgeslim search` as an Optuna study: a real PostgreSQL server on loopback (started here,
stopped afterwards), two worker processes of which one is SIGKILLed mid-trial, against one process
on the embedded SQLite storage; the samplers; the artifact store's locks; refusals.

The grid runs on the rpi5 target, whose latency is the roofline estimate (deterministic), so the
fronts of two runs can be compared exactly; accuracy and size are measured."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import write_recipe
from edgeslim.cli import main

STUDY_RECIPE = """
name: tiny-study
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10}
search:
  target: rpi5
  layers: [all, [1]]
  prune: [none, {heads: 0.5, ffn: 0.5}]
  quantization: [fp32, int8_dynamic]
  distill: {corpus: [wordnet], sentences: 200, batch_size: 16}
  budget: {seq_len: 64, p95_ms: 1000, max_size_mb: 0.19, min_teacher_cosine: 0.5}
"""
CANDIDATES = ["teacher-fp32", "teacher-int8-dynamic", "teacher-h50f50-fp32", "teacher-h50f50-int8-dynamic",
              "l1-fp32", "l1-int8-dynamic", "l1-h50f50-fp32", "l1-h50f50-int8-dynamic"]


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL cluster on 127.0.0.1 for this module (under /tmp: the server's own user
    must reach it when the tests run as root)."""
    from edgeslim.benchmarks.loopback_postgres import postgres_bin, start_loopback_postgres

    assert postgres_bin() is not None, "PostgreSQL's server is part of the dev set-up: apt install postgresql"
    folder = Path(tempfile.mkdtemp(prefix="edgeslim-pg-"))
    folder.chmod(0o711)
    server = start_loopback_postgres(folder / "cluster")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _kill_the_other_worker_mid_trial(url: str, study: str, parent_pid: int, timeout: float = 300) -> int:
    """SIGKILL the worker process that is not `parent_pid` while its trial has just started."""
    import optuna
    from optuna.trial import TrialState

    storage = optuna.storages.RDBStorage(url)  # one connection pool for all the polling
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # not made yet
            trials = []
        for trial in trials:
            worker = trial.user_attrs.get("worker") or ""
            pid = int(worker.rsplit(" ", 1)[-1]) if worker.rsplit(" ", 1)[-1].isdigit() else None
            if trial.state == TrialState.RUNNING and pid not in (None, parent_pid):
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.05)
    raise AssertionError("the second worker never ran a trial")


def _front(out: Path) -> dict[str, list[float]]:
    report = json.loads((out / "report.json").read_text())
    values = {r["name"]: r for r in report["results"]}
    return {name: [values[name]["latency_ms"]["p50"], values[name]["size_mb"],
                   values[name]["accuracy"]["teacher_cosine_mean"]] for name in report["search"]["fronts"]["study"]}


def test_two_workers_on_postgres_one_killed_find_the_front_of_one_process(tmp_path, postgres):
    import optuna

    recipe = write_recipe(tmp_path, STUDY_RECIPE)
    one, two = tmp_path / "one", tmp_path / "two"
    started = time.perf_counter()
    assert main(["search", str(recipe), "--out", str(one), "--store", str(tmp_path / "store-one")]) == 0
    one_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with open(tmp_path / "two.log", "w") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "edgeslim.cli", "search", str(recipe), "--out", str(two), "--storage", postgres.url,
             "--study", "tiny", "--store", str(tmp_path / "store-two"), "--workers", "2", "--heartbeat", "2"],
            stdout=log, stderr=subprocess.STDOUT)
        killed = _kill_the_other_worker_mid_trial(postgres.url, "tiny", parent.pid)
        code = parent.wait(timeout=900)
    two_seconds = time.perf_counter() - started
    output = (tmp_path / "two.log").read_text()
    assert code == 0, output[-4000:]
    print(f"grid of {len(CANDIDATES)}: one process on SQLite {one_seconds:.1f} s; two workers on PostgreSQL "
          f"(one killed) {two_seconds:.1f} s")

    # The same front: names, estimated latency and size exactly, accuracy to float noise (the
    # workers distil on one core each, the single process on two).
    front_one, front_two = _front(one), _front(two)
    assert front_one.keys() == front_two.keys() and front_one
    for name in front_one:
        assert front_one[name][:2] == front_two[name][:2], name
        assert front_one[name][2] == pytest.approx(front_two[name][2], abs=1e-4), name

    trials = json.loads((two / "trials.json").read_text())
    dead = [t for t in trials if t["state"] == "FAIL"]
    assert len(dead) == 1 and dead[0]["worker"].endswith(f"pid {killed}"), dead
    retry = [t for t in trials if t["retry_of"] == dead[0]["number"]]
    assert len(retry) == 1 and retry[0]["state"] in ("COMPLETE", "PRUNED") and retry[0]["candidate"] == dead[0]["candidate"]
    # Every candidate finished exactly once and was built exactly once, by a trial that finished.
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert sorted(t["candidate"] for t in finished if t["built_here"]) == sorted(CANDIDATES)
    assert {t["candidate"] for t in finished} == set(CANDIDATES)
    outcomes = list((tmp_path / "store-two" / "candidates").glob("*/outcome.json"))
    assert len(outcomes) == len(CANDIDATES)
    finished_numbers = {t["number"] for t in finished if t["built_here"]}
    assert {json.loads(p.read_text())["made_by"]["trial"] for p in outcomes} == finished_numbers
    # Both workers worked; the report says which were lost, and what was pruned and why.
    report = json.loads((two / "report.json").read_text())
    study = report["search"]["study"]
    assert len(study["workers"]) == 2 and study["built"] == len(CANDIDATES)
    assert study["lost_local_workers"] and "exit -9" in study["lost_local_workers"][0]
    assert report["search"]["pruned"] == {"teacher-fp32": "size_mb 0.199 (limit <= 0.19)"}
    assert report["search"]["pruned"] == json.loads((one / "report.json").read_text())["search"]["pruned"]
    # The study is a real one in the database: its front is the report's.
    stored = optuna.load_study(study_name="tiny", storage=postgres.url)
    assert {t.user_attrs["candidate"] for t in stored.best_trials} == set(front_two)
    assert os.path.islink(two / "bundles" / "l1-int8-dynamic")


def test_a_second_run_of_the_same_grid_reads_the_store_and_builds_nothing(tmp_path):
    recipe = write_recipe(tmp_path, STUDY_RECIPE.replace("layers: [all, [1]]", "layers: [all]")
                          .replace("prune: [none, {heads: 0.5, ffn: 0.5}]", "prune: [none]"))
    store = tmp_path / "store"
    assert main(["search", str(recipe), "--out", str(tmp_path / "a"), "--store", str(store)]) == 0
    assert main(["search", str(recipe), "--out", str(tmp_path / "b"), "--store", str(store)]) == 0
    first = json.loads((tmp_path / "a" / "report.json").read_text())["search"]["study"]
    second = json.loads((tmp_path / "b" / "report.json").read_text())["search"]["study"]
    assert (first["built"], first["from_store"]) == (2, 0)
    assert (second["built"], second["from_store"]) == (0, 2)


NSGA_RECIPE = STUDY_RECIPE.replace("  budget:", """  sampler: {kind: nsga2, trials: 3, seed: 1, population_size: 2}
  include:
    - name: hand-picked
      backend: onnxruntime
      steps: [{step: int8_dynamic}]
  budget:""")


def test_nsga2_measures_the_asked_number_of_grid_candidates_and_every_included_one(tmp_path):
    recipe = write_recipe(tmp_path, NSGA_RECIPE)
    out = tmp_path / "out"
    assert main(["search", str(recipe), "--out", str(out), "--store", str(tmp_path / "store")]) == 0
    trials = json.loads((out / "trials.json").read_text())
    finished = {t["candidate"] for t in trials if t["state"] in ("COMPLETE", "PRUNED")}
    assert "hand-picked" in finished
    assert len(finished - {"hand-picked"}) == 3 and finished <= set(CANDIDATES) | {"hand-picked"}
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["study"]["sampler"]["kind"] == "nsga2"


def test_a_study_name_made_from_another_recipe_is_refused(tmp_path, capsys):
    small = STUDY_RECIPE.replace("layers: [all, [1]]", "layers: [all]").replace(
        "prune: [none, {heads: 0.5, ffn: 0.5}]", "prune: [none]")
    first = write_recipe(tmp_path, small, "first.yaml")
    assert main(["search", str(first), "--out", str(tmp_path / "a"), "--store", str(tmp_path / "store")]) == 0
    other = write_recipe(tmp_path, small.replace("quantization: [fp32, int8_dynamic]", "quantization: [fp32]"),
                         "other.yaml")
    storage = f"sqlite:///{tmp_path / 'a' / 'study.db'}"
    assert main(["search", str(other), "--out", str(tmp_path / "b"), "--storage", storage, "--study", "tiny-study"]) == 2
    err = capsys.readouterr().err
    assert "StudyError" in err and "made from another recipe" in err and "--study" in err


@pytest.mark.parametrize("args, says", [
    (["--storage", "mongodb://db/x"], "scheme 'mongodb' is not supported; allowed: sqlite:///PATH"),
    (["--storage", "postgresql://nobody:secret@127.0.0.1:1/x"], "cannot open the study storage postgresql://nobody:***@"),
    (["--workers", "0"], "--workers 0: give 1 or more"),
    (["--workers", "4096"], "--workers 4096: this machine lets the search use"),
    (["--heartbeat", "0"], "--heartbeat 0"),
])
def test_bad_study_options_are_refused_before_anything_is_built(tmp_path, capsys, args, says):
    recipe = write_recipe(tmp_path, STUDY_RECIPE)
    assert main(["search", str(recipe), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and "secret" not in err
    assert not (tmp_path / "out" / "bundles").exists()
    assert not (tmp_path / "out" / "study.db").exists()  # refused before any study was made


def _hold(store_root: str, key: str, ready, release) -> None:
    from edgeslim.store import ArtifactStore

    with ArtifactStore(Path(store_root)).claim(key, "test", log=lambda _: None):
        ready.set()
        release.wait(30)


def test_a_store_claim_waits_for_its_holder_and_a_killed_holder_releases_it(tmp_path):
    from edgeslim.store import ArtifactStore

    store = ArtifactStore(tmp_path)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), "k", ready, release))
    holder.start()
    assert ready.wait(60)
    waits = []
    killer = context.Process(target=os.kill, args=(holder.pid, signal.SIGKILL))
    killer.start()  # the holder dies holding the lock; the kernel releases it
    with store.claim("k", "the candidate", log=waits.append) as entry:
        entry.write_outcome({"state": "complete"})
    holder.join()
    killer.join()
    assert holder.exitcode == -signal.SIGKILL
    assert store.outcome("k") == {"state": "complete"}
    assert not waits or f"pid {holder.pid}" in waits[0]


@pytest.mark.parametrize("sampler, says", [
    ("{kind: grid, trials: 3}", "sampler grid measures every candidate"),
    ("{kind: tpe}", "sampler tpe needs `trials`"),
    ("{kind: random, trials: 3}", "'grid', 'nsga2' or 'tpe'"),
])
def test_sampler_settings_are_checked_with_the_recipe(tmp_path, sampler, says):
    from edgeslim.errors import RecipeError
    from edgeslim.recipe import load_recipe

    path = write_recipe(tmp_path, STUDY_RECIPE.replace("  budget:", f"  sampler: {sampler}\n  budget:"))
    with pytest.raises(RecipeError, match=says.replace("(", r"\(").replace("`", ".")):
        load_recipe(path)


def test_a_resumed_search_runs_an_interrupted_trial_again(tmp_path):
    """A trial that failed without an error of its own (Ctrl-C, a crash) is run again when the
    search resumes; its candidate is not reported as failed."""
    import optuna

    from edgeslim.recipe import load_recipe
    from edgeslim.study import SearchSpace, StudyOptions, open_study

    small = STUDY_RECIPE.replace("layers: [all, [1]]", "layers: [all]").replace(
        "prune: [none, {heads: 0.5, ffn: 0.5}]", "prune: [none]")
    path = write_recipe(tmp_path, small)
    recipe, _ = load_recipe(path)
    out = tmp_path / "out"
    out.mkdir()
    space = SearchSpace(recipe.search)
    study = open_study(recipe.for_search(), StudyOptions(study=recipe.name), out, space)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"candidate": "teacher-int8-dynamic"},
        distributions={"candidate": optuna.distributions.CategoricalDistribution(space.names)},
        user_attrs={"candidate": "teacher-int8-dynamic"}))
    assert main(["search", str(path), "--out", str(out), "--store", str(tmp_path / "store")]) == 2  # not empty
    assert main(["search", str(path), "--out", str(out), "--store", str(tmp_path / "store"), "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["failed"] == {}
    assert [r["name"] for r in report["results"]] == ["teacher-int8-dynamic"]
    trials = json.loads((out / "trials.json").read_text())
    assert [t["state"] for t in trials if t["candidate"] == "teacher-int8-dynamic"][:2] == ["FAIL", "COMPLETE"]


def test_a_candidate_that_fails_is_reported_and_the_others_are_measured(tmp_path, capsys):
    """A candidate's own error (here a distillation with fewer sentences than one batch) fails
    its trial with the error recorded; the search goes on, reports it and exits 1; a resumed
    search does not run it again."""
    small = STUDY_RECIPE.replace("layers: [all, [1]]", "layers: [all]").replace(
        "prune: [none, {heads: 0.5, ffn: 0.5}]", "prune: [none]").replace("  budget:", """  include:
    - name: too-few-sentences
      backend: onnxruntime
      steps: [{step: distill, keep_layers: [0], corpus: [wordnet], sentences: 16, batch_size: 32}]
  budget:""")
    path, out = write_recipe(tmp_path, small), tmp_path / "out"
    assert main(["search", str(path), "--out", str(out), "--store", str(tmp_path / "store")]) == 1
    assert "1 candidate(s) failed: too-few-sentences: StepError: distill has 16 sentences" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert list(report["search"]["failed"]) == ["too-few-sentences"]
    assert [r["name"] for r in report["results"]] == ["teacher-int8-dynamic"]
    trials = json.loads((out / "trials.json").read_text())
    assert sorted(t["state"] for t in trials) == ["COMPLETE", "FAIL", "PRUNED"]
    (out / "report.json").unlink()  # as if the search had stopped before its report
    assert main(["search", str(path), "--out", str(out), "--store", str(tmp_path / "store"), "--resume"]) == 1
    assert len(json.loads((out / "trials.json").read_text())) == 3  # nothing ran again


def test_every_sampler_kind_a_recipe_may_name_is_registered():
    from typing import get_args

    from edgeslim.recipe import SamplerSpec
    from edgeslim.study import SAMPLERS

    assert set(get_args(SamplerSpec.model_fields["kind"].annotation)) == set(SAMPLERS)
