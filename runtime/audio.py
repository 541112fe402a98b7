"""Audio: clips to log-mel features as the bundle's manifest states, in numpy (the same code on
the host and the device; no torch, no librosa).

    features = log_mel(clips, frontend)        # (n, 1, n_mels, frames) float32 (or NHWC)

Order, as a keyword-spotting front end on a microcontroller does it (and `export-firmware`
writes in C): 16-bit PCM mono at the bundle's rate -> samples / 32768 -> the clip centred in a
fixed window (zero-padded, or its middle kept) -> frames of `n_fft` samples every `hop_length`
(no centre padding) x a periodic window -> |rFFT|^power -> mel filterbank (Slaney or HTK scale,
Slaney area normalisation, as librosa.filters.mel) -> log(max(mel, log_floor)) -> (x - mean) / std.
`tests/test_audio.py` checks it against librosa to 1e-4.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgeslim.errors import InputError
from edgeslim.runtime.modality import RuntimeModality


class AudioFrontend(BaseModel):
    """The manifest's `preprocessing` for an audio bundle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: Annotated[int, Field(ge=1000, le=192000)] = 8000
    clip_samples: Annotated[int, Field(ge=16, le=1_920_000)] = 8000  # the fixed window each clip is centred in
    max_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0  # longer clips are refused, not cut
    n_fft: Annotated[int, Field(ge=16, le=8192)] = 256
    hop_length: Annotated[int, Field(ge=1, le=8192)] = 128
    window: Literal["hann", "hamming"] = "hann"
    n_mels: Annotated[int, Field(ge=1, le=512)] = 40
    fmin: Annotated[float, Field(ge=0)] = 20.0
    fmax: Annotated[float, Field(gt=0)] | None = None  # None: sample_rate / 2
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney"] | None = "slaney"
    power: Literal[1, 2] = 2
    log_floor: Annotated[float, Field(gt=0)] = 1e-6
    mean: float = 0.0  # feature normalisation, measured on the teacher's training clips
    std: Annotated[float, Field(gt=0)] = 1.0
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @model_validator(mode="after")
    def _consistent(self):
        if self.clip_samples < self.n_fft:
            raise ValueError(f"clip_samples {self.clip_samples} is shorter than one frame (n_fft {self.n_fft})")
        if self.top_hz <= self.fmin or self.top_hz > self.sample_rate / 2:
            raise ValueError(f"mel band {self.fmin}-{self.top_hz} Hz must lie inside 0-{self.sample_rate / 2} Hz")
        return self

    @property
    def top_hz(self) -> float:
        return self.fmax if self.fmax is not None else self.sample_rate / 2

    @property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.n_fft) // self.hop_length

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """One clip's model input, without the batch axis."""
        return (1, self.n_mels, self.frames) if self.layout == "NCHW" else (self.n_mels, self.frames, 1)


def window(frontend: AudioFrontend) -> np.ndarray:
    """The periodic window (scipy.signal.get_window(..., fftbins=True), as librosa uses)."""
    n = np.arange(frontend.n_fft)
    a0 = 0.5 if frontend.window == "hann" else 0.54
    return a0 - (1 - a0) * np.cos(2 * np.pi * n / frontend.n_fft)


