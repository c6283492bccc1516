"""seg_perception: streaming panoptic perception for ROS 2 (drivable area, lanes, obstacles)."""

__version__ = "0.1.0"
