"""Camera geometry for outputs in metres: intrinsics (CameraInfo), the camera's mount on the vehicle,
pixels onto the flat ground plane, and obstacle motion. Pure numpy/OpenCV, usable without ROS.

Frames follow REP-103/REP-105: ``base_link`` has x forward, y left, z up, its origin on the ground under
the vehicle; cameras use the optical frame (x right, y down, z forward). The ground is assumed flat
(``z = 0`` in ``base_link``): slopes and bumps show up as range errors that grow with distance.
"""

from seg_perception.geometry.camera import GeometryError, GroundProjector, Intrinsics, Mount

__all__ = ["GeometryError", "GroundProjector", "Intrinsics", "Mount"]
