"""The radiology report: sections of text whose AI-written parts stay marked until the radiologist
edits or accepts them, and a status machine draft -> preliminary -> final -> corrected.

Rules (clinical safety):
- Only ``draft`` and ``preliminary`` reports are editable; a ``final`` or ``corrected`` report
  changes only through an amendment (:meth:`Report.open_amendment`), signed as ``corrected``.
- A report leaves ``draft`` only when no unreviewed AI text remains.
- ``final`` and ``corrected`` need the named radiologist who signs.
- A draft is never exported (the HL7 and SR builders refuse it).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import pydicom


class ReportError(ValueError):
    """A report operation that the rules forbid; the message says which rule."""


class ReportStatus(str, Enum):
    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"

    @property
    def hl7_code(self) -> str:
        """HL7 table 0123 result status (OBR-25 / OBX-11)."""
        if self is ReportStatus.DRAFT:
            raise ReportError("a draft report has no HL7 result status: it cannot be sent")
        return {"preliminary": "P", "final": "F", "corrected": "C"}[self.value]

    @classmethod
    def from_hl7_code(cls, code: str) -> ReportStatus:
        table = {"P": cls.PRELIMINARY, "F": cls.FINAL, "C": cls.CORRECTED}
        if code.upper() not in table:
            raise ReportError(f"result status must be P, F or C, not {code!r}")
        return table[code.upper()]


ALLOWED_TRANSITIONS: dict[ReportStatus, frozenset[ReportStatus]] = {
    ReportStatus.DRAFT: frozenset({ReportStatus.PRELIMINARY, ReportStatus.FINAL}),
    ReportStatus.PRELIMINARY: frozenset({ReportStatus.FINAL}),
    ReportStatus.FINAL: frozenset({ReportStatus.CORRECTED}),
    ReportStatus.CORRECTED: frozenset({ReportStatus.CORRECTED}),
}


@dataclass(frozen=True)
class SectionKind:
    key: str
    title: str
    loinc: str
    loinc_meaning: str


SECTION_KINDS: tuple[SectionKind, ...] = (
    SectionKind("findings", "Findings", "59776-5", "Procedure Findings"),
    SectionKind("impression", "Impression", "19005-8", "Impression"),
)
SECTION_BY_KEY = {kind.key: kind for kind in SECTION_KINDS}


@dataclass
class Span:
    """A run of section text; ``ai`` marks text written by the model and not yet reviewed."""

    text: str
    ai: bool = False


@dataclass
class StudyInfo:
    """What the report needs to know about the study (from the archive's DICOM headers)."""

    study_instance_uid: str
    accession_number: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""  # DICOM PN: Family^Given^Middle^Prefix^Suffix
    patient_birth_date: str = ""  # YYYYMMDD
    patient_sex: str = ""
    modality: str = ""
    body_part: str = ""
    study_description: str = ""
    study_datetime: str = ""  # DICOM DA+TM, e.g. 20260101120000
    placer_order_number: str = ""
    filler_order_number: str = ""
    procedure_code: str = ""
    procedure_coding_scheme: str = ""

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> StudyInfo:
        """Study-level attributes of any instance of the study."""

        def text(keyword: str) -> str:
            value = ds.get(keyword, "")
            return "" if value is None else str(value).strip()

        code, scheme = "", ""
        for item in ds.get("ProcedureCodeSequence", []) or []:
            code, scheme = str(item.get("CodeValue", "")), str(item.get("CodingSchemeDesignator", ""))
            break
        return cls(
            study_instance_uid=text("StudyInstanceUID"),
            accession_number=text("AccessionNumber"),
            patient_id=text("PatientID"),
            issuer_of_patient_id=text("IssuerOfPatientID"),
            patient_name=text("PatientName"),
            patient_birth_date=text("PatientBirthDate"),
            patient_sex=text("PatientSex"),
            modality=text("Modality"),
            body_part=text("BodyPartExamined"),
            study_description=text("StudyDescription"),
            study_datetime=(text("StudyDate") + text("StudyTime").split(".")[0])[:14],
            procedure_code=code,
            procedure_coding_scheme=scheme,
        )


@dataclass
class KeyImage:
    """An image the report rests on (referenced in the SR, embedded in the PDF)."""

    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    frame: int | None = None
    path: str = ""  # the archive file, for SR evidence and PDF thumbnails
    note: str = ""


@dataclass
class Signature:
    radiologist: str
    status: ReportStatus
    at: str  # ISO 8601 with offset
    content: str = ""  # Report.content_digest() when signed ("" in records from before it existed)


def _now() -> datetime:
    return datetime.now().astimezone()


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")  # only LF ends a line (str.splitlines also splits on \x1c ...)


def split_lines_keepends(text: str) -> list[str]:
    """Lines of ``text`` each with its trailing newline (the last may lack one)."""
    return _LINE.findall(text)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _apply_edit(spans: list[Span], new_text: str) -> list[Span]:
    """Spans after the radiologist changed the text to ``new_text``.

    Text kept from an untouched AI span stays marked; an AI span with any character changed,
    removed or inserted inside it becomes the radiologist's text; inserted text is the
    radiologist's. Lines are aligned first, then characters within changed lines.
    """
    old_text = "".join(span.text for span in spans)
    origin = [index for index, span in enumerate(spans) for _ in span.text]
    old_lines, new_lines = split_lines_keepends(old_text), split_lines_keepends(new_text)
    starts = [0]
    for line in old_lines:
        starts.append(starts[-1] + len(line))
    edited: set[int] = set()
    new_origin: list[int | None] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old_lines, new_lines, autojunk=False
    ).get_opcodes():
        old_block, block_origin = old_text[starts[i1] : starts[i2]], origin[starts[i1] : starts[i2]]
        new_block = "".join(new_lines[j1:j2])
        if tag == "equal":
            new_origin.extend(block_origin)
        elif tag == "replace":
            new_origin.extend(_char_edit(old_block, block_origin, new_block, edited))
        else:
            edited.update(block_origin)
            new_origin.extend([None] * len(new_block))
    result: list[Span] = []
    previous_key: object = object()
    for char, source in zip(new_text, new_origin):
        ai = source is not None and spans[source].ai and source not in edited
        key = ("ai", source) if ai else "human"
        if result and key == previous_key:
            result[-1].text += char
        else:
            result.append(Span(char, ai))
        previous_key = key
    return result


