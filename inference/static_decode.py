"""Decode steps in a fixed-size KV buffer, compiled with torch.compile (the gpt-fast recipe).

At batch 1 a 7B decoder step is a few milliseconds of weight reads split over ~400 small kernels;
run eagerly from Python, launch overhead dominates and a 4-bit model decodes no faster than bf16.
A static KV cache gives every step the same shapes, so ``torch.compile(mode="reduce-overhead")``
fuses the small ops and replays the whole step as one CUDA graph.

The engine keeps conversations in transformers' ``DynamicCache`` (prefill, prefix reuse, cropping
stay as they are). A :class:`StaticSession` copies the prompt's keys/values into the smallest
buffer that holds prompt + answer, runs the single-token steps there, and on ``close`` appends the
answer's keys/values back to the dynamic cache, so a stored conversation is identical to one
decoded eagerly. Buffer slots past the current position may hold an earlier answer's keys; the
causal mask (built from the cache's own position counter) hides them. A prompt that fits no
buffer decodes eagerly as before.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import defaultdict
from typing import Any

import torch

import inference.offline  # noqa: F401  (hub off before transformers is imported)

# isort: split
from transformers import DynamicCache, StaticCache

from inference.devices import STATIC_CACHE_TOKENS

log = logging.getLogger(__name__)


def uses_static_decode(quantization: str) -> bool:
    """Whether a model loaded with ``quantization`` decodes through :class:`StaticDecoder` by default."""
    return quantization == "int4"


def _cache_keyword(language_model: torch.nn.Module) -> str:
    """The decoder's keyword for the KV cache (``cache`` from transformers 5.25, else ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(language_model.forward).parameters else "past_key_values"


