"""seg_perception_node with a params file, camera remaps and optional backend / model overrides.

    ros2 launch seg_perception perception.launch.py backend:=torch front_image:=/cam0/image_raw

use_sim_time:=true makes the node follow /clock (a simulator, or `seg-perception play --clock`).
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "seg_perception"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
OVERRIDES = ("backend", "model_path")  # launch arguments that replace the file's value when non-empty


def _fastdds_profile(context: LaunchContext) -> list[SetEnvironmentVariable]:
    # A profile the user (or an enclosing launch file) chose wins over ours.
    if os.environ.get(PROFILE_ENV) or context.environment.get(PROFILE_ENV):
        return []
    profile = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_profile.xml")
    return [SetEnvironmentVariable(PROFILE_ENV, profile)]


def _node(context: LaunchContext) -> list[Node]:
    # Resolved here because an empty argument must leave the file's value alone, not set "".
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = ParameterValue(value, value_type=str)  # "1" stays a string
    return [
        Node(
            package=PACKAGE,
            executable="seg_perception_node",
            name="seg_perception_node",
            output="screen",
            parameters=[LaunchConfiguration("params_file"), *([overrides] if overrides else []),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
            remappings=[
                ("~/front/in/image", LaunchConfiguration("front_image")),
                ("~/front/in/camera_info", LaunchConfiguration("front_camera_info")),
                ("~/rear/in/image", LaunchConfiguration("rear_image")),
                ("~/rear/in/camera_info", LaunchConfiguration("rear_camera_info")),
                ("~/in/odometry", LaunchConfiguration("odometry")),
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "perception.param.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="ROS params file of the node"),
        DeclareLaunchArgument("backend", default_value="", description="torch, onnxruntime or tensorrt; empty: file"),
        DeclareLaunchArgument("model_path", default_value="", description="checkpoint folder or .onnx; empty: file"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock instead of the system clock (simulation, bag replay)"),
        DeclareLaunchArgument("front_image", default_value="/front/image_raw", description="front camera images"),
        DeclareLaunchArgument("rear_image", default_value="/rear/image_raw", description="rear camera images"),
        DeclareLaunchArgument("front_camera_info", default_value="/front/camera_info",
                              description="front camera intrinsics (positions in metres; geometry.enabled)"),
        DeclareLaunchArgument("rear_camera_info", default_value="/rear/camera_info",
                              description="rear camera intrinsics (positions in metres; geometry.enabled)"),
        DeclareLaunchArgument("odometry", default_value="/odom",
                              description="the vehicle's odometry (velocities over the ground; geometry.odometry)"),
        DeclareLaunchArgument(
            "use_fastdds_profile", default_value="true",
            description=f"set {PROFILE_ENV} to the shipped profile unless already set",
        ),
        OpaqueFunction(function=_fastdds_profile, condition=IfCondition(LaunchConfiguration("use_fastdds_profile"))),
        OpaqueFunction(function=_node),
    ])
