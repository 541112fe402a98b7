"""Audio: clips to log-mel features (the manifest's front end, `edgeslim.runtime.audio`). Task
metrics are the generic kNN / linear probes (spoken digits, and speakers as a second label set);
distillation shifts each batch in time and changes its gain, the teacher embedding the same
augmented batch. The firmware header carries the front end in C."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeslim.modalities.base import Modality
from edgeslim.modalities.image import embedding_lines, tensor_batches
from edgeslim.runtime.audio import AUDIO, mel_filterbank, window


def shift_and_gain(x, generator, max_frames: int = 6, max_gain_db: float = 6.0):
    """Per clip: a time shift of up to `max_frames` frames (the frames shifted in are the clip's
    quietest value) and a gain of up to +-`max_gain_db` dB (an offset in the log-mel domain, in
    the features' normalised units: 1 unit = 1 std). x: (batch, 1, mels, frames)."""
    import torch

    b, _, _, t = x.shape
    shifts = torch.randint(-max_frames, max_frames + 1, (b,), generator=generator)
    gains = (torch.rand(b, generator=generator) * 2 - 1) * max_gain_db
    floor = x.amin(dim=(1, 2, 3), keepdim=True)
    out = floor.expand_as(x).clone()
    for i in range(b):
        s = int(shifts[i])
        if s >= 0:
            out[i, ..., s:] = x[i, ..., : t - s]
        else:
            out[i, ..., : t + s] = x[i, ..., -s:]
    # power gain g dB multiplies the mel power by 10^(g/10): log(power) moves by g*ln(10)/10.
    return out + (gains * math.log(10) / 10).view(-1, 1, 1, 1)


def _c_float(value) -> str:
    text = f"{float(value):.9g}"
    return (text if "." in text or "e" in text or "n" in text else text + ".0") + "f"


def _c_floats(values, per_line: int = 8) -> str:
    values = [_c_float(v) for v in np.ravel(values)]
    return ",\n".join("    " + ", ".join(values[i : i + per_line]) for i in range(0, len(values), per_line))


class AudioModalityKit(Modality):
    name = "audio"
    runtime = AUDIO
    default_label = "digit"

    def drift_shifts(self, in_domain, seed=0):
        import wave

        rng = np.random.default_rng(seed)
        clips = []
        for path in in_domain:
            with wave.open(str(path), "rb") as handle:
                clips.append(np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768)

        def with_noise(clip, snr_db):
            power = max(float(np.mean(clip ** 2)), 1e-10)
            return np.clip(clip + rng.normal(0, math.sqrt(power / 10 ** (snr_db / 10)), clip.shape), -1, 1).astype(
                np.float32)

        return {"the same clips, white noise at 10 dB SNR": [with_noise(c, 10) for c in clips],
                "the same clips, white noise at 0 dB SNR": [with_noise(c, 0) for c in clips],
                "the same clips, time-reversed": [c[::-1].copy() for c in clips],
                "the same clips at 1.5x speed": [np.interp(np.arange(0, len(c) - 1, 1.5), np.arange(len(c)), c).astype(
                    np.float32) for c in clips],
                "white noise alone": [rng.normal(0, 0.1, len(c)).clip(-1, 1).astype(np.float32) for c in clips]}

    def verify_items(self, count: int, scratch: Path):
        """FSDD test clips, or synthetic tones where the shared data is absent."""
        from edgeslim.calibration_data import corpus_available, load_corpus

        if corpus_available("fsdd-test"):
            return list(load_corpus("fsdd-test").texts[:count]), "held-out FSDD test clips"
        import wave

        paths = []
        for i in range(count):
            t = np.arange(6000) / 8000.0
            tone = (0.3 * np.sin(2 * np.pi * (200 + 80 * i) * t) * 32767).astype("<i2")
            paths.append(str(scratch / f"tone{i}.wav"))
            with wave.open(paths[-1], "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(8000)
                handle.writeframes(tone.tobytes())
        return paths, "synthetic tones (no FSDD here)"

    def distillation_batches(self, teacher, student, items, cfg, log):
        return tensor_batches(teacher, student, items, cfg, log, shift_and_gain)

    def card_usage(self, manifest):
        return "vectors = encoder.encode_audio(['clip.wav'])  # 16-bit PCM mono WAV paths or 1-D sample arrays"

    def card_input(self, manifest):
        f = manifest.get("preprocessing") or {}
        return (f"Input: mono audio at {f.get('sample_rate')} Hz (16-bit PCM WAV or float samples), each clip centred "
                f"in a {f.get('clip_samples')}-sample window, then {f.get('n_mels')} log-mel bands "
                f"({f.get('n_fft')}-point FFT every {f.get('hop_length')} samples), as the manifest's preprocessing says.")

    def card_limits(self, manifest):
        return ("The teacher's audio domain only (its training clips, rate and window; see the teacher's "
                "datasheet): clips longer than the window are cut to its middle.")

    def firmware_lines(self, manifest, symbol, inputs, outputs):
        """The front end for the application CPU: constants, the window and mel filterbank as C
        arrays, and a reference implementation (a plain DFT: swap in CMSIS-DSP's
        arm_rfft_fast_f32 on a Cortex-M) that turns 16-bit PCM into the model's int8 input."""
        f = manifest.frontend
        s = symbol.upper()
        bins = f.n_fft // 2 + 1
        quantized = bool(inputs) and inputs[0]["scale"] != 0.0 and inputs[0]["dtype"] == "int8"
        bank = mel_filterbank(f)
        first = [int(np.flatnonzero(row)[0]) if row.any() else 0 for row in bank]
        last = [int(np.flatnonzero(row)[-1]) + 1 if row.any() else 0 for row in bank]
        out_index = "m * FRAMES + t"  # NCHW (1, mels, frames) and NHWC (mels, frames, 1) alike
        lines = [
            "/* Audio front end, on the application CPU (the manifest's preprocessing, exactly):",
            f"   1. 16-bit PCM mono at {f.sample_rate} Hz; x = sample / 32768;",
            f"   2. the clip centred in {f.clip_samples} samples (zero-padded on both sides, or its middle kept);",
            f"   3. frames of {f.n_fft} samples every {f.hop_length} ({f.frames} frames, no centre padding) times",
            f"      the periodic {f.window} window; power spectrum |rFFT|^{f.power} ({bins} bins);",
            f"   4. {f.n_mels} mel bands ({f.mel_scale} scale, {f.mel_norm or 'no'} normalisation, "
            f"{f.fmin:g}-{f.top_hz:g} Hz): the filterbank below;",
            f"   5. log(max(mel, LOG_FLOOR)), then (v - FEATURE_MEAN) / FEATURE_STD;",
            "   6. " + ("quantize: q = clamp(round(v / INPUT0_SCALE) + INPUT0_ZERO_POINT, -128, 127) as int8,"
                       if quantized else "feed v as float32,")
            + f" laid out as [mel][frame] ({f.layout}, one channel).",
            f"   {symbol}_features() below does all of it (a plain DFT; use CMSIS-DSP's rFFT in production). */",
            "#include <math.h>",
            "#include <stdint.h>",
            f"#define {s}_SAMPLE_RATE {f.sample_rate}u",
            f"#define {s}_CLIP_SAMPLES {f.clip_samples}u",
            f"#define {s}_N_FFT {f.n_fft}u",
            f"#define {s}_HOP {f.hop_length}u",
            f"#define {s}_FRAMES {f.frames}u",
            f"#define {s}_N_MELS {f.n_mels}u",
            f"#define {s}_FFT_BINS {bins}u",
            f"#define {s}_POWER {int(f.power)}",
            f"#define {s}_LOG_FLOOR {_c_float(f.log_floor)}",
            f"#define {s}_FEATURE_MEAN {_c_float(f.mean)}",
            f"#define {s}_FEATURE_STD {_c_float(f.std)}",
            f"#define {s}_FEATURES ({s}_N_MELS * {s}_FRAMES)",
            f"static const float {symbol}_window[{f.n_fft}] = {{", _c_floats(window(f)), "};",
            f"/* Mel filterbank, row m holds bins [{symbol}_mel_first[m], {symbol}_mel_last[m]) of that band. */",
            f"static const uint16_t {symbol}_mel_first[{f.n_mels}] = {{{', '.join(map(str, first))}}};",
            f"static const uint16_t {symbol}_mel_last[{f.n_mels}] = {{{', '.join(map(str, last))}}};",
            f"static const float {symbol}_mel_filterbank[{f.n_mels}][{bins}] = {{",
            ",\n".join("  {\n" + _c_floats(row) + "\n  }" for row in bank), "};",
            f"/* 16-bit PCM (n samples) -> the model's input, {f.n_mels} x {f.frames} values in [mel][frame] order. */",
            f"static inline void {symbol}_features(const int16_t *pcm, unsigned long n, "
            + ("int8_t *out" if quantized else "float *out") + ") {",
            f"    enum {{ CLIP = {f.clip_samples}, NFFT = {f.n_fft}, HOP = {f.hop_length}, FRAMES = {f.frames}, "
            f"MELS = {f.n_mels}, BINS = {bins} }};",
            "    static float clip[CLIP];",
            "    float spectrum[BINS];",
            "    unsigned long i, start = n > CLIP ? (n - CLIP) / 2 : 0, left = n < CLIP ? (CLIP - n) / 2 : 0;",
            "    for (i = 0; i < CLIP; i++) clip[i] = 0.0f;",
            "    for (i = 0; i < CLIP && i < n; i++) clip[left + i] = (float)pcm[start + i] / 32768.0f;",
            "    for (unsigned t = 0; t < FRAMES; t++) {",
            "        const float *frame = clip + t * HOP;",
            "        for (unsigned k = 0; k < BINS; k++) {",
            "            double re = 0.0, im = 0.0;",
            "            for (unsigned j = 0; j < NFFT; j++) {",
            f"                double x = (double)frame[j] * {symbol}_window[j];",
            "                double angle = -2.0 * 3.14159265358979323846 * (double)k * (double)j / NFFT;",
            "                re += x * cos(angle);",
            "                im += x * sin(angle);",
            "            }",
            "            spectrum[k] = (float)(" + ("re * re + im * im" if f.power == 2 else "sqrt(re * re + im * im)")
            + ");",
            "        }",
            "        for (unsigned m = 0; m < MELS; m++) {",
            "            float mel = 0.0f;",
            f"            for (unsigned k = {symbol}_mel_first[m]; k < {symbol}_mel_last[m]; k++) "
            f"mel += {symbol}_mel_filterbank[m][k] * spectrum[k];",
            f"            float v = (logf(mel > {s}_LOG_FLOOR ? mel : {s}_LOG_FLOOR) - {s}_FEATURE_MEAN) / {s}_FEATURE_STD;",
            (f"            long q = lroundf(v / {s}_INPUT0_SCALE) + {s}_INPUT0_ZERO_POINT;\n"
             f"            out[{out_index}] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));"
             if quantized else f"            out[{out_index}] = v;"),
            "        }",
            "    }",
            "}",
            *embedding_lines(manifest, s),
        ]
        return lines


AUDIO_KIT = AudioModalityKit()
