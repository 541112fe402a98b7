"""Inference backends. Each wraps one session and runs {input name: array} -> token states.
Imported lazily: a device needs only the backend its bundles use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeslim.errors import BackendError

# backend name -> the Python module it needs
BACKEND_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "static": "numpy",
                   "litert": "ai_edge_litert", "litert-body": "ai_edge_litert"}


# backend name -> the pyproject extra that installs it on a device; runtime/locks/<extra>.txt is
# that extra's hashed lock, shipped in the wheel.
BACKEND_EXTRAS = {"onnxruntime": "runtime", "openvino": "openvino", "static": "runtime",
                  "litert": "litert", "litert-body": "litert"}


def device_lock(backend: str) -> Path:
    """The hashed lock a device installs for `backend` (all its dependencies, pinned)."""
    if backend not in BACKEND_EXTRAS:
        raise BackendError(f"unknown backend {backend!r}; this runtime knows: {', '.join(BACKEND_EXTRAS)}")
    return Path(__file__).with_name("locks") / f"{BACKEND_EXTRAS[backend]}.txt"


def available_backends() -> list[str]:
    return [name for name, module in BACKEND_MODULES.items() if importlib.util.find_spec(module) is not None]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model_path: Path, threads: int | None, providers: list[str] | None = None,
                 disabled_optimizers: list[str] | None = None, policy: str = "all"):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        if policy == "first-available":
            # A preference list (TensorRT, then CUDA, then CPU): use what this machine has, in order.
            wanted = [p for p in wanted if p in available]
            if not wanted:
                raise BackendError(f"none of the bundle's execution providers {providers} is available here; "
                                   f"available: {available}")
        elif policy != "all":
            raise BackendError(f"unknown providers_policy {policy!r}; allowed: all, first-available")
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
    """OpenVINO on the first available device of the bundle's preference list. A bundle made for
    static shapes (NPUs) lists them: each call is padded up to the smallest listed (batch, seq)
    that holds it, and one compiled model per shape is kept."""

    name = "openvino"

    def __init__(self, model_path: Path, threads: int | None, device: str | list[str] = "CPU",
                 config: dict | None = None, static_shapes: list[list[int]] | None = None):
        import openvino as ov

        self._core = core = ov.Core()
        preference = [device] if isinstance(device, str) else list(device)
        usable = [d for d in preference if d in core.available_devices]
        if not usable:
            raise BackendError(f"none of the bundle's OpenVINO devices {preference} is available here; "
                               f"available: {core.available_devices}")
        self.device = usable[0]
        settings = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            # Without this hint OpenVINO runs bf16 on CPUs that have it; a bundle states its precision.
            settings.update(config or {"INFERENCE_PRECISION_HINT": "f32"})
            if threads:
                settings["INFERENCE_NUM_THREADS"] = str(threads)
        self._settings, self._model_path = settings, model_path
        self.static_shapes = sorted(tuple(s) for s in static_shapes) if static_shapes else None
        self._requests: dict = {}  # shape (None: as saved) -> infer request of the model compiled for it
        try:
            self._model = core.read_model(str(model_path))
            self.input_names = [port.get_any_name() for port in self._model.inputs]
            # Compile at load (the largest static shape), so a bad bundle fails here, not at first use.
            self.compiled = self._request(self.static_shapes[-1] if self.static_shapes else None).get_compiled_model()
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"OpenVINO cannot compile {model_path} for {self.device}: {exc}") from None
        self.providers = [self.device] + ([f"static shapes {[list(s) for s in self.static_shapes]}"]
                                          if self.static_shapes else [])

    def _request(self, shape):
        if shape not in self._requests:
            model = self._model
            if shape is not None:
                import openvino as ov

                model = model.clone()
                model.reshape({name: ov.PartialShape(list(shape)) for name in self.input_names})
            try:
                compiled = self._core.compile_model(model, self.device, self._settings)
            except Exception as exc:
                raise BackendError(f"OpenVINO cannot compile {self._model_path} for {self.device} at shape "
                                   f"{shape}: {exc}") from None
            self._requests[shape] = compiled.create_infer_request()
        return self._requests[shape]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if not self.static_shapes:
            request = self._request(None)
            request.infer(feeds)
            return request.get_output_tensor(0).data.copy()
        batch, seq = next(iter(feeds.values())).shape
        fitting = [s for s in self.static_shapes if s[1] >= seq]
        if not fitting:
            raise BackendError(f"sequence length {seq} exceeds the bundle's static shapes "
                               f"{[list(s) for s in self.static_shapes]}")
        rows, length = fitting[0]
        request = self._request(fitting[0])
        out = []
        for start in range(0, batch, rows):
            chunk = {}
            for name, array in feeds.items():
                padded = np.zeros((rows, length), array.dtype)  # pad id 0, mask 0
                part = array[start:start + rows]
                padded[: len(part), :seq] = part
                chunk[name] = padded
            request.infer(chunk)
            out.append(request.get_output_tensor(0).data[: min(rows, batch - start), :seq].copy())
        return np.concatenate(out)


class LiteRtBackend:
    """LiteRT (ai-edge-litert) on a static-shape (1, seq) int32 graph: each row is padded to the
    graph's length and run alone; the mask keeps the padding out of the pooled result."""

    name = "litert"

    def __init__(self, model_path: Path, threads: int | None, input_order: list[str]):
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(str(model_path), num_threads=threads or None)
            self.runner = interpreter.get_signature_runner()
        except Exception as exc:  # LiteRT raises plain RuntimeError/ValueError for bad models
            raise BackendError(f"LiteRT cannot load {model_path}: {exc}") from None
        details = self.runner.get_input_details()
        # litert-torch names inputs args_0, args_1... in forward() order; the manifest says which is which.
        self._graph_names = sorted(details, key=lambda n: details[n]["index"])
        if len(self._graph_names) != len(input_order):
            raise BackendError(f"{model_path}: the graph has inputs {self._graph_names}, the manifest names "
                               f"{input_order}")
        self._order = list(input_order)
        shape = details[self._graph_names[0]]["shape"]
        if len(shape) != 2 or shape[0] != 1:
            raise BackendError(f"{model_path}: expected a (1, seq) input, got shape {list(shape)}")
        self.seq_len = int(shape[1])
        self.providers = ["LiteRT CPU (XNNPACK)"]
        self.input_names = list(input_order)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        first = feeds[self._order[0]]
        batch, seq = first.shape
        if seq > self.seq_len:
            raise BackendError(f"sequence length {seq} exceeds the LiteRT graph's static length {self.seq_len}")
        rows = []
        for row in range(batch):
            args = {}
            for graph_name, name in zip(self._graph_names, self._order):
                padded = np.zeros((1, self.seq_len), np.int32)  # pad id 0, mask 0
                padded[0, :seq] = feeds[name][row]
                args[graph_name] = padded
            out = self.runner(**args)
            rows.append(next(iter(out.values()))[0, :seq])
        return np.stack(rows)


