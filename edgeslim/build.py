"""Building one variant: run its planned steps (PyTorch-side prefixes cached across variants),
let the target place the files in a staging folder, and make its manifest.

Nothing here measures; `measure.py` does, on the staged bundle (through a copy of the manifest
kept in the run's scratch folder), before the pipeline writes the bundle's one manifest, with
the measurements in it, and publishes it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeslim.bundle import complete_manifest, staging_dir
from edgeslim.compress import OnnxModel, StepContext, TorchModel, apply_step
from edgeslim.evaldata import EvalData, training_texts
from edgeslim.outputs import write_atomic
from edgeslim.runtime.bundle import sha256_file
from edgeslim.runtime.manifest import Manifest, parse_manifest
from edgeslim.targets.base import BundleFiles, ExportContext


def step_identities(steps) -> list[dict]:
    """What decides a chain of steps' output (besides the teacher and the data): the steps'
    configs, in order. Keys the in-process prefix cache and the search's artifact store."""
    return [s.model_dump(mode="json") for s in steps]


@dataclass(frozen=True)
class BuiltBundle:
    staging: Path
    manifest: dict  # without the measurements; the pipeline adds them and writes it into the bundle
    manifest_path: Path  # the same, written to the scratch folder for the measuring workers
    files: BundleFiles
    reader: object  # the model whose tokenizer and pooling the bundle's inputs follow
    torch_model: object | None  # the last PyTorch model of the chain (MAC counts), None for ONNX teachers
    records: tuple[dict, ...]
    int8: bool  # some step made weights int8 (declared by the steps)

    @property
    def manifest_model(self) -> Manifest:
        return parse_manifest(self.manifest, f"the manifest of {self.staging.name}")

    def weight_files(self) -> tuple[Path, ...]:
        """The files a forward pass reads weights from (the backend registry says which)."""
        return tuple(self.staging / name for name in self.manifest_model.weight_files())


