"""DALI log-mel against torchaudio's, configured from one LogMelConfig.

Tolerance (measured on the CPU): every bin within 80 dB of the array's maximum agrees to
0.0018 dB; the test bounds it with ``LOG_MEL_ATOL_DB`` = 0.01 dB.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import AudioRead, SamplePlan
from tests.conftest import media
from workers.audio import AudioStage, LogMelConfig, log_mel
from workers.audio_dali import LOG_MEL_ATOL_DB, DALIAudioStage, DALILogMel
from workers.decode import open_video
from workers.probe import probe
from workers.stage import encode_row

SR = 16000
CONFIGS = {
    "default": LogMelConfig(),
    "htk": LogMelConfig(mel_scale="htk", n_mels=40, f_min=60.0, f_max=7600.0),
    "magnitude": LogMelConfig(power=1.0, top_db=None),
    "fft512": LogMelConfig(n_fft=512, win_length=512, hop_length=256, top_db=60.0),
}


def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    return {
        "tone": 0.5 * np.sin(2 * np.pi * 440 * t)[None],
        "chirp": 0.3 * np.sin(2 * np.pi * (100 + 3000 * t) * t)[None],
        "stereo_noise": 0.1 * rng.standard_normal((2, SR)),
        "near_silent": 1e-4 * rng.standard_normal((1, 12345)),
        "silent": np.zeros((1, SR)),
    }


def assert_agree(ref: np.ndarray, got: np.ndarray) -> None:
    """Equal shapes; bins within 80 dB of the maximum agree to LOG_MEL_ATOL_DB."""
    assert got.shape == ref.shape and got.dtype == np.float32
    live = ref >= ref.max() - 80.0
    worst = float(np.abs(ref - got)[live].max())
    assert worst <= LOG_MEL_ATOL_DB, f"{worst:.4f} dB > {LOG_MEL_ATOL_DB} dB"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_dali_matches_torchaudio_on_synthetic_audio(name: str) -> None:
    cfg = CONFIGS[name]
    waves = [w.astype(np.float32) for w in synthetic().values()]
    for wave, got in zip(waves, DALILogMel(cfg)(waves)):  # one run for every window
        assert_agree(log_mel(wave, cfg), got)


@pytest.mark.parametrize("rel", ["moviepy/media/big_buck_bunny_432_433.webm",  # Vorbis
                                 "decord/examples/flipping_a_pancake.mkv"])  # Opus
def test_dali_matches_torchaudio_on_real_audio(rel: str) -> None:
    with open_video(str(media(rel)), backend="pyav") as r:
        wave = r.audio(0.0, 0.9, sample_rate=SR, mono=False)
    cfg = CONFIGS["default"]
    assert_agree(log_mel(wave, cfg), DALILogMel(cfg)([wave])[0])


def test_silence_is_the_floor_not_nan() -> None:
    (got,) = DALILogMel()([np.zeros((1, SR), np.float32)])
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, -100.0, atol=1e-4)


def test_bad_input_is_an_argument_error() -> None:
    dali = DALILogMel()
    with pytest.raises(ValueError, match="too short"):
        dali([np.zeros((1, 100), np.float32)])
    with pytest.raises(ValueError, match=r"must be \(C, S\)"):
        dali([np.zeros(SR, np.float32)])
    with pytest.raises(ValueError, match="win_length"):
        DALILogMel(LogMelConfig(n_fft=512, win_length=400))


def test_dali_audio_stage_matches_the_torchaudio_stage() -> None:
    meta = probe(str(media("moviepy/media/big_buck_bunny_432_433.webm")))
    reads = tuple(AudioRead(meta.uri, meta.video_id, s, s + 0.5) for s in (0.0, 0.4))
    plan = SamplePlan(sample_id=0, task="avc", video_id=meta.video_id, label=1, audio=reads)
    row = encode_row((plan,), {meta.video_id: meta})
    batch = {k: np.array([v, v], dtype=object) for k, v in row.items()}
    data = DataConfig(audio=StageConfig(backend="dali"))
    got = [pickle.loads(b)[0].audio
           for b in DALIAudioStage(data, data.audio)(dict(batch))["decoded"]]
    ref = [pickle.loads(b)[0].audio for b in AudioStage(data, data.audio)(dict(batch))["decoded"]]
    assert [a.shape for a in got[0]] == [(1, 64, 51), (1, 64, 51)]
    for g, r in zip(got[0] + got[1], ref[0] + ref[1]):
        assert_agree(r, g)


@pytest.mark.gpu
def test_dali_gpu_matches_torchaudio() -> None:
    cfg = CONFIGS["default"]
    waves = [w.astype(np.float32) for w in synthetic().values()]
    for wave, got in zip(waves, DALILogMel(cfg, "gpu")(waves)):
        assert_agree(log_mel(wave, cfg), got)
