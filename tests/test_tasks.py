"""The pretext tasks on plans alone: no decoding, metas built by hand, a pool in memory."""

from __future__ import annotations

import itertools
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.tasks import Decoded, SamplePlan, Task, get_task, task_names
from pipelines.tasks._sampling import composition, motion_weighted_start, shifted_audio_start
from pipelines.tasks.avts import AVTS
from pipelines.tasks.opn import order_classes
from workers.meta import VideoMeta

ALL = [
    "shuffle_learn", "opn", "o3n", "vcop", "arrow_of_time", "pace", "rho_persistence", "dsm",
    "motion_context", "avc", "avts", "av_contrastive",
]
AUDIO = ["avc", "avts", "av_contrastive"]
H, W = 24, 32


def video(video_id: int = 1, num_frames: int = 300, fps: float = 25.0, audio: bool = True,
          **kw: object) -> VideoMeta:
    fields: dict[str, object] = {
        "video_id": video_id, "uri": f"/data/v{video_id}.mp4", "avg_fps": fps,
        "num_frames": num_frames, "duration_s": num_frames / fps,
        "keyframes": tuple(range(0, num_frames, 16)), "has_audio": audio,
        "audio_duration_s": num_frames / fps if audio else 0.0,
    }
    fields.update(kw)
    return VideoMeta(**fields)  # type: ignore[arg-type]


class Pool:
    """Videos 2..5 (all with sound): what the planner's pool gives, in memory."""

    def __init__(self, metas: list[VideoMeta] | None = None) -> None:
        self.metas = metas or [video(i) for i in range(2, 6)]

    def draw(self, rng: np.random.Generator, exclude_video_id: int) -> VideoMeta:
        choices = [m for m in self.metas if m.video_id != exclude_video_id]
        return choices[int(rng.integers(len(choices)))]


POOL = Pool()
META = video()


def plan(task: Task, seed: int, meta: VideoMeta = META) -> SamplePlan | None:
    return task.plan(meta, np.random.default_rng((0, 0, seed)), sample_id=seed, pool=POOL)


def plans(task: Task, n: int, meta: VideoMeta = META) -> list[SamplePlan]:
    out = [plan(task, i, meta) for i in range(n)]
    assert all(p is not None for p in out)
    return out  # type: ignore[return-value]


def fake_decoded(p: SamplePlan) -> Decoded:
    """Frame f decodes to a constant image of value f % 256, so fed order is checkable."""
    return Decoded(
        clips=[np.stack([np.full((H, W, 3), f % 256, np.uint8) for f in r.frames])
               for r in p.clips],
        audio=[np.zeros((1, 40, 101), np.float32) for _ in p.audio],
        motion=[np.zeros((r.stop - r.start, 6, 8, 2), np.float32) for r in p.motion],
    )


# ---------------------------------------------------------------- registry and contract


def test_every_design_task_is_registered() -> None:
    assert sorted(ALL) == task_names()


@pytest.mark.parametrize("name", ALL)
def test_docstring_names_the_paper_and_an_example(name: str) -> None:
    task = get_task(name)
    module = sys.modules[type(task).__module__]
    assert module.__doc__ and any(str(y) in module.__doc__ for y in range(2015, 2022))
    doc = type(task).__doc__ or ""
    assert "Output" in doc and ("Example" in doc or "Label 3 means" in doc)  # vcop: its own words


@pytest.mark.parametrize("name", ALL)
def test_same_rng_same_plan_other_rng_other_plan(name: str) -> None:
    task = get_task(name)
    a, b = plan(task, 7), plan(task, 7)
    assert a == b and a is not None and b is not None and a.params == b.params
    others = [plan(get_task(name), s) for s in range(8, 14)]
    assert any(o != a or o.params != a.params for o in others if o is not None)


@pytest.mark.parametrize("name", ALL)
def test_labels_in_range_and_reads_inside_the_video(name: str) -> None:
    task = get_task(name)
    for p in plans(task, 60):
        if task.num_classes:
            assert 0 <= p.label < task.num_classes
        else:
            assert p.label == -1
        assert p.task == name and p.size is None
        for r in p.clips:
            length = POOL.metas[0].num_frames if r.video_id != META.video_id else META.num_frames
            assert all(0 <= f < length for f in r.frames)
        for a in p.audio:
            assert 0.0 <= a.start_s < a.end_s <= META.audio_duration_s + 1e-9
        for m in p.motion:
            assert 0 <= m.start < m.stop <= META.num_frames


