"""The generation engine: one resident model, one worker thread, streaming, cancel, prefix-cache reuse.

Public API used by the app::

    from inference.loading import load_model
    from inference.engine import Engine, GenerationRequest

    loaded = load_model(folder, device="auto", quantization="auto")
    print(loaded.report.summary())          # device, dtype, quantization, memory, slow mode
    engine = Engine(loaded)
    handle = engine.submit(GenerationRequest(inputs=model_inputs,   # inference.inputs.ModelInputs
                                             conversation_id=study_uid, max_new_tokens=512,
                                             on_text=append_to_chat))  # called on the worker thread
    for chunk in handle:                    # or iterate instead of a callback (blocks until done)
        ...
    handle.cancel()                         # stops within one decode step, prefill chunk or ViT pass
    result = handle.result()                # GenerationResult: text, finish_reason, timings, counts
    engine.forget(study_uid); engine.close()

Optional ONNX vision tower (used only when measured faster on this machine)::

    from inference.onnx_vision import best_vision_encoder
    runner, choice = best_vision_encoder(loaded, cache_dir)   # choice: both timings, chosen path
    engine = Engine(loaded, vision_encoder=runner)             # runner is None -> torch tower

Requests run one at a time in submission order on the engine's own thread (the model is never
touched by two threads). A queued request that is cancelled never starts.

Prefix cache: per ``conversation_id`` the engine keeps the KV cache of the last request (prompt
and answer). A follow-up question's prompt repeats that conversation (same visual tokens, same
earlier turns), so only the tokens after the longest common prefix are prefilled and the vision
encoder is not run again unless new ``<image>`` tokens appear after the prefix. A request with no
cache of its own (a new conversation, a report draft without ``conversation_id``) starts from a
copy of another conversation's cache when they share a prefix (e.g. the same study's images).
``<image>`` positions match only when the same pixels stand behind them. Greedy answers equal a
from-scratch run. Caches are dropped on ``forget`` and beyond ``max_conversations`` (least
recently used first).

The loop calls the native model's parts directly (vision tower + projector, decoder, last-position
``lm_head``) instead of ``generate()``: that keeps logits for one position only (``generate`` on
this class computes ``lm_head`` over the whole 15k-token prompt), prefills in chunks (bounded
activation memory, cancellable between chunks) and lets the cache be cropped and reused.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Self

import torch

import inference.offline  # noqa: F401  (hub off before transformers is imported)

# isort: split
from transformers import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from inference.devices import MAX_STORED_CONVERSATIONS, PREFILL_CHUNK, VISION_CHUNK_PATCHES
from inference.inputs import ModelInputs
from inference.loading import LoadedModel
from inference.static_decode import StaticDecoder, uses_static_decode

log = logging.getLogger(__name__)
FinishReason = Literal["stop", "length", "cancelled", "error"]
MIN_BORROWED_PREFIX = 32  # shorter shared prefixes are cheaper to prefill than to copy
_STOP = object()


class _Cancelled(Exception):
    """Raised inside the worker when a request is cancelled before its prompt is encoded."""


@dataclass
class GenerationRequest:
    """One question to the model. ``temperature`` 0 means greedy (deterministic)."""

    inputs: ModelInputs
    conversation_id: str | None = None
    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    on_text: Callable[[str], None] | None = None  # each new text chunk, on the engine thread
    # (phase, done, total) on the engine thread: "reading" (prompt tokens prefilled of those to
    # prefill; the vision tower counts its frames first as "seeing" frames done/total) and
    # "writing" (new tokens of max_new_tokens)
    on_progress: Callable[[str, int, int], None] | None = None
    skip_special_tokens: bool = True
    ignore_eos: bool = False  # run to max_new_tokens (benchmarks)


@dataclass
class GenerationResult:
    """What came out, why it stopped and how long it took (no prompt text is kept)."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    prefill_tokens: int  # tokens actually run through the decoder for the prompt
    reused_tokens: int  # prompt tokens served from the conversation's KV cache
    vision_seconds: float
    ttft_seconds: float  # submit->first token, excluding time spent waiting in the queue
    decode_tokens_per_second: float
    error: str | None = None

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class _Job:
    request: GenerationRequest
    handle: GenerationHandle
    epoch: int = 0  # the conversation's forget() count at submit: a cache is stored only if unchanged


