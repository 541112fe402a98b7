import hashlib
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr

import edgeslim.calibration_data as cd
from edgeslim.benchmarks.harness import spearman
from edgeslim.errors import DataError

from conftest import needs_stsb


def test_shipped_corpus_matches_its_datasheet():
    digest = hashlib.sha256(cd.WORDNET_FILE.read_bytes()).hexdigest()
    assert digest == cd.WORDNET_SHA256
    datasheet = cd.WORDNET_FILE.with_name("WORDNET.md").read_text()
    assert cd.WORDNET_SHA256 in datasheet and "license" in datasheet.lower()


def test_wordnet_splits_are_disjoint_and_cover_the_corpus():
    full = cd.load_corpus("wordnet").texts
    calibration = cd.load_corpus("wordnet-calibration").texts
    heldout = cd.load_corpus("wordnet-heldout").texts
    assert not set(calibration) & set(heldout)
    assert sorted(calibration + heldout) == sorted(full)
    assert 0.15 < len(heldout) / len(full) < 0.25


def test_tampered_shipped_corpus_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "wordnet_sentences.txt"
    shutil.copyfile(cd.WORDNET_FILE, copy)
    copy.write_text(copy.read_text().replace("the", "teh", 1))
    monkeypatch.setattr(cd, "WORDNET_FILE", copy)
    with pytest.raises(DataError, match="sha256"):
        cd.load_corpus("wordnet")


def test_missing_data_directory_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    with pytest.raises(DataError, match="stsb-en-test.csv is missing"):
        cd.load_stsb("test")
    assert not cd.corpus_available("stsb-test")
    assert cd.corpus_available("wordnet-heldout")


def test_corrupted_shared_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "stsb-en-dev.csv").write_text("a,b,1.0\n")
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    with pytest.raises(DataError, match="differs from the pinned upstream"):
        cd.load_stsb("dev")


def test_unknown_corpus_and_split_list_the_known_ones():
    with pytest.raises(DataError, match="known corpora: .*wordnet"):
        cd.load_corpus("nope")
    with pytest.raises(DataError, match="train, dev, test"):
        cd.load_stsb("validation")


@needs_stsb
def test_stsb_test_loads_verified():
    pairs = cd.load_stsb("test")
    assert len(pairs.scores) == 1379
    assert min(pairs.scores) >= 0 and max(pairs.scores) <= 5


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, 300).astype(float)
    y = x + rng.normal(0, 3, 300)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


needs_nltk = pytest.mark.skipif(
    not cd.corpus_available("state-union"),
    reason="NLTK corpora not found: set EDGESLIM_DATA to the shared data folder",
)


@needs_nltk
@pytest.mark.parametrize("name, at_least", [("movie-reviews", 60000), ("sentence-polarity", 10000),
                                             ("subjectivity", 10000), ("state-union", 15000), ("inaugural", 4000)])
def test_nltk_corpora_are_unique_sentences_read_from_the_verified_zips(name, at_least):
    corpus = cd.load_corpus(name)
    assert len(corpus.texts) >= at_least
    assert len(set(corpus.texts)) == len(corpus.texts)
    assert all(len(text.split()) >= 3 and text == " ".join(text.split()) for text in corpus.texts)
    [(relpath, sha)] = corpus.files_sha256.items()
    assert relpath.startswith("nltk/") and sha == cd.SHARED_SHA256[relpath]


@needs_nltk
def test_speeches_are_split_into_sentences_not_paragraphs():
    texts = cd.load_corpus("state-union").texts
    assert "Only yesterday, we laid to rest the mortal remains of our beloved President, Franklin Delano Roosevelt." \
        in texts
    # A paragraph of several sentences would leave ". X" inside one text.
    glued = [t for t in texts if ". The " in t]
    assert len(glued) < len(texts) * 0.01


def test_tampered_nltk_zip_is_refused(tmp_path, monkeypatch):
    (tmp_path / "nltk").mkdir()
    (tmp_path / "nltk" / "inaugural.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip, not upstream's
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    with pytest.raises(DataError, match="differs from the pinned upstream"):
        cd.load_corpus("inaugural")
