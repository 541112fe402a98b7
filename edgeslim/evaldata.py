"""Evaluation data of a run: calibration, held-out agreement and task sets, their overlaps
removed and recorded, the corpus distillation may learn from, and the latency input."""

from __future__ import annotations

from dataclasses import dataclass

from edgeslim.calibration_data import Corpus, corpus_available, load_corpus, load_stsb
from edgeslim.errors import RecipeError
from edgeslim.recipe import Recipe


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class ProbeData:
    """A labelled task: train items (the probe's training set, kNN memory) and test items."""

    train: Corpus
    test: Corpus
    train_items: tuple[str, ...]
    train_labels: tuple[str, ...]
    test_items: tuple[str, ...]
    test_labels: tuple[str, ...]
    test_overlap_with_calibration: int  # test items removed because calibration holds them
    k: int


@dataclass
class EvalData:
    """What a run evaluates on. For text the items are sentences, for images file paths;
    `texts` / `agreement_texts` hold them either way."""

    calibration: Corpus
    agreement: Corpus
    agreement_texts: list[str]
    agreement_overlap: int  # items dropped from agreement because calibration has them
    stsb: object | None  # StsbPairs
    stsb_overlap: int
    skipped: list[str]
    probe: ProbeData | None = None

    @property
    def modality(self) -> str:
        return self.calibration.modality

    @property
    def item_sets(self) -> list[list[str]]:
        """The evaluation items in the groups each model embeds in one call: the agreement set
        with the STS-B sentences, then the probe's items not already there. Separate calls keep
        a group's batches the same whether or not the other group is evaluated (dynamic int8
        scales activations per batch, so batch mates move a vector slightly)."""
        main = list(dict.fromkeys(self.agreement_texts + list(self.stsb.sentences if self.stsb else ())))
        seen = set(main)
        probe = [] if self.probe is None else [t for t in dict.fromkeys(self.probe.train_items + self.probe.test_items)
                                               if t not in seen]
        return [main, probe] if probe else [main]

    @property
    def texts(self) -> list[str]:
        """Every evaluation item, each once, in the order of `item_sets`."""
        return [t for group in self.item_sets for t in group]

    @property
    def scored_items(self) -> list[str]:
        """The items accuracy is scored on (agreement, STS-B, probe test): what training must
        never see. The probe's train items (its kNN memory and probe fit) are not among them:
        they may be what a student was distilled on, as with an SSL split of one dataset."""
        test = [] if self.probe is None else list(self.probe.test_items)
        return list(dict.fromkeys(self.item_sets[0] + test))

    def describe(self) -> dict:
        noun = "sentences" if self.modality == "text" else "images"
        described = {
            "calibration": f"{self.calibration.name}: {len(self.calibration.texts)} {noun}, sha256 "
                           f"{self.calibration.sha256} ({self.calibration.source})",
            "teacher_agreement": f"{self.agreement.name}: {len(self.agreement_texts)} {noun} "
                                 f"({self.agreement.source}); {self.agreement_overlap} overlapping calibration "
                                 f"{noun} removed",
            "stsb": (f"STS-B {self.stsb.split}: {len(self.stsb.scores)} pairs, file sha256 {self.stsb.file_sha256}; "
                     f"sentences also in calibration: {self.stsb_overlap}") if self.stsb else "not evaluated",
            "probe": (f"{self.probe.train.name} ({len(self.probe.train_items)} items, kNN memory and linear-probe "
                      f"training) -> {self.probe.test.name} ({len(self.probe.test_items)} items); "
                      f"{self.probe.test_overlap_with_calibration} test items that calibration holds removed")
            if self.probe else "not evaluated",
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
    probe = _probe(spec.probe, calibration_set, skipped) if spec.probe else None
    return EvalData(calibration, agreement, agreement_texts, len(agreement.texts) - len(kept), stsb, stsb_overlap,
                    skipped, probe)


def _probe(spec, calibration_set: set[str], skipped: list[str]) -> ProbeData | None:
    missing = [name for name in (spec.train, spec.test) if not corpus_available(name)]
    if missing:
        skipped.append(f"probe {spec.train} -> {spec.test}: {', '.join(missing)} not found; set EDGESLIM_DATA to "
                       "the shared data folder to measure the classification probe")
        return None
    train, test = load_corpus(spec.train), load_corpus(spec.test)
    if train.labels is None or test.labels is None:
        raise RecipeError(f"data.probe: {spec.train} and {spec.test} must be labelled corpora")
    # Evenly spread subsets (every n-th item), so every class is represented.
    def subset(corpus: Corpus, n: int, keep) -> tuple[tuple[str, ...], tuple[str, ...]]:
        pairs = [(t, label) for t, label in zip(corpus.texts, corpus.labels) if keep(t)]
        step = max(1, len(pairs) // n)
        chosen = pairs[::step][:n]
        return tuple(t for t, _ in chosen), tuple(label for _, label in chosen)

    train_items, train_labels = subset(train, spec.train_samples, lambda t: True)
    test_items, test_labels = subset(test, spec.test_samples, lambda t: _norm(t) not in calibration_set)
    overlap = sum(_norm(t) in calibration_set for t in test.texts)
    return ProbeData(train, test, train_items, train_labels, test_items, test_labels, overlap, spec.knn_k)


def latency_input(model, data: EvalData, seq_len: int) -> dict:
    """The budget's operating point as worker input: for text one row of exactly `seq_len` real
    tokens (no padding) cut from the held-out sentences, in `model`'s own token ids; for images
    one held-out image (its size is the model's, whatever seq_len says)."""
    if model.tokenizer is None:
        return {"image": data.agreement_texts[0]}
    return {"input_ids": _token_row(model, data.agreement_texts, seq_len)}


def _token_row(model, texts: list[str], seq_len: int) -> list[int]:
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


def training_texts(data: EvalData, corpus: tuple[str, ...], limit: int | None = None) -> tuple[list[str], dict]:
    """Sentences of `corpus` minus every sentence of the evaluation sets: what distillation
    and vocabulary pruning may learn from."""
    texts = list(dict.fromkeys(t for name in corpus for t in load_corpus(name).texts))
    evaluation = {_norm(t) for t in data.scored_items}
    disjoint = [t for t in texts if _norm(t) not in evaluation]
    probe_train = set() if data.probe is None else {_norm(t) for t in data.probe.train_items}
    kept = disjoint[:limit]
    return kept, {"corpus": list(corpus), "disjoint_from_evaluation": True,
                  "dropped_overlapping_evaluation": len(texts) - len(disjoint),
                  "shared_with_probe_train": sum(_norm(t) in probe_train for t in kept)}
