"""`edgeslim run`: recipe -> model -> steps -> bundle per target -> measured verdict -> report.

Data flows one way. The teacher is measured in the same run as every bundle, with the same
input and threads, each in its own worker process.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeslim import __version__
from edgeslim.benchmarks.budget import check
from edgeslim.benchmarks.harness import LATENCY_WHAT, stsb_spearman, teacher_agreement, where_measured
from edgeslim.benchmarks.report import Accuracy, Latency, RealLengthLatency, Report, Result, render_markdown
from edgeslim.benchmarks.worker import run_worker
from edgeslim.bundle import MODEL_CARD, publish, render_model_card, staging_dir, write_manifest
from edgeslim.calibration_data import Corpus, corpus_available, load_corpus, load_stsb
from edgeslim.compress import StepContext, apply_step
from edgeslim.compress.export import INPUT_NAMES, OUTPUT_NAME, export_onnx
from edgeslim.errors import OutputError, RecipeError
from edgeslim.extras import require
from edgeslim.outputs import write_atomic
from edgeslim.models import EncoderModel, load_encoder
from edgeslim.recipe import Recipe
from edgeslim.runtime.bundle import sha256_file
from edgeslim.targets import get_target
from edgeslim.targets.base import Budget


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class EvalData:
    calibration: Corpus
    agreement: Corpus
    agreement_texts: list[str]
    agreement_overlap: int  # sentences dropped from agreement because calibration has them
    stsb: object | None  # StsbPairs
    stsb_overlap: int
    skipped: list[str]

    @property
    def texts(self) -> list[str]:
        """Every evaluation sentence: the agreement set, then STS-B sentences not already in it."""
        seen = set(self.agreement_texts)
        return self.agreement_texts + [s for s in (self.stsb.sentences if self.stsb else ()) if s not in seen]

    def describe(self) -> dict:
        described = {
            "calibration": f"{self.calibration.name}: {len(self.calibration.texts)} sentences, texts sha256 "
                           f"{self.calibration.sha256} ({self.calibration.source})",
            "teacher_agreement": f"{self.agreement.name}: {len(self.agreement_texts)} sentences "
                                 f"({self.agreement.source}); {self.agreement_overlap} overlapping calibration "
                                 "sentences removed",
            "stsb": (f"STS-B {self.stsb.split}: {len(self.stsb.scores)} pairs, file sha256 {self.stsb.file_sha256}; "
                     f"sentences also in calibration: {self.stsb_overlap}") if self.stsb else "not evaluated",
        }
        return described


def load_eval_data(recipe: Recipe) -> EvalData:
    spec = recipe.data
    skipped = []
    calibration = load_corpus(spec.calibration)  # a missing calibration corpus is an error, not a skip
    usable = [name for name in spec.agreement if corpus_available(name)]
    for name in spec.agreement:
        if name not in usable:
            skipped.append(f"teacher agreement on {name}: data not found; set EDGESLIM_DATA to the shared data "
                           "folder (see calibration_data/__init__.py for the files and their sha256)")
        else:
            break
    if not usable:
        raise RecipeError(f"data.agreement: none of {list(spec.agreement)} is available here")
    agreement = load_corpus(usable[0])
    calibration_set = {_norm(t) for t in calibration.texts}
    kept = [t for t in agreement.texts if _norm(t) not in calibration_set]
    agreement_texts = kept[: spec.agreement_samples]
    stsb, stsb_overlap = None, 0
    if spec.stsb_split:
        if corpus_available(f"stsb-{spec.stsb_split}"):
            stsb = load_stsb(spec.stsb_split)
            stsb_overlap = sum(_norm(s) in calibration_set for s in stsb.sentences)
        else:
            skipped.append(f"STS-B {spec.stsb_split} Spearman: stsb/stsb-en-{spec.stsb_split}.csv not found; set "
                           "EDGESLIM_DATA to a folder holding it (default ../shared/data) to measure the task metric")
    return EvalData(calibration, agreement, agreement_texts, len(agreement.texts) - len(kept), stsb, stsb_overlap, skipped)


def latency_input(model: EncoderModel, texts: list[str], seq_len: int) -> list[int]:
    """One row of exactly `seq_len` real tokens (no padding), cut from real sentences."""
    if seq_len > model.max_seq_length:
        raise RecipeError(f"budget seq_len {seq_len} exceeds model.max_seq_length {model.max_seq_length}")
    joined, ids = "", None
    for text in texts:
        joined += " " + text
        ids, mask = model.tokenize([joined], pad_to=seq_len)
        if mask.all():
            return ids[0].tolist()
    raise RecipeError(f"the evaluation texts are too short to build a {seq_len}-token latency input")


TRACING_STEPS = frozenset({"litert_convert", "npu_body_quantize"})


class Runner:
    def __init__(self, recipe: Recipe, recipe_path: Path, out_dir: Path, log=print, searching: bool = False):
        self.recipe, self.recipe_path, self.out, self.log = recipe, recipe_path, out_dir, log
        self.searching = searching
        self.work = out_dir / ".work"
        self.bundles = out_dir / "bundles"
        self._exports: dict[str, tuple] = {}

    def _worker(self, spec: dict, budget: Budget, ids: list[int], texts: list[str], on_device: bool = True):
        """Measure in a fresh process. on_device=False (estimated targets): this host is not the
        device, so its timings are not reported; a few runs only, for the peak RSS."""
        bench = self.recipe.benchmark
        timing = ((bench.warmup, bench.min_runs, bench.min_seconds) if on_device else (1, 3, 0.0))
        return run_worker({**spec, "threads": budget.threads, "batch": budget.batch, "input_ids": ids,
                           "warmup": timing[0], "min_runs": timing[1], "min_seconds": timing[2],
                           "real_batches": list(bench.real_length_batches) if on_device else [],
                           "real_texts": self.real_texts},
                          texts)

    def _result(self, name, target, backend, bundle, size_mb, measured, embeddings, budget, baseline_p50, steps,
                latency_kind="measured") -> Result:
        data = self.data
        by_text = dict(zip(data.texts, embeddings))
        agreement = np.stack([by_text[t] for t in data.agreement_texts])
        cos_mean, cos_min = teacher_agreement(self.teacher_agreement, agreement)
        lat = measured["latency"]
        real = [RealLengthLatency(**stats, threads=budget.threads, sentences_from=self.real_texts_from,
                                  kind=latency_kind, where=where_measured())
                for stats in measured.get("latency_real", {}).values()]
        return Result(
            name=name, target=target, backend=backend, bundle=bundle, size_mb=round(size_mb, 3),
            latency_ms=Latency(**lat, batch=budget.batch, seq_len=budget.seq_len, threads=budget.threads,
                               kind=latency_kind, where=where_measured(), what=LATENCY_WHAT),
            latency_real_ms=real,
            peak_rss_mb=measured["peak_rss_mb"],
            accuracy=Accuracy(
                teacher_cosine_mean=round(cos_mean, 6), teacher_cosine_min=round(cos_min, 6),
                eval_set=data.agreement.name, eval_sentences=len(data.agreement_texts),
                disjoint_from_calibration=data.stsb_overlap == 0,  # agreement overlaps were removed
                overlap_with_calibration=data.stsb_overlap,
                stsb_spearman=None if data.stsb is None else round(stsb_spearman(by_text, data.stsb), 3),
                stsb_split=None if data.stsb is None else data.stsb.split,
            ),
            speedup_vs_baseline=round((baseline_p50 or lat["p50"]) / lat["p50"], 3),
            providers=measured["providers"], steps=steps,
        )

    def run(self) -> Report:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)  # scratch only; bundles and report are final

    def _run(self) -> Report:
        recipe = self.recipe
        self.work.mkdir(parents=True, exist_ok=True)
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.log(f"edgeslim {__version__}: recipe {recipe.name} ({self.recipe_path}) -> {self.out}")
        self.data = data = load_eval_data(recipe)
        # Real-length latency runs on the task's own sentences: STS-B when present.
        real_source = data.stsb.sentences if data.stsb else tuple(data.agreement_texts)
        self.real_texts = list(real_source[: recipe.benchmark.real_length_sentences])
        self.real_texts_from = f"first {len(self.real_texts)} {'STS-B ' + data.stsb.split if data.stsb else data.agreement.name} sentences"
        for note in data.skipped:
            self.log(f"  skipped: {note}")
        model = load_encoder(recipe.model)
        targets = [(spec, get_target(spec.target)) for spec in recipe.targets]
        budgets = {spec.target: t.default_budget.merged(spec.budget.model_dump()) for spec, t in targets}
        first_budget = budgets[targets[0][0].target]

        self.log(f"  teacher {model.name}: measuring PyTorch fp32 baseline (threads {first_budget.threads}, "
                 f"batch {first_budget.batch}, {first_budget.seq_len} tokens)")
        ids = latency_input(model, data.agreement_texts, first_budget.seq_len)
        measured, embeddings = self._worker({"kind": "teacher", "model": recipe.model.model_dump(mode="json")},
                                            first_budget, ids, data.texts)
        by_text = dict(zip(data.texts, embeddings))
        self.teacher_agreement = np.stack([by_text[t] for t in data.agreement_texts])
        params_mb = sum(p.numel() * p.element_size() for p in model.bert.parameters()) / 1e6
        baseline = self._result(f"{model.name} (PyTorch fp32)", "host", "torch", None, params_mb, measured, embeddings,
                                first_budget, None, [])
        self.log(f"    p50 {baseline.latency_ms.p50:.2f} ms, STS-B {baseline.accuracy.stsb_spearman}")

        results = []
        for spec, target in targets:
            budget = budgets[spec.target]
            if (budget.batch, budget.seq_len, budget.threads) != (first_budget.batch, first_budget.seq_len,
                                                                  first_budget.threads):
                raise RecipeError("all targets of one recipe must share the latency operating point "
                                  "(batch, seq_len, threads) so every speedup refers to the same baseline")
            for variant in spec.variants:
                results.append(self._variant(model, target, spec, variant, budget, baseline.latency_ms.p50))

        report = Report(
            edgeslim_version=__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            recipe=recipe.model_dump(mode="json"),
            recipe_file=str(self.recipe_path),
            # the machine this ran on, whatever the targets are
            host={**get_target("x86-cpu").profile().to_dict(), "python": platform.python_version(), **_versions()},
            data=data.describe(),
            skipped=data.skipped,
            baseline=baseline,
            results=results,
            targets={t.name: {"profile": t.profile().to_dict(), "latency_kind": t.latency_kind,
                              "default_variant": getattr(t, "default_variant", None)} for _, t in targets},
        )
        if self.searching:
            report.search = self._search_summary(report)
        write_atomic(self.out / "report.json", report.to_json())
        write_atomic(self.out / "report.md", render_markdown(report))
        return report

    def _search_summary(self, report: Report) -> dict:
        from edgeslim.benchmarks.pareto import COSTS, front, plot_fronts, quality

        results = report.results
        plots = plot_fronts(results, report.baseline, self.out, f"{self.recipe.name} on {results[0].target}")
        passing = [r for r in results if r.budget is not None and r.budget.passed]
        chosen = min(passing, key=lambda r: r.latency_ms.p50) if passing else None
        return {
            "candidates": len(results),
            "quality": quality(results[0])[1],
            "fronts": {axis: [r.name for r in front(results, cost)] for axis, (cost, _) in COSTS.items()},
            "chosen": chosen.name if chosen else None,
            "chosen_reason": "fastest p50 among the candidates that meet the target budget" if chosen
            else "no candidate meets the target budget",
            "plots": [p.name for p in plots],
        }

    def _training_texts(self, corpus: tuple[str, ...], limit: int | None = None) -> tuple[list[str], dict]:
        """Sentences of `corpus` minus every sentence of the evaluation sets: what distillation
        and vocabulary pruning may learn from."""
        texts = list(dict.fromkeys(t for name in corpus for t in load_corpus(name).texts))
        evaluation = {_norm(t) for t in self.data.texts}
        disjoint = [t for t in texts if _norm(t) not in evaluation]
        return disjoint[:limit], {"corpus": list(corpus), "disjoint_from_evaluation": True,
                                  "dropped_overlapping_evaluation": len(texts) - len(disjoint)}

    def _distill(self, teacher, student, cfg):
        from edgeslim.compress.distill import cache_dir, distill

        texts, data_record = self._training_texts(cfg.corpus, cfg.sentences)
        self.log(f"    distill: {len(texts)} sentences from {', '.join(cfg.corpus)} "
                 f"({data_record['dropped_overlapping_evaluation']} evaluation sentences dropped)")
        model, record = distill(teacher, cfg, texts, cache_dir() / "distill", log=self.log,
                                student=None if student is teacher else student)
        return model, {**record, **data_record}

    def _exported(self, teacher, torch_steps, onnx: bool = True) -> tuple[object, list[dict], EncoderModel]:
        """(ONNX artifact, records, PyTorch model) of the teacher after `torch_steps`; computed once
        per step list. onnx=False skips the ONNX export (the artifact is None) for variants whose
        export steps trace the PyTorch model themselves."""
        key = json.dumps([[s.model_dump(mode="json") for s in torch_steps], onnx])
        if key in self._exports:
            return self._exports[key]
        model, records = teacher, []
        for cfg in torch_steps:
            if cfg.step == "distill":
                model, record = self._distill(teacher, model, cfg)
            elif cfg.step == "static_embeddings":  # always last: the encoder becomes a table, no export
                from edgeslim.compress.static import make_static

                folder = self.work / f"static-{len(self._exports)}"
                folder.mkdir(parents=True, exist_ok=True)
                artifact, static, record = make_static(model, cfg, folder)
                self.log(f"    static_embeddings: {record['vocabulary']} x {record['dim']} {record['dtype']} table")
                records.append({"step": cfg.step, "config": cfg.model_dump(mode="json"), **record})
                self._exports[key] = (artifact, records, static)
                return self._exports[key]
            elif cfg.step == "vocab_prune":
                from edgeslim.compress.vocab import prune_vocabulary

                corpus, data_record = self._training_texts(cfg.corpus)
                model, record = prune_vocabulary(model, cfg, corpus, self.data.agreement_texts)
                record.update(data_record)
                self.log(f"    vocab_prune: {record['vocab_before']} -> {record['vocab_after']} tokens, "
                         f"held-out OOV rate {record['heldout_oov_rate']:.2%}")
            else:  # prune, then heal by distilling the teacher into the pruned model
                from edgeslim.compress.prune import prune_model

                model, record = prune_model(model, cfg)
                self.log(f"    prune: {record['parameters_before']:,} -> {record['parameters_after']:,} parameters")
                if cfg.heal is not None:
                    model, record["heal"] = self._distill(teacher, model, cfg.heal)
            records.append({"step": cfg.step, "config": cfg.model_dump(mode="json"), **record})
        if not onnx:
            self._exports[key] = (None, records, model)
            return self._exports[key]
        folder = self.work / f"export-{len(self._exports)}"
        folder.mkdir(parents=True, exist_ok=True)
        self.log("    exporting to ONNX (parity-checked against PyTorch)")
        onnx_model, export_record = export_onnx(model, folder / "model.onnx", self.data.calibration.texts[:32])
        self._exports[key] = (onnx_model, records + [{"step": "export_onnx", **export_record}], model)
        return self._exports[key]

    def _variant(self, model, target, spec, variant, budget, baseline_p50):
        # Steps that convert the PyTorch model themselves need no ONNX export first.
        onnx = not (variant.export_steps and variant.export_steps[0].step in TRACING_STEPS)
        exported = onnx and not any(s.step == "static_embeddings" for s in variant.torch_steps)
        chain = [s.step for s in variant.torch_steps] + ["export_onnx"] * exported + [s.step for s in variant.export_steps]
        self.log(f"  [{target.name}] {variant.name}: {' -> '.join(chain)}")
        workdir = self.work / variant.name
        workdir.mkdir(parents=True, exist_ok=True)
        artifact, records, student = self._exported(model, variant.torch_steps, onnx)
        records = list(records)
        # The student's own tokenizer: a pruned vocabulary has other token ids.
        ctx = StepContext(workdir=workdir, calibration_texts=self.data.calibration.texts,
                          tokenize=student.tokenize, max_seq_length=student.max_seq_length,
                          pooling=student.pooling, normalize=student.normalize, log=self.log,
                          torch_model=student)
        for step in variant.export_steps:
            artifact, record = apply_step(artifact, step, ctx)
            records.append(record)

        # Same text as the baseline's input, in this student's own token ids.
        ids = latency_input(student, self.data.agreement_texts, budget.seq_len)
        staging = staging_dir(self.bundles, variant.name)
        # The tokenizer first: targets may read the bundle's max length from it.
        student.tokenizer.save(str(staging / "tokenizer.json"))
        files = target.export(artifact, variant.backend, staging)
        used = {s.step: s for s in variant.steps}
        calibration = {"corpus": self.data.calibration.name, "sha256": self.data.calibration.sha256,
                       "sentences": max([getattr(s, "calibration_samples", 0) for s in used.values()] or [0])}
        manifest = {
            "name": variant.name,
            "target": target.name,
            "backend": variant.backend,
            "backend_options": {**target.backend_options[variant.backend], **files.backend_options},
            "model_file": files.model_file,
            "tokenizer_file": "tokenizer.json",
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in INPUT_NAMES],
            "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", "sequence", student.hidden_size]}],
            "embedding_dim": student.hidden_size,
            "pooling": student.pooling,
            "normalize": student.normalize,
            "max_seq_length": student.max_seq_length,
            "truncation": "truncate",
            "source_model": {"name": model.name, "weights_sha256": model.weights_sha256, "license": model.license,
                             "recipe_model": self.recipe.model.model_dump(mode="json")},
            "recipe": {"name": self.recipe.name, "file_sha256": sha256_file(self.recipe_path),
                       "variant": variant.model_dump(mode="json")},
            "steps": records,
            "calibration": calibration,
            "profile": target.profile().to_dict(),
            "budget": budget.to_dict(),
        }
        write_manifest(staging, manifest)
        # Host timings on real lengths say nothing about another device: skipped for estimated targets.
        measured, embeddings = self._worker({"kind": "bundle", "path": str(staging)}, budget, ids, self.data.texts,
                                            on_device=target.latency_kind == "measured")
        size_mb = sum(p.stat().st_size for p in staging.iterdir()) / 1e6
        final = self.bundles / variant.name
        result = self._result(variant.name, target.name, variant.backend, str(final), size_mb, measured,
                              embeddings, budget, baseline_p50, records, target.latency_kind)
        if target.latency_kind == "estimated":
            self._use_estimate(result, target, student, staging, files.model_file, records, budget)
        result.budget = check(result, budget)
        result.required = variant.name in spec.required
        # The measured figures go into the bundle itself, then it is published in one rename.
        (staging / MODEL_CARD).write_text(render_model_card(manifest, result.model_dump()), encoding="utf-8")
        write_manifest(staging, {**manifest, "benchmark": result.model_dump(exclude={"steps", "bundle"})})
        publish(staging, final)
        speedup = f"{result.speedup_vs_baseline:.1f}x" if result.speedup_vs_baseline else "estimated"
        self.log(f"    p50 {result.latency_ms.p50:.2f} ms ({speedup}), "
                 f"{result.size_mb:.1f} MB, cos {result.accuracy.teacher_cosine_mean:.4f}, "
                 f"STS-B {result.accuracy.stsb_spearman}, budget {'PASS' if result.budget.passed else 'FAIL'}")
        return result


    @staticmethod
    def _use_estimate(result: Result, target, student, bundle_dir: Path, model_file: str, records,
                      budget: Budget) -> None:
        """Replace the host timing by the target's estimate (its own estimator, such as Vela's,
        or the roofline of its profile): this machine is not the device."""
        from edgeslim.targets.roofline import INT8_STEPS, encoder_macs, estimate_latency

        result.latency_real_ms = []  # host timings on real lengths say nothing about the device
        result.speedup_vs_baseline = None
        if hasattr(target, "estimate"):
            est = target.estimate(bundle_dir, budget)
            ms, where, what = est.ms, est.where, est.what
            result.device_estimate = est.details
        else:
            model_file = bundle_dir / model_file
            # An OpenVINO IR keeps its weights in the .bin beside the .xml.
            weights = [model_file] + ([model_file.with_suffix(".bin")] if model_file.suffix == ".xml" else [])
            profile = target.profile()
            int8 = any(r.get("step") in INT8_STEPS for r in records)
            est = estimate_latency(profile, encoder_macs(student, budget.seq_len, budget.batch),
                                   sum(f.stat().st_size for f in weights), int8, budget.threads)
            ms, where, what = est.ms, est.where(profile, budget.threads), est.model
        result.latency_ms = Latency(p50=ms, p90=ms, p95=ms, p99=ms, batch=budget.batch, threads=budget.threads,
                                    runs=0, seq_len=budget.seq_len, kind="estimated", where=where, what=what)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def default_out_dir(recipe: Recipe) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{recipe.name}"


def run_recipe(recipe: Recipe, recipe_path: Path, out_dir: Path | None = None, log=print,
               search: bool = False, resume: bool = False) -> Report:
    """Run the recipe's targets, or with search=True its search grid.

    resume=True continues an interrupted run in `out_dir`: finished distillations and their
    checkpoints come from the cache (EDGESLIM_CACHE), everything else is rebuilt."""
    if search:
        recipe = recipe.for_search()
    if not recipe.targets:
        raise RecipeError(f"recipe {recipe.name!r} has no targets; it has a search section: use `edgeslim search`")
    require(recipe.extras(), f"recipe {recipe.name!r}")  # before any model loads
    out_dir = Path(out_dir) if out_dir else default_out_dir(recipe)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not resume:
            raise OutputError(f"output folder {out_dir} is not empty; choose another with --out, "
                                "or pass --resume to continue an interrupted run there")
        if (out_dir / "report.json").exists():
            raise OutputError(f"{out_dir} holds a finished run (report.json); nothing to resume")
    return Runner(recipe, Path(recipe_path), out_dir, log, searching=search).run()
