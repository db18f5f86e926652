"""The one thing setup.cfg cannot say: ``configs/`` ships as the ``simguard_configs`` package
(``features.resources``), beside the packages found under the five folders."""

from setuptools import find_packages, setup

PACKAGES = ["pipeline", "features", "models", "streaming", "console"]

setup(
    packages=[
        *find_packages(include=[f"{p}{s}" for p in PACKAGES for s in ("", ".*")]),
        "simguard_configs",
        "simguard_configs.mappings",
    ],
    package_dir={"simguard_configs": "configs"},
)