def _char_edit(old: str, origin: list[int], new: str, edited: set[int]) -> list[int | None]:
    """Character-level origins of ``new`` within one changed block; records touched spans."""
    new_origin: list[int | None] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            new_origin.extend(origin[i1:i2])
            continue
        edited.update(origin[i1:i2])
        if tag == "insert" and 0 < i1 < len(old) and origin[i1 - 1] == origin[i1]:
            edited.add(origin[i1])
        new_origin.extend([None] * (j2 - j1))
    return new_origin


@dataclass
class Report:
    """One report for one study, with its own id, status and signatures."""

    study: StudyInfo
    report_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: ReportStatus = ReportStatus.DRAFT
    sections: dict[str, list[Span]] = field(default_factory=lambda: {kind.key: [] for kind in SECTION_KINDS})
    key_images: list[KeyImage] = field(default_factory=list)
    signatures: list[Signature] = field(default_factory=list)
    amendment_open: bool = False
    version: int = 1
    created_at: str = field(default_factory=lambda: _now().isoformat())

    def __post_init__(self) -> None:
        if not self.study.study_instance_uid:
            raise ReportError("StudyInstanceUID: a report needs the study it belongs to")

    # -- text --------------------------------------------------------------------------------

    @property
    def editable(self) -> bool:
        return self.status in (ReportStatus.DRAFT, ReportStatus.PRELIMINARY) or self.amendment_open

    def _require_editable(self) -> None:
        if not self.editable:
            raise ReportError(f"a {self.status.value} report is locked: open an amendment to correct it")

    @staticmethod
    def _kind(section: str) -> SectionKind:
        if section not in SECTION_BY_KEY:
            raise ReportError(f"unknown report section {section!r}")
        return SECTION_BY_KEY[section]

    def text(self, section: str) -> str:
        self._kind(section)
        return "".join(span.text for span in self.sections[section])

    def spans(self, section: str) -> list[Span]:
        self._kind(section)
        return [Span(span.text, span.ai) for span in self.sections[section]]

    def append_ai_text(self, section: str, text: str) -> None:
        """Add model output (streamed pieces) to a section, marked AI, one span per line."""
        self._kind(section)
        self._require_editable()
        spans = self.sections[section]
        if text and spans and not spans[-1].ai and not spans[-1].text.endswith("\n"):
            spans[-1] = Span(spans[-1].text + "\n")  # AI text starts on its own line after the radiologist's
        for piece in split_lines_keepends(normalise_newlines(text)):
            if spans and spans[-1].ai and not spans[-1].text.endswith("\n"):
                spans[-1].text += piece
            else:
                spans.append(Span(piece, ai=True))

    def human_spans(self, section: str) -> list[Span]:
        """The radiologist's text of a section (AI spans left out)."""
        return [span for span in self.spans(section) if not span.ai]

    def set_ai_text(self, section: str, base: list[Span], ai_text: str) -> None:
        """Section = ``base`` (the radiologist's spans) followed by ``ai_text`` marked AI, one span
        per line. A streaming draft calls this with the whole text so far on every update."""
        self._kind(section)
        self._require_editable()
        spans = [Span(span.text, span.ai) for span in base]
        text = normalise_newlines(ai_text)
        if spans and text and not spans[-1].text.endswith("\n"):
            spans.append(Span("\n"))
        spans.extend(Span(piece, ai=True) for piece in split_lines_keepends(text))
        self.sections[section] = _merge_adjacent(spans)

    def set_text(self, section: str, new_text: str) -> None:
        """The radiologist's edit: the section becomes ``new_text`` (AI marks follow the diff)."""
        self._kind(section)
        self._require_editable()
        self.sections[section] = _apply_edit(self.sections[section], normalise_newlines(new_text))

    def replace_with_template(self, section: str, text: str) -> None:
        """Start a section from a site template (radiologist-owned text)."""
        self._kind(section)
        self._require_editable()
        self.sections[section] = [Span(normalise_newlines(text))] if text else []

    def accept_ai(self, section: str | None = None) -> int:
        """The radiologist accepts the AI text of one section (or all); returns spans accepted."""
        self._require_editable()
        keys = [self._kind(section).key] if section else list(self.sections)
        accepted = 0
        for key in keys:
            for span in self.sections[key]:
                if span.ai:
                    span.ai = False
                    accepted += 1
            self.sections[key] = _merge_adjacent(self.sections[key])
        return accepted

    def content_digest(self) -> str:
        """SHA-256 of what a signature covers: every section's text and the key images."""
        digest = hashlib.sha256()
        for key in sorted(self.sections):
            digest.update(f"{key}\0{self.text(key)}\0".encode())
        for image in self.key_images:
            digest.update(f"key\0{image.sop_instance_uid}\0{image.frame}\0".encode())
        return digest.hexdigest()

    @property
    def edited_since_signed(self) -> bool:
        """A signed (preliminary) report whose text or key images changed after the signature:
        what would be sent is not what was signed, so it must be signed again first."""
        if not self.signatures or not self.signatures[-1].content:
            return False
        return self.signatures[-1].content != self.content_digest()

    def unreviewed_ai_spans(self) -> int:
        return sum(1 for spans in self.sections.values() for span in spans if span.ai and span.text)

    def lines(self, section: str) -> list[str]:
        """Section text split at line breaks (what goes into one HL7 OBX / SR TEXT item each)."""
        text = self.text(section)
        return text.split("\n") if text else []

    # -- status ------------------------------------------------------------------------------

    @property
    def radiologist(self) -> str:
        return self.signatures[-1].radiologist if self.signatures else ""

    def open_amendment(self) -> None:
        """Unlock a signed final report for correction (it will be signed as ``corrected``)."""
        if self.status not in (ReportStatus.FINAL, ReportStatus.CORRECTED):
            raise ReportError(f"only a final report can be amended, this one is {self.status.value}")
        if not self.amendment_open:
            self.amendment_open = True
            self.version += 1

    def sign(self, status: ReportStatus | str, radiologist: str = "", *, at: datetime | None = None) -> None:
        """Move to ``status`` (preliminary, final, corrected) signed by ``radiologist``."""
        status = ReportStatus(status)
        radiologist = radiologist.strip()
        resign = status is self.status is ReportStatus.PRELIMINARY and self.edited_since_signed
        if status not in ALLOWED_TRANSITIONS[self.status] and not resign:
            raise ReportError(f"illegal transition {self.status.value} -> {status.value}")
        if status is ReportStatus.CORRECTED and not self.amendment_open:
            raise ReportError("a correction needs an open amendment of the final report")
        if status in (ReportStatus.FINAL, ReportStatus.CORRECTED) and not radiologist:
            raise ReportError(f"a {status.value} report must be signed by a named radiologist")
        if self.unreviewed_ai_spans():
            raise ReportError(
                f"{self.unreviewed_ai_spans()} AI-written passage(s) not reviewed: edit or accept them first"
            )
        if not any(self.text(kind.key).strip() for kind in SECTION_KINDS):
            raise ReportError("an empty report cannot be signed")
        self.status = status
        self.amendment_open = False
        self.signatures.append(
            Signature(radiologist, status, (at or _now()).isoformat(), self.content_digest())
        )

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "study": asdict(self.study),
            "status": self.status.value,
            "sections": {k: [asdict(s) for s in v] for k, v in self.sections.items()},
            "key_images": [asdict(k) for k in self.key_images],
            "signatures": [
                {"radiologist": s.radiologist, "status": s.status.value, "at": s.at, "content": s.content}
                for s in self.signatures
            ],
            "amendment_open": self.amendment_open,
            "version": self.version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        sections = {kind.key: [] for kind in SECTION_KINDS}
        for key, spans in data.get("sections", {}).items():
            sections[key] = [Span(s["text"], bool(s["ai"])) for s in spans]
        return cls(
            study=StudyInfo(**data["study"]),
            report_id=data["report_id"],
            status=ReportStatus(data["status"]),
            sections=sections,
            key_images=[KeyImage(**k) for k in data.get("key_images", [])],
            signatures=[
                Signature(s["radiologist"], ReportStatus(s["status"]), s["at"], s.get("content", ""))
                for s in data.get("signatures", [])
            ],
            amendment_open=bool(data.get("amendment_open", False)),
            version=int(data.get("version", 1)),
            created_at=data.get("created_at", _now().isoformat()),
        )


def _merge_adjacent(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in spans:
        if merged and not span.ai and not merged[-1].ai:
            merged[-1].text += span.text
        elif span.text:
            merged.append(Span(span.text, span.ai))
    return merged
