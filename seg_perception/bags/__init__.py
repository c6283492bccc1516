"""ROS 2 bags (mcap and sqlite3) through `rosbags`: our message types, writing and reading."""
