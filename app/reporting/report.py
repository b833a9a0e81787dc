"""The radiology report: sections of text whose AI-written characters stay marked until the
radiologist retypes or accepts them, and a status machine draft -> preliminary -> final -> corrected.

Rules (clinical safety):
- Only ``draft`` and ``preliminary`` reports are editable; a ``final`` or ``corrected`` report
  changes only through an amendment (:meth:`Report.open_amendment`), signed as ``corrected``.
- AI marks are kept per character: an edit makes only the characters it typed the radiologist's;
  the AI characters around them stay marked. Accepted AI text is remembered as AI-written
  (``Span.kept_ai``) so that every export can say the signed report contains it.
- A report leaves ``draft`` only when no unreviewed AI text remains.
- ``final`` and ``corrected`` need the named radiologist who signs (an authenticated workstation
  user: :mod:`app.reporting.users`, checked by the workflow).
- Text is cleaned where it enters (:func:`clean_text`): no control characters that an export
  would refuse.
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
    """A run of section text; ``ai`` marks text written by the model and not yet reviewed,
    ``kept_ai`` text written by the model that the radiologist accepted unchanged."""

    text: str
    ai: bool = False
    kept_ai: bool = False

    @property
    def flags(self) -> tuple[bool, bool]:
        return self.ai, self.kept_ai


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
    radiologist: str  # display name, "Family^Given" (HL7 XCN / DICOM PN order) or "Family, Given"
    status: ReportStatus
    at: str  # ISO 8601 with offset
    content: str = ""  # Report.content_digest() when signed ("" in records from before it existed)
    user: str = ""  # the authenticated workstation user's login ("" in records from before users)
    licence: str = ""  # the signer's licence/ID number (XCN-1), if configured


def display_name(pn: str) -> str:
    """ "Family, Given" of a DICOM PN / HL7 XCN-ordered ``Family^Given[^...]`` (first group)."""
    parts = pn.split("=")[0].split("^")
    family, given = (parts + ["", ""])[:2]
    return f"{family}, {given}" if given else family


def format_dicom_date(value: str) -> str:
    """``YYYY-MM-DD`` of a DICOM DA (or the date part of a DA+TM), "" when it is not one."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) >= 8 and value[:8].isdigit() else ""


def format_dicom_datetime(value: str) -> str:
    """``YYYY-MM-DD HH:MM`` of a DICOM DA+TM (just the date when there is no time)."""
    date, time = format_dicom_date(value), value[8:12]
    return f"{date} {time[:2]}:{time[2:]}" if date and len(time) == 4 and time.isdigit() else date


def _now() -> datetime:
    return datetime.now().astimezone()


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")  # only LF ends a line (str.splitlines also splits on \x1c ...)


