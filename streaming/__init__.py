"""Kafka in, blocklists out. Builds on ``features`` and ``models``."""
