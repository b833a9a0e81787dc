"""``hulu-workstation ask``: dry-run token counts on generated series, errors, streaming end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from dicom_net.archive import Archive
from dicom_net.synthetic import SeriesGeometry, ct_series, radiograph, ultrasound_cine, write_datasets
from tests.inference.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-hulu"))


@pytest.fixture(scope="module")
def ct64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 axial slices of 512 x 512: the reference's 16,384-token case."""
    folder = tmp_path_factory.mktemp("ct64")
    write_datasets(
        ct_series(SeriesGeometry(rows=512, columns=512, slices=64, pixel_spacing=(0.7, 0.7))), folder
    )
    return folder


def _ask_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["ask", *argv, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_counts_for_a_64_slice_ct(checkpoint: Path, ct64: Path, capsys) -> None:
    out = _ask_json(capsys, "--model", str(checkpoint), "--series", str(ct64), "--slices", "64", "Describe.")
    assert out["visual_tokens"] == 16384 and out["visual_tokens_after_reduction"] == 16384
    assert out["frames"] == 64 and out["kind"] == "volume"
    assert out["grid_thw"] == [[64, 32, 32]] and out["merge_sizes"] == [2]
    assert out["prompt_tokens"] == out["text_tokens"] + 16384
    assert out["sampled_indices"] == list(range(64))


def test_dry_run_2d_slice_and_token_reduction(checkpoint: Path, ct64: Path, capsys) -> None:
    out = _ask_json(
        capsys,
        "--model",
        str(checkpoint),
        "--series",
        str(ct64),
        "--mode",
        "2d",
        "--window",
        "400",
        "--level",
        "40",
        "What is shown?",
    )
    assert out["visual_tokens"] == 1369 and out["frames"] == 1 and out["merge_sizes"] == [1]
    reduced = _ask_json(
        capsys,
        "--model",
        str(checkpoint),
        "--series",
        str(ct64),
        "--slices",
        "16",
        "--token-reduction",
        "intended",
        "Describe.",
    )
    assert reduced["visual_tokens"] == 16 * 324  # 504 x 504 per slice: 18 x 18 merged tokens
    # the phantom's slices away from the markers are identical: most tokens of later frames drop
    assert reduced["visual_tokens_after_reduction"] < reduced["visual_tokens"] // 2
    assert reduced["prompt_tokens"] == reduced["text_tokens"] + reduced["visual_tokens_after_reduction"]


def test_dry_run_by_series_uid_from_the_archive(checkpoint: Path, tmp_path: Path, capsys) -> None:
    files = write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=12)), tmp_path / "in")
    series_uid = __import__("pydicom").dcmread(files[0]).SeriesInstanceUID
    with Archive(tmp_path / "archive") as archive:
        for f in files:
            archive.store_file(f)
    out = _ask_json(
        capsys,
        "--model",
        str(checkpoint),
        "--series",
        series_uid,
        "--archive",
        str(tmp_path / "archive"),
        "--slices",
        "8",
        "Describe.",
    )
    assert out["frames"] == 8 and out["kind"] == "volume" and series_uid in out["source"]
    # 64 px -> 56 (2 x 2 merged tokens) is under min_tokens=16 per frame: raised to 112 px, 16 tokens
    assert out["grid_thw"] == [[8, 8, 8]] and out["visual_tokens"] == 8 * 16


def test_dry_run_radiograph_keeps_full_resolution(checkpoint: Path, tmp_path: Path, capsys) -> None:
    path = write_datasets([radiograph(rows=1024, columns=832)], tmp_path)[0]
    out = _ask_json(capsys, "--model", str(checkpoint), "--image", str(path), "Any pneumothorax?")
    assert out["kind"] == "image" and out["frame_size"] == [1024, 832]
    assert out["grid_thw"] == [[1, 73, 59]] and out["visual_tokens"] == 73 * 59


def test_dry_run_cine_has_timestamps(checkpoint: Path, tmp_path: Path, capsys) -> None:
    path = write_datasets([ultrasound_cine(frames=60, rows=64, columns=80, frame_time_ms=40.0)], tmp_path)[0]
    out = _ask_json(capsys, "--model", str(checkpoint), "--series", str(tmp_path), "What moves?")
    assert path.exists() and out["kind"] == "video" and out["frames"] == 3
    assert out["timestamps_s"] == pytest.approx([0.0, 1.0, 2.0]) and out["merge_sizes"] == [2]


