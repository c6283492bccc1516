"""Procedural synthetic driving world with exact panoptic ground truth.

A 3D world (curved road with lanes and markings, sidewalks, buildings, vegetation, poles, signs, traffic
lights, moving vehicles, pedestrians and cyclists) is projected through pinhole cameras on a moving ego
vehicle. Every pixel's class and instance come from the same primitive that painted its colour.

``variety=True`` (opt-in, see ``Variety``) adds motorcycles with riders, zebra crosswalks, dusk/night and
rain; without it every world is exactly what it was before the option, so recorded splits stay fixed.

    for step in render_sequence(seed=0, sequence=0, num_frames=10, width=1024, height=512,
                                cameras=("front", "rear")):
        frame = step["front"]  # SynthFrame: image, semantic, instance, drivable, lane, objects
"""

from seg_perception.synth.camera import RIG_YAWS_DEG, CameraModel, camera_model, default_rig
from seg_perception.synth.config import SceneConfig, Variety, describe_sequence
from seg_perception.synth.render import ObjectInfo, SynthFrame, frame_stamp_ns, render_sequence

__all__ = [
    "RIG_YAWS_DEG",
    "CameraModel",
    "ObjectInfo",
    "SceneConfig",
    "SynthFrame",
    "Variety",
    "camera_model",
    "default_rig",
    "describe_sequence",
    "frame_stamp_ns",
    "render_sequence",
]
