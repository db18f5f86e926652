"""Operator export mappings for `simguard ingest --mapping`."""
