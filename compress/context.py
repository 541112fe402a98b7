"""What a compression step may use besides the artifact itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# (corpus names, at most this many or None) -> (sentences disjoint from every evaluation set,
# a record of what was dropped)
TrainingTexts = Callable[[tuple[str, ...], "int | None"], "tuple[list[str], dict]"]


@dataclass(frozen=True)
class StepContext:
    workdir: Path  # scratch space for this step's outputs
    calibration_texts: tuple[str, ...]  # never evaluation data
    # The model whose tokenizer, length and pooling the artifact's inputs follow (an
    # EncoderModel, or a static table's encoder): tokenize(texts, pad_to) -> int64 arrays.
    reader: object
    modality: object = None  # edgeslim.modalities.Modality of the run (None: the reader's)
    log: Callable[[str], None] = field(default=print)
    teacher: object | None = None  # the uncompressed teacher (EncoderModel), for distillation
    training_texts: TrainingTexts | None = None  # for steps that learn from text (distill, vocab)
    heldout_texts: tuple[str, ...] = ()  # evaluation sentences steps may *measure* on, never learn from
    # Where distillations keep their checkpoints (None: the cache's); a search's shared store.
    distill_dir: Path | None = None

    def tokenize(self, texts, pad_to: int | None = None):
        return self.reader.tokenize(texts, pad_to)

    def feeds(self, items, pad_to: int | None = None) -> dict:
        """The exported graph's inputs for a batch of calibration items, prepared as the runtime
        prepares them (texts padded to `pad_to` when given)."""
        return self.reader.model_inputs(items, pad_to)

    def pooled(self, hidden, feeds: dict):
        """Normalised pooled embeddings of a graph's output for `feeds`."""
        from edgeslim.runtime.text import pool

        if hidden.ndim == 2:  # an already pooled output
            hidden = hidden[:, None, :]
        return pool(hidden, self.reader.runtime_modality.pooling_mask(feeds, hidden), self.pooling, True)

    @property
    def max_seq_length(self) -> int:
        return self.reader.max_seq_length

    @property
    def pooling(self) -> str:
        return self.reader.pooling

    @property
    def normalize(self) -> bool:
        return self.reader.normalize

    def needs_training_texts(self, step: str) -> TrainingTexts:
        from edgeslim.errors import StepError

        if self.training_texts is None or self.teacher is None:
            raise StepError(f"{step} learns from the teacher on a corpus; run it through a recipe (the pipeline "
                            "passes the teacher and the evaluation-disjoint corpus)")
        return self.training_texts
