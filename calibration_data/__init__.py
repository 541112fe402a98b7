"""Corpora for calibration, distillation and evaluation, each verified by sha256: sentences,
images or audio clips (each corpus says its modality).

Two kinds of source:

* shipped with the kit: `wordnet` (usage examples from Debian's `wordnet-base`, see
  WORDNET.md), split deterministically into `wordnet-calibration` and `wordnet-heldout`;
* the shared data directory (`EDGESLIM_DATA`, default `../shared/data` when it exists):
  STS-B, Banking77, CLINC and its Wikipedia sentences, NLTK's text corpora, CIFAR-10 images and the Free Spoken
  Digit Dataset's clips, never copied into the project.

    >>> corpus = load_corpus("wordnet-calibration")
    >>> corpus.texts[:2], corpus.sha256
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

from edgeslim.errors import DataError

__all__ = [
    "Corpus",
    "StsbPairs",
    "CORPORA",
    "CorpusEntry",
    "corpus_modality",
    "data_dir",
    "load_corpus",
    "load_stsb",
    "corpus_available",
    "texts_sha256",
]

WORDNET_FILE = Path(__file__).with_name("wordnet_sentences.txt")
WORDNET_SHA256 = "5932a08c99ede7429e3b8376f9778042deb87d6a7f164697831a7508cd040316"
# One sentence in five (by content hash) is held out from calibration for evaluation.
_HELDOUT_MODULUS = 5

# sha256 of every file read from the shared data directory (from its README).
SHARED_SHA256 = {
    "stsb/stsb-en-train.csv": "e1e84fec60bbb598735552f54a35f4949904a484750fd2cb11e2720e49f63da6",
    "stsb/stsb-en-dev.csv": "d29586e96558c4eb52cf5ea5d14e9c24d3bf0e44f111b017caba43a5adc33226",
    "stsb/stsb-en-test.csv": "11523b625219e94e9ca05d2816b5f02cac1614c5894fe657376fa0806378d053",
    "banking77/train.csv": "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
    "banking77/test.csv": "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
    "clinc/data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
    "clinc/all_wiki_sents.txt": "570704f8120d13d27dda90d116a0b2365e121139f72c2967b65f55465ebfad44",
    "cifar10/SHA256SUMS": "9dc64943ce2555a0cca38dc4e897cf6d54b388fe0924f871ee928ea5a3d1c069",
    "fsdd/SHA256SUMS": "1801eae019c063377d98f831d3f93574f259475df7332bb0e3d1b080fb5e6959",
    "nltk/movie_reviews.zip": "a41211ae685019137410268134db6a1a14428c89b671eb83056151a878539008",
    "nltk/sentence_polarity.zip": "6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b",
    "nltk/subjectivity.zip": "741f3371e1a4375051b874fd82fd55857b90975473c91c19a3101cbe17fc4d8c",
    "nltk/state_union.zip": "366c1dc82b2abf896f42b2ec50ba802a0141a29f75d29ca48a7a243ce5bfbe8d",
    "nltk/inaugural.zip": "7c5fb5793e31fbeae12bf1aa0ffda5336468f07cedb50654c6d31ca384e2046b",
}


@dataclass(frozen=True)
class Corpus:
    """A dataset of one modality: sentences, or absolute paths of image or audio files, with
    labels where the source has them (probe tasks). A corpus may carry several label sets
    (spoken digits: the digit and the speaker); `labels` is the first, named `label_name`."""

    name: str
    texts: tuple[str, ...]  # the items: sentences, or absolute file paths
    source: str  # where the items come from, for reports
    files_sha256: dict[str, str]
    labels: tuple[str, ...] | None = None
    modality: str = "text"
    items_are_files: bool = False  # items are paths of files listed in files_sha256
    label_name: str = "label"
    other_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def items(self) -> tuple[str, ...]:
        return self.texts

    @property
    def label_sets(self) -> dict[str, tuple[str, ...]]:
        """Every label set by name, the primary first."""
        return ({self.label_name: self.labels} if self.labels is not None else {}) | self.other_labels

    @property
    def sha256(self) -> str:
        """Hash of the items themselves, in order (files: their sha256): what a manifest records."""
        if self.items_are_files:
            return texts_sha256(self.files_sha256[p] for p in self.texts)
        return texts_sha256(self.texts)


@dataclass(frozen=True)
class StsbPairs:
    split: str
    sentences1: tuple[str, ...]
    sentences2: tuple[str, ...]
    scores: tuple[float, ...]
    file_sha256: str

    @property
    def sentences(self) -> tuple[str, ...]:
        """Unique sentences of the split, in first-seen order."""
        return tuple(dict.fromkeys(self.sentences1 + self.sentences2))


def texts_sha256(texts) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()


def data_dir() -> Path | None:
    """The shared data directory: $EDGESLIM_DATA, else ../shared/data if it exists, else None."""
    configured = os.environ.get("EDGESLIM_DATA")
    if configured:
        return Path(configured)
    repo_root = Path(__file__).resolve().parent.parent
    for candidate in (Path.cwd() / "../shared/data", repo_root / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _shared_file(relpath: str) -> Path:
    root = data_dir()
    if root is None:
        raise DataError(
            f"{relpath} needs the shared data directory: set EDGESLIM_DATA to a folder holding "
            f"{relpath} (sha256 {SHARED_SHA256[relpath]}); see the upstream sources in its README"
        )
    path = root / relpath
    if not path.is_file():
        raise DataError(f"{path} is missing (data directory {root}, from EDGESLIM_DATA or ../shared/data)")
    _verify(path, SHARED_SHA256[relpath])
    return path


@lru_cache(maxsize=None)
def _verify(path: Path, expected: str) -> None:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise DataError(f"{path}: sha256 is {actual}, expected {expected}; the file differs from the pinned upstream")


def _wordnet(split: str | None) -> Corpus:
    _verify(WORDNET_FILE, WORDNET_SHA256)
    texts = WORDNET_FILE.read_text(encoding="utf-8").splitlines()
    if split is not None:
        heldout = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) % _HELDOUT_MODULUS == 0 for t in texts]
        texts = [t for t, h in zip(texts, heldout) if h == (split == "heldout")]
    name = "wordnet" if split is None else f"wordnet-{split}"
    return Corpus(name, tuple(texts), "Debian wordnet-base 1:3.0-37 usage examples (shipped)",
                  {WORDNET_FILE.name: WORDNET_SHA256})


def _stsb_corpus(split: str) -> Corpus:
    pairs = load_stsb(split)
    return Corpus(f"stsb-{split}", pairs.sentences, f"STS-B {split} (stsb-multi-mt en), unique sentences",
                  {f"stsb/stsb-en-{split}.csv": pairs.file_sha256})


def _csv_texts(relpath: str, name: str, source: str) -> Corpus:
    """Texts and their `category` labels; a repeated text keeps its first label."""
    labelled: dict[str, str] = {}
    with open(_shared_file(relpath), newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            labelled.setdefault(row["text"], row["category"])
    return Corpus(name, tuple(labelled), source, {relpath: SHARED_SHA256[relpath]}, labels=tuple(labelled.values()),
                  label_name="intent")


def _cifar10(split: str) -> Corpus:
    """CIFAR-10 test JPEGs, split 4:1 by the sha256 of the path (train: kNN memory, probe training,
    calibration, distillation; heldout: teacher agreement, kNN queries, probe test). Every file is
    checked against SHA256SUMS, which is checked against the README's hash."""
    listing = _shared_file("cifar10/SHA256SUMS")
    root = listing.parent
    items, labels, hashes = [], [], {}
    for line in listing.read_text(encoding="utf-8").splitlines():
        expected, relpath = line.split(maxsplit=1)
        held_out = int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16) % _HELDOUT_MODULUS == 0
        if held_out != (split == "heldout"):
            continue
        path = root / relpath
        if not path.is_file():
            raise DataError(f"{path} is listed in {listing} but missing")
        _verify(path, expected)
        items.append(str(path))
        labels.append(Path(relpath).parent.name)
        hashes[str(path)] = expected
    return Corpus(f"cifar10-{split}", tuple(items), f"CIFAR-10 test JPEGs, {split} split (sha256 of path mod 5)",
                  hashes, labels=tuple(labels), modality="image", items_are_files=True, label_name="class")


