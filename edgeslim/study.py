"""`edgeslim search`: a recipe's search as an Optuna study, on one machine or many.

    edgeslim search RECIPE --out DIR                       # embedded: DIR/study.db (SQLite)
    edgeslim search RECIPE --out DIR --workers 2           # two local worker processes, one study
    edgeslim search RECIPE --storage postgresql://u@db/edgeslim --study minilm --store /shared/store
                                                           # on each machine: all join one study

Each trial is one candidate of the recipe's grid (`SearchSpec.points`): the sampler names it
(GridSampler: every candidate once; NSGA-II or TPE: chosen from the results so far over the grid's
dimensions), the worker builds it, takes a cheap first look (size, accuracy; a candidate that
already fails a budget limit no latency can make up for is pruned there), measures it with the
same harness as `edgeslim run`, and reports three objectives: task metric (up), p50 latency and
bundle size (down). The Pareto front is the study's (`best_trials`).

Workers share an artifact store (`edgeslim.store`, a folder every worker reads): a candidate's
bundle and outcome, and the distillations it needs, are kept under keys of what decides them, so
whatever several trials or machines share is built once. Trials beat a heartbeat into the
storage; a killed worker's trial is failed once its heartbeat is stale and retried by a live
worker (Optuna's RetryFailedTrialCallback), and its store lock went with its process.

Workers of one study should run on one host kind: every result records where it was measured,
and the report lists the hosts. Latency is measured on each worker's own cores (`--workers N`
splits this machine's cores between them), so N local workers on few cores also share memory
bandwidth; the speedup ratios (teacher and bundle in the same process) are the figures to trust.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeslim import __version__
from edgeslim.build import step_identities
from edgeslim.errors import EdgeslimError, InputError, RecipeError, StudyError
from edgeslim.outputs import process_label
from edgeslim.recipe import Recipe, SamplerSpec, SearchSpec
from edgeslim.store import ArtifactStore

# The study's objectives, in Optuna's order: (name, direction).
OBJECTIVES = (("quality", "maximize"), ("p50_ms", "minimize"), ("size_mb", "minimize"))
STORAGE_SCHEMES = ("sqlite", "postgresql")
EMBEDDED_STUDY_FILE = "study.db"
MAX_RETRIES = 2  # a killed worker's trial is retried this often


@dataclass(frozen=True)
class StudyOptions:
    storage: str | None = None  # an RDB URL; None: the embedded SQLite file in the output folder
    study: str | None = None  # None: the recipe's name
    workers: int = 1  # local worker processes
    store: Path | None = None  # None: the cache folder (EDGESLIM_CACHE)
    heartbeat_s: int = 30  # a trial whose worker is silent for twice this is failed and retried
    worker_index: int | None = None  # set in the processes `--workers` starts: they write no report
    poll_s: float = 2.0

    def storage_url(self, out: Path) -> str:
        return self.storage or f"sqlite:///{(out / EMBEDDED_STUDY_FILE).resolve()}"

    def store_root(self) -> Path:
        from edgeslim.cache import cache_dir

        return Path(self.store) if self.store else cache_dir()


# ---- the search space ----------------------------------------------------------------------------


class SearchSpace:
    """The recipe's candidates as Optuna parameters. Grid: one categorical `candidate` over every
    name (GridSampler visits each once). NSGA-II/TPE: the grid's dimensions (layers, vocab, prune,
    quantization; vocab only for students), each a categorical; included candidates are enqueued
    as trials of their own (`include`)."""

    def __init__(self, search: SearchSpec):
        self.points = search.points()
        self.names = [p.variant.name for p in self.points]
        self.grid_names = [p.variant.name for p in self.points if p.dims is not None]
        self.included = [p.variant.name for p in self.points if p.dims is None]
        self._by_dims = {tuple(sorted(p.dims.items())): p.variant.name for p in self.points if p.dims is not None}
        self.dims = {key: list(dict.fromkeys(p.dims[key] for p in self.points if p.dims is not None))
                     for key in ("layers", "vocab", "prune", "quantization")}

    def grid(self) -> dict:
        return {"candidate": self.names}

    def suggest(self, trial, by_dimensions: bool) -> str:
        """The candidate this trial measures, asked of the sampler through `trial`."""
        if trial.user_attrs.get("include"):  # an enqueued included candidate
            return trial.suggest_categorical("include", self.included)
        if not by_dimensions:
            return trial.suggest_categorical("candidate", self.names)
        picked = {"layers": trial.suggest_categorical("layers", self.dims["layers"])}
        students = [v for v in self.dims["vocab"] if v != "full"]
        picked["vocab"] = trial.suggest_categorical("vocab", self.dims["vocab"]) \
            if picked["layers"] != "all" and students else "full"  # the untouched teacher keeps its vocabulary
        picked["prune"] = trial.suggest_categorical("prune", self.dims["prune"])
        picked["quantization"] = trial.suggest_categorical("quantization", self.dims["quantization"])
        return self._by_dims[tuple(sorted(picked.items()))]


# One entry per sampler kind: (the sampler for the recipe's settings, whether it works on the
# grid's dimensions rather than the list of names).
def _grid_sampler(spec: SamplerSpec, space: SearchSpace):
    import optuna

    return optuna.samplers.GridSampler(space.grid(), seed=spec.seed)


def _nsga2_sampler(spec: SamplerSpec, space: SearchSpace):
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=spec.seed)


def _tpe_sampler(spec: SamplerSpec, space: SearchSpace):
    import optuna

    # group: the vocab dimension exists only for students (a conditional space)
    return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, group=True)


SAMPLERS: dict[str, tuple[Callable, bool]] = {
    "grid": (_grid_sampler, False),
    "nsga2": (_nsga2_sampler, True),
    "tpe": (_tpe_sampler, True),
}


# ---- storage and study ---------------------------------------------------------------------------


def open_storage(url: str, heartbeat_s: int):
    """Optuna's RDB storage for `url`, with the heartbeat that fails a silent worker's trial and
    the callback that retries it."""
    import optuna
    import sqlalchemy.exc

    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in STORAGE_SCHEMES:
        raise StudyError(f"storage {url!r}: scheme {scheme!r} is not supported; allowed: sqlite:///PATH (one "
                         "machine) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (many)")
    engine_kwargs = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StudyError(f"cannot open the study storage {display_url(url)}: {reason}") from None


def display_url(url: str) -> str:
    """A storage URL as it may be printed and kept in reports: its password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def recipe_identity(recipe: Recipe) -> str:
    """What a study is made from: the recipe's search, model, data and benchmark settings."""
    body = recipe.model_dump(mode="json", include={"model", "data", "benchmark", "search"})
    return ArtifactStore.key(body)


