"""Handlers of the PyTorch-side steps, in the one step signature
(artifact, cfg, ctx) -> (artifact, record). Thin: the techniques live in distill.py, prune.py,
vocab.py, static.py and export.py."""

from __future__ import annotations

from edgeslim.compress.artifacts import StaticTable, TorchModel
from edgeslim.errors import StepError


def _model(artifact, step: str):
    if not isinstance(artifact, TorchModel):
        raise StepError(f"{step} changes a PyTorch model; it got a {artifact.kind} model")
    return artifact.model


def _distilled(teacher, student, cfg, ctx):
    from edgeslim.cache import cache_dir
    from edgeslim.compress.distill import distill

    texts, data_record = ctx.needs_training_texts("distill")(cfg.corpus, cfg.sentences)
    from edgeslim.modalities import get_modality

    noun = get_modality(teacher.modality).noun
    ctx.log(f"    distill: {len(texts)} {noun} from {', '.join(cfg.corpus)} "
            f"({data_record['dropped_overlapping_evaluation']} evaluation {noun} dropped)")
    model, record = distill(teacher, cfg, texts, ctx.distill_dir or cache_dir() / "distill", log=ctx.log,
                            student=None if student is teacher else student)
    return model, {**record, **data_record}


def distill(artifact, cfg, ctx):
    if cfg.student is None:
        start = _model(artifact, cfg.step)
    else:  # a separate student (the way an ONNX teacher gets a PyTorch one)
        from edgeslim.models import load_encoder
        from edgeslim.models.spec import ModelSpec

        teacher = ctx.teacher
        start = load_encoder(ModelSpec(source=cfg.student.source, path=cfg.student.path, family=cfg.student.family,
                                       pooling=teacher.pooling, normalize=teacher.normalize,
                                       max_seq_length=teacher.max_seq_length))
        if start.hidden_size != teacher.hidden_size:
            raise StepError(f"distill.student embeds in {start.hidden_size} dimensions, the teacher in "
                            f"{teacher.hidden_size}; the student must match the teacher's embedding size")
    model, record = _distilled(ctx.teacher, start, cfg, ctx)
    return TorchModel(model), {**record, "student": None if cfg.student is None else start.name}


def prune(artifact, cfg, ctx):
    from edgeslim.compress.prune import prune_model

    model, record = prune_model(_model(artifact, cfg.step), cfg)
    ctx.log(f"    prune: {record['parameters_before']:,} -> {record['parameters_after']:,} parameters")
    if cfg.heal is not None:  # heal by distilling the teacher into the pruned model
        model, record["heal"] = _distilled(ctx.teacher, model, cfg.heal, ctx)
    return TorchModel(model), record


def vocab_prune(artifact, cfg, ctx):
    from edgeslim.compress.vocab import prune_vocabulary

    corpus, data_record = ctx.needs_training_texts("vocab_prune")(cfg.corpus, None)
    model, record = prune_vocabulary(_model(artifact, cfg.step), cfg, corpus, list(ctx.heldout_texts))
    ctx.log(f"    vocab_prune: {record['vocab_before']} -> {record['vocab_after']} tokens, "
            f"held-out OOV rate {record['heldout_oov_rate']:.2%}")
    return TorchModel(model), {**record, **data_record}


def static_embeddings(artifact, cfg, ctx):
    from edgeslim.compress.static import make_static

    table, encoder, record = make_static(_model(artifact, cfg.step), cfg, ctx.workdir)
    ctx.log(f"    static_embeddings: {record['vocabulary']} x {record['dim']} {record['dtype']} table")
    return StaticTable(table.path, reader=encoder), record


def export(artifact, cfg, ctx):
    from edgeslim.compress.export import export_onnx

    ctx.log("    exporting to ONNX (parity-checked against PyTorch)")
    return export_onnx(_model(artifact, cfg.step), ctx.workdir / "model.onnx",
                       ctx.calibration_texts[: cfg.parity_samples])