def _fsdd(split: str) -> Corpus:
    """Free Spoken Digit Dataset clips (8 kHz 16-bit mono WAV, files `<digit>_<speaker>_<index>.wav`),
    the official split: indices 0-4 of each digit and speaker are `test`, 5-49 `train`. Labels:
    the digit, and the speaker as a second set. Every file is checked against SHA256SUMS, which
    is checked against the README's hash."""
    listing = _shared_file("fsdd/SHA256SUMS")
    root = listing.parent / "recordings"
    items, digits, speakers, hashes = [], [], [], {}
    for line in listing.read_text(encoding="utf-8").splitlines():
        expected, name = line.split(maxsplit=1)
        digit, speaker, index = Path(name).stem.split("_")
        if (int(index) < 5) != (split == "test"):
            continue
        path = root / name
        if not path.is_file():
            raise DataError(f"{path} is listed in {listing} but missing")
        _verify(path, expected)
        items.append(str(path))
        digits.append(digit)
        speakers.append(speaker)
        hashes[str(path)] = expected
    return Corpus(f"fsdd-{split}", tuple(items), f"Free Spoken Digit Dataset, official {split} split "
                  "(indices 0-4 of each digit/speaker are test)", hashes, labels=tuple(digits), modality="audio",
                  items_are_files=True, label_name="digit", other_labels={"speaker": tuple(speakers)})


