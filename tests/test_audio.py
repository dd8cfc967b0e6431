"""Audio: windows from every codec, layout and rate we claim (generated with PyAV's
encoders), the edge-case policies, log-mel features and the audio stage."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from pipelines.config import DataConfig, StageConfig
from pipelines.tasks.base import AudioRead, SamplePlan
from tests._synth import TONE_HZ, tone, write_audio, write_video
from workers.audio import AudioStage, LogMelConfig, log_mel
from workers.decode import open_video
from workers.decode._pyav_audio import AudioDecoder, cut, resample
from workers.errors import NoAudioError
from workers.stage import encode_row


def expected_tone(start_s: float, end_s: float, rate: int, channels: int) -> np.ndarray:
    """What ``tests._synth.tone`` holds over [start_s, end_s) at ``rate``."""
    n = round(end_s * rate) - round(start_s * rate)
    t = (round(start_s * rate) + np.arange(n)) / rate
    return np.stack([0.5 / (c + 1) * np.sin(2 * np.pi * TONE_HZ * t) for c in range(channels)])


def window(path: Path, *args: object, **kwargs: object) -> np.ndarray:
    decoder = AudioDecoder(str(path))
    try:
        return decoder.window(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        decoder.close()


# -- codecs, layouts, rates -----------------------------------------------------------------

# (encoder, file suffix, rate, layout, max abs error of the decoded tone at 16 kHz)
CODECS = [
    ("pcm_s16le", "wav", 8000, "mono", 2e-3),
    ("pcm_s16le", "wav", 16000, "stereo", 2e-3),
    ("pcm_s16le", "wav", 48000, "5.1", 2e-3),
    ("flac", "flac", 32000, "stereo", 2e-3),
    ("aac", "m4a", 44100, "stereo", 0.08),
    ("aac", "m4a", 48000, "5.1", 0.08),
    ("aac", "m4a", 8000, "mono", 0.08),
    ("libmp3lame", "mp3", 22050, "mono", 0.05),
    ("libmp3lame", "mp3", 44100, "stereo", 0.05),
    ("libopus", "ogg", 48000, "stereo", 0.05),
    ("libopus", "webm", 48000, "stereo", 0.05),
    ("libopus", "ogg", 16000, "mono", 0.05),  # Opus decodes at 48 kHz whatever went in
    ("vorbis", "ogg", 44100, "stereo", 0.05),
]


@pytest.mark.parametrize(
    "codec, suffix, rate, layout, atol", CODECS, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CODECS]
)
def test_codecs_layouts_and_rates(
    tmp_path: Path, codec: str, suffix: str, rate: int, layout: str, atol: float
) -> None:
    path = tmp_path / f"tone.{suffix}"
    written = write_audio(path, codec, rate, layout)
    channels = written.shape[0]
    got = window(path, 0.25, 1.25, sample_rate=16000)
    assert got.dtype == np.float32 and got.shape == (channels, 16000)
    expected = expected_tone(0.25, 1.25, 16000, channels)
    # AAC low-passes the LFE channel (index 3 of 5.1) far below 440 Hz: compare the others
    keep = [c for c in range(channels) if not (codec == "aac" and layout == "5.1" and c == 3)]
    np.testing.assert_allclose(got[keep], expected[keep], atol=atol, rtol=0)


def test_native_rate_window_is_the_written_samples(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    written = write_audio(path, "pcm_s16le", 22050, "stereo", seconds=2.0)
    got = window(path, 0.3, 1.7)  # samples round(0.3 * 22050) = 6615 .. 37485
    assert got.shape == (2, 37485 - 6615)
    np.testing.assert_allclose(got, written[:, 6615:37485], atol=1 / 32768, rtol=0)


def test_mono_is_the_mean_of_stereo(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_audio(path, "pcm_s16le", 16000, "stereo")
    stereo = window(path, 0.2, 0.7)
    mono = window(path, 0.2, 0.7, mono=True)
    np.testing.assert_allclose(mono[0], stereo.mean(axis=0), atol=1e-6)


def test_windows_after_a_seek_equal_a_decode_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "long.m4a"
    write_audio(path, "aac", 44100, "stereo", seconds=8.0)
    whole = window(path, 0.0, 8.0, sample_rate=16000, mono=True)
    for start in (2.3, 5.05, 7.2):
        part = window(path, start, start + 0.5, sample_rate=16000, mono=True)
        first = round(start * 16000)
        np.testing.assert_allclose(part, whole[:, first : first + 8000], atol=1e-4, rtol=0)


def test_one_decoder_serves_many_windows(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_audio(path, "pcm_s16le", 16000, "mono", seconds=3.0)
    decoder = AudioDecoder(str(path))
    try:
        a = decoder.window(2.0, 2.5)
        b = decoder.window(0.1, 0.2)  # before the last block: decoded again from the start
        c = decoder.window(2.1, 2.2)
    finally:
        decoder.close()
    np.testing.assert_allclose(a[:, 1600:3200], c, atol=0)
    np.testing.assert_allclose(b, expected_tone(0.1, 0.2, 16000, 1), atol=1e-4)


def test_resample_aligns_blocks_to_the_output_grid() -> None:
    # a block starting at input sample 1000 of 44.1 kHz: padded back to 882 (a multiple of
    # 441), whose output index at 16 kHz is 320
    from workers.decode._pyav_audio import Block

    data = tone(0.5, 44100, 1)[:, 1000:]
    block = Block(data, 1000, 44100, "mono", from_start=False, eof=True)
    out, at = resample(block, 16000, mono=False)
    assert at == 320
    t = (at + np.arange(out.shape[1])) / 16000
    inner = slice(400, out.shape[1] - 100)  # past the padded edge and the filter tail
    np.testing.assert_allclose(out[0, inner], 0.5 * np.sin(2 * np.pi * TONE_HZ * t[inner]), atol=1e-3)


def test_cut_pads_what_the_signal_lacks() -> None:
    data = np.ones((1, 100), np.float32)  # samples 100..199
    got = cut(data, 100, 150, 100)
    assert got.shape == (1, 100) and got[0, :50].all() and not got[0, 50:].any()


# -- policies -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silent_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "silent.mp4"
    write_video(path, n=25)
    return path


def test_no_audio_track_policy(silent_video: Path) -> None:
    no_track = pytest.raises(NoAudioError, match=r"silent\.mp4: no audio stream")
    with open_video(str(silent_video)) as r, no_track:
        r.audio(0.0, 1.0, sample_rate=16000)
    with open_video(str(silent_video), no_audio="zeros") as r:
        zeros = r.audio(0.0, 1.0, sample_rate=16000, mono=True)
        assert zeros.shape == (1, 16000) and not zeros.any()
        assert r.audio(0.0, 0.5, sample_rate=8000).shape == (2, 4000)
        with pytest.raises(ValueError, match="needs a sample_rate"):
            r.audio(0.0, 1.0)
    assert NoAudioError("x", "y").kind == "no_audio"


def test_audio_shorter_than_the_window_is_padded(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_video(path, n=50, audio_rate=16000)  # 2.0 s of video and tone
    with open_video(str(path)) as r:
        tail = r.audio(1.5, 2.5, sample_rate=16000)
        after = r.audio(3.0, 3.5, sample_rate=16000)
        before = r.audio(-0.25, 0.25, sample_rate=16000)
    assert tail.shape == (2, 16000) and np.abs(tail[:, :8000]).max() > 0.4
    assert not tail[:, 8000:].any()
    assert after.shape == (2, 8000) and not after.any()
    assert not before[:, :4000].any() and np.abs(before[:, 4000:]).max() > 0.4


def test_silent_audio_is_zeros_not_an_error(tmp_path: Path) -> None:
    import av

    path = tmp_path / "silence.wav"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    got = window(path, 0.0, 1.0, sample_rate=8000)
    assert got.shape == (1, 8000) and not got.any()
    assert (log_mel(got, LogMelConfig(sample_rate=8000)) == -100.0).all()


@pytest.mark.parametrize(
    "args, message",
    [
        ((2.0, 1.0), r"end >= start"),
        ((0.0, float("nan")), r"finite"),
        ((0.0, 1.0, 0), r"sample_rate \(0\) must be >= 1"),
    ],
)
def test_bad_windows(silent_video: Path, args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioDecoder(str(silent_video)).window(*args)


def test_bad_policy() -> None:
    with pytest.raises(ValueError, match=r"no_audio \('skip'\) must be one of"):
        AudioDecoder("x.mp4", no_audio="skip")  # type: ignore[arg-type]


# -- log-mel --------------------------------------------------------------------------------


def test_log_mel_shape_and_tone_band() -> None:
    cfg = LogMelConfig()
    wave = tone(1.0, 16000, 2)
    feats = log_mel(wave, cfg)
    assert feats.dtype == np.float32 and feats.shape == (2, 64, cfg.n_frames(16000)) == (2, 64, 101)
    fbanks = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1, cfg.f_min, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate,
        norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    tone_bin = round(TONE_HZ / (cfg.sample_rate / cfg.n_fft))  # 440 Hz in 40 Hz bins: 11
    band = int(fbanks[tone_bin].argmax())
    assert (feats[:, :, 5:-5].argmax(axis=1) == band).all()
    assert feats.max() - feats.min() <= 80.0 + 1e-3  # the relative floor, top_db


def test_log_mel_is_torchaudios_pipeline() -> None:
    cfg = LogMelConfig(n_mels=40, mel_scale="htk", top_db=None)
    wave = np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=40, mel_scale="htk"
    )
    expected = torchaudio.transforms.AmplitudeToDB(stype="power")(mel(torch.from_numpy(wave)))
    np.testing.assert_allclose(log_mel(wave, cfg), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_mels": 0}, r"n_mels \(0\) must be >= 1"),
        ({"win_length": 512}, r"win_length \(512\) must be <= n_fft \(400\)"),
        ({"f_max": 9000.0}, r"f_max \(9000.0\) <= 8000.0"),
        ({"mel_scale": "bark"}, r"mel_scale \('bark'\) must be 'slaney' or 'htk'"),
        ({"top_db": 0.0}, r"top_db \(0.0\) must be > 0 or None"),
    ],
)
def test_log_mel_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogMelConfig(**kwargs)


def test_log_mel_refuses_bad_waveforms() -> None:
    with pytest.raises(ValueError, match=r"must be \(C, S\)"):
        log_mel(np.zeros(16000, np.float32))
    with pytest.raises(ValueError, match="too short"):
        log_mel(np.zeros((1, 100), np.float32))


def test_window_for_dali_is_periodic_hann() -> None:
    w = LogMelConfig().window()
    assert w.shape == (400,) and w[0] == 0 and abs(w[200] - 1) < 1e-6 and abs(w[399] - w[1]) < 1e-6


# -- the stage ------------------------------------------------------------------------------


def _plan(uri: str, windows: list[tuple[float, float]]) -> SamplePlan:
    reads = tuple(AudioRead(uri, 7, s, e) for s, e in windows)
    return SamplePlan(sample_id=1, task="avc", video_id=7, label=0, audio=reads)


def test_audio_stage_fills_log_mel(tmp_path: Path, silent_video: Path) -> None:
    path = tmp_path / "clip.mkv"
    write_video(path, n=50, audio_rate=16000)
    stage = AudioStage(DataConfig(audio_sample_rate=16000), StageConfig())
    good = (_plan(str(path), [(0.5, 1.5), (1.0, 1.5)]),)
    bad = (_plan(str(silent_video), [(0.0, 1.0)]),)
    batch = {k: np.array([r[k] for r in (encode_row(good, {}), encode_row(bad, {}))], dtype=object)
             for k in encode_row(good, {})}  # fmt: skip
    out = stage(batch)
    decoded_good, decoded_bad = (pickle.loads(b) for b in out["decoded"])
    a, b = decoded_good[0].audio
    assert a.shape == (1, 64, 101) and b.shape == (1, 64, 51)
    with open_video(str(path)) as r:
        np.testing.assert_allclose(a, log_mel(r.audio(0.5, 1.5, sample_rate=16000, mono=True)))
    assert out["error"][0] == "" and out["error_kind"][1] == "no_audio"
    (zeros,) = decoded_bad[0].audio
    assert zeros.shape == (1, 64, 101) and not zeros.any()


def test_audio_stage_rate_must_match_the_run() -> None:
    with pytest.raises(ValueError, match=r"sample_rate \(8000\) must equal the run's audio_sample_rate \(16000\)"):
        AudioStage(DataConfig(), StageConfig(), LogMelConfig(sample_rate=8000))