def split_lines_keepends(text: str) -> list[str]:
    """Lines of ``text`` each with its trailing newline (the last may lack one)."""
    return _LINE.findall(text)


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_BREAKS = re.compile(r"[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # vertical tab, form feed, separators
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Text as the report keeps it: line breaks as LF (vertical tabs, form feeds and Unicode line
    separators become LF), other control characters dropped; tabs kept."""
    return _CONTROL.sub("", _BREAKS.sub("\n", normalise_newlines(text)))


_MIN_KEPT_RUN = 3


def _apply_edit(spans: list[Span], new_text: str) -> list[Span]:
    """Spans after the radiologist changed the text to ``new_text``.

    Every character kept from the old text keeps its marks (AI, unreviewed or accepted); every
    character typed, or typed over, is the radiologist's. Lines are aligned first, then
    characters within changed lines, so that a line edited in place keeps its untouched
    characters marked. Inside a rewritten line a match of one or two characters ("e", ".") is
    a coincidence of retyping, not kept text: it is the radiologist's too.
    """
    old_text = "".join(span.text for span in spans)
    flags = [span.flags for span in spans for _ in span.text]
    old_lines, new_lines = split_lines_keepends(old_text), split_lines_keepends(new_text)
    starts = [0]
    for line in old_lines:
        starts.append(starts[-1] + len(line))
    human = (False, False)
    new_flags: list[tuple[bool, bool]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old_lines, new_lines, autojunk=False
    ).get_opcodes():
        old_block, block_flags = old_text[starts[i1] : starts[i2]], flags[starts[i1] : starts[i2]]
        new_block = "".join(new_lines[j1:j2])
        if tag == "equal":
            new_flags.extend(block_flags)
        elif tag == "replace":
            for ctag, c1, c2, d1, d2 in difflib.SequenceMatcher(
                None, old_block, new_block, autojunk=False
            ).get_opcodes():
                kept = ctag == "equal" and (c2 - c1 >= _MIN_KEPT_RUN or len(old_block) < _MIN_KEPT_RUN)
                new_flags.extend(block_flags[c1:c2] if kept else [human] * (d2 - d1))
        else:
            new_flags.extend([human] * len(new_block))
    result: list[Span] = []
    for char, (ai, kept) in zip(new_text, new_flags):
        if result and result[-1].flags == (ai, kept):
            result[-1].text += char
        else:
            result.append(Span(char, ai, kept))
    return result


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
        return [Span(span.text, span.ai, span.kept_ai) for span in self.sections[section]]

    def append_ai_text(self, section: str, text: str) -> None:
        """Add model output (streamed pieces) to a section, marked AI."""
        self._kind(section)
        self._require_editable()
        spans = self.sections[section]
        text = clean_text(text)
        if text and spans and not spans[-1].ai and not spans[-1].text.endswith("\n"):
            spans.append(Span("\n"))  # AI text starts on its own line after the radiologist's
        spans.append(Span(text, ai=True))
        self.sections[section] = _merge_adjacent(spans)

    def human_spans(self, section: str) -> list[Span]:
        """The radiologist's text of a section (AI spans left out)."""
        return [span for span in self.spans(section) if not span.ai]

    def set_ai_text(self, section: str, base: list[Span], ai_text: str) -> None:
        """Section = ``base`` (the radiologist's spans) followed by ``ai_text`` marked AI.
        A streaming draft calls this with the whole text so far on every update."""
        self._kind(section)
        self._require_editable()
        spans = [Span(span.text, span.ai, span.kept_ai) for span in base]
        text = clean_text(ai_text)
        if spans and text and not spans[-1].text.endswith("\n"):
            spans.append(Span("\n"))
        spans.append(Span(text, ai=True))
        self.sections[section] = _merge_adjacent(spans)

    def set_text(self, section: str, new_text: str) -> None:
        """The radiologist's edit: the section becomes ``new_text`` (AI marks follow the diff)."""
        self._kind(section)
        self._require_editable()
        self.sections[section] = _apply_edit(self.sections[section], clean_text(new_text))

    def replace_with_template(self, section: str, text: str) -> None:
        """Start a section from a site template (radiologist-owned text)."""
        self._kind(section)
        self._require_editable()
        text = clean_text(text)
        self.sections[section] = [Span(text)] if text else []

    def accept_ai(self, section: str | None = None) -> int:
        """The radiologist accepts the AI text of one section (or all) as it stands; it stays
        recorded as AI-written (``kept_ai``). Returns the number of passages accepted."""
        self._require_editable()
        keys = [self._kind(section).key] if section else list(self.sections)
        accepted = sum(self._ai_passages(key) for key in keys)
        for key in keys:
            for span in self.sections[key]:
                if span.ai:
                    span.ai, span.kept_ai = False, True
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

    def _ai_passages(self, section: str) -> int:
        """Unreviewed AI passages of a section: runs of AI characters between the radiologist's."""
        return sum(1 for span in _merge_adjacent(self.spans(section)) if span.ai)

    def unreviewed_ai_spans(self) -> int:
        """Unreviewed AI passages in the whole report."""
        return sum(self._ai_passages(key) for key in self.sections)

    @property
    def contains_ai_text(self) -> bool:
        """Some text of the report was written by the model (accepted or not)."""
        return any(span.ai or span.kept_ai for spans in self.sections.values() for span in spans if span.text)

    def ai_lines(self, section: str) -> list[bool]:
        """For each of :meth:`lines`: whether it holds characters written by the model."""
        marks, current = [], False
        for span in self.sections[self._kind(section).key]:
            pieces = span.text.split("\n")
            for index, piece in enumerate(pieces):
                if index:
                    marks.append(current)
                    current = False
                current = current or (bool(piece) and (span.ai or span.kept_ai))
        return [*marks, current] if self.text(section) else []

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

    def sign(
        self,
        status: ReportStatus | str,
        radiologist: str = "",
        *,
        user: str = "",
        licence: str = "",
        at: datetime | None = None,
    ) -> None:
        """Move to ``status`` (preliminary, final, corrected) signed by ``radiologist`` (the
        authenticated user ``user`` with licence/ID ``licence``; the workflow authenticates)."""
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
            Signature(radiologist, status, (at or _now()).isoformat(), self.content_digest(), user, licence)
        )

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "study": asdict(self.study),
            "status": self.status.value,
            "sections": {k: [asdict(s) for s in v] for k, v in self.sections.items()},
            "key_images": [asdict(k) for k in self.key_images],
            "signatures": [{**asdict(s), "status": s.status.value} for s in self.signatures],
            "amendment_open": self.amendment_open,
            "version": self.version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        sections = {kind.key: [] for kind in SECTION_KINDS}
        for key, spans in data.get("sections", {}).items():
            sections[key] = [Span(s["text"], bool(s["ai"]), bool(s.get("kept_ai", False))) for s in spans]
        return cls(
            study=StudyInfo(**data["study"]),
            report_id=data["report_id"],
            status=ReportStatus(data["status"]),
            sections=sections,
            key_images=[KeyImage(**k) for k in data.get("key_images", [])],
            signatures=[
                Signature(
                    s["radiologist"],
                    ReportStatus(s["status"]),
                    s["at"],
                    s.get("content", ""),
                    s.get("user", ""),
                    s.get("licence", ""),
                )
                for s in data.get("signatures", [])
            ],
            amendment_open=bool(data.get("amendment_open", False)),
            version=int(data.get("version", 1)),
            created_at=data.get("created_at", _now().isoformat()),
        )


def _merge_adjacent(spans: list[Span]) -> list[Span]:
    """Adjacent spans with the same marks joined, empty ones dropped."""
    merged: list[Span] = []
    for span in spans:
        if merged and span.flags == merged[-1].flags:
            merged[-1].text += span.text
        elif span.text:
            merged.append(Span(span.text, span.ai, span.kept_ai))
    return merged
