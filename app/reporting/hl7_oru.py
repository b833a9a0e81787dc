"""HL7 v2.5.1 ORU^R01 for a signed radiology report (IHE Results Distribution shape).

MSH, PID, ORC, OBR, then one OBX (HD) with the Study Instance UID (``113014^DICOM Study^DCM``)
and one TX OBX per report line, OBX-3 naming the section (LOINC 59776-5 Findings, 19005-8
Impression). Result status goes to OBR-25 and every OBX-11; the accession number to OBR-18; the
signing user (licence/ID number and name, XCN) to OBR-32 and OBX-16. When the signed text holds
text written by the model, an NTE after the OBR says so with the model id and version, and each
text OBX with AI-written characters names the model in OBX-17 (observation method); a report
without AI text carries neither. Text is escaped here (``\\`` first), never by a library
(python-hl7's ``escape`` mangles newlines and non-Latin-1 letters), and the message is UTF-8 with
MSH-18 ``UNICODE UTF-8``.

:class:`OruR01` checks its input at construction and names the HL7 field at fault, so an invalid
message cannot be built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from app.reporting.report import SECTION_KINDS, Report, ReportStatus

SEGMENT_END = "\r"
ENCODING_CHARACTERS = "^~\\&"
CHARSET = "UNICODE UTF-8"
STUDY_UID_OBX3 = "113014^DICOM Study^DCM"
AI_METHOD_CODE = "HULU-AI"  # OBX-17 identifier (local coding system L) of AI-written text
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Hl7ValueError(ValueError):
    """Input that would make an invalid or misleading message; the message names the field."""


def escape_text(value: str, field: str = "value") -> str:
    """HL7 escaping of one primitive value: ``\\`` -> ``\\E\\`` first, then ``| ^ & ~``.

    Control characters (line breaks included) cannot travel inside a value: refused.
    """
    bad = _FORBIDDEN_CONTROL.search(value)
    if bad:
        raise Hl7ValueError(f"{field}: control character {bad.group()!r} is not allowed in an HL7 value")
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def hl7_datetime(moment: datetime) -> str:
    """HL7 DTM with seconds and UTC offset, e.g. ``20260101120000+0100``."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.strftime("%Y%m%d%H%M%S%z")


def person_components(name: str) -> tuple[str, str]:
    """(family, given) from "Family, Given", "Family^Given" or a plain name (all family)."""
    for separator in ("^", ","):
        if separator in name:
            family, _, given = name.partition(separator)
            return family.strip(), given.strip()
    return name.strip(), ""


def ai_note(models: Sequence[tuple[str, str]], *, reviewed: bool = True) -> str:
    """One sentence naming the models (id, version) whose text the report keeps; ``reviewed``:
    the radiologist accepted it all (a signed report)."""
    named = "; ".join(f"{model} version {version or 'unknown'}" for model, version in models)
    whose = "reviewed and accepted by the signing radiologist" if reviewed else "not all of it reviewed yet"
    return f"Contains AI-generated text, {whose} ({named or 'model not recorded'})."


def _xpn_from_dicom(pn: str) -> str:
    """DICOM PN (Family^Given^Middle^Prefix^Suffix, first group) as HL7 XPN components."""
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (escape_text(p.strip(), "PID-5 patient name") for p in parts)
    return "^".join([family, given, middle, suffix, prefix]).rstrip("^")


