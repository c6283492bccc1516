"""Per-camera perception pipeline: batching, smoothing, tracking and frame statistics (no ROS)."""
