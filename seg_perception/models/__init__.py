"""Network architectures (DDRNet-23-slim, BiSeNetV2) with a Panoptic-DeepLab style instance head.

Architecture only: weights are saved and loaded by ``weights``, official checkpoints converted by ``convert``.
"""

from seg_perception.models.factory import ARCHS, Arch, build_model
from seg_perception.models.panoptic import ModelOutputs, PanopticNet, TrainingOutputs

__all__ = ["ARCHS", "Arch", "ModelOutputs", "PanopticNet", "TrainingOutputs", "build_model"]
