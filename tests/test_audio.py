"""The audio path end to end: the runtime's log-mel front end against librosa, bad audio refused
by clip, the SSL teacher script, distillation on unlabeled clips, every target (x86, Raspberry
Pi 5 LiteRT full int8, Ethos-U55 via Vela, Intel NPU, Jetson), and the firmware export of the
U55 bundle whose C front end, compiled from the header alone, matches the runtime's int8 input.
Fast tier: a tiny random DS-CNN; real tier: a CI-sized SSL teacher trained by the script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import compile_firmware_check, drift_scores, run_recipe_cli
from edgeslim.calibration_data import corpus_available
from edgeslim.errors import InputError
from edgeslim.runtime.audio import AudioFrontend, log_mel, mel_filterbank, power_mel, to_samples

needs_fsdd = pytest.mark.skipif(not corpus_available("fsdd-test"),
                                reason="FSDD not found: set EDGESLIM_DATA to the shared data folder")


def _write_wav(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


FRONTENDS = [
    AudioFrontend(),
    AudioFrontend(n_mels=24, fmin=100.0, fmax=3500.0, mel_scale="htk", mel_norm=None, window="hamming", power=1),
    AudioFrontend(sample_rate=16000, clip_samples=16000, n_fft=512, hop_length=160, n_mels=64, mean=-5.0, std=3.0),
]


@pytest.mark.parametrize("frontend", FRONTENDS, ids=["kws-8k", "htk-hamming", "16k-64mel"])
def test_the_front_end_matches_librosa(frontend):
    librosa = pytest.importorskip("librosa")  # the dev extra installs it: a reference, never the runtime's
    rng = np.random.default_rng(0)
    t = np.arange(frontend.clip_samples) / frontend.sample_rate
    clip = 0.3 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.05, len(t))
    bank = librosa.filters.mel(sr=frontend.sample_rate, n_fft=frontend.n_fft, n_mels=frontend.n_mels,
                               fmin=frontend.fmin, fmax=frontend.top_hz, htk=frontend.mel_scale == "htk",
                               norm=frontend.mel_norm)
    assert np.abs(mel_filterbank(frontend) - bank).max() < 1e-6
    reference = librosa.feature.melspectrogram(
        y=clip, sr=frontend.sample_rate, n_fft=frontend.n_fft, hop_length=frontend.hop_length,
        window=frontend.window, center=False, power=float(frontend.power), n_mels=frontend.n_mels, fmin=frontend.fmin,
        fmax=frontend.top_hz, htk=frontend.mel_scale == "htk", norm=frontend.mel_norm)
    ours = power_mel(clip[None], frontend)[0]
    assert ours.shape == reference.shape == (frontend.n_mels, frontend.frames)
    expected = (np.log(np.maximum(reference, frontend.log_floor)) - frontend.mean) / frontend.std
    features = log_mel([clip], frontend)
    assert features.shape == (1, 1, frontend.n_mels, frontend.frames) and features.dtype == np.float32
    assert np.abs(features[0, 0] - expected).max() < 1e-4


@needs_fsdd
def test_a_wav_file_reads_like_its_samples_and_clips_are_centred():
    from edgeslim.calibration_data import load_corpus

    frontend = AudioFrontend()
    path = load_corpus("fsdd-test").texts[0]
    with wave.open(path) as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), "<i2")
    np.testing.assert_array_equal(to_samples(path, frontend), to_samples(pcm, frontend))
    np.testing.assert_array_equal(log_mel([to_samples(path, frontend)], frontend),
                                  log_mel([pcm.astype(np.float64) / 32768], frontend))
    # Centred: a clip and the same clip with equal silence on both sides give the same features.
    padded = np.concatenate([np.zeros(500), pcm / 32768, np.zeros(500)])
    np.testing.assert_allclose(log_mel([padded], frontend), log_mel([pcm / 32768], frontend), atol=1e-5)


def test_bad_audio_is_an_input_error_naming_the_clip(tmp_path):
    frontend = AudioFrontend(max_seconds=2.0)
    tone = (np.sin(np.arange(4000) / 5) * 8000).astype("<i2")
    cases = [
        (_write_wav(tmp_path / "stereo.wav", np.repeat(tone, 2), channels=2), "2 channels.*mono"),
        (_write_wav(tmp_path / "rate.wav", tone, rate=16000), "16000 Hz; the bundle takes 8000 Hz"),
        (_write_wav(tmp_path / "8bit.wav", (tone // 256 + 128).astype(np.uint8), width=1), "8-bit.*16-bit PCM"),
        (_write_wav(tmp_path / "empty.wav", np.zeros(0, "<i2")), "holds no samples"),
        (_write_wav(tmp_path / "long.wav", np.zeros(24000, "<i2")), "lasts 3.0 s.*at most 2 s"),
        (tmp_path / "missing.wav", "no such file"),
        (np.full(100, np.nan, np.float32), "NaN"),
        (np.zeros((100, 2), np.float32), "1-D mono"),
        (np.zeros(0, np.float32), "holds no samples"),
        (np.full(100, 3.0, np.float32), r"\[-1, 1\]"),
        (np.zeros(100, np.int32), "dtype int32"),
        (np.zeros(20000, np.float32), "at most 2 s"),
        (42, "WAV file path or a 1-D numpy array"),
    ]
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    cases.append((tmp_path / "corrupt.wav", "not a readable WAV file"))
    for item, message in cases:
        with pytest.raises(InputError, match=message):
            to_samples(item, frontend, index=7)
        with pytest.raises(InputError, match="clip 7"):
            to_samples(item, frontend, index=7)


def test_the_front_end_schema_is_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shorter than one frame"):
        AudioFrontend(clip_samples=100, n_fft=256)
    with pytest.raises(ValidationError, match="must lie inside"):
        AudioFrontend(fmax=5000.0)
    with pytest.raises(ValidationError, match="extra"):
        AudioFrontend(loudness=1.0)


STUDENT = """
          - &distill {step: distill, keep_layers: [0], corpus: [fsdd-train], sentences: 256, batch_size: 64,
                      epochs: 2, learning_rate: 0.002}
          - &prune {step: prune, ffn: 0.25, heal: {corpus: [fsdd-train], sentences: 256, batch_size: 64, epochs: 1}}