class StaticDecoder:
    """Owns the fixed-size KV buffers (allocated on first use) and the compiled decode step.

    ``compile``: None compiles on CUDA only (CUDA graphs); True on the CPU compiles without graphs.
    A step that fails to compile is logged and the decoder continues eagerly.
    """

    def __init__(
        self, model: Any, capacities: tuple[int, ...] = STATIC_CACHE_TOKENS, compile: bool | None = None
    ) -> None:
        self._model = model
        self._language_model = model.model.language_model
        self._text_config = model.config.text_config
        self.capacities = tuple(sorted(capacities))
        self.device = model.get_input_embeddings().weight.device
        self._buffers: dict[int, StaticCache] = {}
        self._active: StaticCache | None = None
        self._cache_keyword = _cache_keyword(self._language_model)
        # step inputs live on the device and are refilled in place: no host-to-device copy per step
        self._token = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._position = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self.compiled = self.device.type == "cuda" if compile is None else compile
        if self.compiled:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._run = torch.compile(self._forward, mode=mode, fullgraph=True, dynamic=False)
        else:
            self._run = self._forward

    def session(self, cache: DynamicCache, new_tokens: int) -> StaticSession | None:
        """A session continuing ``cache`` for up to ``new_tokens`` steps, or None when no buffer fits."""
        length = cache.get_seq_length()
        capacity = next((c for c in self.capacities if c >= length + new_tokens), None)
        if capacity is None:
            return None
        buffer = self._buffer(capacity)
        for index, layer in enumerate(cache.layers):
            _set_position(buffer.layers[index], 0)
            buffer.update(layer.keys, layer.values, index)
        return StaticSession(self, buffer, cache, length)

    def warm_up(self, capacities: tuple[int, ...] | None = None) -> float:
        """Allocate the buffers (default: all) and take three steps in each: compiles the step and
        captures its CUDA graph now rather than inside the first answers. Returns the seconds spent.

        Slot 0 of each buffer is scribbled on; every session rewrites its prompt from slot 0. Call it
        where no request runs (e.g. right after creating the engine); graphs are per thread, so the
        engine's thread captures its own on its first steps (fast: compiled code is shared)."""
        started = time.perf_counter()
        text = self._text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        shape = (1, text.num_key_value_heads, 1, head_dim)
        dtype = self._model.get_input_embeddings().weight.dtype
        with torch.inference_mode():
            for capacity in capacities or self.capacities:
                buffer = self._buffer(capacity)
                for index in range(text.num_hidden_layers):
                    _set_position(buffer.layers[index], 0)
                    zeros = torch.zeros(shape, dtype=dtype, device=self.device)
                    buffer.update(zeros, zeros.clone(), index)
                for _ in range(3):  # compile, warm-up run, graph capture
                    for layer in buffer.layers:
                        _set_position(layer, 0)
                    self._step(buffer, 0, 0)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def _buffer(self, capacity: int) -> StaticCache:
        buffer = self._buffers.get(capacity)
        if buffer is None:
            buffer = self._buffers[capacity] = StaticCache(config=self._text_config, max_cache_len=capacity)
        return buffer

    def buffer_bytes(self) -> int:
        """Bytes held by the buffers allocated so far."""
        return sum(
            t.numel() * t.element_size()
            for buffer in self._buffers.values()
            for layer in buffer.layers
            if getattr(layer, "is_initialized", False)
            for t in (layer.keys, layer.values)
        )

    def _forward(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One decoder step in the active buffer: float32 logits of the next token."""
        embeds = self._model.get_input_embeddings()(token)
        hidden = self._language_model(
            inputs_embeds=embeds, position_ids=position, use_cache=True, **{self._cache_keyword: self._active}
        ).last_hidden_state
        return self._model.lm_head(hidden[:, -1, :]).float()

    def _step(self, buffer: StaticCache, token: int, position: int) -> torch.Tensor:
        self._active = buffer
        if self.compiled and self.device.type == "cuda":
            _cudagraph_state_for_this_thread()
        token_t, position_t = self._token.fill_(token), self._position.fill_(position)
        try:
            logits = self._run(token_t, position_t)
        except Exception as exc:  # a compiler failure must not cost the answer
            if self._run == self._forward:
                raise
            log.warning("compiled decode step failed (%s: %s); decoding eagerly", type(exc).__name__, exc)
            self._run, self.compiled = self._forward, False
            for layer in buffer.layers:  # the failed call may have advanced the position counters
                _set_position(layer, position)
            logits = self._forward(token_t, position_t)
        return logits.clone()  # a CUDA-graph output is overwritten by the next replay


class StaticSession:
    """Single-token decode steps for one answer; ``close`` writes them back to the dynamic cache."""

    def __init__(self, decoder: StaticDecoder, buffer: StaticCache, cache: DynamicCache, length: int) -> None:
        self._decoder = decoder
        self._buffer = buffer
        self._cache = cache
        self._start = length
        self.length = length
        self.capacity = buffer.layers[0].max_cache_len

    def step(self, token: int) -> torch.Tensor:
        """Feed ``token`` at the next position; logits (1, vocab) of the token after it."""
        if self.length >= self.capacity:
            raise RuntimeError(f"static KV buffer of {self.capacity} tokens is full")
        logits = self._decoder._step(self._buffer, token, self.length)
        self.length += 1
        return logits

    def close(self) -> None:
        """Append the keys/values of the steps taken to the dynamic cache."""
        if self.length > self._start:
            for index, layer in enumerate(self._buffer.layers):
                keys = layer.keys[:, :, self._start : self.length]
                values = layer.values[:, :, self._start : self.length]
                self._cache.update(keys.clone(), values.clone(), index)
        self._start = self.length


def _set_position(layer: Any, position: int) -> None:
    """Point a static layer's write position at ``position`` in place (its tensor address is fixed)."""
    counter = getattr(layer, "cumulative_length", None)
    if isinstance(counter, torch.Tensor) and getattr(layer, "is_initialized", False):
        counter.fill_(position)


def _cudagraph_state_for_this_thread() -> None:
    """Give this thread the CUDA-graph-tree registry that torch < 2.13 sets up only in the thread
    that imported ``torch._inductor.cudagraph_trees`` (any other plain thread then fails an
    ``_is_key_in_tls`` assertion: pytorch#123177). The engine compiles and replays on its own
    thread, and ``warm_up`` may run on another one."""
    from torch._inductor import cudagraph_trees as trees

    if hasattr(trees.local, "tree_manager_containers") or torch._C._is_key_in_tls("tree_manager_containers"):
        return
    initialize = getattr(trees, "_initialize_tls", None)
    if initialize is not None:
        initialize(trees.local)
        return
    trees.local.tree_manager_containers = {}
    trees.local.tree_manager_locks = defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls("tree_manager_containers", trees.local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", trees.local.tree_manager_locks)
