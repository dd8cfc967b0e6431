"""Compressed-domain motion: the decoder's motion vectors, dense fields, keyframes.

    from workers.motion import motion_vectors, motion_grid
    frames = motion_vectors("clip.mp4", start=30, stop=46)   # list[MotionFrame], presentation order
    field = motion_grid(frames[3], out_size=(112, 112))     # float32 (7, 7, 2), px per frame
    motion = mean_motion("clip.mp4")                         # float32 (num_frames,)
    indices, rgb = keyframes("clip.mp4", size=(112, 112))   # I-frames only

Only decoders that export vectors are accepted (H.264 and the MPEG-1/2/4, H.263 family);
VP8/VP9, AV1 and HEVC raise ``UnsupportedCodecError`` before anything is decoded.
"""

from workers.motion._field import (
    accumulate,
    flow_to_color,
    forward_motion,
    mean_magnitude,
    motion_grid,
    motion_grid_with_mask,
    motion_grids,
    rotate_field,
)
from workers.motion._scan import keyframes, mean_motion
from workers.motion._types import MV_DTYPE, MotionFrame
from workers.motion._vectors import (
    MV_DECODERS,
    check_motion_codec,
    iter_motion_vectors,
    motion_vectors,
)

__all__ = [
    "MV_DECODERS",
    "MV_DTYPE",
    "MotionFrame",
    "accumulate",
    "check_motion_codec",
    "flow_to_color",
    "forward_motion",
    "iter_motion_vectors",
    "keyframes",
    "mean_magnitude",
    "mean_motion",
    "motion_grid",
    "motion_grid_with_mask",
    "motion_grids",
    "motion_vectors",
    "rotate_field",
]
