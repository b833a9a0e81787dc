"""Draft a report with the local model: stream Findings/Impression into the report as AI-marked
text and record the call in the audit. Drafting never sends anything anywhere.

The model is asked with Hulu-Med's own report prompt ("... Findings: {} Impression: {}"); the
answer is split at those headers as it streams (a header arriving in pieces is held back until
complete), reasoning between ``<think>`` tags never enters the report.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from app.assistant.model_service import ModelService
from app.reporting.audit import AuditRecord, Generation, SentInput, now_iso
from app.reporting.report import Report, ReportError, ReportStatus
from inference.preprocess import VisualItem
from inference.prompting import REPORT_PROMPT, Conversation, split_reasoning

log = logging.getLogger(__name__)

_HEADER = re.compile(r"\**\b(findings|impressions?)\b\**\s*:\**[ \t]*", re.IGNORECASE)
_HEADER_WORDS = ("findings:", "impression:", "impressions:")


class DraftError(RuntimeError):
    """The draft could not start (no model, wrong report state); the message says why."""


@dataclass
class DraftSettings:
    max_new_tokens: int = 768
    temperature: float = 0.0
    max_visual_tokens: int = 16384
    prompt: str = REPORT_PROMPT


def _hold_back_partial_header(text: str) -> str:
    """Drop a trailing, still incomplete "Findings:" / "Impression:" header (it may complete later)."""
    for start in range(max(0, len(text) - 16), len(text)):
        if start > 0 and not (text[start - 1].isspace() or text[start - 1] in "*.:"):
            continue
        tail = text[start:].lstrip("*").lower()
        if tail and any(word.startswith(tail) and word != tail for word in _HEADER_WORDS):
            return text[:start]
        if tail and any(
            tail.startswith(word[:-1]) and tail.rstrip("*") == word[:-1] for word in _HEADER_WORDS
        ):
            return text[:start]
    return text


def split_draft(text: str, *, final: bool = True, think_open: bool = False) -> dict[str, str]:
    """Findings and Impression of a (possibly partial) model answer. ``think_open``: the prompt
    pre-opened ``<think>`` (``ModelInputs.think_open``), so the output starts as reasoning."""
    _reasoning, answer = split_reasoning(text, think_open)
    if "<think>" in text and "</think>" not in text:
        answer = ""  # still reasoning
    if not final:
        answer = _hold_back_partial_header(answer)
    sections = {"findings": [], "impression": []}
    matches = list(_HEADER.finditer(answer))
    preamble = answer[: matches[0].start()] if matches else answer
    if preamble.strip():
        sections["findings"].append(preamble)
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(answer)
        key = "findings" if match.group(1).lower() == "findings" else "impression"
        sections[key].append(answer[match.end() : end])
    return {key: "\n".join(part.strip() for part in parts if part.strip()) for key, parts in sections.items()}


def draft_report(
    service: ModelService,
    report: Report,
    audit: AuditRecord,
    visuals: Sequence[VisualItem],
    sent: Sequence[SentInput],
    *,
    settings: DraftSettings | None = None,
    on_update: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    background: bool = False,
) -> Generation:
    """Stream a draft into ``report`` (replacing earlier AI text, keeping the radiologist's).

    ``visuals``: what the model sees; ``sent``: its description for the audit (series, plane,
    slices, window). ``on_update`` is called (on this thread) after each streamed piece.
    ``background``: a pre-draft, cancelled by any foreground request.
    Returns the audit's new :class:`Generation`.
    """
    from inference.engine import GenerationRequest
    from inference.inputs import build_model_inputs

    settings = settings or DraftSettings()
    if not service.state.ready:
        raise DraftError(service.state.message)
    if report.status is not ReportStatus.DRAFT:
        raise ReportError(f"only a draft report is drafted by the model; this one is {report.status.value}")
    if not visuals:
        raise DraftError("no images selected for the draft")
    conversation = Conversation()
    conversation.add_user(settings.prompt, list(visuals))
    loaded = service.loaded
    inputs = build_model_inputs(
        loaded.tokenizer,
        conversation,
        max_tokens=settings.max_visual_tokens,
        chat_template=loaded.chat_template,
    )
    base = {key: report.human_spans(key) for key in ("findings", "impression")}
    generation = Generation(
        purpose="predraft" if background else "draft",
        model_id=service.model_id,
        model_checksum=service.checksum,
        prompt=settings.prompt,
        settings={k: v for k, v in asdict(settings).items() if k != "prompt"},
        inputs=list(sent),
        started_at=now_iso(),
        prompt_tokens=inputs.prompt_tokens,
    )
    audit.generations.append(generation)
    log.info(
        "draft: study %s, %d visual item(s), %d prompt tokens",
        report.study.study_instance_uid,
        len(visuals),
        inputs.prompt_tokens,
    )
    handle = service.submit(
        GenerationRequest(
            inputs=inputs, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature
        ),
        background=background,
    )

    def show(text: str, final: bool) -> None:
        for key, value in split_draft(text, final=final, think_open=inputs.think_open).items():
            report.set_ai_text(key, base[key], value)
        if on_update is not None:
            on_update()

    streamed = ""
    for chunk in handle:
        if cancel is not None and cancel.is_set():
            handle.cancel()
        streamed += chunk
        show(streamed, final=False)
    result = handle.result()
    show(result.text or streamed, final=True)
    generation.finished_at = now_iso()
    generation.output_chars = len(result.text)
    generation.new_tokens = result.new_tokens
    generation.outcome = (
        f"failed: {result.error}"
        if result.finish_reason == "error"
        else "cancelled"
        if result.finish_reason == "cancelled"
        else "completed"
    )
    log.info(
        "draft: study %s %s, %d new tokens",
        report.study.study_instance_uid,
        generation.outcome,
        result.new_tokens,
    )
    return generation
