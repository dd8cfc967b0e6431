"""Log-mel features with DALI, configured from the same :class:`~workers.audio.LogMelConfig`
as the torchaudio front end, so either backend feeds the model the same numbers.

    feats = DALILogMel(LogMelConfig())([wave_a, wave_b])   # float32 (C, n_mels, n_frames) each

The graph is ``fn.spectrogram -> fn.mel_filter_bank -> fn.to_decibels`` (the mapping of
every parameter is tabulated in :mod:`workers.audio`). A DALI spectrogram takes one channel
per sample, so a (C, S) waveform becomes C samples of the batch and is stacked back after
the run. ``top_db`` is applied after the run because torchaudio floors at the maximum over
all channels of a waveform, which no per-sample DALI reduction sees.

Example: two stereo 1 s windows at 16 kHz -> one run of 4 samples -> two (2, 64, 101) arrays.

Agreement with ``workers.audio.log_mel`` (float32 on both sides) is checked in
``tests/test_audio_dali.py`` to :data:`LOG_MEL_ATOL_DB`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import Decoded, SamplePlan
from workers.audio import AudioStage, LogMelConfig
from workers.dali_stage import BatchFirst
from workers.decode import VideoReader, open_video
from workers.errors import CorruptMediaError

Device = Literal["cpu", "gpu"]

# Largest |DALI - torchaudio| in dB over every bin within 80 dB of the array's maximum
# (all bins under the default top_db=80), measured on the CPU on tones, chirps, stereo
# noise, near-silent and silent synthetic windows and on real speech/music windows of the
# shared media, for slaney and htk scales, power 1 and 2, n_fft 400 and 512: 0.0018 dB.
# Deeper bins (only without top_db) are float32 FFT round-off on both sides and may differ
# by many dB. A misconfigured parameter (window, scale, normalisation, reference) moves
# bins by far more than this bound.
LOG_MEL_ATOL_DB = 0.01


def build_log_mel_pipeline(
    cfg: LogMelConfig, device: Device, *, batch_size: int, num_threads: int, device_id: int = 0
) -> Any:
    """A DALI pipeline: ``audio`` (float32 1-D per sample) -> dB mel (n_mels, n_frames).

    Args:
        cfg: the front end, as for torchaudio.
        device: where the spectrogram runs.
        batch_size: the most channels one run takes.
        num_threads: DALI CPU threads.
        device_id: CUDA device for ``"gpu"``.
    Returns:
        a built ``nvidia.dali.Pipeline``.
    """
    from nvidia.dali import fn, pipeline_def, types

    if cfg.win_length != cfg.n_fft:
        raise ValueError(
            f"win_length ({cfg.win_length}) must equal n_fft ({cfg.n_fft}) for DALI: "
            "torchaudio centres a shorter window inside n_fft, DALI does not"
        )
    multiplier = 10.0 if cfg.power == 2.0 else 20.0

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id if device == "gpu" else None,  # type: ignore[arg-type]
                  prefetch_queue_depth=1)
    def graph() -> Any:
        audio = fn.external_source(name="audio", dtype=types.DALIDataType.FLOAT, ndim=1)
        if device == "gpu":
            audio = audio.gpu()
        spec = fn.spectrogram(
            audio, nfft=cfg.n_fft, window_length=cfg.win_length, window_step=cfg.hop_length,
            window_fn=cfg.window().tolist(), power=int(cfg.power), center_windows=True,
            reflect_padding=True, layout="ft",
        )
        mel = fn.mel_filter_bank(
            spec, sample_rate=float(cfg.sample_rate), nfilter=cfg.n_mels,
            freq_low=float(cfg.f_min), freq_high=float(cfg.f_max or cfg.sample_rate / 2),
            mel_formula=cfg.mel_scale, normalize=cfg.mel_scale == "slaney",
        )
        # reference=1.0 and an absolute cutoff: torchaudio's dB is 10*log10(max(x, amin)).
        return fn.to_decibels(mel, multiplier=multiplier, reference=1.0,
                              cutoff_db=multiplier * math.log10(cfg.amin))

    pipe = graph()
    pipe.build()
    return pipe


class DALILogMel:
    """Log-mel of many waveforms in one DALI run per ``batch_size`` channels.

    Args:
        cfg: the front end (the torchaudio one's config); None: its defaults.
        device: ``"cpu"`` or ``"gpu"``.
        batch_size: channels per DALI run.
        num_threads: DALI CPU threads.
        device_id: CUDA device for ``"gpu"``.
    """

    def __init__(self, cfg: LogMelConfig | None = None, device: Device = "cpu", *,
                 batch_size: int = 32, num_threads: int = 2, device_id: int = 0) -> None:
        cfg = cfg or LogMelConfig()
        self.cfg = cfg
        self.device: Device = device
        self.batch_size = batch_size
        self._pipe = build_log_mel_pipeline(cfg, device, batch_size=batch_size,
                                            num_threads=num_threads, device_id=device_id)

    def __call__(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of each waveform.

        Args:
            waveforms: float32 (C, S) each, at ``cfg.sample_rate``; S > ``n_fft // 2``.
        Returns:
            float32 (C, n_mels, 1 + S // hop_length) in dB, one per waveform.
        Raises:
            ValueError: a waveform that is not 2-D or too short for reflect padding.
        """
        channels = [c for w in waveforms for c in self._channels(w)]
        mels: list[np.ndarray] = []
        for i in range(0, len(channels), self.batch_size):
            mels += self._run(channels[i:i + self.batch_size])
        out, pos = [], 0
        for w in waveforms:
            out.append(self._floor(np.stack(mels[pos:pos + len(w)])))
            pos += len(w)
        return out

    def _channels(self, waveform: np.ndarray) -> list[np.ndarray]:
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (C, S); got shape {waveform.shape}")
        if waveform.shape[1] <= self.cfg.n_fft // 2:
            raise ValueError(f"waveform of {waveform.shape[1]} samples is too short: reflect "
                             f"padding needs > {self.cfg.n_fft // 2}")
        return [np.ascontiguousarray(c, dtype=np.float32) for c in waveform]

    def _run(self, channels: list[np.ndarray]) -> list[np.ndarray]:
        self._pipe.feed_input("audio", channels)
        (out,) = self._pipe.run()
        host = out.as_cpu() if self.device == "gpu" else out
        return [np.array(host[i]) for i in range(len(host))]

    def _floor(self, db: np.ndarray) -> np.ndarray:
        """torchaudio's ``top_db``: nothing below (max over the whole (C, F, T) array) - top_db."""
        if self.cfg.top_db is None or db.size == 0:
            return db
        return np.maximum(db, db.max() - np.float32(self.cfg.top_db))


class DALIAudioStage(BatchFirst, AudioStage):
    """The ``audio`` operator with DALI features: PyAV decodes and resamples each window
    (as in :class:`~workers.audio.AudioStage`), then one DALI run computes the log-mel of
    every window of the Ray Data batch."""

    name = "audio"

    def __init__(self, data: DataConfig, stage: StageConfig, cfg: LogMelConfig | None = None
                 ) -> None:
        super().__init__(data, stage, cfg)
        self.log_mel = DALILogMel(self.cfg, stage.device, num_threads=max(1, int(stage.num_cpus)))

    def fill_batch(
        self, plans: list[tuple[SamplePlan, ...]], decoded: list[list[Decoded]], errors: list[str]
    ) -> list[CorruptMediaError | None]:
        out: list[CorruptMediaError | None] = [None] * len(plans)
        waves: list[np.ndarray] = []
        owners: list[Decoded] = []
        for i, (row, err) in enumerate(zip(plans, errors)):
            if err:
                continue
            try:
                row_waves = self._row_waves(row)
            except CorruptMediaError as e:
                out[i] = e
                continue
            for d, plan in zip(decoded[i], row):
                d.audio = []
                owners += [d] * len(plan.audio)
            waves += row_waves
        for d, feats in zip(owners, self.log_mel(waves)):
            d.audio.append(feats)
        return out

    def _row_waves(self, plans: tuple[SamplePlan, ...]) -> list[np.ndarray]:
        """Mono waveforms of every AudioRead of a row, one open reader per video."""
        readers: dict[str, VideoReader] = {}
        try:
            waves = []
            for plan in plans:
                for read in plan.audio:
                    if read.uri not in readers:
                        readers[read.uri] = open_video(
                            read.uri, backend="pyav", meta=self.metas.get(read.video_id),
                            max_pixels=self.data.max_pixels)
                    waves.append(readers[read.uri].audio(
                        read.start_s, read.end_s, sample_rate=self.cfg.sample_rate, mono=True))
            return waves
        finally:
            for reader in readers.values():
                reader.close()
