"""Intel NPU (Core Ultra): static-shape OpenVINO IR, int8 through NNCF with the NPU as target.

NPUs compile static shapes only, so the bundle lists the (batch, seq) shapes it was made for and
the runtime pads each call up to the smallest that holds it. The NPU plugin cannot compile on a
machine without the NPU and its driver: export checks every listed shape on the CPU plugin
instead (same IR, same shapes), accuracy is measured there, and latency is estimated from the
device profile. At run time the runtime picks the NPU when OpenVINO lists it, else the CPU.
"""

from __future__ import annotations

from pathlib import Path

from edgeslim.compress.artifacts import ModelArtifact
from edgeslim.errors import ExportError, TargetError
from edgeslim.targets.base import Budget, BundleFiles, DeviceProfile, ExportContext, Target, copy_artifact

DEVICE_PREFERENCE = ["NPU", "CPU"]


def check_static_shapes(xml: Path, shapes, device: str = "CPU") -> list[str]:
    """Compile `xml` at every shape on `device`; returns what was checked, raises on failure."""
    import openvino as ov

    core = ov.Core()
    checked = []
    for shape in shapes:
        model = core.read_model(str(xml))
        model.reshape({port.get_any_name(): ov.PartialShape(list(shape)) for port in model.inputs})
        try:
            core.compile_model(model, device)
        except Exception as exc:
            raise ExportError(f"{xml.name} does not compile on the OpenVINO {device} plugin at shape {list(shape)}: "
                              f"{exc}") from None
        checked.append(f"{device} {list(shape)}")
    return checked


class IntelNpu(Target):
    name = "intel-npu"
    description = ("Intel Core Ultra NPU (NPU 3720, Meteor Lake): static-shape OpenVINO IR, NNCF int8 for the NPU; "
                   "checked on the CPU plugin, latency estimated")
    accepts = {"openvino": ("openvino",)}
    backend_options = {"openvino": {"device": DEVICE_PREFERENCE}}
    default_budget = Budget(p95_ms=20.0, max_size_mb=40.0, max_peak_rss_mb=1000.0, min_teacher_cosine=0.99,
                            min_stsb_spearman=81.0)

    def profile(self) -> DeviceProfile:
        # Intel: NPU 3720 "up to 11 TOPS" int8 (2 ops per MAC), fp16 at half that rate; it shares
        # the SoC's LPDDR5X-7467 (128-bit, ~119 GB/s) with the CPU and GPU.
        return DeviceProfile(name="Intel Core Ultra NPU 3720 (Meteor Lake)", cores=1, clock_ghz=1.4,
                             isa_features=("int8", "fp16", "static shapes"),
                             peak_fp32_macs_per_s=2.75e12, peak_int8_macs_per_s=5.5e12, peak_fp16_macs_per_s=2.75e12,
                             memory_bandwidth_gbs=119.0, ram_mb=16384, source="datasheet",
                             notes="11 TOPS int8 peak; float runs as fp16; shapes must be static")

    def export(self, artifact: ModelArtifact, backend: str, ctx: ExportContext) -> BundleFiles:
        self.check_artifact(artifact, backend)
        bundle_dir = ctx.bundle_dir
        if not artifact.static_shapes:
            raise TargetError(f"target {self.name} needs a static-shape OpenVINO IR, the steps produced a dynamic-shape "
                              "one; end the steps with openvino_static_shapes (after openvino_int8 or openvino_convert)")
        files = copy_artifact(artifact, bundle_dir)
        checked = check_static_shapes(bundle_dir / files.model_file, artifact.static_shapes, "CPU")
        import openvino as ov

        if "NPU" in ov.Core().available_devices:  # only where the NPU plugin and driver exist
            checked += check_static_shapes(bundle_dir / files.model_file, artifact.static_shapes, "NPU")
        return BundleFiles(files.model_file, files.files,
                           backend_options={"static_shapes": [list(s) for s in artifact.static_shapes],
                                            "compile_checked": checked, "openvino": ov.get_version()})


TARGET = IntelNpu()
