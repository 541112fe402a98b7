"""Evaluation data of a run: calibration, held-out agreement items, the modality's task metrics
and the labelled probes, their overlaps with calibration removed and recorded, the corpus
distillation may learn from, and the latency input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeslim.calibration_data import Corpus, corpus_available, load_corpus
from edgeslim.errors import RecipeError
from edgeslim.modalities import Modality, TaskData, get_modality
from edgeslim.recipe import Recipe


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class ProbeData:
    """A labelled task: train items (the probe's training set, kNN memory) and test items."""

    train: Corpus
    test: Corpus
    label: str  # which of the corpora's label sets
    train_items: tuple[str, ...]
    train_labels: tuple[str, ...]
    test_items: tuple[str, ...]
    test_labels: tuple[str, ...]
    test_overlap_with_calibration: int  # test items removed because calibration holds them
    k: int


DRIFT_SAMPLES = 1000


@dataclass
class EvalData:
    """What a run evaluates on. Items are sentences, or file paths (images, audio clips);
    `agreement_texts` holds them either way."""

    modality: Modality
    calibration: Corpus
    agreement: Corpus
    agreement_texts: list[str]
    agreement_overlap: int  # items dropped from agreement because calibration has them
    metrics: list[TaskData]  # the modality's task metrics that have their data here
    skipped: list[str]
    probes: list[ProbeData]

    @property
    def probe(self) -> ProbeData | None:
        """The first probe: the one budgets bound."""
        return self.probes[0] if self.probes else None

    @property
    def drift_items(self) -> list[str]:
        """Held-out in-domain items for a bundle's drift reference: a seeded random sample of
        the agreement corpus without calibration items, up to DRIFT_SAMPLES. Random, not the
        first N: corpora are often ordered by source or genre, one after another)."""
        calibration = {_norm(t) for t in self.calibration.texts}
        kept = [t for t in self.agreement.texts if _norm(t) not in calibration]
        order = np.random.default_rng(0).permutation(len(kept))[:DRIFT_SAMPLES]
        return [kept[i] for i in sorted(order)]

    @property
    def metric_overlap(self) -> int:
        return sum(m.overlap_with_calibration for m in self.metrics)

    @property
    def item_sets(self) -> list[list[str]]:
        """The evaluation items in the groups each model embeds in one call: the agreement set
        with the task metrics' items, then the probes' items not already there. Separate calls
        keep a group's batches the same whether or not the other group is evaluated (dynamic int8
        scales activations per batch, so batch mates move a vector slightly)."""
        main = list(dict.fromkeys(self.agreement_texts + [t for m in self.metrics for t in m.items]))
        seen = set(main)
        probe = [t for t in dict.fromkeys(t for p in self.probes for t in p.train_items + p.test_items)
                 if t not in seen]
        return [main, probe] if probe else [main]

    @property
    def texts(self) -> list[str]:
        """Every evaluation item, each once, in the order of `item_sets`."""
        return [t for group in self.item_sets for t in group]

    @property
    def scored_items(self) -> list[str]:
        """The items accuracy is scored on (agreement, task metrics, probe test): what training
        must never see. The probes' train items (kNN memory and probe fit) are not among them:
        they may be what a student was distilled on, as with an SSL split of one dataset."""
        test = [t for p in self.probes for t in p.test_items]
        return list(dict.fromkeys(self.item_sets[0] + test))

    @property
    def real_length_items(self) -> tuple[tuple[str, ...], str]:
        """Items for real-length latency runs (the first task metric's, else agreement's) and
        where they come from."""
        if self.metrics:
            return tuple(self.metrics[0].items), self.metrics[0].label
        return tuple(self.agreement_texts), self.agreement.name

    def describe(self) -> dict:
        count = self.modality.count
        described = {
            "calibration": f"{self.calibration.name}: {count(len(self.calibration.texts))}, sha256 "
                           f"{self.calibration.sha256} ({self.calibration.source})",
            "teacher_agreement": f"{self.agreement.name}: {count(len(self.agreement_texts))} "
                                 f"({self.agreement.source}); {self.agreement_overlap} overlapping calibration "
                                 f"{self.modality.noun} removed",
        }
        for metric in self.metrics:
            described[metric.name] = metric.described
        for n, probe in enumerate(self.probes):
            described["probe" if n == 0 else f"probe_{n}"] = (
                f"{probe.train.name} ({len(probe.train_items)} items, kNN memory and linear-probe training) -> "
                f"{probe.test.name} ({len(probe.test_items)} items), label {probe.label}; "
                f"{probe.test_overlap_with_calibration} test items that calibration holds removed")
        if not self.probes:
            described["probe"] = "not evaluated"
        return described


def load_eval_data(recipe: Recipe, modality: str) -> EvalData:
    spec = recipe.data
    skipped = []
    kind = get_modality(modality)
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
    metrics = kind.task_data(spec, calibration_set, skipped)
    probes = [p for p in (_probe(p, calibration_set, skipped) for p in spec.probes) if p is not None]
    return EvalData(kind, calibration, agreement, agreement_texts, len(agreement.texts) - len(kept), metrics,
                    skipped, probes)


def _probe(spec, calibration_set: set[str], skipped: list[str]) -> ProbeData | None:
    missing = [name for name in (spec.train, spec.test) if not corpus_available(name)]
    if missing:
        skipped.append(f"probe {spec.train} -> {spec.test}: {', '.join(missing)} not found; set EDGESLIM_DATA to "
                       "the shared data folder to measure the classification probe")
        return None
    train, test = load_corpus(spec.train), load_corpus(spec.test)
    label = spec.label or train.label_name
    for corpus in (train, test):
        if label not in corpus.label_sets:
            raise RecipeError(f"data.probe: {corpus.name} has no {label!r} labels; its label sets: "
                              f"{', '.join(corpus.label_sets) or 'none (not a labelled corpus)'}")

    # Evenly spread subsets (every n-th item), so every class is represented.
    def subset(corpus: Corpus, n: int, keep) -> tuple[tuple[str, ...], tuple[str, ...]]:
        pairs = [(t, y) for t, y in zip(corpus.texts, corpus.label_sets[label]) if keep(t)]
        step = max(1, len(pairs) // n)
        chosen = pairs[::step][:n]
        return tuple(t for t, _ in chosen), tuple(y for _, y in chosen)

    train_items, train_labels = subset(train, spec.train_samples, lambda t: True)
    test_items, test_labels = subset(test, spec.test_samples, lambda t: _norm(t) not in calibration_set)
    overlap = sum(_norm(t) in calibration_set for t in test.texts)
    return ProbeData(train, test, label, train_items, train_labels, test_items, test_labels, overlap, spec.knn_k)


def latency_input(model, data: EvalData, seq_len: int) -> dict:
    """The budget's operating point as worker input, in `model`'s own terms (text: one row of
    exactly `seq_len` real tokens cut from the held-out sentences, in its token ids; images and
    audio: one held-out item, whose size is the model's)."""
    return data.modality.latency_input(model, data.agreement_texts, seq_len)


def training_texts(data: EvalData, corpus: tuple[str, ...], limit: int | None = None) -> tuple[list[str], dict]:
    """Items of `corpus` minus every item of the evaluation sets: what distillation and
    vocabulary pruning may learn from."""
    texts = list(dict.fromkeys(t for name in corpus for t in load_corpus(name).texts))
    evaluation = {_norm(t) for t in data.scored_items}
    disjoint = [t for t in texts if _norm(t) not in evaluation]
    probe_train = {_norm(t) for p in data.probes for t in p.train_items}
    kept = disjoint[:limit]
    return kept, {"corpus": list(corpus), "disjoint_from_evaluation": True,
                  "dropped_overlapping_evaluation": len(texts) - len(disjoint),
                  "shared_with_probe_train": sum(_norm(t) in probe_train for t in kept)}
