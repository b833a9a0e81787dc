"""Fixtures for the Hulu-Med runtime tests: tiny Hulu-Med-format checkpoints built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.inference.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny Qwen2-decoder Hulu-Med checkpoint folder (do not modify it)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("hulumed-tiny-qwen2"), decoder="qwen2")


@pytest.fixture(scope="session")
def tiny_checkpoint_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny Qwen3-decoder (``hulumed_qwen3``, tied embeddings) checkpoint folder."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("hulumed-tiny-qwen3"), decoder="qwen3")


@pytest.fixture
def tiny_checkpoint_copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))
