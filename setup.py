"""Packages for setuptools (the rest is in pyproject.toml).

roles/ and kernel-configs/ stay at the top of the checkout, where people look for them,
and travel in the wheel as provision9p/roles and provision9p/kernel_configs
(provision9p/paths.py finds either). Found here rather than listed in pyproject.toml
so a new subpackage is never left out of the wheel.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["provision9p", "provision9p.*"]),
              "provision9p.roles", "provision9p.kernel_configs"],
    package_dir={"provision9p.roles": "roles", "provision9p.kernel_configs": "kernel-configs"},
)