@pytest.mark.parametrize("name", ALL)
def test_expected_label_distribution_is_a_distribution(name: str) -> None:
    task = get_task(name)
    dist = task.expected_label_distribution()
    if task.num_classes:
        assert sorted(dist) == list(range(task.num_classes))
        assert sum(dist.values()) == pytest.approx(1.0)
        assert len(task.label_names()) == task.num_classes
    else:
        assert dist == {}


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("shuffle_learn", {"video": (3, 1, H, W, 3)}),
        ("opn", {"video": (4, 1, 21, 28, 3)}),
        ("o3n", {"video": (6, 6, H, W, 3)}),
        ("vcop", {"video": (3, 16, H, W, 3)}),
        ("arrow_of_time", {"video": (1, 10, H, W, 3)}),
        ("pace", {"video": (1, 16, H, W, 3)}),
        ("rho_persistence", {"video": (2, 8, H, W, 3)}),
        ("dsm", {"video": (3, 16, H, W, 3)}),
        ("motion_context", {"video": (1, 16, H, W, 3), "keyframe": (1, 1, H, W, 3),
                            "motion": (1, 16, 6, 8, 2)}),
        ("avc", {"video": (1, 1, H, W, 3), "audio": (1, 1, 40, 101)}),
        ("avts", {"video": (1, 25, H, W, 3), "audio": (1, 1, 40, 101), "negative": ()}),
        ("av_contrastive", {"video": (1, 1, H, W, 3), "audio": (1, 1, 40, 101)}),
    ],
)
def test_assemble_shapes(name: str, shapes: dict[str, tuple[int, ...]]) -> None:
    task = get_task(name)
    for p in plans(task, 5):
        out = task.assemble(fake_decoded(p), p)
        assert {k: v.shape for k, v in out.items()} == {**shapes, "label": ()}
        assert out["label"].dtype == np.int64 and int(out["label"]) == p.label
        assert out["video"].dtype == np.uint8
        for key in ("audio", "motion"):
            if key in out:
                assert out[key].dtype == np.float32


# ---------------------------------------------------------------- short videos, no sound


SHORT = {  # a length each task cannot fit
    "shuffle_learn": 32, "opn": 3, "o3n": 8, "vcop": 63, "arrow_of_time": 9, "pace": 120,
    "rho_persistence": 56, "dsm": 15, "motion_context": 31, "avc": 20, "avts": 24,
    "av_contrastive": 20,
}


@pytest.mark.parametrize("name", ALL)
def test_short_video_skip_and_pad(name: str) -> None:
    short = video(num_frames=SHORT[name])
    assert plan(get_task(name, short_video="skip"), 0, short) is None
    fits = video(num_frames=SHORT[name] + 1 if name not in AUDIO else 26)
    assert plan(get_task(name, short_video="skip"), 0, fits) is not None
    task = get_task(name, short_video="pad")
    for p in plans(task, 10, short):
        for r in p.clips:
            if r.video_id == short.video_id:
                assert all(0 <= f < short.num_frames for f in r.frames)
        out = task.assemble(fake_decoded(p), p)
        full = plans(get_task(name), 1)[0]
        ref = get_task(name).assemble(fake_decoded(full), full)
        assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}


@pytest.mark.parametrize("name", AUDIO)
@pytest.mark.parametrize("policy", ["skip", "pad"])
def test_audio_tasks_skip_videos_without_sound(name: str, policy: str) -> None:
    silent = video(audio=False)
    for seed in range(5):
        assert plan(get_task(name, short_video=policy), seed, silent) is None


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"short_video \('drop'\)"):
        get_task("pace", short_video="drop")
    with pytest.raises(ValueError, match=r"paces \(\(1, 1\)\)"):
        get_task("pace", paces=(1, 1))
    with pytest.raises(ValueError, match=r"negative_share \(1.5\)"):
        get_task("shuffle_learn", negative_share=1.5)
    with pytest.raises(ValueError, match=r"window \(20\) must be >= 2 \* min_gap \+ 3 = 33"):
        get_task("shuffle_learn", window=20)
    with pytest.raises(ValueError, match=r"unknown task 'jigsaw'"):
        get_task("jigsaw")
    with pytest.raises(ValueError, match="task 'dsm' draws a second video and needs a pool"):
        get_task("dsm").plan(META, np.random.default_rng(1), pool=None)


