"""perception.launch.py plus playback of a bag with `seg-perception play`.

    ros2 launch seg_perception replay.launch.py bag:=drive.mcap rate:=0.5 loop:=true

By default the player publishes the bag's time on /clock and the node follows it (use_sim_time), so
the bag's own stamps are fresh to the node and latencies are measured against the bag's time.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "seg_perception"
PASSED_THROUGH = ("params_file", "backend", "model_path", "use_sim_time")


def _play(context: LaunchContext) -> list[ExecuteProcess]:
    # --loop is a flag: added or left out, never passed as an empty argument.
    loop = ["--loop"] if IfCondition(LaunchConfiguration("loop")).evaluate(context) else []
    clock = ["--clock"] if IfCondition(LaunchConfiguration("use_sim_time")).evaluate(context) else []
    cmd = ["seg-perception", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), *loop, *clock]
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "perception.launch.py")),
        launch_arguments={name: LaunchConfiguration(name) for name in PASSED_THROUGH}.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false", description="replay the bag until stopped"),
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="play publishes the bag's time on /clock and the node follows it"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "perception.param.yaml"),
            description="ROS params file of the node",
        ),
        DeclareLaunchArgument("backend", default_value="", description="torch, onnxruntime or tensorrt; empty: file"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint folder or .onnx; empty: file"),
        perception,
        OpaqueFunction(function=_play),
    ])
