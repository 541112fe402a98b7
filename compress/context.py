"""What a compression step may use besides the model itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Tokenize = Callable[[Sequence[str], "int | None"], "tuple[np.ndarray, np.ndarray]"]


@dataclass
class StepContext:
    workdir: Path  # scratch space for this step's outputs
    calibration_texts: tuple[str, ...]  # never evaluation data
    tokenize: Tokenize  # (texts, pad_to) -> (input_ids, attention_mask), int64
    max_seq_length: int
    pooling: str
    normalize: bool
    log: Callable[[str], None] = field(default=print)
    torch_model: object | None = None  # the variant's EncoderModel, for converters that trace PyTorch