# ---------------------------------------------------------------- label definitions


def test_vcop_label_is_the_permutation_index() -> None:
    task = get_task("vcop")
    table = list(itertools.permutations(range(3)))
    assert task.label_names() == ["012", "021", "102", "120", "201", "210"]
    for p in plans(task, 30, video(num_frames=64)):
        starts = [r.frames[0] for r in p.clips]  # 64-frame video: clips start at 0, 24, 48
        assert tuple(s // 24 for s in starts) == table[p.label]


def test_opn_merges_each_order_with_its_reverse_into_12_classes() -> None:
    classes, of = order_classes(4)
    assert len(classes) == 12 and len(of) == 24
    for order, c in of.items():
        assert of[order[::-1]] == c
    assert Counter(of.values()) == {c: 2 for c in range(12)}
    task = get_task("opn")
    assert task.num_classes == 12
    seen = set()
    for p in plans(task, 400):
        fed = p.clips[0].frames
        order = tuple(int(i) for i in np.argsort(np.argsort(fed)))  # rank of each fed frame
        assert of[order] == p.label == of[p.params["order"]]
        seen.add(p.label)
    assert seen == set(range(12))


def test_opn_jitter_and_channel_split_are_applied_in_assemble() -> None:
    task = get_task("opn")
    p = plans(task, 1)[0]
    decoded = Decoded(clips=[np.random.default_rng(0).integers(0, 256, (4, 64, 80, 3), np.uint8)])
    out = task.assemble(decoded, p)["video"][:, 0]
    assert out.shape == (4, 56, 70, 3)
    for i, (channel, (fy, fx)) in enumerate(zip(p.params["channels"], p.params["crops"])):
        y, x = round(fy * 8), round(fx * 10)
        expect = decoded.clips[0][i, y : y + 56, x : x + 70, channel]
        for c in range(3):
            np.testing.assert_array_equal(out[i, ..., c], expect)
    plain = get_task("opn", channel_split=False, spatial_jitter=False)
    q = plans(plain, 1)[0]
    assert q.params["channels"] is None and set(q.params["crops"]) == {(0.5, 0.5)}


def test_o3n_odd_element_is_the_only_unsorted_one() -> None:
    task = get_task("o3n")
    labels: Counter[int] = Counter()
    for p in plans(task, 300):
        sorted_ = [list(r.frames) == sorted(r.frames) for r in p.clips]
        assert sorted_.count(False) == 1 and sorted_.index(False) == p.label
        assert all(max(r.frames) - min(r.frames) < 9 for r in p.clips)
        labels[p.label] += 1
    assert set(labels) == set(range(6)) and min(labels.values()) > 25


def test_pace_label_is_the_stride_index() -> None:
    task = get_task("pace", paces=(1, 3, 5))
    assert task.num_classes == 3 and task.label_names() == ["x1", "x3", "x5"]
    for p in plans(task, 100):
        assert set(np.diff(p.clips[0].frames)) == {(1, 3, 5)[p.label]}


def test_arrow_of_time_reverses_label_1() -> None:
    task = get_task("arrow_of_time", stride=2)
    labels = set()
    for p in plans(task, 50):
        assert set(np.diff(p.clips[0].frames)) == {2 if p.label == 0 else -2}
        labels.add(p.label)
    assert labels == {0, 1}


def test_rho_clips_fit_the_max_span() -> None:
    task = get_task("rho_persistence", rho=3, max_span_s=4.0)  # 100 frames at 25 fps
    for p in plans(task, 100):
        frames = [f for r in p.clips for f in r.frames]
        assert len(p.clips) == 3 and max(frames) - min(frames) < 100
        assert all(set(np.diff(r.frames)) == {8} for r in p.clips)
    free = plans(get_task("rho_persistence"), 50)
    spread = [max(f for r in p.clips for f in r.frames) for p in free]
    assert max(spread) - min(spread) > 100  # unrestricted: the whole 300-frame video


def test_shuffle_learn_tuples_and_negative_share() -> None:
    task = get_task("shuffle_learn")
    counts: Counter[int] = Counter()
    for p in plans(task, 2000):
        a, b, c, d, e = p.params["tuple"]
        assert a < b < c < d < e and b - a >= 15 and e - d >= 15 and e - a < 60
        fed = p.clips[0].frames
        assert {fed[0], fed[2]} == {b, d}  # the middle frame is the one varied
        assert fed[1] == c if p.label == 1 else fed[1] in (a, e)
        counts[p.label] += 1
    assert counts[0] / 2000 == pytest.approx(0.75, abs=0.03)
    assert task.expected_label_distribution() == {0: 0.75, 1: 0.25}


def test_high_motion_window_is_preferred() -> None:
    motion = np.zeros(300)
    motion[200:240] = 5.0
    moving = video(motion=tuple(motion))
    hits = 0
    for p in plans(get_task("shuffle_learn"), 200, moving):
        a, _, _, _, e = p.params["tuple"]
        # Only 60-frame windows that overlap frames 200..239 have weight: starts 141..239.
        assert a >= 141 and e <= 239 + 59
        hits += a < 240 and e >= 200  # the tuple itself spans moving frames
    assert hits >= 180
    # Without motion the windows spread over the whole video.
    starts = {p.params["tuple"][0] // 60 for p in plans(get_task("shuffle_learn"), 200)}
    assert len(starts) >= 4


def test_motion_weighted_start_follows_the_weights() -> None:
    meta = video(num_frames=6, motion=(0, 0, 0, 9, 9, 9))
    rng = np.random.default_rng(0)
    starts = Counter(motion_weighted_start(meta, 3, rng) for _ in range(3000))
    assert starts[0] == 0
    assert starts[3] / 3000 == pytest.approx(27 / 54, abs=0.04)
    assert starts[1] / 3000 == pytest.approx(9 / 54, abs=0.04)


def test_dsm_triplet() -> None:
    task = get_task("dsm", clip_len=4)
    for p in plans(task, 50):
        anchor, distractor = p.clips
        assert distractor.video_id != META.video_id and len(distractor.frames) == 1
        assert len(set(p.params["negative"])) == 1 and 0.3 <= p.params["mix"] <= 0.5
    p = plans(task, 1)[0]
    d = Decoded(clips=[np.full((4, H, W, 3), 100, np.uint8),
                       np.full((1, H // 2, W // 2, 3), 200, np.uint8)])
    d.clips[0][:, 0, 0, 0] = [10, 20, 30, 40]
    out = task.assemble(d, p)["video"]
    m = p.params["mix"]
    assert out[1, 0, 5, 5, 0] == round((1 - m) * 100 + m * 200)
    k = p.params["negative"][0]
    assert list(out[2, :, 0, 0, 0]) == [(10, 20, 30, 40)[k]] * 4
    intra = get_task("dsm", scene="intra", negative="shuffle", clip_len=4)
    for p in plans(intra, 30):
        anchor, distractor = p.clips
        assert distractor.video_id == META.video_id and distractor.frames[0] not in anchor.frames
        assert sorted(p.params["negative"]) == [0, 1, 2, 3]


def test_motion_context_keyframe_and_next_window() -> None:
    task = get_task("motion_context")
    meta = video(keyframes=(0, 50, 120, 250))
    for p in plans(task, 100, meta):
        clip, key = p.clips
        start = clip.frames[0]
        assert key.frames[0] == max(k for k in meta.keyframes if k <= start)
        (motion,) = p.motion
        assert motion.start == clip.frames[-1] + 1 and motion.stop - motion.start == 16


def test_avc_negative_audio_comes_from_another_video() -> None:
    task = get_task("avc")
    labels: Counter[int] = Counter()
    for p in plans(task, 300):
        (audio,) = p.audio
        assert audio.end_s - audio.start_s == pytest.approx(1.0)
        if p.label == 1:
            f = p.clips[0].frames[0]  # shown during [f, f + 1) / fps, inside the window
            assert audio.video_id == META.video_id
            assert audio.start_s < (f + 1) / META.avg_fps and f / META.avg_fps < audio.end_s
        else:
            assert audio.video_id != META.video_id
        labels[p.label] += 1
    assert labels[1] / 300 == pytest.approx(0.5, abs=0.08)


def test_avts_hard_negatives_shift_by_at_least_the_offset_and_follow_the_curriculum() -> None:
    task = get_task("avts", easy_epochs=2, min_shift_s=1.5)
    assert isinstance(task, AVTS)
    kinds: Counter[tuple[bool, int]] = Counter()
    for epoch in range(4):
        task.set_epoch(epoch)
        for p in plans(task, 400):
            (audio,) = p.audio
            clip = p.clips[0].frames
            sync = (clip[0] + len(clip) / 2) / META.avg_fps - 0.5  # the window centred on the clip
            kind = p.params["negative"]
            assert p.params["epoch"] == epoch and p.label == int(kind == 0)
            if kind == 0:
                assert audio.video_id == META.video_id
                assert audio.start_s == pytest.approx(sync, abs=1 / META.avg_fps)
            elif kind == 1:
                assert audio.video_id != META.video_id
            else:
                assert audio.video_id == META.video_id and abs(audio.start_s - sync) >= 1.5 - 0.05
                assert epoch >= 2
            kinds[(epoch >= 2, kind)] += 1
    assert kinds[(False, 2)] == 0
    hard = kinds[(True, 2)] / (kinds[(True, 1)] + kinds[(True, 2)])
    assert hard == pytest.approx(0.25, abs=0.06)
    assert task.hard_share_at(0) == 0.0 and task.hard_share_at(2) == 0.25


def test_avts_hard_negative_that_does_not_fit_becomes_easy() -> None:
    task = get_task("avts", easy_epochs=0, hard_share=1.0, min_shift_s=5.0)
    task.set_epoch(0)
    for p in plans(task, 40, video(num_frames=100)):  # 4 s: no start 5 s away
        assert p.params["negative"] in (0, 1)


def test_av_contrastive_pairs_are_synchronized() -> None:
    task = get_task("av_contrastive", clip_len=5)
    for p in plans(task, 100):
        (audio,) = p.audio
        centre = (p.clips[0].frames[0] + 2.5) / META.avg_fps
        assert audio.video_id == META.video_id
        assert (audio.start_s + audio.end_s) / 2 == pytest.approx(centre, abs=1 / META.avg_fps)


# ---------------------------------------------------------------- helpers, properties


@given(total=st.integers(0, 50), parts=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_composition_is_a_split_of_total(total: int, parts: int, seed: int) -> None:
    out = composition(total, parts, np.random.default_rng(seed))
    assert len(out) == parts and out.sum() == total and (out >= 0).all()


@given(
    t=st.floats(0, 20), extent=st.floats(1, 30), shift=st.floats(0.1, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_shifted_audio_start_keeps_its_distance(
    t: float, extent: float, shift: float, seed: int
) -> None:
    t = min(t, extent - 1.0)
    s = shifted_audio_start(t, 1.0, extent, shift, np.random.default_rng(seed))
    if s is None:
        assert t - shift < 0 and t + shift > extent - 1.0
    else:
        assert 0.0 <= s <= extent - 1.0 + 1e-9 and abs(s - t) >= shift - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(ALL), num_frames=st.integers(1, 400),
    fps=st.sampled_from([12.0, 25.0, 29.97]),
    policy=st.sampled_from(["skip", "pad"]), seed=st.integers(0, 2**32 - 1),
)
def test_any_video_gives_a_valid_plan_or_none(
    name: str, num_frames: int, fps: float, policy: str, seed: int
) -> None:
    meta = video(num_frames=num_frames, fps=fps)
    task = get_task(name, short_video=policy)
    p = task.plan(meta, np.random.default_rng(seed), sample_id=seed, pool=POOL)
    if p is None:
        assert policy == "skip" or name in AUDIO
        return
    assert (0 <= p.label < task.num_classes) if task.num_classes else p.label == -1
    for r in p.clips:
        limit = meta.num_frames if r.video_id == meta.video_id else POOL.metas[0].num_frames
        assert r.frames and all(0 <= f < limit for f in r.frames)
    out = task.assemble(fake_decoded(p), p)
    assert out["video"].ndim == 5
