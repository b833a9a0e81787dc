"""Parity with the Hulu-Med reference code (ZJUI-AI4H/Hulu-Med), run only when it is available.

Set ``HULUMED_REFERENCE_DIR`` to a checkout of the reference repository. Its image processor is
imported from ``src/hulumed/model/hulumed_encoder/image_processing_hulumed.py`` (one name it
expects from transformers 4.x is shimmed); its token-compression mask function is compiled alone
from ``src/hulumed/model/hulumed_arch.py`` (the rest of that module needs the training stack).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.preprocess import VisualItem, preprocess_items
from inference.token_reduction import reduce_tokens

REFERENCE = os.environ.get("HULUMED_REFERENCE_DIR")
pytestmark = pytest.mark.skipif(
    not REFERENCE, reason="HULUMED_REFERENCE_DIR (Hulu-Med reference checkout) not set"
)


@pytest.fixture(scope="module")
def reference_processor():
    from transformers import image_utils

    if not hasattr(image_utils, "VideoInput"):  # moved in transformers 5; only used in annotations
        image_utils.VideoInput = typing.Any
    path = Path(REFERENCE or "") / "src/hulumed/model/hulumed_encoder/image_processing_hulumed.py"
    spec = importlib.util.spec_from_file_location("hulumed_reference_image_processing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HulumedImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)


@pytest.fixture(scope="module")
def reference_compression_mask():
    path = Path(REFERENCE or "") / "src/hulumed/model/hulumed_arch.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_get_compression_mask"
    )
    namespace: dict = {"torch": torch, "List": list}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace["_get_compression_mask"]


def _rng_frames(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(300, 700), (512, 512), (20, 33), (2500, 2048)])
def test_single_image_pixels_identical(reference_processor, shape) -> None:
    image = _rng_frames(np.random.default_rng(1), (*shape, 3))
    ref = reference_processor.preprocess(images=[[image]], merge_size=1)
    ours = preprocess_items([VisualItem(image)])
    assert ours.grid_thw.tolist() == np.asarray(ref["grid_sizes"]).tolist()
    assert np.array_equal(ours.pixel_values, np.asarray(ref["pixel_values"]))


def test_image_plus_video_share_one_budget_identically(reference_processor) -> None:
    rng = np.random.default_rng(2)
    image = _rng_frames(rng, (300, 700, 3))
    video = _rng_frames(rng, (40, 200, 150, 3))
    ref = reference_processor.preprocess(images=[[image], list(video)], merge_size=2)
    ours = preprocess_items([VisualItem(image), VisualItem(video, kind="volume")])
    assert ours.grid_thw.tolist() == np.asarray(ref["grid_sizes"]).tolist()
    assert np.array_equal(ours.pixel_values, np.asarray(ref["pixel_values"]))


def test_reference_compression_mask_identical(reference_processor, reference_compression_mask) -> None:
    rng = np.random.default_rng(3)
    frames = np.repeat(_rng_frames(rng, (1, 112, 112, 3)), 4, axis=0)
    frames[2, :40, :40] = 255 - frames[2, :40, :40]  # a real change in frame 2 only
    frames[3, 60:, 60:] //= 2
    image = _rng_frames(rng, (56, 56, 3))
    items = [VisualItem(image), VisualItem(frames, kind="volume")]
    ours = preprocess_items(items)
    reduced = reduce_tokens(
        ours.pixel_values,
        ours.grid_thw,
        ours.merge_sizes,
        ours.frame_tokens,
        ["image", "volume"],
        mode="reference",
    )
    grid = torch.from_numpy(ours.grid_thw)
    merges = torch.from_numpy(ours.merge_sizes)
    expected = reference_compression_mask(
        None,
        torch.from_numpy(ours.pixel_values),
        grid.prod(dim=1) // merges**2,
        grid,
        merges,
        ["image", "video"],
    )
    assert reduced.mask.tolist() == expected.tolist()
    assert 16 < int(expected.sum()) < len(expected)  # some tokens kept beyond the image, some dropped
