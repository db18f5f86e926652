"""Top floor: configuration, the SparkSession, batch jobs and the ``simguard`` CLI."""
