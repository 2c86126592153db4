from setuptools import find_packages, setup

package_name = "hilserl_teleop"

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
    description="SpaceMouse driver and intervention mux for hilserl.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mux_node = hilserl_teleop.mux_node:main",
            "spacemouse_node = hilserl_teleop.spacemouse_node:main",
            "episode_keys = hilserl_teleop.episode_keys_node:main",
            "workspace_marker_node = hilserl_teleop.workspace_marker_node:main",
            "metrics_rates_node = hilserl_teleop.metrics_rates_node:main",
        ]
    },
)
