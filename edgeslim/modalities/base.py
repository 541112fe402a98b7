"""The kit's half of a modality: everything about one kind of input that is not the device's
job. The device's half (input preparation and checks, numpy only) is the `runtime` attribute,
an `edgeslim.runtime.modality.RuntimeModality`; both halves are registered under one name.

A modality says:

- its data: the corpora of its kind (`calibration_data.CORPORA` entries carry a modality), and
  the held-out items `edgeslim verify --arch aarch64` runs on;
- its task metrics beyond the generic ones (teacher cosine and the kNN / linear probes every
  modality with labelled data gets), as a table of `MetricSpec` rows like the budget's checks:
  what each scores, on which data, and the budget key that bounds it;
- its model input for the kit: a latency operating point, tracing inputs for export,
  distillation batches with their augmentation, the files a bundle carries for it;
- its wording: model cards and the firmware header.

Nothing outside `edgeslim/modalities/` and the runtime halves branches on a modality's name;
`tests/test_modalities.py` checks that by parsing the pipeline's modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from edgeslim.runtime.modality import RuntimeModality


@dataclass(frozen=True)
class MetricSpec:
    """A task metric a modality scores runs by (besides cosine to the teacher and the probes)."""

    name: str  # the key in reports, e.g. "stsb_spearman"
    label: str  # how people read it, e.g. "STS-B Spearman x100"
    short: str = ""  # a table column's header, e.g. "STS-B"
    higher_is_better: bool = True
    budget_key: str | None = None  # the budget field that bounds it (e.g. "min_stsb_spearman")
    budget_doc: str = ""
    # The recipe's `data` keys that turn it on (a plan refuses them for other modalities).
    data_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskData:
    """A metric made ready for one run: the items to embed and how to score their embeddings."""

    spec: MetricSpec
    items: tuple[str, ...]
    described: str  # for the report's data section
    overlap_with_calibration: int
    score: Callable[[dict[str, np.ndarray]], float]  # embeddings by item -> the metric
    split: str = ""  # e.g. "test"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return f"{self.spec.label} ({self.split})" if self.split else self.spec.label


@dataclass
class Batches:
    """Distillation batches: `batch(indices, step, device)` -> (feeds, mask or None, teacher
    targets), and how the student's token states pool."""

    batch: Callable
    pool: Callable = field(default=lambda hidden, mask, pooling: hidden[:, 0] if pooling == "cls" else hidden.mean(1))


class Modality:
    """The contract. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    runtime: ClassVar[RuntimeModality]
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    default_label: ClassVar[str] = "label"  # what a labelled corpus's labels are, for probe names

    @property
    def noun(self) -> str:
        return self.runtime.noun

    def count(self, n: int) -> str:
        return f"{n} {self.noun}"

    # -- data -----------------------------------------------------------------------------
    def corpora(self) -> list[str]:
        from edgeslim.calibration_data import CORPORA

        return sorted(name for name, entry in CORPORA.items() if entry.modality == self.name)

    def task_data(self, spec, calibration_set: set[str], skipped: list[str]) -> list[TaskData]:
        """This modality's metrics for a run with the recipe's `data` section `spec` (a metric
        whose data is missing appends how to enable it to `skipped`)."""
        return []

    def data_refusal(self, spec) -> str | None:
        """Why the recipe's `data` section cannot go with a model of another modality: a key of
        this modality's metrics is set. None when none is."""
        for metric in self.metrics:
            for key in metric.data_keys:  # set on purpose (a default is not a choice)
                if key in spec.model_fields_set and getattr(spec, key, None):
                    return f"data.{key} turns on {metric.label}, which scores {self.name} models; set it to null"
        return None

    def verify_items(self, count: int, scratch: Path) -> tuple[list, str]:
        """Held-out items for the aarch64 check (never calibration data), and what they are."""
        raise NotImplementedError

    def drift_in_domain(self, seed: int = 0) -> dict[str, list]:
        """More in-domain item sets for the drift benchmark (another split of the same sources),
        besides the rest of the run's agreement corpus."""
        return {}

    def drift_shifts(self, in_domain: list, seed: int = 0) -> dict[str, list]:
        """Shifted item sets for the drift benchmark (edgeslim/drift_benchmark.py), named by what was
        done: other data of the modality, and `in_domain` items corrupted. Items are what the
        runtime's entry takes (sentences, arrays, paths)."""
        return {}

    # -- model input (kit side) -----------------------------------------------------------
    def latency_input(self, model, items: list, seq_len: int) -> dict:
        """The budget's operating point as JSON for a benchmark worker: by default one held-out
        item (its size is the model's)."""
        return {"item": items[0]}

    def latency_feeds(self, model, latency_input: dict, batch: int) -> dict[str, np.ndarray]:
        """The worker's timed feeds, `batch` copies of the operating point, for `model` (a kit
        teacher or a runtime Encoder: anything with `model_inputs(items)`)."""
        feeds = model.model_inputs([latency_input["item"]])
        return {name: np.repeat(array, batch, axis=0) for name, array in feeds.items()}

    def example_inputs(self, model) -> tuple:
        """torch tensors to trace `model.exportable()` with: two items of its input shape."""
        import torch

        return tuple(torch.zeros((2, *spec.shape[1:]), dtype=torch.float32) for spec in model.inputs())

    def bundle_inputs(self, model, staging: Path) -> dict:
        """Write what the device needs besides the model into the bundle; return the manifest
        entries that describe it (default: the model's preprocessing)."""
        return {"preprocessing": model.preprocessing}

    def distillation_batches(self, teacher, student, items: list, cfg, log) -> Batches:
        """Batches of `items` for distilling `teacher` into `student` (augmented when cfg.augment)."""
        raise NotImplementedError

    # -- wording --------------------------------------------------------------------------
    def card_usage(self, manifest) -> str:
        """The Python line of the model card's usage example."""
        return f"vectors = encoder.{self.runtime.entry}([...])"

    def card_input(self, manifest) -> str:
        raise NotImplementedError

    def card_limits(self, manifest) -> str:
        raise NotImplementedError

    def upgrade_report1(self, accuracy: dict) -> dict:
        """An `accuracy` of an edgeslim.report/1 report with the fields this modality's metrics
        had there moved into `metrics` (report/2); unchanged when there are none."""
        return accuracy

    def firmware_lines(self, manifest, symbol: str, inputs: list[dict], outputs: list[dict]) -> list[str]:
        """C header lines that tell the application CPU how to prepare input and read output."""
        raise NotImplementedError


def check_modality(modality: Modality) -> list[str]:
    """What a kit modality lacks (an empty list: it fulfils the contract)."""
    from edgeslim.runtime.modality import check_modality as check_runtime

    problems = []
    if not isinstance(getattr(modality, "name", None), str):
        problems.append("class attribute name is not set")
    runtime = getattr(modality, "runtime", None)
    if not isinstance(runtime, RuntimeModality):
        problems.append("runtime is not a RuntimeModality")
    else:
        problems += [f"runtime: {p}" for p in check_runtime(runtime)]
        if runtime.name != getattr(modality, "name", None):
            problems.append(f"runtime half is named {runtime.name!r}, the kit half {modality.name!r}")
    for method in ("verify_items", "distillation_batches", "card_input", "card_limits", "firmware_lines"):
        if getattr(type(modality), method) is getattr(Modality, method):
            problems.append(f"{method}() is not written")
    for metric in getattr(modality, "metrics", ()):
        if not isinstance(metric, MetricSpec):
            problems.append(f"metric {metric!r} is not a MetricSpec")
    return problems
