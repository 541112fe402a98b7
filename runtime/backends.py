"""Inference backends. Each wraps one session and runs {input name: array} -> token states.
Imported lazily: a device needs only the backend its bundles use.

Every backend reads its model through the bundle's `BundleReader` (verified bytes, never a path
the backend resolves itself) and is safe to share across threads: ONNX Runtime sessions run
concurrently; OpenVINO keeps a pool of infer requests per compiled shape; LiteRT interpreters are
not reentrant, so calls on one LiteRT graph are serialized by a lock (load one encoder per
thread for parallel LiteRT throughput).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import threading
from pathlib import Path

import numpy as np

from edgeslim.errors import BackendError
from edgeslim.runtime.bundle import BundleReader
from edgeslim.runtime.backend_registry import (BACKEND_SPECS, LiteRtBodyOptions, LiteRtOptions, OnnxRuntimeOptions,
                                              OpenVinoOptions)

class OnnxRuntimeBackend:

    def __init__(self, reader: BundleReader, model_file: str, threads: int | None, options: OnnxRuntimeOptions):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = options.providers or ["CPUExecutionProvider"]
        if options.providers_policy == "first-available":
            # A preference list (TensorRT, then CUDA, then CPU): use what this machine has, in order.
            wanted = [p for p in wanted if p in available]
            if not wanted:
                raise BackendError(f"none of the bundle's execution providers {options.providers} is available "
                                   f"here; available: {available}")
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise BackendError(f"execution providers {unknown} are not available here; available: {available}")
        session_options = ort.SessionOptions()
        if threads:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.log_severity_level = 3
        model = reader.read(model_file)
        try:
            # From verified bytes: ONNX external data (files beside the model) cannot be pulled in.
            self.session = ort.InferenceSession(model, session_options, providers=wanted,
                                                disabled_optimizers=options.disabled_optimizers or None)
        except Exception as exc:  # ORT raises its own untyped errors for unloadable models
            raise BackendError(f"onnxruntime cannot load {model_file}: {exc}") from None
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._output = self.session.get_outputs()[0].name

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # InferenceSession.run is thread-safe.
        try:
            return self.session.run([self._output], feeds)[0]
        except Exception as exc:  # ORT's errors are untyped
            raise BackendError(f"onnxruntime failed on inputs {_shapes(feeds)}: {exc}") from None


def _shapes(feeds: dict[str, np.ndarray]) -> dict:
    return {name: (tuple(a.shape), str(a.dtype)) for name, a in feeds.items()}


class _RequestPool:
    """Idle OpenVINO infer requests of one compiled model; a caller takes one (a new one when all
    are busy) and gives it back, so threads never share a request."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._idle = [compiled.create_infer_request()]
        self._lock = threading.Lock()

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            request.infer(feeds)
            return request.get_output_tensor(0).data.copy()
        finally:
            with self._lock:
                self._idle.append(request)