class GenerationHandle:
    """A submitted request: iterate for text chunks, ``cancel()``, ``result()``."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._chunks: queue.Queue[object] = queue.Queue()
        self._result: GenerationResult | None = None

    def cancel(self) -> None:
        """Ask the engine to stop this request as soon as possible (safe from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def __iter__(self) -> Iterator[str]:
        while True:
            chunk = self._chunks.get()
            if chunk is _STOP:
                return
            yield chunk  # type: ignore[misc]

    def result(self, timeout: float | None = None) -> GenerationResult:
        """Wait for the request to finish and return its result."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"request {self.request_id} still running after {timeout} s")
        assert self._result is not None
        return self._result

    def _emit(self, text: str) -> None:
        self._chunks.put(text)

    def _finish(self, result: GenerationResult) -> None:
        self._result = result
        self._chunks.put(_STOP)
        self._done.set()


@dataclass
class _CachedPrefix:
    token_ids: list[int]  # every token whose keys/values are in ``cache``
    cache: DynamicCache
    visual: list[bytes]  # fingerprint of the content behind each <image> token, in order


def visual_fingerprints(inputs: ModelInputs) -> list[bytes]:
    """One fingerprint per ``<image>`` token the LLM sees: a hash of the item (pixels, grid, merge,
    reduction mask) that the token's feature comes from."""
    if inputs.pixel_values is None:
        return []
    prints: list[bytes] = []
    patch_start = feature_start = 0
    pixels = inputs.pixel_values.detach().cpu().contiguous()
    mask = None if inputs.video_compression_mask is None else inputs.video_compression_mask.cpu()
    for (t, h, w), merge in zip(inputs.image_grid_thw.tolist(), inputs.image_merge_sizes.tolist()):
        patches, features = t * h * w, t * (h // merge) * (w // merge)
        digest = hashlib.sha256()  # hardware-accelerated on current CPUs: ~1-2 GB/s
        digest.update(pixels[patch_start : patch_start + patches].numpy().tobytes())
        digest.update(f"{t},{h},{w},{merge}".encode())
        kept = features
        if mask is not None:
            item_mask = mask[feature_start : feature_start + features]
            digest.update(item_mask.numpy().tobytes())
            kept = int(item_mask.sum())
        prints.extend([digest.digest()[:16]] * kept)
        patch_start += patches
        feature_start += features
    return prints


class _TextStream:
    """Incremental detokenisation that never emits half a UTF-8 character."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self.text = ""

    def push(self, token_ids: list[int], final: bool = False) -> str:
        """New text since the last call; an incomplete character waits for its next token unless ``final``."""
        decoded = self._tokenizer.decode(token_ids, skip_special_tokens=self._skip)
        if decoded.endswith("\ufffd") and not final:
            return ""
        new, self.text = decoded[len(self.text) :], decoded
        return new


def stop_token_ids(loaded: LoadedModel) -> set[int]:
    """Token ids that end an answer: the checkpoint's generation_config eos ids + the tokenizer's eos."""
    ids: set[int] = set()
    eos = loaded.model.generation_config.eos_token_id
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


class Engine:
    """Owns a loaded model and runs requests on its own thread; see the module docstring."""

    def __init__(
        self,
        loaded: LoadedModel,
        max_conversations: int = MAX_STORED_CONVERSATIONS,  # the memory plan reserves for these
        prefill_chunk: int = PREFILL_CHUNK,
        vision_encoder: Callable[[ModelInputs], torch.Tensor] | None = None,
        static_decode: bool | None = None,
    ) -> None:
        self.loaded = loaded
        # Single-token steps in a fixed-size, compiled KV buffer (default: for int4 models only).
        if static_decode is None:
            static_decode = uses_static_decode(loaded.report.quantization)
        self.static_decoder = StaticDecoder(loaded.model) if static_decode else None
        self.max_conversations = max_conversations
        self.prefill_chunk = prefill_chunk
        self._vision_encoder = vision_encoder
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._prefixes: OrderedDict[str, _CachedPrefix] = OrderedDict()
        self._prefix_lock = threading.Lock()
        self._epochs: dict[str, int] = {}  # forget() count per conversation (guarded by _prefix_lock)
        self._stop_ids = stop_token_ids(loaded)
        self._current: GenerationHandle | None = None
        self._thread = threading.Thread(target=self._run, name="hulu-engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API
    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Queue ``request``; returns at once with a handle."""
        if not self._thread.is_alive():
            raise RuntimeError("engine is closed")
        handle = GenerationHandle(next(self._ids))
        with self._prefix_lock:
            epoch = self._epochs.get(request.conversation_id, 0) if request.conversation_id else 0
        self._jobs.put(_Job(request, handle, epoch))
        return handle

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's cached KV (e.g. when its study is closed). A request of that
        conversation that is running or queued now keeps no cache when it finishes."""
        with self._prefix_lock:
            self._prefixes.pop(conversation_id, None)
            self._epochs[conversation_id] = self._epochs.get(conversation_id, 0) + 1

    def cached_tokens(self, conversation_id: str) -> int:
        """How many tokens of ``conversation_id`` are cached (0 when none)."""
        with self._prefix_lock:
            prefix = self._prefixes.get(conversation_id)
            return 0 if prefix is None else len(prefix.token_ids)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel the running and queued requests, stop the thread, free the cached KV."""
        current = self._current
        if current is not None:
            current.cancel()
        pending: list[_Job] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                pending.append(job)
        for job in pending:
            job.handle.cancel()
            self._jobs.put(job)
        self._jobs.put(None)
        self._thread.join(timeout)
        with self._prefix_lock:
            self._prefixes.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.handle.cancelled:
                job.handle._finish(self._empty_result(job.request, "cancelled"))
                continue
            self._current = job.handle
            try:
                with torch.inference_mode():
                    result = self._generate(job.request, job.handle, job.epoch)
            except Exception as exc:  # the thread must survive any single request
                log.exception("generation %d failed", job.handle.request_id)
                if job.request.conversation_id is not None:
                    self.forget(job.request.conversation_id)
                result = self._empty_result(job.request, "error")
                result.error = f"{type(exc).__name__}: {exc}"
            self._current = None
            job.handle._finish(result)

    def _empty_result(self, request: GenerationRequest, reason: FinishReason) -> GenerationResult:
        return GenerationResult("", [], reason, request.inputs.prompt_tokens, 0, 0, 0.0, 0.0, 0.0)

    @property
    def _model(self) -> Any:
        return self.loaded.model

    def visual_features(
        self,
        inputs: ModelInputs,
        cancelled: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Projected visual features in ``<image>`` order (after token reduction), on the LLM device.

        The torch tower runs over groups of whole frames of at most ``VISION_CHUNK_PATCHES`` patches
        (frames never attend to each other, so this is exact): a 180-slice stack neither holds all
        activations at once nor blocks ``cancel`` until the whole tower has run.
        """
        device = self.loaded.device
        if self._vision_encoder is not None:
            vision_out = self._vision_encoder(inputs).to(device)
            features = self._model.model.projector(vision_out.to(self._projector_dtype()))
        else:
            parts, start, seen = [], 0, 0
            for (t, h, w), merge in zip(inputs.image_grid_thw.tolist(), inputs.image_merge_sizes.tolist()):
                per_pass = max(1, VISION_CHUNK_PATCHES // (h * w))
                for first in range(0, t, per_pass):
                    if progress is not None:
                        progress(seen + first, inputs.frames)
                    if cancelled():
                        raise _Cancelled
                    frames = min(per_pass, t - first)
                    pixels = inputs.pixel_values[start + first * h * w : start + (first + frames) * h * w]
                    output = self._model.model.get_image_features(
                        pixels.to(device, self.loaded.vision_dtype),
                        torch.tensor([[frames, h, w]], device=device),
                        torch.tensor([merge], device=device),
                        return_dict=True,
                    )
                    parts.extend(output.pooler_output)
                start += t * h * w
                seen += t
            features = torch.cat(parts, dim=0)
        if inputs.video_compression_mask is not None:
            features = features[inputs.video_compression_mask.to(features.device)]
        return features

    def _projector_dtype(self) -> torch.dtype:
        return self._model.model.projector.readout[0].weight.dtype

    def _embed(
        self,
        ids: torch.Tensor,
        inputs: ModelInputs,
        images_before: int,
        cancelled: Callable[[], bool],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[torch.Tensor, float]:
        """Token embeddings of ``ids`` with visual features scattered into its ``<image>`` slots."""
        embeds = self._model.get_input_embeddings()(ids)
        mask = ids == self.loaded.image_token_id
        count = int(mask.sum())
        if count == 0:
            return embeds, 0.0
        if inputs.pixel_values is None:
            raise ValueError(f"prompt has {count} <image> tokens but no pixel values")
        started = time.perf_counter()
        features = self.visual_features(inputs, cancelled, progress)
        if images_before + count > features.shape[0]:
            raise ValueError(
                f"prompt has {images_before + count} <image> tokens but the visuals give "
                f"{features.shape[0]} features"
            )
        features = features[images_before : images_before + count].to(embeds.dtype)
        embeds = embeds.masked_scatter(mask.unsqueeze(-1), features)
        return embeds, time.perf_counter() - started

    def _shared_length(self, cached: _CachedPrefix, ids: list[int], visual: list[bytes]) -> int:
        """Leading tokens of ``ids`` that ``cached`` holds (at least one token is left to run).

        An ``<image>`` position only matches when it holds the same visual content (same item
        fingerprint), so a different study behind identical placeholder ids is never reused.
        """
        image_id = self.loaded.image_token_id
        common = ordinal = 0
        limit = min(len(cached.token_ids), len(ids) - 1)
        while common < limit and cached.token_ids[common] == ids[common]:
            if ids[common] == image_id:
                if (
                    ordinal >= len(visual)
                    or ordinal >= len(cached.visual)
                    or visual[ordinal] != cached.visual[ordinal]
                ):
                    break
                ordinal += 1
            common += 1
        return common

    def _reuse_prefix(
        self, conversation_id: str | None, ids: list[int], visual: list[bytes]
    ) -> tuple[DynamicCache, int]:
        """A cache holding the longest cached prefix of ``ids``, and its length.

        The conversation's own cache is taken over (and cut back to the shared prefix). A request
        without one (a new conversation, a report draft) starts from a *copy* of another
        conversation's cache when they share at least ``MIN_BORROWED_PREFIX`` tokens - typically
        the same study's visual tokens - so the vision tower and that prefill are not run again.
        """
        with self._prefix_lock:
            own = self._prefixes.pop(conversation_id, None) if conversation_id is not None else None
            donors = [] if own is not None else list(self._prefixes.values())
        if own is not None:
            cache, common = own.cache, self._shared_length(own, ids, visual)
        else:
            scored = [(self._shared_length(donor, ids, visual), index) for index, donor in enumerate(donors)]
            common, best = max(scored, default=(0, -1))
            if common < MIN_BORROWED_PREFIX:
                common = 0
            cache = copy.deepcopy(donors[best].cache) if common else None
        if not common:
            return DynamicCache(config=self._model.config.text_config), 0
        surplus = cache.get_seq_length() - common
        if surplus > 0:  # crop(0) empties the cache before transformers 5.14; a negative count never does
            cache.crop(-surplus)
        return cache, common

    def _decoder_step(self, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Run the decoder over ``embeds`` (appending to ``cache``); logits of the last position."""
        total = cache.get_seq_length() + embeds.shape[1]
        attention_mask = torch.ones((1, total), dtype=torch.long, device=embeds.device)
        hidden = self._model.model.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, past_key_values=cache, use_cache=True
        ).last_hidden_state
        return self._model.lm_head(hidden[:, -1, :]).float()

    def _logits_processors(self, request: GenerationRequest) -> LogitsProcessorList:
        processors = LogitsProcessorList()
        if request.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(request.repetition_penalty))
        if request.temperature > 0:
            processors.append(TemperatureLogitsWarper(request.temperature))
            if request.top_p < 1.0:
                processors.append(TopPLogitsWarper(request.top_p))
        return processors

    def _generate(self, request: GenerationRequest, handle: GenerationHandle, epoch: int) -> GenerationResult:
        started = time.perf_counter()
        inputs = request.inputs
        device = self.loaded.device
        ids = inputs.input_ids[0].tolist()
        with self._prefix_lock:  # fingerprints are only needed to store or to compare with a cache
            any_cached = bool(self._prefixes)
        visual = visual_fingerprints(inputs) if request.conversation_id is not None or any_cached else []
        cache, reused = self._reuse_prefix(request.conversation_id, ids, visual)
        images_before = sum(1 for t in ids[:reused] if t == self.loaded.image_token_id)
        new_ids = torch.tensor([ids[reused:]], dtype=torch.long, device=device)
        report = request.on_progress or (lambda _phase, _done, _total: None)
        image_tokens = sum(1 for t in ids[reused:] if t == self.loaded.image_token_id)
        log.info(
            "generation %d: reading %d prompt tokens (%d image tokens; %d reused from the cache)",
            handle.request_id,
            len(ids) - reused,
            image_tokens,
            reused,
        )
        try:
            embeds, vision_seconds = self._embed(
                new_ids,
                inputs,
                images_before,
                lambda: handle.cancelled,
                lambda done, total: report("seeing", done, total),
            )
        except _Cancelled:
            if request.conversation_id is not None and reused:  # the shared prefix is still valid
                self._store_prefix(request.conversation_id, _CachedPrefix(ids[:reused], cache, visual), epoch)
            return self._empty_result(request, "cancelled")

        finish: FinishReason = "length"
        logits = None
        for start in range(0, embeds.shape[1], self.prefill_chunk):
            report("reading", start, embeds.shape[1])
            if handle.cancelled:
                finish = "cancelled"
                break
            logits = self._decoder_step(embeds[:, start : start + self.prefill_chunk], cache)
        del embeds
        prefill_seconds = time.perf_counter() - started
        fed = ids[: cache.get_seq_length()]
        prefill_tokens = len(ids) - reused

        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        processors = self._logits_processors(request)
        stream = _TextStream(self.loaded.tokenizer, request.skip_special_tokens)
        history = torch.tensor([ids], dtype=torch.long, device=device)
        static = None
        decoding = logits is not None and finish != "cancelled" and request.max_new_tokens > 1
        if self.static_decoder is not None and decoding:
            static = self.static_decoder.session(cache, request.max_new_tokens)
        out: list[int] = []
        ttft = 0.0
        decode_started = time.perf_counter()
        while logits is not None and finish != "cancelled" and len(out) < request.max_new_tokens:
            report("writing", len(out), request.max_new_tokens)
            if handle.cancelled:
                finish = "cancelled"
                break
            scores = processors(history, logits) if processors else logits
            if request.temperature > 0:
                probs = torch.softmax(scores, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator)[0, 0])
            else:
                token = int(torch.argmax(scores, dim=-1)[0])
            if not out:
                ttft = time.perf_counter() - started
                decode_started = time.perf_counter()
                log.info(
                    "generation %d: prompt read in %.2f s (vision %.2f s); writing",
                    handle.request_id,
                    prefill_seconds,
                    vision_seconds,
                )
            if token in self._stop_ids and not request.ignore_eos:
                finish = "stop"
                break
            out.append(token)
            if request.repetition_penalty != 1.0:  # the only processor that looks at the history
                history = torch.cat([history, torch.tensor([[token]], device=device)], dim=1)
            text = stream.push(out)
            if text:
                handle._emit(text)
                if request.on_text is not None:
                    request.on_text(text)
            if len(out) >= request.max_new_tokens:
                break
            if static is not None:
                logits = static.step(token)
            else:
                next_embed = self._model.get_input_embeddings()(torch.tensor([[token]], device=device))
                logits = self._decoder_step(next_embed, cache)
            fed.append(token)
        if static is not None:
            static.close()
        decode_seconds = time.perf_counter() - decode_started
        tail = stream.push(out, final=True)
        if tail:
            handle._emit(tail)
            if request.on_text is not None:
                request.on_text(tail)
        decoded_steps = max(len(out) - 1, 0)
        log.info(
            "generation %d: %s after %d new tokens in %.2f s",
            handle.request_id,
            finish,
            len(out),
            decode_seconds,
        )

        if (
            request.conversation_id is not None
            and finish != "cancelled"
            and len(fed) == cache.get_seq_length()
        ):
            self._store_prefix(request.conversation_id, _CachedPrefix(fed, cache, visual), epoch)
        return GenerationResult(
            text=stream.text,
            token_ids=out,
            finish_reason=finish,
            prompt_tokens=len(ids),
            prefill_tokens=prefill_tokens,
            reused_tokens=reused,
            vision_seconds=vision_seconds,
            ttft_seconds=ttft,
            decode_tokens_per_second=decoded_steps / decode_seconds
            if decoded_steps and decode_seconds
            else 0.0,
        )

    def _store_prefix(self, conversation_id: str, prefix: _CachedPrefix, epoch: int) -> None:
        with self._prefix_lock:
            if self._epochs.get(conversation_id, 0) != epoch:
                return  # forgotten while this request ran or waited: its cache goes with it
            self._prefixes[conversation_id] = prefix
            self._prefixes.move_to_end(conversation_id)
            while len(self._prefixes) > self.max_conversations:
                self._prefixes.popitem(last=False)
