"""Log-mel features with torchaudio, and the audio decode stage.

``log_mel`` is ``MelSpectrogram`` (power STFT with a periodic Hann window, reflect-padded
centred frames, a mel filter bank) followed by ``AmplitudeToDB``. The defaults are the
audio-visual pretraining front end (16 kHz, 25 ms windows, 10 ms hop, 64 mel bands).

Configuring DALI identically (``workers/audio_dali.py`` does it from the same LogMelConfig):

=======================================  ==============================================
torchaudio (this module)                 DALI
=======================================  ==============================================
``n_fft``, ``win_length``, ``hop_length``  ``fn.spectrogram(nfft=, window_length=, window_step=)``
periodic Hann (``torch.hann_window``)    ``window_fn=cfg.window().tolist()``
``center=True``, ``pad_mode="reflect"``  ``center_windows=True, reflect_padding=True``
``power=2.0``                            ``power=2``
``mel_scale="slaney"``, ``norm="slaney"``  ``fn.mel_filter_bank(mel_formula="slaney", normalize=True)``
``AmplitudeToDB(stype="power")``         ``fn.to_decibels(multiplier=10, reference=1.0,``
                                           ``cutoff_db=10*log10(amin))``
``top_db`` (floor at max - top_db)       ``max(db, reductions.max(db) - top_db)``
=======================================  ==============================================

Slaney's mel scale with area-normalised filters is DALI's default and librosa's, so both
sides use their defaults there; ``mel_scale="htk"`` with ``norm=None`` maps to DALI's
``mel_formula="htk", normalize=False`` the same way. DALI's dB conversion has no relative
floor, so ``top_db`` is one max reduction and one ``max`` after it. ``win_length`` must
equal ``n_fft`` for that mapping (torchaudio centres a shorter window inside ``n_fft``).

Silent input is data: every value is ``10 * log10(amin)`` = -100 dB (the floor), no NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torchaudio

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import AudioRead, Decoded, SamplePlan
from workers.decode import VideoReader, open_video
from workers.stage import Stage

MelScale = Literal["slaney", "htk"]


@dataclass(frozen=True, kw_only=True)
class LogMelConfig:
    """Log-mel front end; one config drives torchaudio here and DALI in ``audio_dali``.

    Attributes:
        sample_rate: rate of the input waveform (Hz).
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins.
        win_length: window length in samples (== n_fft for the DALI twin).
        hop_length: hop in samples; ``n_frames = 1 + S // hop_length`` (centred frames).
        n_mels: mel bands.
        f_min: lowest filter edge (Hz).
        f_max: highest filter edge (Hz); None: ``sample_rate / 2``.
        power: 2.0 power spectrum (1.0 magnitude).
        top_db: floor at (max - top_db) dB over the whole (C, n_mels, n_frames) array;
            None: no relative floor.
        amin: absolute floor of the power before the log (dB floor ``10 * log10(amin)``).
        mel_scale: ``"slaney"`` (with area-normalised filters) or ``"htk"`` (peak 1).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 2.0
    top_db: float | None = 80.0
    amin: float = 1e-10
    mel_scale: MelScale = "slaney"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 1")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ValueError(f"need 0 <= f_min ({self.f_min}) < f_max ({f_max}) <= {nyquist}")
        if self.power not in (1.0, 2.0):
            raise ValueError(f"power ({self.power}) must be 1.0 or 2.0")
        if self.top_db is not None and self.top_db <= 0:
            raise ValueError(f"top_db ({self.top_db}) must be > 0 or None")
        if self.amin <= 0:
            raise ValueError(f"amin ({self.amin}) must be > 0")
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale ({self.mel_scale!r}) must be 'slaney' or 'htk'")

    @property
    def norm(self) -> str | None:
        """torchaudio's filter normalisation that goes with ``mel_scale``."""
        return "slaney" if self.mel_scale == "slaney" else None

    def n_frames(self, num_samples: int) -> int:
        """Frames of a waveform of ``num_samples``. Example: 1 s at 16 kHz, hop 160 -> 101."""
        return 1 + num_samples // self.hop_length

    def window(self) -> np.ndarray:
        """The analysis window (periodic Hann, float32), to pass to DALI as ``window_fn``."""
        return torch.hann_window(self.win_length, periodic=True).numpy()

    def db_floor(self) -> float:
        """The absolute dB floor, ``10 * log10(amin)`` (DALI's ``cutoff_db``)."""
        return 10.0 * math.log10(self.amin)


