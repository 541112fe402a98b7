"""Export the teacher with sentence-transformers' own int8 exports. Runs in the peers' venv
(benchmarks/peers/requirements.lock), never in the kit's: optimum pins transformers < 4.58.

    python export.py --model TEACHER_DIR --calibration SENTENCES.txt --isa avx512_vnni --out DIR

Writes DIR/st-onnx-int8-dynamic/ (`export_dynamic_quantized_onnx_model` with the ONNX Runtime
configuration for the host's ISA) and DIR/st-openvino-int8-static/
(`export_static_quantized_openvino_model`, calibrated on the given sentences through a local CSV
folder, never the hub), each with the tokenizer files, plus DIR/export.json saying what ran.
Each export lands under a temporary name and is renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ISA_CONFIGS = ("arm64", "avx2", "avx512", "avx512_vnni")  # sentence-transformers' dynamic configs


def _fresh(out: Path, name: str) -> Path:
    work = out / f".{name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    return work


def _publish(work: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)


def _model(path: str, backend: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", backend=backend)


def export_onnx_dynamic(model_dir: str, isa: str, out: Path) -> dict:
    from sentence_transformers import export_dynamic_quantized_onnx_model

    work = _fresh(out, "st-onnx-int8-dynamic")
    model = _model(model_dir, "onnx")  # optimum exports the float ONNX first
    model.save_pretrained(str(work))
    export_dynamic_quantized_onnx_model(model, isa, str(work))
    (quantized,) = (work / "onnx").glob(f"model_qint8_{isa}.onnx")
    _publish(work, out / "st-onnx-int8-dynamic")
    return {"file": f"st-onnx-int8-dynamic/onnx/{quantized.name}", "function": "export_dynamic_quantized_onnx_model",
            "quantization_config": isa}


def export_openvino_static(model_dir: str, calibration: list[str], out: Path) -> dict:
    from sentence_transformers import export_static_quantized_openvino_model
    from optimum.intel import OVQuantizationConfig

    work = _fresh(out, "st-openvino-int8-static")
    model = _model(model_dir, "openvino")
    model.save_pretrained(str(work))
    with tempfile.TemporaryDirectory() as folder:
        # A local CSV folder, so `datasets` reads it offline ("default" config, "train" split).
        import csv

        with open(Path(folder) / "train.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence"])
            writer.writerows([s] for s in calibration)
        config = OVQuantizationConfig()  # its defaults: 300 samples
        export_static_quantized_openvino_model(model, config, str(work), dataset_name=folder,
                                               dataset_config_name="default", dataset_split="train",
                                               column_name="sentence")
    (xml,) = (work / "openvino").glob("openvino_model_qint8_quantized.xml")
    _publish(work, out / "st-openvino-int8-static")
    return {"file": f"st-openvino-int8-static/openvino/{xml.name}",
            "function": "export_static_quantized_openvino_model",
            "quantization_config": "OVQuantizationConfig() defaults", "calibration_samples": config.num_samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the teacher's sentence-transformers folder")
    parser.add_argument("--calibration", required=True, help="a text file, one calibration sentence per line")
    parser.add_argument("--isa", required=True, choices=ISA_CONFIGS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calibration = [line for line in Path(args.calibration).read_text(encoding="utf-8").splitlines() if line.strip()]
    from importlib.metadata import version

    done = {
        **{name: version(name) for name in ("sentence-transformers", "transformers", "optimum", "optimum-onnx",
                                             "optimum-intel", "onnxruntime", "openvino", "nncf")},
        "python": sys.version.split()[0],
        "exports": {"st-onnx-int8-dynamic": export_onnx_dynamic(args.model, args.isa, out),
                    "st-openvino-int8-static": export_openvino_static(args.model, calibration, out)},
    }
    tmp = out / "export.json.tmp"
    tmp.write_text(json.dumps(done, indent=2))
    os.replace(tmp, out / "export.json")
    print(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
