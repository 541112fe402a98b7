"""Vocabulary pruning: keep the tokens a corpus needs, shrink the embedding table to match,
and rewrite the tokenizer with the new ids, so model and tokenizer stay consistent.

Kept: special tokens, every single-character piece (with and without the `##` prefix, so any
word can still be spelled out instead of turning into [UNK]), then the corpus's most frequent
tokens up to `max_tokens`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter

import torch
from tokenizers import Tokenizer

from edgeslim.compress.configs import VocabPruneConfig
from edgeslim.errors import StepError


def _kept_ids(tokenizer: Tokenizer, texts, cfg: VocabPruneConfig) -> list[int]:
    vocab = tokenizer.get_vocab()
    counts = Counter(i for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False) for i in enc.ids)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values()} | {
        t for t in vocab if t.startswith("[") and t.endswith("]")} | {_unk_token(tokenizer)}
    always = {vocab[t] for t in vocab if t in special or len(t.removeprefix("##")) == 1} | _post_processor_ids(tokenizer)
    frequent = [i for i, c in counts.most_common() if c >= cfg.min_count and i not in always]
    room = None if cfg.max_tokens is None else max(0, cfg.max_tokens - len(always))
    if room is not None and cfg.max_tokens < len(always):
        raise StepError(f"vocab_prune.max_tokens={cfg.max_tokens} is below the {len(always)} special and "
                        "single-character tokens that are always kept")
    return sorted(always | set(frequent[:room]))


def _unk_token(tokenizer: Tokenizer) -> str:
    return json.loads(tokenizer.to_str())["model"].get("unk_token") or "[UNK]"


def _post_processor_ids(tokenizer: Tokenizer) -> set[int]:
    """Ids the post-processor inserts ([CLS]/[SEP], <s>/</s>): kept whatever their spelling."""
    post = json.loads(tokenizer.to_str()).get("post_processor") or {}
    ids = {i for special in (post.get("special_tokens") or {}).values() for i in special["ids"]}
    return ids | {post[key][1] for key in ("sep", "cls") if key in post}


def _remapped_tokenizer(tokenizer: Tokenizer, kept: list[int]) -> Tokenizer:
    old_to_new = {old: new for new, old in enumerate(kept)}
    id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}
    spec = json.loads(tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise StepError(f"vocab_prune supports WordPiece tokenizers, this one is {spec['model']['type']}")
    spec["model"]["vocab"] = {id_to_token[old]: new for old, new in old_to_new.items()}
    for added in spec.get("added_tokens", []):
        added["id"] = old_to_new[added["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [old_to_new[i] for i in special["ids"]]
    for key in ("sep", "cls"):  # BertProcessing stores [token, id] pairs
        if key in post:
            post[key] = [post[key][0], old_to_new[post[key][1]]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = old_to_new[spec["padding"]["pad_id"]]
    return Tokenizer.from_str(json.dumps(spec))


def prune_vocabulary(model, cfg: VocabPruneConfig, corpus_texts, heldout_texts):
    """Return (EncoderModel with a smaller vocabulary and its own tokenizer, record)."""
    kept = _kept_ids(model.tokenizer, corpus_texts, cfg)
    module = copy.deepcopy(model.module)
    old = model.family.word_embeddings(module)
    new = torch.nn.Embedding(len(kept), old.embedding_dim, padding_idx=None)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.tensor(kept)])
    model.family.set_word_embeddings(module, new)
    if module.config.pad_token_id is not None:
        module.config.pad_token_id = kept.index(module.config.pad_token_id) if module.config.pad_token_id in kept else 0
    tokenizer = _remapped_tokenizer(model.tokenizer, kept)
    tokenizer.enable_truncation(max_length=model.max_seq_length)

    kept_set = set(kept)
    original = model.tokenizer.encode_batch(list(heldout_texts), add_special_tokens=False)
    total = sum(len(e.ids) for e in original)
    missing = sum(i not in kept_set for e in original for i in e.ids)
    unk_id = tokenizer.token_to_id(_unk_token(tokenizer))
    pruned = tokenizer.encode_batch(list(heldout_texts), add_special_tokens=False)
    new_total = sum(len(e.ids) for e in pruned)
    record = {
        "vocab_before": old.num_embeddings,
        "vocab_after": len(kept),
        "embedding_mb_saved_fp32": round((old.num_embeddings - len(kept)) * old.embedding_dim * 4 / 1e6, 2),
        "heldout_sentences": len(heldout_texts),
        # Tokens of held-out text (original tokenizer) that are not kept: those words are re-spelled
        # from smaller pieces, which the model saw less of.
        "heldout_oov_rate": round(missing / max(1, total), 5),
        "heldout_unk_rate": round(sum(i == unk_id for e in pruned for i in e.ids) / max(1, new_total), 5),
        "heldout_token_growth": round(new_total / max(1, total), 4),
    }
    # Identity of the new model: the source's weights plus exactly which tokens were kept (not
    # just how many), so caches keyed on it never mix up two vocabularies of the same size.
    digest = model.weights_sha256 + tokenizer.to_str()
    return model.replace(name=f"{model.name}-vocab{len(kept)}", module=module, tokenizer=tokenizer,
                         weights_sha256=hashlib.sha256(digest.encode()).hexdigest()), record
