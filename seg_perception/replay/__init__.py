"""Playing bags onto ROS 2 topics and recording topics into bags (`seg-perception play` / `record`)."""
