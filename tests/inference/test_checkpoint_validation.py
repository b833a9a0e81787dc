"""Checkpoint folders: a complete one is described; broken ones are refused naming the file and fix."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from inference.checkpoint import CheckpointError, validate_checkpoint
from inference.loading import load_model
from tests.inference.tiny_checkpoint import write_sha256sums

SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"


def _edit_json(path: Path, **changes) -> None:
    payload = json.loads(path.read_text())
    payload.update(changes)
    path.write_text(json.dumps(payload))


def test_complete_folder_is_described(tiny_checkpoint):
    info = validate_checkpoint(tiny_checkpoint)
    assert info.model_type == "hulumed_qwen2" and info.decoder == "qwen2"
    tokenizer = json.loads((tiny_checkpoint / "tokenizer.json").read_text())
    image_entry = next(t for t in tokenizer["added_tokens"] if t["content"] == "<image>")
    assert info.image_token_id == image_entry["id"]
    assert info.checksum == "verified 9 files"
    assert info.preprocessor["patch_size"] == 14 and info.chat_template.startswith("{%- for message")
    index = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())
    assert set(info.tensors) == set(index["weight_map"])
    assert info.tensors["model.embed_tokens.weight"].shape == (384, 64)
    assert info.weight_bytes == index["metadata"]["total_size"]


def test_qwen3_folder_is_recognised(tiny_checkpoint_qwen3):
    info = validate_checkpoint(tiny_checkpoint_qwen3)
    assert info.decoder == "qwen3" and "lm_head.weight" not in info.tensors  # tied embeddings


def test_qwen3_weights_under_qwen2_model_type_are_recognised(tiny_checkpoint_qwen3, tmp_path):
    """The reference's Qwen3 code registers itself as hulumed_qwen2; q_norm weights tell them apart."""
    import shutil

    folder = Path(shutil.copytree(tiny_checkpoint_qwen3, tmp_path / "ck"))
    _edit_json(folder / "config.json", model_type="hulumed_qwen2")
    assert validate_checkpoint(folder, check_sums=False).decoder == "qwen3"