def open_study(recipe: Recipe, options: StudyOptions, out: Path, space: SearchSpace):
    """Create the study, or join it; StudyError when a study of that name holds another recipe."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The heartbeat API is marked experimental since Optuna 2.9; the warning says nothing to a user.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(options.storage_url(out), options.heartbeat_s)
    make_sampler, _ = SAMPLERS[recipe.search.sampler.kind]
    name = options.study or recipe.name
    study = optuna.create_study(storage=storage, study_name=name, sampler=make_sampler(recipe.search.sampler, space),
                                directions=[direction for _, direction in OBJECTIVES], load_if_exists=True)
    identity = recipe_identity(recipe)
    found = study.user_attrs.get("edgeslim_recipe")
    if found is None:
        study.set_user_attr("edgeslim_recipe", identity)
        study.set_user_attr("edgeslim_objectives", [name for name, _ in OBJECTIVES])
        if SAMPLERS[recipe.search.sampler.kind][1]:  # NSGA-II/TPE sample the grid; included candidates run once each
            for included in space.included:
                study.enqueue_trial({"include": included}, user_attrs={"include": included}, skip_if_exists=True)
    elif found != identity:
        raise StudyError(f"study {name!r} in {display_url(options.storage_url(out))} was made from another "
                         f"recipe (its search, model, data or benchmark settings differ); give this recipe another "
                         f"--study name")
    return study


# ---- what a worker does --------------------------------------------------------------------------


def host_kind() -> dict:
    """Which measurements can stand for each other: the same CPU model and int8 kernels."""
    from edgeslim.targets.host import isa_summary, read_host_profile

    profile = read_host_profile()
    return {"cpu": profile.name, "isa": sorted(profile.isa_features), **isa_summary()}


def candidate_key(recipe: Recipe, planned, budget) -> str:
    """The store key of a candidate: everything that decides its bundle and its measurement."""
    return ArtifactStore.key({
        "edgeslim": __version__, "host": host_kind(),
        "recipe": recipe.model_dump(mode="json", include={"model", "data", "benchmark"}),
        "prune_hopeless": recipe.search.prune_hopeless,
        "target": planned.target.name, "budget": budget.to_dict(), "variant": planned.name,
        "backend": planned.backend, "steps": step_identities(planned.steps),
    })


class Worker:
    """One process's part of a study: its own RunSession (teacher measured once), trials until
    the study has nothing left to start."""

    def __init__(self, recipe: Recipe, plan, recipe_path: Path, out: Path, options: StudyOptions, log=print):
        self.recipe, self.plan, self.out, self.options, self.log = recipe, plan, out, options, log
        self.recipe_path = recipe_path
        self.space = SearchSpace(recipe.search)
        self.by_dimensions = SAMPLERS[recipe.search.sampler.kind][1]
        self.store = ArtifactStore(options.store_root())
        self.planned = {p.name: p for p in plan.variants}
        self.me = process_label()

    def run(self, study, then: Callable | None = None):
        """Trials until the study has nothing left to start or run; then `then(session)` (the
        report, while the session's teacher baseline and data are at hand)."""
        from edgeslim.pipeline import RunSession

        index = self.options.worker_index or 0
        with RunSession(self.recipe, self.plan, self.recipe_path, self.out / f".work-{index}", self.log,
                        distill_dir=self.store.distill_dir) as session:
            self.session = session
            self._loop(study)
            return then(session) if then else None

    def _loop(self, study) -> None:
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        while True:
            fail_stale_trials(study)  # a killed worker's trial: failed, and a retry enqueued
            trials = study.get_trials(deepcopy=False)
            if self._requeue_interrupted(study, trials):
                trials = study.get_trials(deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials) or self._wants_more(trials):
                study.optimize(self._objective, n_trials=1, catch=(EdgeslimError,), gc_after_trial=True)
                continue
            if any(t.state == TrialState.RUNNING for t in trials):
                time.sleep(self.options.poll_s)  # another worker's; if it dies, its retry comes here
                continue
            return

    @staticmethod
    def _candidate(trial) -> str | None:
        return trial.user_attrs.get("candidate") or trial.params.get("candidate") or trial.params.get("include")

    def _requeue_interrupted(self, study, trials) -> bool:
        """Enqueue again a candidate whose every trial failed without an error of its own (a
        Ctrl-C, a crash) and that nothing is running or about to run: a heartbeat-stale trial
        was already requeued by Optuna's callback; an EdgeslimError is the candidate's own
        failure, and is reported, not retried. True when it enqueued one."""
        from optuna.trial import TrialState

        enqueued, by_candidate = False, {}
        for trial in trials:
            by_candidate.setdefault(self._candidate(trial), []).append(trial)
        for name, own in by_candidate.items():
            if name is None or any(t.state != TrialState.FAIL or "error" in t.user_attrs for t in own):
                continue
            if len(own) <= MAX_RETRIES:
                last = max(own, key=lambda t: t.number)
                self.log(f"  search: {name}: trial {last.number} was interrupted; running it again")
                study.enqueue_trial(last.params, user_attrs={k: v for k, v in last.user_attrs.items()
                                                             if k in ("include", "candidate")})
                enqueued = True
        return enqueued

    def _wants_more(self, trials) -> bool:
        """Whether the sampler should start another trial: the grid until every candidate has a
        trial; NSGA-II/TPE until `trials` distinct grid candidates have one (or the grid is spent)."""
        started = {self._candidate(t) for t in trials}
        if not self.by_dimensions:
            return any(name not in started for name in self.space.names)
        wanted = min(self.recipe.search.sampler.trials, len(self.space.grid_names))
        if len(trials) > 20 * (wanted + len(self.space.included)):  # a sampler that only repeats itself
            self.log(f"  search: stopping after {len(trials)} trials; the sampler keeps proposing measured candidates")
            return False
        return len(started & set(self.space.grid_names)) < wanted

    def _objective(self, trial):
        import optuna

        from edgeslim.pipeline import Hopeless

        name = self.space.suggest(trial, self.by_dimensions)
        planned = self.planned[name]
        budget = self.session.budgets[planned.target.name]
        key = candidate_key(self.recipe, planned, budget)
        trial.set_user_attr("candidate", name)
        trial.set_user_attr("store_key", key)
        trial.set_user_attr("worker", self.me)
        self.log(f"  trial {trial.number}: {name} ({self.me})")
        with self.store.claim(key, name, self.log) as entry:
            outcome = entry.outcome()
            built_here = outcome is None
            if built_here:
                made_by = {"study": trial.study.study_name, "trial": trial.number, "worker": self.me,
                           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                try:
                    result = self.session.variant(planned, entry.folder, prune_hopeless=self.recipe.search.prune_hopeless)
                    outcome = {"state": "complete", "made_by": made_by, "result": result.model_dump(mode="json")}
                except EdgeslimError as exc:  # the candidate's own failure: reported, not retried
                    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                    raise
                except Hopeless as hopeless:
                    self.log(f"    pruned after the first look: {hopeless.reason}")
                    outcome = {"state": "pruned", "made_by": made_by, "reason": hopeless.reason,
                               "first_look": hopeless.first_look}
                entry.write_outcome(outcome)
            else:
                made = outcome["made_by"]
                self.log(f"    from the store: made by trial {made['trial']} of study {made['study']} ({made['worker']})")
        trial.set_user_attr("built_here", built_here)
        trial.set_user_attr("made_by", outcome["made_by"])
        if outcome["state"] == "pruned":
            trial.set_user_attr("pruned_because", outcome["reason"])
            raise optuna.TrialPruned(outcome["reason"])
        values = objective_values(outcome["result"])
        # The whole result goes into the study too: any machine can write the report from the
        # database alone, whatever store it was given.
        trial.set_user_attr("result", outcome["result"])
        return values


def objective_values(result: dict) -> tuple[float, float, float]:
    from edgeslim.benchmarks.pareto import quality
    from edgeslim.benchmarks.report import Result

    parsed = Result.model_validate(result)
    return quality(parsed)[0], parsed.latency_ms.p50, parsed.size_mb


# ---- the command ---------------------------------------------------------------------------------


def _core_groups(workers: int) -> list[list[int]]:
    """This process's cores split into `workers` disjoint groups (as even as they go)."""
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        raise InputError(f"--workers {workers}: this machine lets the search use {len(cores)} core(s); each "
                          "worker measures on cores of its own, so at most one worker per core")
    return [cores[i::workers] for i in range(workers)]


def _start_workers(recipe_path: Path, out: Path, options: StudyOptions, groups: list[list[int]]) -> list:
    """The extra local workers of --workers N (the calling process is worker 0), each on its
    own cores; their output goes to OUT/worker-K.log."""
    children = []
    for index, cores in enumerate(groups[1:], start=1):
        command = [sys.executable, "-m", "edgeslim.cli", "search", str(recipe_path), "--out", str(out),
                   "--storage", options.storage_url(out), "--study", options.study, "--store",
                   str(options.store_root()), "--heartbeat", str(options.heartbeat_s), "--worker-index", str(index)]
        log = open(out / f"worker-{index}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed when it ends
        children.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          preexec_fn=lambda cores=cores: os.sched_setaffinity(0, cores)), log))
    return children


