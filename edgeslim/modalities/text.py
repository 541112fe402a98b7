"""Text: sentences through a tokenizer. Task metric STS-B Spearman (recipe key
`data.stsb_split`); probes on Banking77 intents; latency at a fixed token count cut from real
sentences; distillation targets cached by the teacher's weights and the sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeslim.errors import RecipeError
from edgeslim.modalities.base import Batches, MetricSpec, Modality, TaskData
from edgeslim.runtime.text import TEXT

STSB = MetricSpec(
    name="stsb_spearman", label="STS-B Spearman x100", short="STS-B", budget_key="min_stsb_spearman",
    budget_doc="STS-B Spearman x100 at least this (text)", data_keys=("stsb_split",))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def stsb_spearman(embeddings: dict[str, np.ndarray], pairs) -> float:
    """STS-B Spearman x100 of the cosine between the two sentences of each pair vs the gold score."""
    from edgeslim.modalities.scoring import cosine_rows, spearman

    a = np.stack([embeddings[s] for s in pairs.sentences1])
    b = np.stack([embeddings[s] for s in pairs.sentences2])
    return 100.0 * spearman(cosine_rows(a, b), pairs.scores)


class TextModalityKit(Modality):
    name = "text"
    runtime = TEXT
    metrics = (STSB,)
    default_label = "intent"

    def task_data(self, spec, calibration_set, skipped):
        from edgeslim.calibration_data import corpus_available, load_stsb

        split = spec.stsb_split
        if not split:
            return []
        if not corpus_available(f"stsb-{split}"):
            skipped.append(f"STS-B {split} Spearman: stsb/stsb-en-{split}.csv not found; set EDGESLIM_DATA to a "
                           "folder holding it (default ../shared/data) to measure the task metric")
            return []
        pairs = load_stsb(split)
        overlap = sum(_norm(s) in calibration_set for s in pairs.sentences)
        return [TaskData(spec=STSB, items=pairs.sentences, split=split, overlap_with_calibration=overlap,
                         described=f"STS-B {split}: {len(pairs.scores)} pairs, file sha256 {pairs.file_sha256}; "
                                   f"sentences also in calibration: {overlap}",
                         score=lambda by_item: stsb_spearman(by_item, pairs))]

    def drift_in_domain(self, seed=0):
        from edgeslim.calibration_data import corpus_available, load_corpus

        if not corpus_available("stsb-dev"):
            return {}
        texts = list(load_corpus("stsb-dev").texts)
        picks = np.random.default_rng(seed).permutation(len(texts))[:2000]
        return {"STS-B dev sentences (the same sources, another split)": [texts[i] for i in picks]}

    def drift_shifts(self, in_domain, seed=0):
        from edgeslim.calibration_data import corpus_available, load_corpus

        rng = np.random.default_rng(seed)
        shifts = {"the same sentences, words shuffled": _shuffled_words(list(in_domain), rng)}
        for name, what in (("clinc-oos-test", "CLINC150 out-of-scope queries"), ("banking77-test", "Banking77 queries"),
                           ("wordnet-heldout", "WordNet glosses and examples"), ("wiki", "lowercased Wikipedia")):
            if corpus_available(name):
                texts = list(load_corpus(name).texts)
                shifts[f"{what} ({name})"] = [texts[i] for i in rng.permutation(len(texts))[:1000]]
        return shifts

    def verify_items(self, count: int, scratch: Path):
        from edgeslim.calibration_data import load_corpus

        return list(load_corpus("wordnet-heldout").texts[:count]), "held-out wordnet sentences"

    def latency_input(self, model, items, seq_len):
        """One row of exactly `seq_len` real tokens (no padding), cut from the held-out
        sentences, in `model`'s own token ids."""
        if seq_len > model.max_seq_length:
            raise RecipeError(f"budget seq_len {seq_len} exceeds model.max_seq_length {model.max_seq_length}")
        joined = ""
        for text in items:
            joined += " " + text
            feeds = model.model_inputs([joined], pad_to=seq_len)
            if feeds["attention_mask"].all():
                return {"input_ids": feeds["input_ids"][0].tolist()}
        raise RecipeError(f"the evaluation texts are too short to build a {seq_len}-token latency input")

    def latency_feeds(self, model, latency_input, batch):
        ids = np.repeat(np.asarray([latency_input["input_ids"]], np.int64), batch, axis=0)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def example_inputs(self, model):
        import torch

        feeds = model.model_inputs(["an example sentence to trace the graph", "short"])
        return torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])

    def bundle_inputs(self, model, staging):
        model.tokenizer.save(str(staging / "tokenizer.json"))
        return {"tokenizer_file": "tokenizer.json", "max_seq_length": model.max_seq_length, "truncation": "truncate"}

    def distillation_batches(self, teacher, student, texts, cfg, log):
        """Token batches through the student's own tokenizer (a pruned vocabulary has other
        ids); the targets are the teacher's embeddings of the same sentences, cached."""
        import copy

        import torch

        from edgeslim.runtime.text import tokenize

        targets = torch.from_numpy(teacher_embeddings(teacher, texts, cfg.max_seq_length, log))
        tokenizer = copy.deepcopy(student.tokenizer)
        tokenizer.enable_truncation(max_length=cfg.max_seq_length)

        def batch(shard, step, device):
            ids, mask = tokenize(tokenizer, [texts[i] for i in shard])
            ids, mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            return {"input_ids": ids, "attention_mask": mask}, mask, targets[shard].to(device)

        return Batches(batch=batch, pool=lambda hidden, mask, pooling: mean_pool(hidden, mask))

    def card_usage(self, manifest):
        return "vectors = encoder.encode(['a sentence'])"

    def card_input(self, manifest):
        return (f"Input: text, tokenized by `tokenizer.json`, at most {manifest.get('max_seq_length')} tokens "
                f"(longer texts are {manifest.get('truncation')}d and counted).")

    def card_limits(self, manifest):
        source = manifest.get("source_model") or {}
        languages = source.get("languages") or "unknown: see the source model's documentation"
        return f"Text in the teacher's languages only ({source.get('name')}: {languages})."

    def upgrade_report1(self, accuracy: dict) -> dict:
        """edgeslim.report/1 kept STS-B in fixed fields of `accuracy`: read them into `metrics`."""
        if "stsb_spearman" not in accuracy:
            return accuracy
        accuracy = dict(accuracy)
        value, split = accuracy.pop("stsb_spearman"), accuracy.pop("stsb_split", None)
        if value is not None:
            accuracy["metrics"] = [*accuracy.get("metrics", []), {
                "name": STSB.name, "label": f"{STSB.label} ({split})", "short": STSB.short, "value": value,
                "data": f"stsb-{split}"}]
        return accuracy

    def firmware_lines(self, manifest, symbol, inputs, outputs):
        return ["/* Tokenization runs on the application CPU, not in this model: tokenizer.json (",
                f"   {manifest.max_seq_length} tokens max, pad id 0) is in the bundle; pooling: {manifest.pooling},",
                f"   normalize: {manifest.normalize}. */"]


def mean_pool(hidden, mask):
    """Mean of the token states where the mask is 1 (torch; the student's pooled embedding)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def teacher_embeddings(teacher, texts: list[str], max_seq_length: int, log=print) -> np.ndarray:
    """The teacher's pooled, normalised embeddings of `texts`, cached by (weights, texts, length)."""
    import hashlib
    import json
    import os

    from edgeslim.cache import cache_dir

    key = hashlib.sha256(
        json.dumps([teacher.weights_sha256, teacher.pooling, max_seq_length]).encode()
        + hashlib.sha256("\n".join(texts).encode()).digest()
    ).hexdigest()[:32]
    path = cache_dir() / "teacher-embeddings" / f"{key}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return cached
    log(f"    teacher embeddings for {len(texts)} sentences (cached at {path})")
    teacher.tokenizer.enable_truncation(max_length=max_seq_length)
    try:
        embeddings = teacher.embed(texts, batch_size=64)
    finally:
        teacher.tokenizer.enable_truncation(max_length=teacher.max_seq_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, embeddings)
    os.replace(tmp, path)
    return embeddings


TEXT_KIT = TextModalityKit()


def _shuffled_words(texts: list[str], rng) -> list[str]:
    out = []
    for text in texts:
        words = text.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out