"""

AUDIO_RECIPE = f"""
name: tiny-audio
model: {{source: tiny-random, family: ds-cnn}}
data:
  calibration: fsdd-train
  agreement: [fsdd-test]
  agreement_samples: 100
  probe:
    - {{train: fsdd-train, test: fsdd-test, label: digit, train_samples: 400, test_samples: 100}}
    - {{train: fsdd-train, test: fsdd-test, label: speaker, train_samples: 400, test_samples: 100}}
benchmark: {{warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5, real_length_batches: []}}
targets:
  - target: x86-cpu
    required: [ort-int8]
    budget: {{p95_ms: 1000, min_speedup: null, max_size_mb: 5, min_teacher_cosine: 0.1}}
    variants:
      - name: ort-int8
        backend: onnxruntime
        steps:{STUDENT}
          - {{step: int8_static, op_types: [Conv, Add, Gemm, MatMul], calibration_samples: 32, sensitivity_samples: 16,
             cosine_floor: 0.9}}
      - {{name: ov-int8, backend: openvino, steps: [*distill, *prune, {{step: openvino_int8, calibration_samples: 32}}]}}
  - target: rpi5
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - name: litert-int8
        backend: litert
        steps: [*distill, *prune, {{step: litert_convert}}, {{step: litert_int8_full, calibration_samples: 32}}]
  - target: ethos-u55-128
    budget: {{min_teacher_cosine: 0.1, max_npu_sram_kib: 384, max_cpu_operators: 0}}
    variants:
      - name: u55-int8
        backend: litert
        steps: [*distill, *prune, {{step: litert_convert}}, {{step: litert_int8_full, calibration_samples: 32}}]
  - target: intel-npu
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - name: npu-int8
        backend: openvino
        steps: [*distill, *prune, {{step: openvino_int8, target_device: NPU, calibration_samples: 32}},
                {{step: openvino_static_shapes, batch: 1}}]
  - target: jetson-orin-nano
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - {{name: trt-fp16, backend: onnxruntime, steps: [*distill, *prune, {{step: onnx_fp16}}]}}
"""


@pytest.fixture(scope="session")
def audio_run(tmp_path_factory):
    """A tiny random DS-CNN through every audio target, once per session."""
    if not corpus_available("fsdd-test"):
        pytest.skip("FSDD not found: set EDGESLIM_DATA to the shared data folder")
    return run_recipe_cli(tmp_path_factory, "audio-run", AUDIO_RECIPE)


def _results(run) -> dict:
    return {r["name"]: r for r in run["report"]["results"]}


def test_every_audio_target_builds_and_is_measured_with_digit_and_speaker_probes(audio_run):
    results = _results(audio_run)
    assert set(results) == {"ort-int8", "ov-int8", "litert-int8", "u55-int8", "npu-int8", "trt-fp16"}
    assert audio_run["exit_code"] in (0, 3)
    teacher = audio_run["report"]["baseline"]["accuracy"]
    assert [p["label"] for p in teacher["probes"]] == ["digit", "speaker"] and teacher["metrics"] == []
    assert teacher["probes"][0]["test"] == "fsdd-test" and teacher["probes"][0]["test_items"] == 100
    for name, r in results.items():
        digit = r["accuracy"]["probes"][0]
        assert digit["knn_top1_drop"] == pytest.approx(teacher["probes"][0]["knn_top1"] - digit["knn_top1"],
                                                       abs=0.011), name
        assert "stsb_spearman" not in {c["name"] for c in r["budget"]["checks"]}, name
        assert r["latency_ms"]["seq_len"] is None
    assert results["ort-int8"]["latency_ms"]["kind"] == "measured" and results["ort-int8"]["speedup_vs_baseline"] > 0
    report_md = (audio_run["out"] / "report.md").read_text()
    assert "kNN top-1 (digit)" in report_md and "kNN top-1 (speaker)" in report_md
    card = (Path(results["ort-int8"]["bundle"]) / "MODEL_CARD.md").read_text()
    assert "encode_audio" in card and "log-mel" in card and "English" not in card


def test_the_student_learns_from_unlabeled_train_clips_only(audio_run):
    distill = _results(audio_run)["ort-int8"]["steps"][0]
    assert distill["modality"] == "audio" and distill["clips"] == 256 and distill["layers"] == 1
    assert distill["dropped_overlapping_evaluation"] == 0  # fsdd-train and fsdd-test are disjoint


def test_the_u55_audio_bundle_runs_whole_on_the_npu_within_its_sram(audio_run):
    u55 = _results(audio_run)["u55-int8"]
    estimate = u55["device_estimate"]
    assert estimate["cpu_operators"] == 0 and 0 < estimate["sram_used_kib"] <= 384
    manifest = json.loads((Path(u55["bundle"]) / "manifest.json").read_text())
    assert manifest["modality"] == "audio" and manifest["preprocessing"]["layout"] == "NHWC"
    assert manifest["inputs"][0]["shape"] == ["batch", 16, 15, 1]
    assert manifest["backend_options"]["npu"]["vela_summary"] in manifest["files"]


def test_the_integer_audio_bundles_agree_with_the_float_student(audio_run):
    from edgeslim.calibration_data import load_corpus
    from edgeslim.runtime import load

    results = _results(audio_run)
    clips = list(load_corpus("fsdd-test").texts[:24])
    reference = load(results["trt-fp16"]["bundle"]).encode_audio(clips)
    for name in ("u55-int8", "litert-int8", "npu-int8", "ort-int8", "ov-int8"):
        cosine = (load(results[name]["bundle"]).encode_audio(clips) * reference).sum(1)
        assert cosine.mean() > 0.9, f"{name}: mean cosine {cosine.mean():.4f} to the float student"
    with pytest.raises(InputError, match="encode_images\\(\\) needs a image bundle.*use encode_audio\\(clips\\)"):
        load(results["ort-int8"]["bundle"]).encode_images([np.zeros((8, 8, 3), np.uint8)])


def test_the_u55_firmware_front_end_in_c_matches_the_runtime_int8_input(audio_run, tmp_path):
    """A C program built from the generated header alone (gcc -Wall -Werror) turns a test clip's
    16-bit PCM into int8 features; they equal the runtime's to within 1."""
    from edgeslim.calibration_data import load_corpus
    from edgeslim.cli import main
    from edgeslim.runtime import load
    from edgeslim.runtime.prelude import quantize

    bundle = Path(_results(audio_run)["u55-int8"]["bundle"])
    out = tmp_path / "fw"
    assert main(["export-firmware", str(bundle), "--out", str(out)]) == 0
    symbol, s = "u55_int8", "U55_INT8"
    header = (out / f"{symbol}.h").read_text()
    for define in ("SAMPLE_RATE 8000u", "N_FFT 256u", "HOP 128u", "N_MELS 16u", "LOG_FLOOR", "FEATURE_MEAN",
                   "_mel_filterbank[16][129]", "_window[256]", "INPUT0_SCALE", "CPU_OPERATORS 0u"):
        assert define in header, define
    exe = compile_firmware_check(out, symbol)
    check = subprocess.run([str(exe), str(bundle / "model_vela.tflite")], capture_output=True, text=True)
    assert check.returncode == 0 and "identical to the .tflite" in check.stdout, check.stdout + check.stderr
    (out / "features.c").write_text(f"""
#include <stdio.h>
#include "{symbol}.h"
int main(void) {{
    static int16_t pcm[16000];
    static int8_t features[{s}_FEATURES];
    unsigned long n = (unsigned long)fread(pcm, sizeof(int16_t), 16000, stdin);
    {symbol}_features(pcm, n, features);
    for (unsigned i = 0; i < {s}_FEATURES; i++) printf("%d\\n", features[i]);
    return 0;
}}
""")
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "features.c", "-o", "features", "-lm"], check=True, cwd=out)
    clip = load_corpus("fsdd-test").texts[3]
    with wave.open(clip) as handle:
        pcm = handle.readframes(handle.getnframes())
    c_values = np.array(subprocess.run([str(out / "features")], input=pcm, capture_output=True, check=True)
                        .stdout.split(), dtype=np.int64)
    encoder = load(bundle)
    prepared = encoder.model_inputs([clip])["input_features"]  # (1, mels, frames, 1), NHWC
    py_values = quantize(prepared, encoder.backend._input_detail).reshape(-1).astype(np.int64)
    assert len(c_values) == len(py_values) == 16 * 15
    assert np.abs(c_values - py_values).max() <= 1