class LiteRtBodyBackend:
    """An integer-only encoder body (the Ethos-U bundle's graph) in LiteRT on this CPU, behind
    the CPU prelude (embedding lookup, LayerNorm, additive mask) in numpy: the same split and
    the same integer graph as the device, so accuracy measured here is the device's."""

    name = "litert-body"

    def __init__(self, model_path: Path, threads: int | None, prelude_file: str, bodies: dict | None = None):
        from edgeslim.runtime.prelude import load_prelude

        self.tables = load_prelude(model_path.with_name(prelude_file))
        files = [model_path.with_name(b["model"]) for b in (bodies or {}).values()] or [model_path]
        # One graph per static length; each call runs the shortest that holds it.
        self._graphs = sorted((self._open(path, threads) for path in files), key=lambda g: g["seq_len"])
        self.seq_len = self._graphs[-1]["seq_len"]
        self.providers = [f"LiteRT CPU ({self._graphs[0]['hidden']['dtype'].__name__} activations, static lengths "
                          f"{[g['seq_len'] for g in self._graphs]})"]
        self.input_names = ["input_ids", "attention_mask"]

    @staticmethod
    def _open(path: Path, threads: int | None) -> dict:
        from ai_edge_litert.interpreter import Interpreter

        try:
            runner = Interpreter(str(path), num_threads=threads or None).get_signature_runner()
        except Exception as exc:  # LiteRT raises plain RuntimeError/ValueError for bad models
            raise BackendError(f"LiteRT cannot load {path}: {exc}") from None
        details = runner.get_input_details()
        names = sorted(details, key=lambda n: details[n]["index"])
        if len(names) != 2 or len(details[names[0]]["shape"]) != 3:
            raise BackendError(f"{path}: expected inputs (hidden (1, seq, dim), additive mask (1, 1, 1, seq)), "
                               f"got {[list(details[n]['shape']) for n in names]}")
        hidden, mask = (details[n] | {"name": n} for n in names)
        return {"runner": runner, "hidden": hidden, "mask": mask, "seq_len": int(hidden["shape"][1]),
                "output": next(iter(runner.get_output_details().values()))}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        from edgeslim.runtime.prelude import dequantize, embed_tokens, quantize

        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        batch, seq = ids.shape
        if seq > self.seq_len:
            raise BackendError(f"sequence length {seq} exceeds the NPU graph's static length {self.seq_len}")
        rows = []
        for row in range(batch):
            length = int(mask[row].sum()) if mask[row].any() else 1
            graph = next(g for g in self._graphs if g["seq_len"] >= max(length, 1))
            padded_ids = np.zeros((1, graph["seq_len"]), np.int64)
            padded_mask = np.zeros((1, graph["seq_len"]), np.int64)
            keep = min(seq, graph["seq_len"])
            padded_ids[0, :keep], padded_mask[0, :keep] = ids[row, :keep], mask[row, :keep]
            hidden, additive = embed_tokens(self.tables, padded_ids, padded_mask)
            out = graph["runner"](**{graph["hidden"]["name"]: quantize(hidden, graph["hidden"]),
                                     graph["mask"]["name"]: quantize(additive, graph["mask"])})
            states = np.zeros((seq, self._graphs[-1]["hidden"]["shape"][2]), np.float32)
            states[:keep] = dequantize(next(iter(out.values())), graph["output"])[0, :keep]
            rows.append(states)
        return np.stack(rows)


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
    if name.startswith("litert") and importlib.util.find_spec("ai_edge_litert") is None \
            and importlib.util.find_spec("tflite_runtime") is not None:
        # tflite-runtime 2.14 (its last release) cannot load FULLY_CONNECTED v12 from current
        # converters, breaks with numpy 2, and returned wrong embeddings (cosine 0.06) on one model.
        raise BackendError(f"this {name} bundle needs ai-edge-litert; tflite-runtime is installed but is not used: "
                           "its last release (2.14) cannot run these models correctly "
                           "(pip install 'edgeslim[litert]')")
    if importlib.util.find_spec(BACKEND_MODULES[name]) is None:
        raise BackendError(
            f"this bundle needs the {name} backend, which is not installed; installed backends: "
            f"{available_backends() or 'none'} (pip install 'edgeslim[{BACKEND_EXTRAS[name]}]', pinned by "
            f"{device_lock(name).name} in edgeslim/runtime/locks)"
        )
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model_path, threads, options.get("providers"), options.get("disabled_optimizers"),
                                  options.get("providers_policy", "all"))
    if name == "static":
        return StaticBackend(model_path)
    if name == "litert-body":
        return LiteRtBodyBackend(model_path, threads, options.get("prelude", "prelude.npz"), options.get("bodies"))
    if name == "litert":
        return LiteRtBackend(model_path, threads, options.get("input_order", ["input_ids", "attention_mask"]))
    return OpenVinoBackend(model_path, threads, options.get("device", "CPU"), options.get("config"),
                           options.get("static_shapes"))
