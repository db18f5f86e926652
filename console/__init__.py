"""The analyst console (``simguard console``): review queue, a flag's evidence, decisions and
appeals, on the blocklist database. Imports the store and never Spark."""