@pytest.mark.aarch64
def test_the_rpi5_audio_bundle_passes_verify_on_aarch64(audio_run, capsys):
    from edgeslim.cli import main

    code = main(["verify", _results(audio_run)["litert-int8"]["bundle"], "--arch", "aarch64", "--sentences", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "held-out FSDD test clips" in out and "ran on aarch64" in out


def test_verify_and_bench_take_an_audio_bundle(audio_run, capsys, tmp_path):
    from edgeslim.cli import main
    from edgeslim.benchmarks.bench_bundle import bench_bundle

    bundle = _results(audio_run)["ort-int8"]["bundle"]
    assert main(["verify", bundle]) == 0
    assert "made-up audio input" in capsys.readouterr().out
    wav = _write_wav(tmp_path / "tone.wav", (np.sin(np.arange(6000) / 3) * 5000).astype("<i2"))
    assert main(["verify", bundle, "--input", str(wav)]) == 0
    assert main(["bench", bundle, "--runs", "20", "--warmup", "2"]) == 0
    assert "batch 1, one clip per row" in capsys.readouterr().out
    with pytest.raises(InputError, match="--seq-len applies to bundles of varying input length"):
        bench_bundle(Path(bundle), seq_len=32)


def _teacher_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeslim.benchmarks.teachers.audio_ssl", "--no-progress",
                           "--width", "8", "--strides", "2", "--n-mels", "16", "--embedding", "16", "--limit-clips", "128",
                           "--batch-size", "32", "--epochs", "2", "--eval-every", "0", "--threads", "1", *args],
                          capture_output=True, text=True, timeout=600)


