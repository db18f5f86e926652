"""Errors of the modelling floor."""

from __future__ import annotations

from features.errors import SimGuardError


class ModelError(SimGuardError):
    """Training data, a model version or the model registry is not usable as asked."""