class OruR01:
    """One ORU^R01 message for ``report`` with message control id ``control_id`` (MSH-10)."""

    def __init__(
        self,
        report: Report,
        *,
        control_id: str,
        sending_application: str = "HULU-WS",
        sending_facility: str = "",
        receiving_application: str = "RIS",
        receiving_facility: str = "",
        message_time: datetime | None = None,
        processing_id: str = "P",
        result_status: str | None = None,
        ai_models: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``result_status``: "F" sends a correction as the first final (the RIS never received
        an F for it); ``ai_models``: (model id, version) of the models that wrote report text."""
        if not control_id or len(control_id) > 20 or not control_id.isascii() or not control_id.isalnum():
            raise Hl7ValueError("MSH-10 message control id: 1-20 ASCII letters/digits required")
        if not sending_application:
            raise Hl7ValueError("MSH-3 sending application is empty")
        if processing_id not in ("P", "D", "T"):
            raise Hl7ValueError("MSH-11 processing id must be P, D or T")
        if report.status is ReportStatus.DRAFT:
            raise Hl7ValueError("OBR-25 result status: a draft report is never sent")
        if report.amendment_open:
            raise Hl7ValueError("OBR-25 result status: an amendment is open and not yet signed")
        study = report.study
        if not study.patient_id.strip():
            raise Hl7ValueError("PID-3 patient identifier list: PatientID is empty")
        if not study.accession_number.strip():
            raise Hl7ValueError("OBR-18 accession number is empty: the RIS cannot match the report")
        if not _UID.match(study.study_instance_uid) or len(study.study_instance_uid) > 64:
            raise Hl7ValueError(f"OBX-5 Study Instance UID is not a valid UID: {study.study_instance_uid!r}")
        if not (study.procedure_code or study.study_description or study.modality):
            raise Hl7ValueError(
                "OBR-4 universal service identifier: no procedure code, description or modality"
            )
        if study.patient_birth_date and not re.fullmatch(r"\d{8}", study.patient_birth_date):
            raise Hl7ValueError(f"PID-7 date of birth must be YYYYMMDD, got {study.patient_birth_date!r}")
        if study.study_datetime and not re.fullmatch(r"\d{8}(\d{2,6})?", study.study_datetime):
            raise Hl7ValueError(
                f"OBR-7 observation date/time must be YYYYMMDD[HHMMSS], got {study.study_datetime!r}"
            )
        if not report.signatures:
            raise Hl7ValueError("OBR-32 principal result interpreter: the report carries no signature")
        signature = report.signatures[-1]
        if report.status in (ReportStatus.FINAL, ReportStatus.CORRECTED) and not signature.radiologist:
            raise Hl7ValueError("OBR-32 principal result interpreter: a final report needs the radiologist")
        self.report = report
        self.control_id = control_id
        self.status_code = report.status.hl7_code
        if result_status is not None:
            if (report.status, result_status) != (ReportStatus.CORRECTED, "F"):
                raise Hl7ValueError(
                    "OBR-25 result status: only a correction may be sent as a first final (F)"
                )
            self.status_code = result_status
        self._header = [
            escape_text(v, f"MSH-{i}")
            for i, v in (
                (3, sending_application),
                (4, sending_facility),
                (5, receiving_application),
                (6, receiving_facility),
            )
        ]
        self.message_time = message_time or datetime.now().astimezone()
        self.processing_id = processing_id
        self.signed_at = datetime.fromisoformat(signature.at)
        family, given = person_components(signature.radiologist)
        self._interpreter = tuple(escape_text(v, "OBR-32") for v in (signature.licence, family, given))
        self._ai_lines = {kind.key: report.ai_lines(kind.key) for kind in SECTION_KINDS}
        self._ai_note = escape_text(ai_note(ai_models), "NTE-3") if report.contains_ai_text else ""
        self._ai_method = (
            "^".join(
                [
                    AI_METHOD_CODE,
                    escape_text(
                        "AI-generated: " + ", ".join(f"{m} {v}".strip() for m, v in ai_models), "OBX-17"
                    ),
                    "L",
                ]
            )
            if ai_models
            else f"{AI_METHOD_CODE}^AI-generated^L"
        )
        self._lines = {
            kind.key: [escape_text(line, f"OBX-5 ({kind.title} text)") for line in report.lines(kind.key)]
            for kind in SECTION_KINDS
        }

    def segments(self) -> list[str]:
        study, status = self.report.study, self.status_code
        signed = hl7_datetime(self.signed_at)
        licence, family, given = self._interpreter
        msh = "|".join(
            [
                "MSH",
                ENCODING_CHARACTERS,
                *self._header,
                hl7_datetime(self.message_time),
                "",
                "ORU^R01^ORU_R01",
                self.control_id,
                self.processing_id,
                "2.5.1",
                "",
                "",
                "",
                "",
                "",
                CHARSET,
            ]
        )
        patient_id = escape_text(study.patient_id, "PID-3")
        issuer = escape_text(study.issuer_of_patient_id, "PID-3.4")
        pid = "|".join(
            [
                "PID",
                "1",
                "",
                f"{patient_id}^^^{issuer}^MR",
                "",
                _xpn_from_dicom(study.patient_name),
                "",
                study.patient_birth_date,
                {"M": "M", "F": "F", "O": "O"}.get(study.patient_sex.upper(), "U"),
            ]
        )
        placer = escape_text(study.placer_order_number, "ORC-2/OBR-2")
        filler = escape_text(study.filler_order_number or study.accession_number, "ORC-3/OBR-3")
        orc = "|".join(["ORC", "RE", placer, filler, "", "CM"])
        service = "^".join(
            [
                escape_text(study.procedure_code or study.modality or study.study_description, "OBR-4.1"),
                escape_text(study.study_description or study.modality, "OBR-4.2"),
                escape_text(study.procedure_coding_scheme if study.procedure_code else "L", "OBR-4.3"),
            ]
        )
        obr = [""] * 33
        obr[0:5] = ["OBR", "1", placer, filler, service]
        obr[7] = study.study_datetime
        obr[18] = escape_text(study.accession_number, "OBR-18")
        obr[22] = signed
        obr[24] = "RAD"
        obr[25] = status
        obr[32] = f"{licence}&{family}&{given}".rstrip("&")
        segments = [msh, pid, orc, "|".join(obr)]
        if self._ai_note:
            segments.append(f"NTE|1|L|{self._ai_note}")
        first_obx = len(segments)
        observer = f"{licence}^{family}^{given}".rstrip("^")

        def obx(value_type: str, code: str, sub_id: str, value: str, method: str = "") -> str:
            fields = [
                "OBX",
                str(len(segments) - first_obx + 1),
                value_type,
                code,
                sub_id,
                value,
                "",
                "",
                "",
                "",
                "",
                status,
                "",
                "",
                signed,
                "",
                observer,
                *([method] if method else []),
            ]
            return "|".join(fields)

        segments.append(obx("HD", STUDY_UID_OBX3, "", study.study_instance_uid))
        for index, kind in enumerate(SECTION_KINDS, start=1):
            code = f"{kind.loinc}^{kind.loinc_meaning}^LN"
            for line, ai in zip(self._lines[kind.key], self._ai_lines[kind.key]):
                segments.append(obx("TX", code, str(index), line, self._ai_method if ai else ""))
        return segments

    def to_er7(self) -> str:
        return SEGMENT_END.join(self.segments()) + SEGMENT_END

    def encode(self) -> bytes:
        return self.to_er7().encode("utf-8")