def _clinc(split: str, name: str | None = None) -> Corpus:
    relpath = "clinc/data_full.json"
    data = json.loads(_shared_file(relpath).read_text(encoding="utf-8"))
    texts = tuple(dict.fromkeys(text for text, _ in data[split]))
    return Corpus(name or f"clinc-{split}", texts, f"CLINC150 {split}", {relpath: SHARED_SHA256[relpath]})


def _wiki() -> Corpus:
    relpath = "clinc/all_wiki_sents.txt"
    lines = _shared_file(relpath).read_text(encoding="utf-8").splitlines()
    texts = tuple(dict.fromkeys(line.strip() for line in lines if line.strip()))
    return Corpus("wiki", texts, "CLINC all_wiki_sents (lowercased Wikipedia)", {relpath: SHARED_SHA256[relpath]})


# A new sentence starts after . ! or ? (not a title such as "Mr.") followed by space and a capital
# or a quote: enough for edited speeches, which is all it is used on (their lines are paragraphs).
_SENTENCE_END = re.compile(r'(?<=[.!?])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)\s+(?=["A-Z])')


def _nltk(name: str, sentence_per_line: bool, source: str) -> Corpus:
    """Sentences of one NLTK corpus zip (read in place, never unpacked): one per line where the
    corpus is sentence-split (reviews, polarity, subjectivity), else split from each paragraph.
    Fragments under three words are dropped; repeats keep their first place."""
    relpath = f"nltk/{name.replace('-', '_')}.zip"
    texts: dict[str, None] = {}
    with zipfile.ZipFile(_shared_file(relpath)) as archive:
        for member in sorted(archive.namelist()):
            if member.endswith("/") or member.rsplit("/", 1)[-1].startswith("README"):
                continue
            raw = archive.read(member)
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:  # a few speeches are Windows-1252
                body = raw.decode("cp1252", errors="replace")
            for line in body.splitlines():
                parts = [line] if sentence_per_line else _SENTENCE_END.split(line)
                for part in parts:
                    part = " ".join(part.split())
                    if len(part.split()) >= 3:
                        texts.setdefault(part, None)
    return Corpus(name, tuple(texts), source, {relpath: SHARED_SHA256[relpath]})


