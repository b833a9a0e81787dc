"""Validate a Hulu-Med checkpoint folder before anything is loaded from it.

A usable folder (as downloaded from ZJU-AI4H/Hulu-Med-*) holds:

- ``config.json`` with ``model_type`` ``hulumed_qwen2`` or ``hulumed_qwen3`` and a
  ``vision_encoder_config``;
- safetensors weights: ``model.safetensors`` or shards listed in ``model.safetensors.index.json``
  (every shard present, complete, holding exactly the tensors the index says). Pickle weights
  (``*.bin``) are refused: loading them can execute code;
- tokenizer files (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``) and
  ``tokenizer_config.json``, with ``<image>`` as one token;
- ``preprocessor_config.json`` (patch size, normalisation, token budget);
- optionally a chat template (``chat_template.json``/``.jinja`` or inside ``tokenizer_config.json``)
  and ``SHA256SUMS`` (``sha256sum`` format), which is verified when present.

Each problem raises :class:`CheckpointError` naming the file, what is wrong and how to fix it.
Only headers are read here (plus full hashes when ``SHA256SUMS`` exists); nothing is executed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from hulu_common.atomic import write_bytes_atomic

IMAGE_TOKEN = "<image>"
SUPPORTED_MODEL_TYPES = ("hulumed_qwen2", "hulumed_qwen3")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_WEIGHTS_FILE = "model.safetensors"
CHECKSUM_FILE = "SHA256SUMS"
_REDOWNLOAD = "download the checkpoint folder again (all files) from the same source"
_REQUIRED_PREFIXES = ("model.vision_encoder.", "model.mm_projector.readout.", "model.layers.")
_HASH_CHUNK = 8 << 20


class CheckpointError(Exception):
    """A checkpoint folder that cannot be used; ``path`` is the offending file, ``fix`` the remedy."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}. Fix: {fix}.")
        self.path = path
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as declared in a safetensors header."""

    shard: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class CheckpointInfo:
    """What validation learned about a folder (everything the loader needs, nothing loaded yet)."""

    folder: Path
    model_type: str
    decoder: str  # "qwen2" or "qwen3" (Qwen3 decoders carry q_norm/k_norm weights)
    config: dict[str, Any]
    tensors: dict[str, TensorEntry]
    image_token_id: int
    preprocessor: dict[str, Any]
    chat_template: str | None
    checksum: str  # "verified N files" or "no SHA256SUMS"
    warnings: tuple[str, ...] = field(default=())

    @property
    def weight_bytes(self) -> int:
        """Bytes of all tensors as stored (bf16 for released checkpoints)."""
        return sum(t.nbytes for t in self.tensors.values())


def _read_json(path: Path, fix: str) -> Any:
    if not path.is_file():
        raise CheckpointError(path, "file is missing", fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc})", fix) from exc


def _safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """Parse a shard's header and check the file holds all the bytes the header promises."""
    if not path.is_file():
        raise CheckpointError(path, "weight shard is missing", _REDOWNLOAD)
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(path, f"weight shard is truncated ({size} bytes)", _REDOWNLOAD)
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, 100 << 20):
            raise CheckpointError(
                path, "not a safetensors file or truncated (bad header length)", _REDOWNLOAD
            )
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(path, "safetensors header is corrupt", _REDOWNLOAD) from exc
    header.pop("__metadata__", None)
    entries, data_end = {}, 0
    for name, spec in header.items():
        start, end = spec["data_offsets"]
        data_end = max(data_end, end)
        entries[name] = TensorEntry(path.name, spec["dtype"], tuple(spec["shape"]), end - start)
    expected = 8 + header_len + data_end
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise CheckpointError(path, f"weight shard is {state} ({size} of {expected} bytes)", _REDOWNLOAD)
    return entries


def _read_weights(folder: Path) -> dict[str, TensorEntry]:
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        index = _read_json(index_path, _REDOWNLOAD)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(index_path, "has no weight_map", _REDOWNLOAD)
        tensors: dict[str, TensorEntry] = {}
        for shard in sorted(set(weight_map.values())):
            entries = _safetensors_header(folder / shard)
            listed = {name for name, target in weight_map.items() if target == shard}
            if set(entries) != listed:
                missing = sorted(listed - set(entries))[:3]
                extra = sorted(set(entries) - listed)[:3]
                raise CheckpointError(
                    folder / shard,
                    f"does not match {INDEX_FILE} (missing {missing}, "
                    f"unlisted {extra}); shard and index come from different downloads",
                    _REDOWNLOAD,
                )
            tensors.update(entries)
        return tensors
    if (folder / SINGLE_WEIGHTS_FILE).is_file():
        return _safetensors_header(folder / SINGLE_WEIGHTS_FILE)
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise CheckpointError(
            folder,
            "weights are pickle files (*.bin/*.pt), which can execute code when loaded and are refused",
            "use the safetensors release of the checkpoint",
        )
    raise CheckpointError(
        index_path, "no safetensors weights (neither the index nor model.safetensors)", _REDOWNLOAD
    )


