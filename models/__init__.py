"""Models for pretext pretraining: video and audio backbones, pretext heads, losses, and the
multi-task :class:`PretextModel` that routes each task's batch to its head and loss."""

from models.backbones import (
    AUDIO_BACKBONES,
    VIDEO_BACKBONES,
    build_audio_backbone,
    build_video_backbone,
    prepare_video,
)
from models.heads import (
    AVFusionHead,
    ConcatHead,
    MotionHead,
    PairwiseOrderHead,
    ProjectionHead,
    SumOfDifferencesHead,
)
from models.losses import (
    MomentumTarget,
    byol_loss,
    classification_loss,
    info_nce,
    motion_loss,
    normalized_mse,
    nt_xent,
    triplet_loss,
    whiten,
    wmse_loss,
    zero_touching,
)
from models.pretext import PretextModel, build_pretext_model, probe_task

__all__ = [
    "AUDIO_BACKBONES", "VIDEO_BACKBONES", "AVFusionHead", "ConcatHead", "MomentumTarget",
    "MotionHead", "PairwiseOrderHead", "PretextModel", "ProjectionHead", "SumOfDifferencesHead",
    "build_audio_backbone", "build_pretext_model", "build_video_backbone", "byol_loss",
    "classification_loss", "info_nce", "motion_loss", "normalized_mse", "nt_xent",
    "prepare_video", "probe_task", "triplet_loss", "whiten", "wmse_loss", "zero_touching",
]
