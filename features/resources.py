"""Files shipped with the package: the ``configs/`` folder (default config, numbering plan,
simulator parameters, operator mappings), installed as the ``simguard_configs`` package.

Found through :mod:`importlib.resources`, so a wheel installed anywhere finds them, and a checkout
(an editable install) finds ``configs/`` itself.

>>> config_file("numbering_plan.yaml").name
'numbering_plan.yaml'
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CONFIG_PACKAGE = "simguard_configs"


def config_file(*parts: str) -> Path:
    """The shipped file ``configs/<parts...>`` (for example ``config_file("mappings", "x.yaml")``)."""
    return Path(str(files(CONFIG_PACKAGE).joinpath(*parts)))
