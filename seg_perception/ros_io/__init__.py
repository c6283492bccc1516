"""ROS 2 I/O: message conversion and runtime environment."""