class OpenVinoBackend:
    """OpenVINO on the first available device of the bundle's preference list. A bundle made for
    static shapes (NPUs) lists them: each call is padded up to the smallest listed (batch, seq)
    that holds it, and one compiled model per shape is kept. A text bundle with sequence buckets
    (x86) pads only the sequence, to the smallest bucket that holds it; every bucket is compiled
    at load, so no call pays for a compile."""

    def __init__(self, reader: BundleReader, model_file: str, threads: int | None, options: OpenVinoOptions):
        import openvino as ov

        self._core = core = ov.Core()
        preference = [options.device] if isinstance(options.device, str) else list(options.device)
        usable = [d for d in preference if d in core.available_devices]
        if not usable:
            raise BackendError(f"none of the bundle's OpenVINO devices {preference} is available here; "
                               f"available: {core.available_devices}")
        self.device = usable[0]
        settings = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            # Without this hint OpenVINO runs bf16 on CPUs that have it; a bundle states its precision.
            settings.update(options.config or {"INFERENCE_PRECISION_HINT": "f32"})
            if threads:
                settings["INFERENCE_NUM_THREADS"] = str(threads)
        self._settings, self._model_file = settings, model_file
        self.static_shapes = sorted(tuple(s) for s in options.static_shapes) if options.static_shapes else None
        self.sequence_buckets = tuple(options.sequence_buckets) if options.sequence_buckets else ()
        self._pools: dict = {}  # shape (None: as saved) -> request pool of the model compiled for it
        self._compile_lock = threading.Lock()
        xml = reader.read_text(model_file)
        weights = reader.read(reader.manifest.weight_files()[1])  # the IR's .bin
        try:
            # ov.Tensor copies the (read-only) buffer itself: no second copy here.
            self._model = core.read_model(xml, ov.Tensor(np.frombuffer(weights, np.uint8)))
            self.input_names = [port.get_any_name() for port in self._model.inputs]
            # Compile at load (the largest static shape; every bucket), so a bad bundle fails here, not at
            # first use. With buckets the dynamic model is compiled only if a call is longer than all
            # of them: each compiled model holds its own copy of the weights.
            if self.sequence_buckets:
                ranks = [len(port.get_partial_shape()) for port in self._model.inputs]
                if set(ranks) != {2}:
                    raise BackendError(f"sequence_buckets apply to (batch, sequence) inputs; {model_file}'s inputs "
                                       f"{self.input_names} have ranks {ranks}")
                for length in self.sequence_buckets:
                    self.compiled = self._pool((-1, length)).compiled
            else:
                self.compiled = self._pool(self.static_shapes[-1] if self.static_shapes else None).compiled
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"OpenVINO cannot compile {model_file} for {self.device}: {exc}") from None
        self.providers = [self.device] + ([f"static shapes {[list(s) for s in self.static_shapes]}"]
                                          if self.static_shapes else []) \
            + ([f"sequence buckets {list(self.sequence_buckets)}"] if self.sequence_buckets else [])

    def _pool(self, shape) -> _RequestPool:
        with self._compile_lock:
            if shape not in self._pools:
                model = self._model
                if shape is not None:
                    import openvino as ov

                    model = model.clone()
                    model.reshape({name: ov.PartialShape(list(shape)) for name in self.input_names})
                try:
                    compiled = self._core.compile_model(model, self.device, self._settings)
                except Exception as exc:
                    raise BackendError(f"OpenVINO cannot compile {self._model_file} for {self.device} at shape "
                                       f"{shape}: {exc}") from None
                self._pools[shape] = _RequestPool(compiled)
            return self._pools[shape]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.sequence_buckets:
            return self._run_bucketed(feeds)
        if not self.static_shapes:
            return self._pool(None).infer(feeds)
        if len(self.static_shapes[0]) != 2:  # one fixed-size tensor (images, audio): only the batch is chunked
            return self._run_fixed_tensor(feeds)
        batch, seq = next(iter(feeds.values())).shape
        fitting = [s for s in self.static_shapes if s[1] >= seq]
        if not fitting:
            raise BackendError(f"sequence length {seq} exceeds the bundle's static shapes "
                               f"{[list(s) for s in self.static_shapes]}")
        rows, length = fitting[0]
        pool = self._pool(fitting[0])
        out = []
        for start in range(0, batch, rows):
            chunk = {}
            for name, array in feeds.items():
                padded = np.zeros((rows, length), array.dtype)  # pad id 0, mask 0
                part = array[start:start + rows]
                padded[: len(part), :seq] = part
                chunk[name] = padded
            out.append(pool.infer(chunk)[: min(rows, batch - start), :seq])
        return np.concatenate(out)

    def _run_bucketed(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        seq = next(iter(feeds.values())).shape[1]
        length = next((b for b in self.sequence_buckets if b >= seq), None)
        if length is None:  # longer than every bucket: the dynamic model
            return self._pool(None).infer(feeds)
        # Pad id 0 with mask 0: the padded positions are masked out of attention and pooling.
        padded = {name: np.pad(array, ((0, 0), (0, length - seq))) for name, array in feeds.items()}
        out = self._pool((-1, length)).infer(padded)
        return out[:, :seq] if out.ndim == 3 else out

    def _run_fixed_tensor(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (name, array), = feeds.items()
        shape = self.static_shapes[0]
        if list(array.shape[1:]) != list(shape[1:]):
            raise BackendError(f"inputs of shape {list(array.shape[1:])}; the bundle's static shape is {list(shape)}")
        rows, pool, out = shape[0], self._pool(shape), []
        for start in range(0, len(array), rows):
            part = array[start:start + rows]
            padded = np.zeros((rows, *array.shape[1:]), array.dtype)
            padded[: len(part)] = part
            out.append(pool.infer({name: padded})[: len(part)])
        return np.concatenate(out)


def _interpreter(reader: BundleReader, model_file: str, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    model = reader.read(model_file)
    try:
        return Interpreter(model_content=model, num_threads=threads or None)
    except Exception as exc:  # LiteRT raises plain RuntimeError/ValueError for bad models
        raise BackendError(f"LiteRT cannot load {model_file}: {exc}") from None


class LiteRtBackend:
    """LiteRT (ai-edge-litert) on a static-shape graph, each row run alone: text graphs take
    (1, seq) int32 ids and mask (rows padded to the graph's length; the mask keeps the padding
    out of the pooled result); image and audio graphs take one (1, H, W, C) tensor, float or int8
    (the backend quantizes the input and dequantizes the output with the graph's own parameters)."""


    def __init__(self, reader: BundleReader, model_file: str, threads: int | None, options: LiteRtOptions):
        self.runner = _interpreter(reader, model_file, threads).get_signature_runner()
        self._lock = threading.Lock()  # one interpreter: not reentrant
        details = self.runner.get_input_details()
        # litert-torch names inputs args_0, args_1... in forward() order; the manifest says which is which.
        self._graph_names = sorted(details, key=lambda n: details[n]["index"])
        input_order = list(options.input_order)
        if len(self._graph_names) != len(input_order):
            raise BackendError(f"{model_file}: the graph has inputs {self._graph_names}, the manifest names "
                               f"{input_order}")
        self._order = input_order
        first = details[self._graph_names[0]]
        shape = first["shape"]
        # One tensor input (pixels or audio features, channels last), or token ids + mask.
        self._one_tensor = len(input_order) == 1
        if self._one_tensor:
            if len(shape) != 4 or shape[0] != 1:
                raise BackendError(f"{model_file}: expected one (1, H, W, C) input, got shape {list(shape)}")
            self._input_detail = first
            (self._output_detail,) = self.runner.get_output_details().values()
            self.seq_len = None
        elif len(shape) != 2 or shape[0] != 1:
            raise BackendError(f"{model_file}: expected a (1, seq) input, got shape {list(shape)}")
        else:
            self.seq_len = int(shape[1])
        self.providers = ["LiteRT CPU (XNNPACK)"]
        self.input_names = list(input_order)

    def _run_tensor(self, pixels: np.ndarray) -> np.ndarray:
        from edgeslim.runtime.prelude import dequantize, quantize

        want = list(self._input_detail["shape"][1:])
        if list(pixels.shape[1:]) != want:
            raise BackendError(f"inputs of shape {list(pixels.shape[1:])}; the LiteRT graph takes {want}")
        rows = []
        for row in pixels:
            args = {self._graph_names[0]: quantize(row[None], self._input_detail)}
            with self._lock:
                out = next(iter(self.runner(**args).values()))
                rows.append(dequantize(out, self._output_detail).reshape(1, -1))
        return np.stack(rows)  # (batch, 1, dim): one pooled position per input

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._one_tensor:
            return self._run_tensor(feeds[self._order[0]])
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
            with self._lock:
                out = self.runner(**args)
                rows.append(next(iter(out.values()))[0, :seq].copy())
        return np.stack(rows)


class LiteRtBodyBackend:
    """An integer-only encoder body (the Ethos-U bundle's graph) in LiteRT on this CPU, behind
    the CPU prelude (embedding lookup, LayerNorm, additive mask) in numpy: the same split and
    the same integer graph as the device, so accuracy measured here is the device's."""


    def __init__(self, reader: BundleReader, model_file: str, threads: int | None, options: LiteRtBodyOptions):
        from edgeslim.runtime.prelude import load_prelude

        self.tables = load_prelude(reader.read(options.prelude), options.prelude)
        files = [b.model for b in (options.bodies or {}).values()] or [model_file]
        # One graph per static length; each call runs the shortest that holds it.
        self._graphs = sorted((self._open(reader, name, threads) for name in files), key=lambda g: g["seq_len"])
        self.seq_len = self._graphs[-1]["seq_len"]
        self.providers = [f"LiteRT CPU ({self._graphs[0]['hidden']['dtype'].__name__} activations, static lengths "
                          f"{[g['seq_len'] for g in self._graphs]})"]
        self.input_names = ["input_ids", "attention_mask"]

    @staticmethod
    def _open(reader: BundleReader, name: str, threads: int | None) -> dict:
        runner = _interpreter(reader, name, threads).get_signature_runner()
        details = runner.get_input_details()
        names = sorted(details, key=lambda n: details[n]["index"])
        if len(names) != 2 or len(details[names[0]]["shape"]) != 3:
            raise BackendError(f"{name}: expected inputs (hidden (1, seq, dim), additive mask (1, 1, 1, seq)), "
                               f"got {[list(details[n]['shape']) for n in names]}")
        hidden, mask = (details[n] | {"name": n} for n in names)
        return {"runner": runner, "hidden": hidden, "mask": mask, "seq_len": int(hidden["shape"][1]),
                "output": next(iter(runner.get_output_details().values())), "lock": threading.Lock()}

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
            with graph["lock"]:
                out = graph["runner"](**{graph["hidden"]["name"]: quantize(hidden, graph["hidden"]),
                                         graph["mask"]["name"]: quantize(additive, graph["mask"])})
                body = next(iter(out.values())).copy()
            states = np.zeros((seq, self._graphs[-1]["hidden"]["shape"][2]), np.float32)
            states[:keep] = dequantize(body, graph["output"])[0, :keep]
            rows.append(states)
        return np.stack(rows)


class StaticBackend:
    """A token-vector table: the "model" is a lookup; pooling does the rest. numpy only."""


    def __init__(self, reader: BundleReader, model_file: str, threads: int | None, options):
        data = reader.read(model_file)
        try:
            self.table = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the embedding table {model_file}: {exc}") from None
        if self.table.ndim != 2:
            raise BackendError(f"{model_file}: expected a (vocabulary, dim) table, got shape {self.table.shape}")
        self.providers = ["numpy"]
        self.input_names = ["input_ids", "attention_mask"]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        ids = feeds["input_ids"]
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.table)):
            raise BackendError(f"token id out of range for a table of {len(self.table)} rows")
        return self.table[ids]


# Backend name -> the class that runs it, from the one registry (runtime/backend_registry.py),
# with the Python module each needs and the pyproject extra that installs it on a device
# (runtime/locks/<extra>.txt is that extra's hashed lock, shipped in the wheel).
def _session_class(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


BACKENDS = {name: _session_class(spec.session) for name, spec in BACKEND_SPECS.items()}
BACKEND_MODULES = {name: spec.module for name, spec in BACKEND_SPECS.items()}
BACKEND_EXTRAS = {name: spec.extra for name, spec in BACKEND_SPECS.items()}


def device_lock(backend: str) -> Path:
    """The hashed lock a device installs for `backend` (all its dependencies, pinned)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; this runtime knows: {', '.join(BACKENDS)}")
    return Path(__file__).with_name("locks") / f"{BACKEND_EXTRAS[backend]}.txt"


def available_backends() -> list[str]:
    return [name for name, module in BACKEND_MODULES.items() if importlib.util.find_spec(module) is not None]


def open_backend(name: str, reader: BundleReader, threads: int | None, overrides: dict | None = None):
    """Start `name` on the bundle behind `reader`; `overrides` (validated like the manifest's
    backend_options) replace the bundle's options key by key."""
    from edgeslim.runtime.manifest import backend_options

    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; this runtime knows: {', '.join(BACKENDS)}")
    if BACKEND_MODULES[name] == "ai_edge_litert" and importlib.util.find_spec("ai_edge_litert") is None \
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
    manifest = reader.manifest
    options = backend_options(name, {**manifest.backend_options, **(overrides or {})},
                              f"{reader.bundle_dir}" + (" (with load()'s backend_options)" if overrides else ""))
    return BACKENDS[name](reader, manifest.model_file, threads, options)
