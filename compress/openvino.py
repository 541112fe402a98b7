"""ONNX -> OpenVINO IR, float or int8 through NNCF post-training quantization."""

from __future__ import annotations

import logging
import os

from edgeslim.compress.artifacts import OnnxModel, OpenVinoModel
from edgeslim.compress.configs import OpenVinoConvertConfig, OpenVinoInt8Config
from edgeslim.compress.context import StepContext
from edgeslim.errors import StepError


def _read(artifact, step: str):
    import openvino as ov

    if not isinstance(artifact, OnnxModel):
        raise StepError(f"{step} converts an ONNX model; it got a {artifact.kind} model")
    return ov, ov.convert_model(str(artifact.path))


def _save(ov, model, path) -> OpenVinoModel:
    tmp = path.with_name(path.stem + ".tmp.xml")
    # fp16 weight compression would change the numbers the bundle was measured with.
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    saved, final = OpenVinoModel(tmp), OpenVinoModel(path)
    os.replace(saved.weights_path(), final.weights_path())
    os.replace(tmp, path)
    return final


def convert(artifact, cfg: OpenVinoConvertConfig, ctx: StepContext):
    ov, model = _read(artifact, cfg.step)
    out = _save(ov, model, ctx.workdir / "model.fp32.xml")
    return out, {"openvino": ov.get_version(), "weights": "float32"}


def int8(artifact, cfg: OpenVinoInt8Config, ctx: StepContext):
    ov, model = _read(artifact, cfg.step)
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    texts = list(ctx.calibration_texts[: cfg.calibration_samples])
    feeds = [ctx.feeds([text]) for text in texts]
    transformer = ctx.reader.transformer  # NNCF's transformer patterns; CNNs take the default
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        preset=nncf.QuantizationPreset(cfg.preset),
        target_device=nncf.TargetDevice[cfg.target_device],
        subset_size=len(feeds),
    )
    out = _save(ov, quantized, ctx.workdir / "model.int8.xml")
    if cfg.inference_precision != "f32":
        out = OpenVinoModel(out.xml_path, inference_precision=cfg.inference_precision)
    fake_quantize = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    return out, {
        "openvino": ov.get_version(),
        "nncf": nncf.__version__,
        "model_type": "transformer" if transformer else "default",
        "target_device": cfg.target_device,
        "inference_precision": cfg.inference_precision,
        "calibration_sentences": len(texts),
        "fake_quantize_nodes": fake_quantize,
    }


def static_shapes(artifact, cfg, ctx: StepContext):
    """Reshape the IR to static (batch, seq) inputs; saved at the largest seq length."""
    import openvino as ov

    if not isinstance(artifact, OpenVinoModel):
        raise StepError(f"{cfg.step} reshapes an OpenVINO IR; it got a {artifact.kind} model "
                        "(put openvino_convert or openvino_int8 before it)")
    if not ctx.reader.runtime_modality.variable_length:  # one fixed-size input: only the batch is set
        return _static_fixed_shape(ov, artifact, cfg, ctx)
    too_long = [n for n in cfg.seq_lengths if n > ctx.max_seq_length]
    if too_long:
        raise StepError(f"{cfg.step}: seq_lengths {too_long} exceed the model's max_seq_length "
                        f"{ctx.max_seq_length}; allowed: 1..{ctx.max_seq_length}")
    core = ov.Core()
    model = core.read_model(str(artifact.xml_path))
    names = [port.get_any_name() for port in model.inputs]
    model.reshape({name: ov.PartialShape([cfg.batch, cfg.seq_lengths[-1]]) for name in names})
    out = _save(ov, model, ctx.workdir / "model.static.xml")
    shapes = tuple((cfg.batch, n) for n in cfg.seq_lengths)
    return OpenVinoModel(out.xml_path, shapes, artifact.inference_precision), {"inputs": names, "static_shapes": [list(s) for s in shapes],
                                                 "saved_at": [cfg.batch, cfg.seq_lengths[-1]]}


def _static_fixed_shape(ov, artifact, cfg, ctx: StepContext):
    """A model of one fixed-size input (images, audio) has one size already: fix the batch
    (seq_lengths do not apply)."""
    (spec,) = ctx.reader.inputs()
    shape = (cfg.batch, *[int(d) for d in spec.shape[1:]])
    model = ov.Core().read_model(str(artifact.xml_path))
    model.reshape({port.get_any_name(): ov.PartialShape(list(shape)) for port in model.inputs})
    out = _save(ov, model, ctx.workdir / "model.static.xml")
    return OpenVinoModel(out.xml_path, (shape,), artifact.inference_precision), {"inputs": [spec.name], "static_shapes": [list(shape)],
                                                  "saved_at": list(shape)}
