import numpy as np
import onnx
import pytest

from edgeslim.calibration_data import load_corpus
from edgeslim.compress.configs import VocabPruneConfig
from edgeslim.compress.export import export_onnx
from edgeslim.compress.vocab import prune_vocabulary
from edgeslim.errors import StepError

RARE = ["The ornithorhynchus paddled past a xylophonist in Reykjavik.", "zyzzyva quixotic qwerty"]


@pytest.fixture(scope="module")
def pruned(tiny_model):
    corpus = load_corpus("wordnet-calibration").texts[:300]
    held_out = list(load_corpus("wordnet-heldout").texts[:200])
    return prune_vocabulary(tiny_model, VocabPruneConfig(max_tokens=200), corpus, held_out)


def test_vocabulary_shrinks_and_the_saving_is_recorded(tiny_model, pruned):
    model, record = pruned
    assert record["vocab_before"] == tiny_model.module.config.vocab_size
    assert record["vocab_after"] == model.module.embeddings.word_embeddings.num_embeddings <= 200
    assert model.tokenizer.get_vocab_size() == record["vocab_after"]
    assert 0 < record["heldout_oov_rate"] < 1 and record["heldout_unk_rate"] <= record["heldout_oov_rate"]


def test_texts_within_the_kept_vocabulary_embed_exactly_as_before(tiny_model, pruned):
    model, _ = pruned
    kept = set(model.tokenizer.get_vocab())
    covered = [t for t in load_corpus("wordnet-calibration").texts[:300]
               if all(tok in kept for tok in tiny_model.tokenizer.encode(t).tokens)]
    assert len(covered) >= 10
    np.testing.assert_allclose(model.embed(covered), tiny_model.embed(covered), atol=1e-6)


def test_rare_words_are_spelled_from_kept_pieces_not_lost(tiny_model, pruned):
    model, _ = pruned
    for text in RARE:
        encoding = model.tokenizer.encode(text)
        assert max(encoding.ids) < model.tokenizer.get_vocab_size()
        assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
        # every character-level piece survives, so spelling out replaces [UNK]
        assert encoding.tokens.count("[UNK]") <= tiny_model.tokenizer.encode(text).tokens.count("[UNK]")
    vectors = model.embed(RARE)
    assert np.isfinite(vectors).all() and vectors.shape == (2, 32)


def test_exported_model_and_tokenizer_agree(pruned, tmp_path):
    model, record = pruned
    artifact, _ = export_onnx(model, tmp_path / "v.onnx", RARE)
    graph = onnx.load(str(artifact.path)).graph
    (table,) = [i for i in graph.initializer if "word_embeddings" in i.name]
    assert table.dims[0] == record["vocab_after"] == model.tokenizer.get_vocab_size()


def test_cap_below_the_always_kept_tokens_is_a_step_error(tiny_model):
    with pytest.raises(StepError, match="always kept"):
        prune_vocabulary(tiny_model, VocabPruneConfig(max_tokens=20), ["a b c"], ["a"])


def test_model_identity_depends_on_which_tokens_are_kept_not_how_many(tiny_model):
    """Distillation caches are keyed on it: two vocabularies of one size must not collide."""
    config = VocabPruneConfig(max_tokens=200)
    a, _ = prune_vocabulary(tiny_model, config, load_corpus("wordnet-calibration").texts[:300], ["x"])
    b, _ = prune_vocabulary(tiny_model, config, load_corpus("wordnet-calibration").texts[300:600], ["x"])
    assert a.tokenizer.get_vocab_size() == b.tokenizer.get_vocab_size()
    assert a.tokenizer.get_vocab() != b.tokenizer.get_vocab()
    assert a.weights_sha256 != b.weights_sha256
