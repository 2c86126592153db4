from setuptools import find_packages, setup

package_name = "hilserl_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["data/*.json", "accel/native/*.c", "accel/native/*.cpp"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="hilserl maintainers",
    maintainer_email="maintainers@hilserl.dev",
    description="ROS-free core of hilserl (frames, control, networks, agents, buffers, metrics).",
    license="Apache-2.0",
)