class Builder:
    def __init__(self, teacher, data: EvalData, work: Path, recipe, recipe_path: Path, log=print,
                 distill_dir: Path | None = None):
        self.teacher, self.data, self.work = teacher, data, work
        self.recipe, self.recipe_path, self.log = recipe, recipe_path, log
        self.distill_dir = distill_dir  # None: the cache's
        self._cache: dict[str, tuple] = {}

    def _context(self, workdir: Path, reader) -> StepContext:
        return StepContext(workdir=workdir, calibration_texts=self.data.calibration.texts, reader=reader,
                           modality=self.data.modality,
                           log=self.log, teacher=self.teacher,
                           training_texts=lambda corpus, limit: training_texts(self.data, corpus, limit),
                           heldout_texts=tuple(self.data.agreement_texts), distill_dir=self.distill_dir)

    def artifact(self, planned) -> tuple[object, list[dict], object, object]:
        """(artifact, records, reader, last PyTorch model) after the planned steps. Prefixes made
        of steps that read a PyTorch model (distillation, pruning, the export) run once per run."""
        teacher = self.teacher
        onnx_teacher = teacher.family is None  # source: onnx, the file is the first artifact
        artifact = OnnxModel(teacher.path) if onnx_teacher else TorchModel(teacher)
        records, reader, torch_model = [], teacher, None if onnx_teacher else teacher
        done = 0
        for n in range(len(planned.steps), 0, -1):  # the longest cached prefix
            key = self._key(planned.steps[:n])
            if key in self._cache:
                artifact, records, reader, torch_model = self._cache[key]
                done = n
                break
        records = list(records)
        for n, cfg in enumerate(planned.steps[done:], start=done):
            workdir = self.work / f"step-{len(self._cache)}-{planned.name}-{n}"
            workdir.mkdir(parents=True, exist_ok=True)
            consumed_torch = artifact.kind == TorchModel.kind
            artifact, record = apply_step(artifact, cfg, self._context(workdir, reader))
            records.append(record)
            reader = artifact.reader or reader
            if artifact.kind == TorchModel.kind:
                torch_model = artifact.model
            if consumed_torch:
                self._cache[self._key(planned.steps[: n + 1])] = (artifact, list(records), reader, torch_model)
        return artifact, records, reader, torch_model

    @staticmethod
    def _key(steps) -> str:
        return json.dumps(step_identities(steps))

    def build(self, planned, budget, bundles: Path) -> BuiltBundle:
        """Stage the variant's bundle in `bundles` (published there as `<name>` by the caller)."""
        target, variant = planned.target, planned.variant
        self.log(f"  [{target.name}] {variant.name}: {' -> '.join(planned.chain())}")
        artifact, records, reader, torch_model = self.artifact(planned)
        staging = staging_dir(bundles, variant.name)
        teacher = self.teacher
        # What the device needs to turn raw input into the model's (a tokenizer, preprocessing).
        reads = self.data.modality.bundle_inputs(reader, staging)
        inputs = [spec.to_manifest() for spec in teacher.inputs()]
        if artifact.image_layout == "NHWC":  # a channels-last graph: the device prepares HWC
            reads = {**reads, "preprocessing": {**reads["preprocessing"], "layout": "NHWC"}}
            inputs = [{**spec, "shape": [spec["shape"][0], *spec["shape"][2:], spec["shape"][1]]} for spec in inputs]
        files = target.export(artifact, variant.backend,
                              ExportContext(bundle_dir=staging, max_seq_length=reader.max_seq_length,
                                            hidden_size=reader.hidden_size))
        calibration = {"corpus": self.data.calibration.name, "sha256": self.data.calibration.sha256,
                       "sentences": max([s.calibration_sentences for s in planned.steps] or [0])}
        manifest = {
            "name": variant.name,
            "target": target.name,
            "backend": variant.backend,
            "backend_options": {**target.backend_options[variant.backend], **files.backend_options},
            "model_file": files.model_file,
            "modality": teacher.modality,
            **reads,
            "inputs": inputs,
            "outputs": [{"name": "pooled_embedding", "dtype": "float32", "shape": ["batch", 1, reader.hidden_size]}
                        if artifact.image_layout else  # a channels-last LiteRT graph ends in the pooled embedding
                        teacher.output().to_manifest() if reader is teacher else
                        {"name": "last_hidden_state", "dtype": "float32", "shape": ["batch", "sequence", reader.hidden_size]}],
            "embedding_dim": reader.hidden_size,
            "pooling": reader.pooling,
            "normalize": reader.normalize,
            "source_model": {"name": teacher.name, "family": teacher.family.name if teacher.family else "onnx",
                             "weights_sha256": teacher.weights_sha256, "license": teacher.license,
                             "languages": teacher.languages,
                             "recipe_model": self.recipe.model.model_dump(mode="json")},
            "recipe": {"name": self.recipe.name, "file_sha256": sha256_file(self.recipe_path),
                       "variant": variant.model_dump(mode="json")},
            "steps": records,
            "calibration": calibration,
            "profile": target.profile().to_dict(),
            "budget": budget.to_dict(),
        }
        manifest = complete_manifest(staging, manifest)
        manifest_path = self.work / f"{variant.name}.manifest.json"
        write_atomic(manifest_path, json.dumps(manifest, indent=2))
        return BuiltBundle(staging=staging, manifest=manifest, manifest_path=manifest_path, files=files, reader=reader,
                           torch_model=torch_model, records=tuple(records),
                           int8=any(s.int8 for s in planned.steps))


def device_references(built: BuiltBundle, data) -> dict:
    """What a device checks itself against, taken from the staged bundle run here by the runtime
    as a device runs it: `health_check` (its embeddings of the modality's health-check items) and
    `drift` (statistics of its raw embeddings of a random sample of the agreement corpus, which
    calibration never saw; None when there are too few of them)."""
    from edgeslim.runtime import load
    from edgeslim.runtime.drift import MIN_DRIFT_ITEMS, drift_reference
    from edgeslim.runtime.health import reference

    # Every core: these are embeddings, not timings.
    encoder = load(built.staging, threads=len(os.sched_getaffinity(0)), manifest_path=built.manifest_path)
    items = data.drift_items
    drift = None
    if len(items) >= 2 * MIN_DRIFT_ITEMS:
        source = (f"{data.agreement.name}: {len(items)} held-out {data.modality.noun} drawn at random (seed 0), "
                  "disjoint from calibration; half reference, half threshold calibration")
        drift = drift_reference(encoder.encode_unnormalized(items), source)
    return {"health_check": reference(encoder), "drift": drift}
