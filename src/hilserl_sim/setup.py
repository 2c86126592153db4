from setuptools import find_packages, setup

package_name = "hilserl_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["assets/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="hilserl maintainers",
    maintainer_email="maintainers@hilserl.dev",
    description="MuJoCo simulation of one or two Franka arms behind the real stack's topics.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # the scripted SpaceMouse operator runs inside sim_node (it needs privileged scene state)
            "sim_node = hilserl_sim.ros_sim_node:main",
        ],
    },
)
