from setuptools import find_packages, setup

package_name = "hilserl_interfaces"

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
    entry_points={"console_scripts": ["compose_nodes = hilserl_interfaces.compose:main"]},
    maintainer="hilserl maintainers",
    maintainer_email="maintainers@hilserl.dev",
    description="Topic names, QoS, payload codecs and parameter plumbing shared by hilserl nodes.",
    license="Apache-2.0",
)
