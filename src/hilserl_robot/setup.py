from setuptools import find_packages, setup

package_name = "hilserl_robot"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="hilserl maintainers",
    maintainer_email="maintainers@hilserl.dev",
    description="Robot-side nodes for real Frankas: robot-state adapter, gripper bridge, start-pose reset.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "franka_state_node = hilserl_robot.franka_state_node:main",
            "gripper_bridge_node = hilserl_robot.gripper_bridge_node:main",
            "reset_node = hilserl_robot.reset_node:main",
        ]
    },
)