def _hz_to_mel(hz, htk: bool):
    hz = np.asanyarray(hz, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mels, htk: bool):
    mels = np.asanyarray(mels, np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(frontend: AudioFrontend) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, as librosa.filters.mel builds them."""
    return _mel_filterbank(frontend.sample_rate, frontend.n_fft, frontend.n_mels, frontend.fmin, frontend.top_hz,
                           frontend.mel_scale == "htk", frontend.mel_norm).copy()


@lru_cache(maxsize=16)
def _mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_hz)
    weights = np.zeros((n_mels, len(fft_hz)))
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    if norm == "slaney":
        weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return weights


def fit(signal: np.ndarray, samples: int) -> np.ndarray:
    """The clip centred in `samples`: zero-padded equally on both sides, or its middle kept."""
    n = len(signal)
    if n >= samples:
        start = (n - samples) // 2
        return signal[start : start + samples]
    out = np.zeros(samples, signal.dtype)
    left = (samples - n) // 2
    out[left : left + n] = signal
    return out


def power_mel(signals: np.ndarray, frontend: AudioFrontend) -> np.ndarray:
    """(n, n_mels, frames) mel power spectrogram of (n, clip_samples) float64 signals."""
    starts = np.arange(frontend.frames) * frontend.hop_length
    frames = signals[:, starts[:, None] + np.arange(frontend.n_fft)[None, :]]  # (n, frames, n_fft)
    spectrum = np.abs(np.fft.rfft(frames * window(frontend), axis=-1)) ** frontend.power
    return np.einsum("mf,ntf->nmt", mel_filterbank(frontend), spectrum)


def log_mel(signals, frontend: AudioFrontend) -> np.ndarray:
    """Model input (n, 1, n_mels, frames) float32, or NHWC, from clips already at the bundle's rate
    (each a 1-D float array in [-1, 1]; fitted to `clip_samples` here)."""
    fitted = np.stack([fit(np.asarray(s, np.float64), frontend.clip_samples) for s in signals])
    features = np.log(np.maximum(power_mel(fitted, frontend), frontend.log_floor))
    features = ((features - frontend.mean) / frontend.std).astype(np.float32)
    return features[:, None] if frontend.layout == "NCHW" else features[..., None]


def read_wav(path, frontend: AudioFrontend, index: int = 0) -> np.ndarray:
    """A 16-bit PCM mono WAV file as float64 samples in [-1, 1); InputError names the clip."""
    where = f"clip {index} ({path})"
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate, count = (handle.getnchannels(), handle.getsampwidth(), handle.getframerate(),
                                            handle.getnframes())
            if channels != 1:
                raise InputError(f"{where} has {channels} channels; the bundle takes mono audio (mix it down first)")
            if width != 2:
                raise InputError(f"{where} has {8 * width}-bit samples; the bundle reads 16-bit PCM WAV")
            if rate != frontend.sample_rate:
                raise InputError(f"{where} is sampled at {rate} Hz; the bundle takes {frontend.sample_rate} Hz audio "
                                 "(resample it first)")
            if count > frontend.max_seconds * rate:
                raise InputError(f"{where} lasts {count / rate:.1f} s; the bundle takes clips of at most "
                                 f"{frontend.max_seconds:g} s")
            data = handle.readframes(count)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except InputError:
        raise
    except (wave.Error, EOFError, OSError) as exc:
        raise InputError(f"{where} is not a readable WAV file: {exc}") from None
    samples = np.frombuffer(data[: len(data) // 2 * 2], "<i2")
    if samples.size == 0:
        raise InputError(f"{where} holds no samples")
    return samples.astype(np.float64) / 32768.0


def to_samples(item, frontend: AudioFrontend, index: int = 0) -> np.ndarray:
    """One clip (a WAV path, or a 1-D float array in [-1, 1] / int16 array at the bundle's rate)
    as float64 samples; InputError says what is wrong with it."""
    if isinstance(item, (str, Path)):
        return read_wav(item, frontend, index)
    if not isinstance(item, np.ndarray):
        raise InputError(f"clip {index}: expected a WAV file path or a 1-D numpy array of samples, got "
                         f"{type(item).__name__}")
    if item.ndim != 1:
        raise InputError(f"clip {index}: samples must be a 1-D mono array, got shape {item.shape} (mix channels "
                         "down first)")
    if item.size == 0:
        raise InputError(f"clip {index} holds no samples")
    if item.size > frontend.max_seconds * frontend.sample_rate:
        raise InputError(f"clip {index} lasts {item.size / frontend.sample_rate:.1f} s at {frontend.sample_rate} Hz; "
                         f"the bundle takes clips of at most {frontend.max_seconds:g} s")
    if item.dtype == np.int16:
        return item.astype(np.float64) / 32768.0
    if item.dtype not in (np.float32, np.float64):
        raise InputError(f"clip {index}: samples must be float32/float64 in [-1, 1] or int16, got dtype {item.dtype}")
    if not np.isfinite(item).all():
        raise InputError(f"clip {index} holds NaN or infinity")
    if np.abs(item).max() > 1.0:
        raise InputError(f"clip {index}: float samples must lie in [-1, 1], found {float(np.abs(item).max()):.3g} "
                         "(int16 values? divide by 32768)")
    return item.astype(np.float64)


class AudioModality(RuntimeModality):
    """Audio clips (WAV files or sample arrays) to the manifest's log-mel features."""

    name = "audio"
    entry = "encode_audio"
    argument = "clips"
    noun = "clips"
    item_suffixes = (".wav",)
    preprocessing_model = AudioFrontend

    def model_inputs(self, frontend, items, input_names, pad_to=None):
        return {input_names[0]: log_mel([to_samples(c, frontend, i) for i, c in enumerate(items)], frontend)}, None

    def operating_point(self, seq_len):
        return "one clip per row"

    def sample_item(self, frontend):
        """A 0.5 s rising tone at the bundle's rate, at a quarter of full scale."""
        t = np.arange(frontend.sample_rate // 2) / frontend.sample_rate
        return (0.25 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32)


AUDIO = AudioModality()
