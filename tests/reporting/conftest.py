"""Fixtures of the reporting tests: the tiny Hulu-Med model (see model_fixtures)."""

from tests.reporting.model_fixtures import tiny_model_folder, tiny_model_service

__all__ = ["tiny_model_folder", "tiny_model_service"]
