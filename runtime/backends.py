"""Inference backends. Each wraps one session and runs {input name: array} -> token states.
Imported lazily: a device needs only the backend its bundles use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeslim.errors import BackendError

# backend name -> the Python module it needs
BACKEND_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "static": "numpy"}


def available_backends() -> list[str]:
    return [name for name, module in BACKEND_MODULES.items() if importlib.util.find_spec(module) is not None]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model_path: Path, threads: int | None, providers: list[str] | None = None,
                 disabled_optimizers: list[str] | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise BackendError(f"execution providers {unknown} are not available here; available: {available}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=wanted,
                                                disabled_optimizers=disabled_optimizers or None)
        except Exception as exc:  # ORT raises its own untyped errors for unloadable models
            raise BackendError(f"onnxruntime cannot load {model_path}: {exc}") from None
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._output = self.session.get_outputs()[0].name

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self._output], feeds)[0]


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model_path: Path, threads: int | None, device: str = "CPU", config: dict | None = None):
        import openvino as ov

        core = ov.Core()
        if device not in core.available_devices:
            raise BackendError(f"OpenVINO device {device!r} is not available here; available: {core.available_devices}")
        settings = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        # Without this hint OpenVINO runs bf16 on CPUs that have it; a bundle states its precision.
        settings.update(config or {"INFERENCE_PRECISION_HINT": "f32"})
        if threads:
            settings["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self.compiled = core.compile_model(str(model_path), device, settings)
        except Exception as exc:
            raise BackendError(f"OpenVINO cannot compile {model_path} for {device}: {exc}") from None
        self.providers = [device]
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.request.infer(feeds)
        return self.request.get_output_tensor(0).data.copy()


class StaticBackend:
    """A token-vector table: the "model" is a lookup; pooling does the rest. numpy only."""

    name = "static"

    def __init__(self, model_path: Path):
        try:
            self.table = np.load(model_path).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the embedding table {model_path}: {exc}") from None
        if self.table.ndim != 2:
            raise BackendError(f"{model_path}: expected a (vocabulary, dim) table, got shape {self.table.shape}")
        self.providers = ["numpy"]
        self.input_names = ["input_ids", "attention_mask"]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        ids = feeds["input_ids"]
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.table)):
            raise BackendError(f"token id out of range for a table of {len(self.table)} rows")
        return self.table[ids]


def open_backend(name: str, model_path: Path, threads: int | None, options: dict) -> OnnxRuntimeBackend | OpenVinoBackend:
    if name not in BACKEND_MODULES:
        raise BackendError(f"unknown backend {name!r}; this runtime knows: {', '.join(BACKEND_MODULES)}")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise BackendError(
            f"this bundle needs the {name} backend, which is not installed; installed backends: "
            f"{available_backends() or 'none'} (pip install 'edgeslim[{'runtime' if name == 'onnxruntime' else name}]')"
        )
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model_path, threads, options.get("providers"), options.get("disabled_optimizers"))
    if name == "static":
        return StaticBackend(model_path)
    return OpenVinoBackend(model_path, threads, options.get("device", "CPU"), options.get("config"))