def _expect(folder: Path, file_name: str, *words: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        validate_checkpoint(folder)
    error = caught.value
    assert error.path.name == file_name
    for word in words:
        assert word in str(error)
    assert "Fix:" in str(error) and error.fix
    return error


def test_missing_shard(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / SHARD_2).unlink()
    _expect(tiny_checkpoint_copy, SHARD_2, "missing", "download")


def test_truncated_shard(tiny_checkpoint_copy):
    path = tiny_checkpoint_copy / SHARD_1
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    _expect(tiny_checkpoint_copy, SHARD_1, "truncated", f"{len(data) - 1000} of {len(data)} bytes")


def test_shard_with_garbage_header(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / SHARD_2).write_bytes(b"<html>502 Bad Gateway</html>" * 10)
    _expect(tiny_checkpoint_copy, SHARD_2, "not a safetensors file")


def test_wrong_model_type(tiny_checkpoint_copy):
    _edit_json(tiny_checkpoint_copy / "config.json", model_type="qwen2_vl")
    _expect(tiny_checkpoint_copy, "config.json", "'qwen2_vl'", "hulumed_qwen2")


def test_checksum_mismatch_names_the_altered_file(tiny_checkpoint_copy):
    path = tiny_checkpoint_copy / SHARD_2
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit pattern inside the tensor data: headers stay valid
    path.write_bytes(bytes(data))
    _expect(tiny_checkpoint_copy, SHARD_2, "SHA-256 does not match")


def test_hash_cache_skips_unchanged_files_and_catches_changed_ones(tiny_checkpoint_copy, tmp_path):
    cache = tmp_path / "state" / "hashes.json"
    assert validate_checkpoint(tiny_checkpoint_copy, hash_cache=cache).checksum == "verified 9 files"
    entries = json.loads(cache.read_text())
    shard_1, shard_2 = str(tiny_checkpoint_copy / SHARD_1), tiny_checkpoint_copy / SHARD_2
    assert entries[str(shard_2)][2] == hashlib.sha256(shard_2.read_bytes()).hexdigest()
    # A file rewritten after it was cached (new mtime) is hashed again: the cached good digest is not used.
    data = bytearray(shard_2.read_bytes())
    data[-10] ^= 0xFF
    shard_2.write_bytes(bytes(data))
    _expect_with_cache(tiny_checkpoint_copy, cache, SHARD_2)
    shard_2.write_bytes(bytes(data[:-10]) + bytes([data[-10] ^ 0xFF]) + bytes(data[-9:]))
    assert validate_checkpoint(tiny_checkpoint_copy, hash_cache=cache).checksum == "verified 9 files"
    # An unchanged file is not read again: a (deliberately wrong) cached digest is what gets compared.
    entries = json.loads(cache.read_text())
    entries[shard_1][2] = "0" * 64
    cache.write_text(json.dumps(entries))
    _expect_with_cache(tiny_checkpoint_copy, cache, SHARD_1)


def _expect_with_cache(folder: Path, cache: Path, file_name: str) -> None:
    with pytest.raises(CheckpointError, match="SHA-256 does not match") as caught:
        validate_checkpoint(folder, hash_cache=cache)
    assert caught.value.path.name == file_name


def test_file_listed_in_checksums_but_missing(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / "generation_config.json").unlink()
    _expect(tiny_checkpoint_copy, "generation_config.json", "listed in SHA256SUMS but missing")


def test_without_checksum_file_validation_still_runs(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / "SHA256SUMS").unlink()
    assert validate_checkpoint(tiny_checkpoint_copy).checksum == "no SHA256SUMS"


def test_missing_tokenizer(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / "tokenizer.json").unlink()
    write_sha256sums(tiny_checkpoint_copy)
    _expect(tiny_checkpoint_copy, "tokenizer.json", "tokenizer files are missing")


def test_tokenizer_without_image_token(tiny_checkpoint_copy):
    path = tiny_checkpoint_copy / "tokenizer.json"
    payload = json.loads(path.read_text())
    payload["added_tokens"] = [t for t in payload["added_tokens"] if t["content"] != "<image>"]
    path.write_text(json.dumps(payload))
    write_sha256sums(tiny_checkpoint_copy)
    _expect(tiny_checkpoint_copy, "tokenizer.json", "no <image> token")


def test_index_and_shard_from_different_downloads(tiny_checkpoint_copy):
    path = tiny_checkpoint_copy / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    index["weight_map"]["model.layers.7.mlp.up_proj.weight"] = SHARD_1
    path.write_text(json.dumps(index))
    write_sha256sums(tiny_checkpoint_copy)
    _expect(tiny_checkpoint_copy, SHARD_1, "does not match", "model.layers.7.mlp.up_proj.weight")


def test_pickle_weights_are_refused(tiny_checkpoint_copy):
    for name in (SHARD_1, SHARD_2, "model.safetensors.index.json"):
        (tiny_checkpoint_copy / name).unlink()
    (tiny_checkpoint_copy / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    error = _expect(tiny_checkpoint_copy, tiny_checkpoint_copy.name, "pickle")
    assert "safetensors" in error.fix


def test_missing_preprocessor_config(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / "preprocessor_config.json").unlink()
    write_sha256sums(tiny_checkpoint_copy)
    _expect(tiny_checkpoint_copy, "preprocessor_config.json", "missing")


def test_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="is not a folder"):
        validate_checkpoint(tmp_path / "nowhere")


def test_load_model_refuses_a_broken_folder_before_touching_transformers(tiny_checkpoint_copy):
    (tiny_checkpoint_copy / SHARD_1).write_bytes((tiny_checkpoint_copy / SHARD_1).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tiny_checkpoint_copy)


def test_wrong_folder_choices_say_what_to_choose_instead(tiny_checkpoint, tmp_path):
    """Pointing at the folder above the checkpoint names the sub-folder to pick; an unrelated
    folder, a file or a missing path say so instead of asking to download again."""
    parent = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, parent / "Hulu-Med-7B")
    with pytest.raises(CheckpointError, match="sub-folder holds a checkpoint") as above:
        validate_checkpoint(parent)
    assert str(parent / "Hulu-Med-7B") in above.value.fix
    (tmp_path / "photos").mkdir()
    with pytest.raises(CheckpointError, match="holds no Hulu-Med checkpoint") as unrelated:
        validate_checkpoint(tmp_path / "photos")
    assert "download again" not in str(unrelated.value) and "config.json" in unrelated.value.fix
    with pytest.raises(CheckpointError, match="is not a folder but a file"):
        validate_checkpoint(parent / "Hulu-Med-7B" / "config.json")
    with pytest.raises(CheckpointError, match="nothing exists at this path"):
        validate_checkpoint(tmp_path / "nowhere")