def _check_weight_names(folder: Path, tensors: dict[str, TensorEntry], tied: bool) -> None:
    required = [
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.mm_projector.readout.0.weight",
        "model.mm_projector.readout.2.weight",
        "model.vision_encoder.post_layernorm.weight",
    ]
    if not tied:
        required.append("lm_head.weight")
    missing = [name for name in required if name not in tensors]
    for prefix in _REQUIRED_PREFIXES:
        if not any(name.startswith(prefix) for name in tensors):
            missing.append(prefix + "*")
    if missing:
        raise CheckpointError(
            folder / INDEX_FILE,
            f"weights lack Hulu-Med tensors {missing[:4]}: not a Hulu-Med checkpoint or an incomplete one",
            "point the workstation at a Hulu-Med folder",
        )


def _image_token_id(folder: Path, config: dict[str, Any]) -> int:
    tokenizer_config = _read_json(folder / "tokenizer_config.json", _REDOWNLOAD)
    token_id: int | None = None
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            token_id = Tokenizer.from_file(str(tokenizer_json)).token_to_id(IMAGE_TOKEN)
        except Exception as exc:  # tokenizers raises a bare Exception on malformed files
            raise CheckpointError(tokenizer_json, f"tokenizer cannot be read ({exc})", _REDOWNLOAD) from exc
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        added = tokenizer_config.get("added_tokens_decoder", {})
        token_id = next((int(i) for i, tok in added.items() if tok.get("content") == IMAGE_TOKEN), None)
        if token_id is None and (folder / "added_tokens.json").is_file():
            token_id = _read_json(folder / "added_tokens.json", _REDOWNLOAD).get(IMAGE_TOKEN)
    else:
        raise CheckpointError(
            tokenizer_json,
            "tokenizer files are missing (tokenizer.json, or vocab.json + merges.txt)",
            _REDOWNLOAD,
        )
    if token_id is None:
        raise CheckpointError(
            tokenizer_json if tokenizer_json.is_file() else folder / "tokenizer_config.json",
            f"the tokenizer has no {IMAGE_TOKEN} token, so images cannot be placed in a prompt",
            "use the tokenizer files shipped with the Hulu-Med checkpoint",
        )
    if token_id >= int(config.get("vocab_size", 0)):
        raise CheckpointError(
            folder / "config.json",
            f"{IMAGE_TOKEN} id {token_id} is outside vocab_size "
            f"{config.get('vocab_size')}: tokenizer and weights do not belong together",
            _REDOWNLOAD,
        )
    return int(token_id)


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            template = _read_json(path, _REDOWNLOAD).get("chat_template")
            if isinstance(template, str) and template.strip():
                return template
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _load_hash_cache(cache: Path | None) -> dict[str, list]:
    if cache is None or not cache.is_file():
        return {}
    try:
        payload = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a damaged cache only costs re-hashing
    return payload if isinstance(payload, dict) else {}


def _save_hash_cache(cache: Path, entries: dict[str, list]) -> None:
    write_bytes_atomic(cache, json.dumps(entries).encode("utf-8"))


def _file_digest(path: Path, cache: dict[str, list]) -> str:
    """SHA-256 of ``path``, reused from ``cache`` while size and mtime are unchanged."""
    stat = path.stat()
    key = str(path)
    known = cache.get(key)
    if isinstance(known, list) and len(known) == 3 and known[:2] == [stat.st_size, stat.st_mtime_ns]:
        return str(known[2])
    digest = _sha256(path)
    cache[key] = [stat.st_size, stat.st_mtime_ns, digest]
    return digest


