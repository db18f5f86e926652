"""SIMGuard's shipped configuration files, installed as the ``simguard_configs`` package
(``features.resources.config_file``)."""
