"""The hilserl bring-up package installs the workspace-level config/ and launch/
directories (two levels up) into share/hilserl, where launch files and the
`hilserl` command find them on an installed system."""

import os
from glob import glob

from setuptools import find_packages, setup

package_name = "hilserl"
here = os.path.dirname(os.path.abspath(__file__))
top = os.path.relpath(os.path.join(here, "..", ".."), here)


def tree(sub):
    """data_files entries that mirror <workspace>/<sub> under share/hilserl/<sub>."""
    out = {}
    for path in glob(os.path.join(top, sub, "**", "*"), recursive=True):
        if os.path.isfile(path):
            rel = os.path.relpath(os.path.dirname(path), top)
            out.setdefault(os.path.join("share", package_name, rel), []).append(path)
    return sorted(out.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ]
    + tree("config")
    + tree("launch"),
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="hilserl maintainers",
    maintainer_email="maintainers@hilserl.dev",
    description="hilserl bring-up: graphs, launch files, the hilserl command.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "hilserl = hilserl.cli:main",
        # RViz and rqt with the configs under config/ (rviz:=true, rqt:=true in the graphs)
        "rviz_viewer = hilserl.viewers:rviz_main",
        "rqt_viewer = hilserl.viewers:rqt_main",
    ]},
)