@needs_fsdd
def test_the_audio_teacher_script_is_deterministic_and_resumes_exactly(tmp_path):
    """Stopped after 3 of 8 steps and resumed, it writes the same weights as an unbroken run."""
    from safetensors.numpy import load_file

    unbroken = _teacher_script("--out", str(tmp_path / "a"))
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    stopped = _teacher_script("--out", str(tmp_path / "b"), "--stop-after", "3")
    assert stopped.returncode == 3 and "run the same command again" in stopped.stdout
    assert not (tmp_path / "b" / "model.safetensors").exists()  # no half-written model folder
    resumed = _teacher_script("--out", str(tmp_path / "b"))
    assert resumed.returncode == 0 and "resuming from step 3/8" in resumed.stderr
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    sheet = json.loads((tmp_path / "a" / "datasheet.json").read_text())
    assert sheet["training_data"]["labels_used"] is False and sheet["training_data"]["clips"] == 128
    assert set(sheet["quality"]["figures"]) == {"ssl", "random_init", "raw_log_mel", "raw_log_mel_time_mean"}
    assert set(sheet["quality"]["figures"]["ssl"]) == {"digit", "speaker"}
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    teacher = load_encoder(ModelSpec(source="local", path=tmp_path / "a"))
    assert teacher.family.name == "ds-cnn" and teacher.modality == "audio" and teacher.hidden_size == 16
    assert teacher.preprocessing["std"] != 1.0  # the training clips' normalisation travels with the model


