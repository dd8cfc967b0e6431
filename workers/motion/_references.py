"""How far each frame's reference pictures are, worked out from the decode order.

FFmpeg's vectors carry only a direction (``source`` = -1 past, +1 future), never which
picture they point to (its header says so: "XXX: set exact relative ref frame reference
instead of a +/- 1 direction"). We take the nearest picture in that direction that was
decoded before this one and is a reference picture:

- H.264: a picture is a reference when its slices' ``nal_ref_idc`` is not 0 (read from the
  packet, a few bytes); this catches x264's reference B-frames.
- other codecs: I and P pictures are references, B pictures are not, except a B picture
  decoded before a picture shown earlier than it (the middle B of a pyramid).

Example, x264's B-pyramid ``I0 B1 b2 B3 P4`` decoded as ``I0 P4 b2 B1 B3``: P4 refers 4
frames back (I0); B1 -> past 1 (I0), future 1 (b2); B3 -> past 1 (b2), future 1 (P4).
Plain MPEG-2 ``I0 B1 B2 P3`` (decoded ``I0 P3 B1 B2``): B2 -> past 2 (I0), future 1 (P3).

Exact for GOPs whose blocks use the nearest reference (IPPP, IBBP, pyramids, ``ref=1``);
a block that uses an older one (H.264 multi-reference, x264's default ``ref=3``) is
divided by the nearest one's distance, so its motion reads 2x or 3x too large. FFmpeg does
not export the reference index, so this cannot be told apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from workers.motion._types import MotionFrame

# How many frames may wait for a later frame (a B-frame's future reference, a stand-in)
# before we stop waiting. H.264 allows at most 16 reordered frames.
MAX_PENDING = 16
_B_TYPES = ("B", "BI")


@dataclass(slots=True)
class RawFrame:
    """A frame as it leaves the decoder, before its reference distances are known."""

    index: int
    pict_type: str
    vectors: np.ndarray
    size: tuple[int, int]
    rotation: int
    dpos: int  # decode position
    is_ref: bool | None  # from the bitstream; None: unknown
    exported: bool
    wanted: bool  # inside the requested range: worth waiting for its distances
    past: int = 1
    future: int | None = None  # None: waiting for the future reference to be output
    stand_in: MotionFrame | None = None

    def ready(self) -> bool:
        return self.future is not None and (self.exported or self.stand_in is not None)

    def record(self, fallback: MotionFrame | None) -> MotionFrame:
        stand_in = self.stand_in or (None if self.exported else fallback)
        return MotionFrame(
            self.index, self.pict_type, self.vectors, self.size, self.rotation,
            self.past, self.future or 1, self.exported, stand_in,
        )  # fmt: skip


class References:
    """Resolves reference distances and stand-ins; frames come out in presentation order."""

    def __init__(self) -> None:
        self.refs: deque[tuple[int, int]] = deque(maxlen=32)  # (index, dpos) of references
        self.pending: deque[RawFrame] = deque()
        self.max_dpos = -1
        self.last_anchor: MotionFrame | None = None  # the latest exported P-frame

    def resolve(self, raws: Iterator[RawFrame]) -> Iterator[MotionFrame]:
        for raw in raws:
            self._push(raw)
            yield from self._pop(keep=MAX_PENDING)
        yield from self._pop(keep=0)

    def _push(self, raw: RawFrame) -> None:
        is_b = raw.pict_type in _B_TYPES
        is_ref = raw.is_ref if raw.is_ref is not None else not is_b or self.max_dpos > raw.dpos
        raw.past = self._nearest_past(raw)
        for waiting in self.pending:
            # The first later-shown frame decoded before a B-frame is its future reference.
            if waiting.future is None and raw.dpos < waiting.dpos:
                waiting.future = raw.index - waiting.index
        if not (raw.wanted and is_b and _has_future_vectors(raw.vectors)):
            raw.future = 1
        if not raw.wanted:
            raw.exported = True  # nobody will look at it: do not wait for a stand-in
        if not is_b:
            self._anchor(raw)
        if is_ref:
            self.refs.append((raw.index, raw.dpos))
        self.max_dpos = max(self.max_dpos, raw.dpos)
        self.pending.append(raw)

    def _nearest_past(self, raw: RawFrame) -> int:
        for index, dpos in reversed(self.refs):
            if index < raw.index and dpos < raw.dpos:
                return raw.index - index
        return 1

    def _anchor(self, raw: RawFrame) -> None:
        """An I or P frame: the stand-in of the waiting B-frames before it.

        A P-frame stands in for the frames its vectors span (``index - past`` < i < index);
        frames it does not span (B-frames before an I-frame) take the previous P-frame.
        Example ``P9 B10 B11 I12``: B10 and B11 take P9.
        """
        anchor = raw.record(None) if raw.exported and len(raw.vectors) else None
        for waiting in self.pending:
            if waiting.exported or waiting.stand_in is not None or waiting.index > raw.index:
                continue
            spans = anchor is not None and raw.index - raw.past < waiting.index
            waiting.stand_in = anchor if spans else self.last_anchor
        if anchor is not None:
            self.last_anchor = anchor

    def _pop(self, keep: int) -> Iterator[MotionFrame]:
        """Ready frames from the head; unready ones too while more than ``keep`` wait."""
        while self.pending and (self.pending[0].ready() or len(self.pending) > keep):
            yield self.pending.popleft().record(self.last_anchor)


def _has_future_vectors(vectors: np.ndarray) -> bool:
    return bool(len(vectors)) and int(vectors["source"].max()) > 0


class H264RefFlags:
    """Whether an H.264 packet holds a reference picture (``nal_ref_idc != 0``).

    Reads the NAL headers only: in MP4/MKV (avcC extradata) NAL units are length-prefixed;
    elsewhere (raw ``.264``, MPEG-TS) they follow ``00 00 01`` start codes.
    """

    def __init__(self, extradata: bytes | None) -> None:
        # avcC starts with version 1; byte 4 holds the NAL length size minus 1.
        self.length_size = (extradata[4] & 3) + 1 if extradata and extradata[0] == 1 else 0

    def __call__(self, packet: av.Packet) -> bool | None:
        """True/False for the packet's first slice, None when it has no slice."""
        if self.length_size:
            return _first_slice_ref_avcc(memoryview(packet), self.length_size)
        return _first_slice_ref_annexb(bytes(packet))


def _slice_ref(header: int) -> bool | None:
    """nal_ref_idc != 0 for a slice NAL (type 1, or 5 for IDR), None for other NALs."""
    return header & 0x60 != 0 if header & 0x1F in (1, 5) else None


def _first_slice_ref_avcc(data: memoryview, length_size: int) -> bool | None:
    i = 0
    while i + length_size < len(data):
        ref = _slice_ref(data[i + length_size])
        if ref is not None:
            return ref
        i += length_size + int.from_bytes(data[i : i + length_size], "big")
    return None


def _first_slice_ref_annexb(data: bytes) -> bool | None:
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        ref = _slice_ref(data[i + 3])
        if ref is not None:
            return ref
        i = data.find(b"\x00\x00\x01", i + 3)
    return None
