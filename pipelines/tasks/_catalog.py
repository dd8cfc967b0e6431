"""Imports every task module so their classes register."""

from pipelines.tasks import vcop  # noqa: F401
