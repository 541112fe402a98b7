"""Evaluation data of a run: calibration, held-out agreement and task sets, their overlaps
removed and recorded, the corpus distillation may learn from, and the latency input."""

from __future__ import annotations

from dataclasses import dataclass

from edgeslim.calibration_data import Corpus, corpus_available, load_corpus, load_stsb
from edgeslim.errors import RecipeError
from edgeslim.recipe import Recipe


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


def latency_input(model, texts: list[str], seq_len: int) -> list[int]:
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
    evaluation = {_norm(t) for t in data.texts}
    disjoint = [t for t in texts if _norm(t) not in evaluation]
    return disjoint[:limit], {"corpus": list(corpus), "disjoint_from_evaluation": True,
                              "dropped_overlapping_evaluation": len(texts) - len(disjoint)}
