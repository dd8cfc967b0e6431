"""Imports every task module so their classes register."""

from pipelines.tasks import (  # noqa: F401
    arrow_of_time,
    av_contrastive,
    avc,
    avts,
    dsm,
    motion_context,
    o3n,
    opn,
    pace,
    rho_persistence,
    shuffle_learn,
    vcop,
)