def test_dry_run_png_image(checkpoint: Path, tmp_path: Path, capsys) -> None:
    Image.fromarray(np.zeros((300, 700, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    out = _ask_json(capsys, "--model", str(checkpoint), "--image", str(tmp_path / "photo.png"), "What is it?")
    assert out["grid_thw"] == [[1, 21, 50]] and out["visual_tokens"] == 1050


def test_bad_inputs_exit_2_with_one_clear_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["ask", "--model", str(tmp_path / "nope"), "--series", str(tmp_path), "--dry-run", "q"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert (
        main(
            [
                "ask",
                "--model",
                str(checkpoint),
                "--series",
                "1.2.3.4",
                "--archive",
                str(tmp_path / "none"),
                "--dry-run",
                "q",
            ]
        )
        == 2
    )
    assert "neither a folder nor a series" in capsys.readouterr().err
    (tmp_path / "junk.txt").write_text("not an image")
    assert (
        main(["ask", "--model", str(checkpoint), "--image", str(tmp_path / "junk.txt"), "--dry-run", "q"])
        == 2
    )
    assert "neither DICOM nor a picture" in capsys.readouterr().err


def test_ask_streams_the_answer_with_the_tiny_model(checkpoint: Path, tmp_path: Path, capsys) -> None:
    files = write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=6)), tmp_path)
    common = [
        "ask",
        "--model",
        str(checkpoint),
        "--series",
        str(tmp_path),
        "--slices",
        "4",
        "--device",
        "cpu",
        "--max-new-tokens",
        "8",
    ]
    assert files and main([*common, "Describe."]) == 0
    streamed = capsys.readouterr()
    assert "AI draft" in streamed.err
    assert main([*common, "--json", "Describe."]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["draft"] is True and result["new_tokens"] == 8 and result["finish_reason"] == "length"
    assert result["frames"] == 4 and result["visual_tokens"] == 64
    # greedy: the streamed text is exactly the final answer
    assert streamed.out.strip() == result["answer"] and result["answer"]


def test_ask_with_int4_weights(checkpoint: Path, tmp_path: Path, capsys) -> None:
    """--quantization int4: torchao int4 decoder, static-cache decode (eager on the CPU)."""
    pytest.importorskip("torchao")
    write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=6)), tmp_path)
    argv = ["ask", "--model", str(checkpoint), "--series", str(tmp_path), "--slices", "4", "--device", "cpu"]
    assert main([*argv, "--quantization", "int4", "--max-new-tokens", "8", "--json", "Describe."]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["new_tokens"] == 8 and result["finish_reason"] == "length" and result["answer"]
    assert "quantization=int4" in captured.err


def test_reference_token_reduction_is_reachable_for_research(checkpoint: Path, ct64: Path, capsys) -> None:
    common = ["--model", str(checkpoint), "--series", str(ct64), "--slices", "16", "--token-reduction"]
    intended = _ask_json(capsys, *common, "intended", "Describe.")
    reference = _ask_json(capsys, *common, "reference", "Describe.")
    assert reference["visual_tokens"] == intended["visual_tokens"] == 16 * 324
    # the released mask keeps only the first token of frame 0 (its bug); the intended rule all 324
    assert reference["visual_tokens_after_reduction"] == intended["visual_tokens_after_reduction"] - 323


def test_cine_without_timing_is_said_in_one_warning(checkpoint: Path, tmp_path: Path, capsys) -> None:
    cine = ultrasound_cine(frames=60, rows=64, columns=80, frame_time_ms=40.0)
    for keyword in ("FrameTime", "FrameIncrementPointer", "CineRate", "RecommendedDisplayFrameRate"):
        delattr(cine, keyword)
    write_datasets([cine], tmp_path)
    argv = ["ask", "--model", str(checkpoint), "--series", str(tmp_path), "--mode", "video"]
    assert main([*argv, "--dry-run", "--json", "What moves?"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["kind"] == "video" and out["timestamps_s"] is None and out["frames"] == 32
    assert "warning: the cine has no frame timing" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fps", "0"], "--fps must be > 0"),
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--device", "tpu"], "device must be auto, cpu, cuda"),
        (["--quantization", "int3"], "quantization must be auto or one of"),
    ],
)
def test_each_bad_option_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, extra, message) -> None:
    write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=4)), tmp_path)
    argv = ["ask", "--model", str(checkpoint), "--series", str(tmp_path), "--no-verify", *extra, "q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_cuda_is_one_line_and_exit_2(checkpoint, tmp_path, capsys) -> None:
    write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=4)), tmp_path)
    argv = ["ask", "--model", str(checkpoint), "--series", str(tmp_path), "--device", "cuda", "q"]
    assert main(argv) == 2  # was a RuntimeError traceback (exit 1)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_nf4_without_a_gpu_says_it_runs_on_the_cpu(checkpoint, tmp_path, capsys) -> None:
    write_datasets(ct_series(SeriesGeometry(rows=64, columns=64, slices=4)), tmp_path)
    argv = ["ask", "--model", str(checkpoint), "--series", str(tmp_path), "--slices", "2"]
    assert main([*argv, "--quantization", "nf4", "--max-new-tokens", "2", "q"]) == 0
    err = capsys.readouterr().err
    assert "quantization=nf4" in err and "SLOW MODE" in err
    assert "note: " in err and "nf4 requested without a GPU: it runs on the CPU" in err, err
