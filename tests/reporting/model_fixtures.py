"""A loaded tiny random Hulu-Med model (H5's checkpoint fixture) shared by drafting/chat tests."""

from __future__ import annotations

import pytest

from app.assistant.model_service import ModelService
from tests.inference.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-hulu"), decoder="qwen2")


@pytest.fixture(scope="session")
def tiny_model_service(tiny_model_folder):
    service = ModelService(tiny_model_folder, device="cpu", quantization="none")
    state = service.load_now()
    assert state.ready, state.message
    yield service
    service.close()