def verify_checksums(folder: Path, hash_cache: Path | None = None) -> str:
    """Check every file listed in ``SHA256SUMS``; return a one-line summary for the load report.

    Hashing a 16 GB checkpoint takes tens of seconds; with ``hash_cache`` (a JSON file the caller
    keeps, e.g. in the app's data folder) a file is re-hashed only when its size or mtime changed.
    """
    sums = folder / CHECKSUM_FILE
    if not sums.is_file():
        return f"no {CHECKSUM_FILE}"
    cache = _load_hash_cache(hash_cache)
    count = 0
    for line_no, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise CheckpointError(
                sums, f"line {line_no} is not '<sha256>  <file>'", "regenerate it with sha256sum"
            )
        expected, name = parts[0].lower(), parts[1].lstrip("*")
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise CheckpointError(sums, f"line {line_no} names a file outside the folder", "regenerate it")
        if not target.is_file():
            raise CheckpointError(target, f"listed in {CHECKSUM_FILE} but missing", _REDOWNLOAD)
        if _file_digest(target, cache) != expected:
            raise CheckpointError(
                target, f"SHA-256 does not match {CHECKSUM_FILE} (corrupt or altered file)", _REDOWNLOAD
            )
        count += 1
    if hash_cache is not None:
        _save_hash_cache(hash_cache, cache)
    return f"verified {count} files"


def _check_is_checkpoint_folder(folder: Path) -> None:
    """A clear error for the usual wrong choices: no such path, a file, the folder *above* the
    checkpoint, or a folder that holds no Hulu-Med checkpoint at all."""
    choose = f"choose the Hulu-Med checkpoint folder (the one holding config.json and {INDEX_FILE})"
    if not folder.exists():
        raise CheckpointError(folder, "is not a folder: nothing exists at this path", choose)
    if not folder.is_dir():
        raise CheckpointError(folder, "is not a folder but a file", choose)
    if (folder / "config.json").is_file():
        return
    below = sorted(p.parent for pattern in ("*/config.json", "*/*/config.json") for p in folder.glob(pattern))
    if below:
        names = ", ".join(str(p) for p in below[:3])
        raise CheckpointError(
            folder / "config.json",
            "is missing here, but a sub-folder holds a checkpoint",
            f"choose that sub-folder: {names}",
        )
    raise CheckpointError(
        folder / "config.json",
        "is missing: this folder holds no Hulu-Med checkpoint",
        f"{choose}, downloaded from ZJU-AI4H/Hulu-Med-* (all files)",
    )


def validate_checkpoint(
    folder: Path | str, check_sums: bool = True, hash_cache: Path | None = None
) -> CheckpointInfo:
    """Validate ``folder`` and describe it; raise :class:`CheckpointError` on the first problem."""
    folder = Path(folder).expanduser()
    _check_is_checkpoint_folder(folder)
    config = _read_json(folder / "config.json", _REDOWNLOAD)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            folder / "config.json",
            f"model_type is {model_type!r}, expected one of {SUPPORTED_MODEL_TYPES}",
            "point the workstation at a Hulu-Med checkpoint",
        )
    if not isinstance(config.get("vision_encoder_config"), dict):
        raise CheckpointError(folder / "config.json", "has no vision_encoder_config", _REDOWNLOAD)

    tensors = _read_weights(folder)
    _check_weight_names(folder, tensors, bool(config.get("tie_word_embeddings", False)))
    has_qk_norm = any(".self_attn.q_norm." in name for name in tensors)
    decoder = "qwen3" if model_type == "hulumed_qwen3" or has_qk_norm else "qwen2"

    image_token_id = _image_token_id(folder, config)
    warnings = []
    declared = config.get("image_token_index")
    if isinstance(declared, int) and declared >= 0 and declared != image_token_id:
        warnings.append(
            f"config image_token_index {declared} differs from the tokenizer's {IMAGE_TOKEN} id "
            f"{image_token_id}; the tokenizer's id is used"
        )

    preprocessor = _read_json(folder / "preprocessor_config.json", _REDOWNLOAD)
    vision_patch = config["vision_encoder_config"].get("patch_size")
    if preprocessor.get("patch_size") != vision_patch:
        raise CheckpointError(
            folder / "preprocessor_config.json",
            f"patch_size {preprocessor.get('patch_size')} differs from the vision encoder's {vision_patch}",
            _REDOWNLOAD,
        )

    checksum = verify_checksums(folder, hash_cache) if check_sums else "not checked"
    return CheckpointInfo(
        folder=folder,
        model_type=model_type,
        decoder=decoder,
        config=config,
        tensors=tensors,
        image_token_id=image_token_id,
        preprocessor=preprocessor,
        chat_template=_chat_template(folder),
        checksum=checksum,
        warnings=tuple(warnings),
    )