@pytest.mark.real
def test_the_packaged_audio_recipe_on_a_ci_sized_ssl_teacher(tmp_path_factory):
    """The real audio tier within CI's budget: an SSL teacher trained here for a few epochs,
    then the packaged recipe's chains, shortened."""
    from edgeslim.recipe import load_recipe

    folder = tmp_path_factory.mktemp("ci-audio-teacher")
    trained = subprocess.run([sys.executable, "-m", "edgeslim.benchmarks.teachers.audio_ssl", "--no-progress",
                              "--out", str(folder), "--epochs", "3", "--eval-every", "0"],
                             capture_output=True, text=True, timeout=1800)
    assert trained.returncode == 0, trained.stderr[-2000:]
    print(trained.stdout)
    recipe, recipe_path = load_recipe("audio")
    assert recipe.model.path.name == "ssl-fsdd" and recipe_path.name == "audio.yaml"
    text = (recipe_path.read_text().replace("~/.cache/edgeslim/teachers/ssl-fsdd", str(folder))
            .replace("epochs: 30", "epochs: 2").replace("epochs: 15", "epochs: 1")
            .replace("min_runs: 200", "min_runs: 50"))
    run = run_recipe_cli(tmp_path_factory, "audio-real", text)
    results = _results(run)
    assert set(results) == {"ort-int8", "ov-int8", "litert-int8", "u55-int8", "npu-int8", "trt-fp16"}
    u55 = results["u55-int8"]
    assert u55["device_estimate"]["cpu_operators"] == 0 and u55["device_estimate"]["fits_sram"]
    for name, r in results.items():
        assert r["accuracy"]["teacher_cosine_mean"] > 0.75, name
    assert results["ort-int8"]["speedup_vs_baseline"] > 1.0


@needs_fsdd
@pytest.mark.parametrize("options", [("--method", "byol"), ("--positives", "self"),
                                     ("--positives", "neighbours", "--neighbours", "3", "--refresh-every", "1")],
                         ids=["byol", "self-positives", "refreshed-neighbours"])
def test_the_audio_teacher_script_resumes_every_method_exactly(tmp_path, options):
    """Every method's extra state is checkpointed (BYOL: its target network and predictor;
    refreshed neighbours: the ones found with earlier weights): stopped after step 5 of 8 (past
    the refresh at epoch 1) and resumed, each writes the weights of an unbroken run."""
    from safetensors.numpy import load_file

    assert _teacher_script("--out", str(tmp_path / "a"), *options).returncode == 0
    assert _teacher_script("--out", str(tmp_path / "b"), *options, "--stop-after", "5").returncode == 3
    resumed = _teacher_script("--out", str(tmp_path / "b"), *options)
    assert resumed.returncode == 0 and "resuming from step 5/8" in resumed.stderr
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_drift_flags_white_noise_not_spoken_digits(audio_run):
    scores = drift_scores(audio_run, "ort-int8", ["white noise alone"])
    print({name: s.score for name, s in scores.items()})
    assert not scores["in-domain"].drifted and scores["white noise alone"].drifted