class CorpusEntry(NamedTuple):
    load: Callable[[], Corpus]
    shared: bool  # needs the shared data directory
    modality: str = "text"


CORPORA: dict[str, CorpusEntry] = {
    "wordnet": CorpusEntry(lambda: _wordnet(None), False),
    "wordnet-calibration": CorpusEntry(lambda: _wordnet("calibration"), False),
    "wordnet-heldout": CorpusEntry(lambda: _wordnet("heldout"), False),
    "stsb-train": CorpusEntry(lambda: _stsb_corpus("train"), True),
    "stsb-dev": CorpusEntry(lambda: _stsb_corpus("dev"), True),
    "stsb-test": CorpusEntry(lambda: _stsb_corpus("test"), True),
    "banking77-train": CorpusEntry(lambda: _csv_texts("banking77/train.csv", "banking77-train", "Banking77 train"), True),
    "banking77-test": CorpusEntry(lambda: _csv_texts("banking77/test.csv", "banking77-test", "Banking77 test"), True),
    "clinc-train": CorpusEntry(lambda: _clinc("train"), True),
    "clinc-test": CorpusEntry(lambda: _clinc("test"), True),
    # The out-of-scope test queries: text no intent covers (a drift benchmark's shifted input).
    "clinc-oos-test": CorpusEntry(lambda: _clinc("oos_test", "clinc-oos-test"), True),
    "wiki": CorpusEntry(_wiki, True),
    # NLTK's corpora: unlabeled text for distillation (their labels are not read).
    "movie-reviews": CorpusEntry(lambda: _nltk("movie-reviews", True, "NLTK movie_reviews (Pang & Lee 2004), "
                                               "one sentence per line"), True),
    "sentence-polarity": CorpusEntry(lambda: _nltk("sentence-polarity", True, "NLTK sentence_polarity "
                                                   "(rotten tomatoes snippets)"), True),
    "subjectivity": CorpusEntry(lambda: _nltk("subjectivity", True, "NLTK subjectivity (plot summaries and "
                                              "review snippets)"), True),
    "state-union": CorpusEntry(lambda: _nltk("state-union", False, "NLTK state_union (State of the Union "
                                             "addresses 1945-2006), split into sentences"), True),
    "inaugural": CorpusEntry(lambda: _nltk("inaugural", False, "NLTK inaugural (US inaugural addresses), "
                                           "split into sentences"), True),
    "cifar10-train": CorpusEntry(lambda: _cifar10("train"), True, "image"),
    "cifar10-heldout": CorpusEntry(lambda: _cifar10("heldout"), True, "image"),
    "fsdd-train": CorpusEntry(lambda: _fsdd("train"), True, "audio"),
    "fsdd-test": CorpusEntry(lambda: _fsdd("test"), True, "audio"),
}


def corpus_modality(name: str) -> str:
    """The modality of a registered corpus's items."""
    return CORPORA[name].modality if name in CORPORA else "text"


def load_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return CORPORA[name].load()


def corpus_available(name: str) -> bool:
    """True when `name` can be loaded here (shipped, or its shared file is present)."""
    if name not in CORPORA:
        return False
    if not CORPORA[name].shared:
        return True
    try:
        load_corpus(name)
    except DataError:
        return False
    return True


def load_stsb(split: str) -> StsbPairs:
    if split not in ("train", "dev", "test"):
        raise DataError(f"unknown STS-B split {split!r}; allowed: train, dev, test")
    relpath = f"stsb/stsb-en-{split}.csv"
    path = _shared_file(relpath)
    s1, s2, scores = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 columns (sentence1, sentence2, score), got {len(row)}")
            s1.append(row[0])
            s2.append(row[1])
            scores.append(float(row[2]))
    return StsbPairs(split, tuple(s1), tuple(s2), tuple(scores), SHARED_SHA256[relpath])
