"""A recipe's plan: for every variant, the chain of steps that turns the teacher into what the
target's backend runs, checked before any model loads.

    plan = plan_recipe(recipe)        # PlanError naming the variant, the step and what fits
    for variant in plan.variants: print(variant.chain())

The checks use only what steps, families and targets declare (`consumes`/`produces`,
`parts_needed`, `modalities`, `accepts`): no step or target names here. Where a PyTorch model
must become ONNX the plan inserts an `export_onnx` step.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeslim.compress.configs import STEPS, ExportOnnxConfig, StepBase
from edgeslim.errors import RecipeError


class PlanError(RecipeError):
    """A recipe whose steps cannot produce what its target runs, or that asks a model for surgery it
    does not support."""


@dataclass(frozen=True)
class PlannedVariant:
    target: object  # targets.base.Target
    variant: object  # recipe.VariantSpec
    steps: tuple[StepBase, ...]  # the variant's steps with the inserted exports
    final_kind: str

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def backend(self) -> str:
        return self.variant.backend

    def chain(self) -> list[str]:
        return [step.step for step in self.steps]

    def extras(self) -> set[str]:
        return {step.extra for step in self.steps} | set(self.target.extras)


@dataclass(frozen=True)
class Plan:
    source: object  # models.sources.SourceInfo
    variants: tuple[PlannedVariant, ...]

    def extras(self) -> tuple[str, ...]:
        needed = {"compress"} if self.source.artifact == "torch" else set()
        for variant in self.variants:
            needed |= variant.extras()
        return tuple(sorted(needed))


def _producers(kind: str) -> list[str]:
    return sorted(name for name, cls in STEPS.items() if cls.produces == kind and cls.consumes != kind)


def plan_variant(source, target, variant) -> PlannedVariant:
    where = f"target {target.name}, variant {variant.name!r}"
    if not target.takes(source.modality):
        raise PlanError(f"{where}: target {target.name} takes {'/'.join(target.modalities)} models; the teacher is "
                        f"a {source.modality} model")
    if variant.backend not in target.accepts:
        raise PlanError(f"{where}: target {target.name} has no backend {variant.backend!r}; allowed: "
                        f"{', '.join(target.accepts)}")
    kind, steps = source.artifact, []

    def convert(wanted: str, for_what: str) -> None:
        nonlocal kind
        if kind == wanted:
            return
        if kind == ExportOnnxConfig.consumes and wanted == ExportOnnxConfig.produces:
            steps.append(ExportOnnxConfig())
            kind = wanted
            return
        after = f"after {steps[-1].step}" if steps else "the teacher"
        hint = _producers(wanted)
        raise PlanError(f"{where}: {for_what} needs a {wanted} model, but {after} is a {kind} model"
                        + (f"; steps that make a {wanted} model: {', '.join(hint)}" if hint else "")
                        + (" (PyTorch steps come before export steps)" if wanted == "torch" else ""))

    model = source  # the model surgery applies to: the teacher, or a student that replaced it
    for cfg in variant.steps:
        refusal = cfg.modality_refusal(source.modality)
        if refusal:
            raise PlanError(f"{where}: step {cfg.step} cannot run on the {source.modality} teacher: {refusal}")
        _check_corpora(where, cfg, source.modality)
        wanted = cfg.input_kind()
        if wanted is None:  # a step that brings its own model (a separate distillation student)
            from edgeslim.models.sources import describe

            model = describe(cfg.student)
            if model.modality != source.modality:
                raise PlanError(f"{where}: step {cfg.step}: the student is a {model.modality} model, the teacher "
                                f"a {source.modality} one")
        for part in sorted(cfg.parts_needed()):
            refusal = model.refusal(part)
            if refusal:
                raise PlanError(f"{where}: step {cfg.step}: {refusal}")
        if wanted is not None:
            convert(wanted, f"step {cfg.step}")
        steps.append(cfg)
        kind = cfg.produces
    accepted = target.accepts[variant.backend]
    if kind not in accepted:
        for wanted in accepted:
            try:
                convert(wanted, f"backend {variant.backend}")
                break
            except PlanError:
                continue
        else:
            # Steps that make an accepted kind from this one or from the PyTorch model (a step that
            # needs another accepted kind first, e.g. litert_int8_full after litert_convert, is no start).
            hint = sorted({p for wanted in accepted for p in _producers(wanted)
                           if STEPS[p].consumes in (kind, ExportOnnxConfig.consumes)})
            raise PlanError(f"{where}: backend {variant.backend} runs {' or '.join(accepted)} models, but the steps "
                            f"end with a {kind} model" + (f"; add one of: {', '.join(hint)}" if hint else ""))
    has_torch_model = source.artifact == "torch" or any(s.produces == "torch" for s in steps)
    if not has_torch_model and target.latency_kind == "estimated" and target.estimate_needs_torch_model:
        raise PlanError(f"{where}: target {target.name} estimates latency from the MACs of a PyTorch model; the "
                        "teacher is an ONNX file and no step makes a PyTorch model (distil it into a `student`, or "
                        "use a measured target such as the host)")
    return PlannedVariant(target=target, variant=variant, steps=tuple(steps), final_kind=kind)


def _check_corpora(where: str, cfg, modality: str) -> None:
    from edgeslim.calibration_data import corpus_modality

    wrong = [f"{key} {name} ({corpus_modality(name)})" for key, name in cfg.corpora()
             if corpus_modality(name) != modality]
    if wrong:
        from edgeslim.modalities import get_modality

        fitting = get_modality(modality).corpora()
        raise PlanError(f"{where}: step {cfg.step} learns from {', '.join(wrong)}, but the teacher is a {modality} "
                        f"model" + (f"; {modality} corpora: {', '.join(fitting)}" if fitting else ""))


def _check_data(data, modality: str) -> None:
    from edgeslim.calibration_data import corpus_modality
    from edgeslim.modalities import MODALITIES

    named = [("data.calibration", data.calibration)] + [("data.agreement", n) for n in data.agreement]
    for probe in data.probes:
        named += [("data.probe.train", probe.train), ("data.probe.test", probe.test)]
    wrong = [f"{key} {name} ({corpus_modality(name)})" for key, name in named if corpus_modality(name) != modality]
    if wrong:
        raise PlanError(f"the teacher is a {modality} model, but these data sets are not: {', '.join(wrong)}")
    for other in MODALITIES.values():  # a key of another modality's metric (e.g. text's STS-B split)
        refusal = other.data_refusal(data) if other.name != modality else None
        if refusal:
            raise PlanError(f"the teacher is a {modality} model: {refusal}")


def plan_recipe(recipe, source=None) -> Plan:
    """The plan of a recipe's targets (or, without targets, its search grid). `source`: the
    teacher's SourceInfo when already known (else read from the recipe's model, cheaply)."""
    from edgeslim.models.sources import describe
    from edgeslim.targets import get_target

    source = source or describe(recipe.model)
    _check_data(recipe.data, source.modality)
    specs = recipe.targets or recipe.for_search().targets
    variants = tuple(plan_variant(source, get_target(spec.target), variant)
                     for spec in specs for variant in spec.variants)
    return Plan(source=source, variants=variants)