def run_search(recipe: Recipe, recipe_path: Path, out_dir: Path | None = None, options: StudyOptions = StudyOptions(),
               log=print, resume: bool = False):
    """Run (or join) the recipe's search study; unless this is a worker that --workers started,
    wait until the study is finished and write its report. Returns the report, or None."""
    from edgeslim.extras import require
    from edgeslim.pipeline import check_out_dir, default_out_dir
    from edgeslim.plan import plan_recipe

    if recipe.search is None:
        raise RecipeError(f"recipe {recipe.name!r} has no `search` section; add one or use `edgeslim run`")
    searching = recipe.for_search()
    plan = plan_recipe(searching)  # every candidate's chain checked before any model loads
    require((*plan.extras(), "search"), f"recipe {recipe.name!r}")
    out = Path(out_dir) if out_dir else default_out_dir(recipe)
    options = dataclasses.replace(options, study=options.study or recipe.name)
    if options.worker_index is None:  # refused before the output folder or the study is made
        groups = _core_groups(options.workers)
        check_out_dir(out, resume, "an interrupted search (its study carries on)")
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace(recipe.search)
    study = open_study(searching, options, out, space)  # made before any worker starts: one creator
    if options.worker_index is not None:  # a worker of --workers: trials only
        Worker(searching, plan, Path(recipe_path), out, options, log).run(study)
        return None
    started = time.perf_counter()
    log(f"edgeslim {__version__}: search {recipe.name} ({recipe_path}) -> {out}; study {options.study!r} in "
        f"{display_url(options.storage_url(out))}, {len(space.names)} candidates, sampler "
        f"{recipe.search.sampler.kind}, {options.workers} local worker(s), store {options.store_root()}")
    children = _start_workers(Path(recipe_path), out, options, groups)
    own = os.sched_getaffinity(0)

    def report(session):
        # The study has nothing running, so they are done too. One that died (killed, out of
        # memory) lost no work: its trial went stale and was retried; the report names it.
        lost = _wait(children)
        for worker in lost:
            log(f"  search: local worker {worker} ended early; its trial was retried")
        from edgeslim.search_report import write_search_report

        return write_search_report(study, searching, session, out, options, time.perf_counter() - started, log,
                                   lost_workers=lost)

    try:
        os.sched_setaffinity(0, groups[0])
        return Worker(searching, plan, Path(recipe_path), out, options, log).run(study, then=report)
    finally:
        os.sched_setaffinity(0, own)
        for proc, _ in children:  # only after an error here: a finished study has let them end
            if proc.poll() is None:
                proc.terminate()
        _wait(children)


def _wait(children) -> list[str]:
    failed = []
    for index, (proc, log) in enumerate(children, start=1):
        code = proc.wait()
        log.close()
        if code != 0:
            failed.append(f"{index} (exit {code}, worker-{index}.log)")
    return failed


def trials_table(study) -> list[dict]:
    """Every trial of the study as plain data: number, state, candidate, where it ran, whether it
    built its candidate or read the store, and its values."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "candidate": t.user_attrs.get("candidate"),
                     "worker": t.user_attrs.get("worker"), "built_here": t.user_attrs.get("built_here"),
                     "made_by": t.user_attrs.get("made_by"), "values": t.values,
                     "pruned_because": t.user_attrs.get("pruned_because"),
                     "retry_of": t.system_attrs.get("failed_trial"),
                     "fail_reason": t.system_attrs.get("fail_reason"),
                     "seconds": round(t.duration.total_seconds(), 1) if t.duration else None})
    return rows


def dump_trials(study, path: Path) -> None:
    from edgeslim.outputs import write_atomic

    write_atomic(path, json.dumps(trials_table(study), indent=2, default=str))