@lru_cache(maxsize=8)
def _transforms(cfg: LogMelConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_mels=cfg.n_mels,
        power=cfg.power,
        center=True,
        pad_mode="reflect",
        norm=cfg.norm,
        mel_scale=cfg.mel_scale,
    )
    stype = "power" if cfg.power == 2.0 else "magnitude"
    to_db = torchaudio.transforms.AmplitudeToDB(stype=stype, top_db=cfg.top_db)
    to_db.amin = cfg.amin
    return mel, to_db


def log_mel(waveform: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Log-mel spectrogram of a waveform.

    Args:
        waveform: float32 (C, S) at ``cfg.sample_rate``.
        cfg: the front end.
    Returns:
        float32 (C, n_mels, n_frames) in dB, ``n_frames = cfg.n_frames(S)``.
    Raises:
        ValueError: not a 2-D waveform, or too short for reflect padding
            (S must exceed ``n_fft // 2``).
    """
    if waveform.ndim != 2:
        raise ValueError(f"waveform must be (C, S); got shape {waveform.shape}")
    if waveform.shape[1] <= cfg.n_fft // 2:
        raise ValueError(
            f"waveform of {waveform.shape[1]} samples is too short: reflect padding needs > {cfg.n_fft // 2}"
        )
    mel, to_db = _transforms(cfg)
    with torch.no_grad():
        spec = mel(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)))
        return to_db(spec).numpy().astype(np.float32, copy=False)


class AudioStage(Stage):
    """Fills ``Decoded.audio``: each AudioRead decoded with PyAV at the run's rate, mono,
    turned into log-mel features (float32 (1, n_mels, n_frames)).

    All windows of one video in a row share one open reader (one container, one decode).
    Example: plans with windows [1.0, 2.0) and [1.5, 2.5) of a.mp4 -> one reader, the
    second window served from the samples the first decoded.
    """

    name = "audio"

    def __init__(self, data: DataConfig, stage: StageConfig, cfg: LogMelConfig | None = None) -> None:
        super().__init__(data, stage)
        self.cfg = cfg or LogMelConfig(sample_rate=data.audio_sample_rate)
        if self.cfg.sample_rate != data.audio_sample_rate:
            raise ValueError(
                f"LogMelConfig.sample_rate ({self.cfg.sample_rate}) must equal the run's "
                f"audio_sample_rate ({data.audio_sample_rate})"
            )

    def fill(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        readers: dict[str, VideoReader] = {}
        try:
            for plan, d in zip(plans, decoded):
                d.audio = [self._features(readers, read) for read in plan.audio]
        finally:
            for reader in readers.values():
                reader.close()

    def fill_zeros(self, plans: tuple[SamplePlan, ...], decoded: list[Decoded]) -> None:
        rate = self.cfg.sample_rate
        for plan, d in zip(plans, decoded):
            d.audio = [
                np.zeros((1, self.cfg.n_mels, self.cfg.n_frames(_samples(r.start_s, r.end_s, rate))), np.float32)
                for r in plan.audio
            ]

    def _features(self, readers: dict[str, VideoReader], read: AudioRead) -> np.ndarray:
        reader = readers.get(read.uri)
        if reader is None:
            meta = self.metas.get(read.video_id)  # the row's manifest rows: no probing
            reader = open_video(read.uri, backend="pyav", meta=meta, max_pixels=self.data.max_pixels)
            readers[read.uri] = reader
        wave = reader.audio(read.start_s, read.end_s, sample_rate=self.cfg.sample_rate, mono=True)
        return log_mel(wave, self.cfg)


def _samples(start_s: float, end_s: float, rate: int) -> int:
    """Samples of the window [start_s, end_s) at ``rate`` (as the decoder cuts it)."""
    return round(end_s * rate) - round(start_s * rate)
