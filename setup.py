"""seg_perception: an ament_python ROS 2 package that is also pip-installable.

Python dependencies are pinned in requirements.lock and installed by `make setup`; they are not
repeated here so that colcon and an editable pip install never pull a second torch.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "seg_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Streaming panoptic perception for ROS 2: drivable area, lane markings, obstacles",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.json")),
        (f"share/{PACKAGE}/models/demo", glob("models/demo/*")),
    ],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "seg-perception = seg_perception.cli:main",
            "seg_perception_node = seg_perception.ros_io.node:main",
        ],
    },
)
