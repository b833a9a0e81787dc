"""End to end on the tiny checkpoint: preprocessing + prompting (inference.inputs) feeding the engine."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engine import Engine, GenerationRequest
from inference.inputs import build_model_inputs
from inference.loading import load_model
from inference.preprocess import VisualItem
from inference.prompting import Conversation


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(tiny_checkpoint)


def _radiograph() -> VisualItem:
    rows, cols = np.mgrid[0:96, 0:128]
    gray = ((rows * 2 + cols) % 256).astype(np.uint8)
    return VisualItem(np.repeat(gray[..., None], 3, axis=-1), kind="image", source="test")


def test_follow_up_question_reuses_the_study_prefix(loaded):
    conversation = Conversation()
    conversation.add_user("Describe the findings.", [_radiograph()])
    first = build_model_inputs(loaded.tokenizer, conversation)
    assert first.visual_tokens > 0
    with Engine(loaded) as engine:
        answer = engine.submit(
            GenerationRequest(first, conversation_id="study", max_new_tokens=6, ignore_eos=True)
        ).result(timeout=60)
        conversation.add_assistant(answer.text)
        conversation.add_user("Is it normal?")
        second = build_model_inputs(loaded.tokenizer, conversation)
        follow = engine.submit(GenerationRequest(second, conversation_id="study", max_new_tokens=8)).result(
            timeout=60
        )
    ids = second.input_ids[0].tolist()
    last_image = len(ids) - 1 - ids[::-1].index(loaded.image_token_id)
    assert follow.error is None
    assert follow.reused_tokens > last_image  # every visual token came from the cache
    assert follow.vision_seconds == 0.0
    with Engine(loaded) as fresh:
        scratch = fresh.submit(GenerationRequest(second, max_new_tokens=8)).result(timeout=60)
    assert follow.token_ids == scratch.token_ids
