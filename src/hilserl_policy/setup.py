from setuptools import find_packages, setup

package_name = "hilserl_policy"

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
    description="Actor node for hilserl.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["actor_node = hilserl_policy.actor_node:main"]},
)
