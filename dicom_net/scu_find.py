"""C-FIND identifiers per query level, and answers turned into plain JSON-ready dicts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

LEVELS = ("patient", "study", "series", "image")

# What each level asks the PACS to return (empty keys = "return this attribute").
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "patient": (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "study": (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "SeriesDate",
        "NumberOfSeriesRelatedInstances",
    ),
    "image": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}

# Search keys accepted per level: python name -> (DICOM keyword at that level).
SEARCH_KEYS: dict[str, dict[str, str]] = {
    "patient": {"patient_name": "PatientName", "patient_id": "PatientID"},
    "study": {
        "patient_name": "PatientName",
        "patient_id": "PatientID",
        "accession": "AccessionNumber",
        "study_uid": "StudyInstanceUID",
        "modality": "ModalitiesInStudy",
        "date": "StudyDate",
    },
    "series": {"study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID", "modality": "Modality"},
    "image": {
        "study_uid": "StudyInstanceUID",
        "series_uid": "SeriesInstanceUID",
        "sop_uid": "SOPInstanceUID",
    },
}
# Unique keys of the levels above, which a hierarchical query below study level must give.
REQUIRED_KEYS = {"series": ("study_uid",), "image": ("study_uid", "series_uid")}

_DATE_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


class QueryError(ValueError):
    """A query that cannot be sent as asked (unknown level, key not valid at that level ...)."""


def query_model(level: str) -> str:
    return (
        PatientRootQueryRetrieveInformationModelFind
        if level == "patient"
        else StudyRootQueryRetrieveInformationModelFind
    )


def normalise_date(value: str, what: str) -> str:
    """'2024-01-31' or '20240131' -> '20240131'."""
    match = _DATE_RE.match(value.strip())
    if not match:
        raise QueryError(f"{what} {value!r} must be a date like 2024-01-31 or 20240131")
    return "".join(match.groups())


def date_range(date_from: str | None, date_to: str | None) -> str | None:
    """DICOM date range matching: 'FROM-TO', 'FROM-', '-TO' or None."""
    if not date_from and not date_to:
        return None
    start = normalise_date(date_from, "--date-from") if date_from else ""
    end = normalise_date(date_to, "--date-to") if date_to else ""
    if start and end and start > end:
        raise QueryError(f"--date-from {date_from} is after --date-to {date_to}")
    return start if start == end else f"{start}-{end}"


def build_identifier(level: str, keys: Mapping[str, str | None]) -> Dataset:
    """The C-FIND identifier for ``level`` with the given search keys (None/'' = not searched)."""
    if level not in LEVELS:
        raise QueryError(f"query level {level!r} must be one of {', '.join(LEVELS)}")
    given = {k: v for k, v in keys.items() if v not in (None, "")}
    date = date_range(given.pop("date_from", None), given.pop("date_to", None))
    if date:
        given["date"] = date
    allowed = SEARCH_KEYS[level]
    wrong = sorted(set(given) - set(allowed))
    if wrong:
        raise QueryError(
            f"{', '.join(wrong)} cannot be searched at {level} level (allowed: "
            f"{', '.join(sorted({*allowed, 'date_from', 'date_to'} - {'date'}))})"
        )
    missing = [k for k in REQUIRED_KEYS.get(level, ()) if k not in given]
    if missing:
        raise QueryError(f"a {level}-level query needs {' and '.join(missing)}")
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if level == "image" else level.upper()
    for keyword in RETURN_KEYS[level]:
        setattr(ds, keyword, "")
    for name, value in given.items():
        setattr(ds, allowed[name], value)
    return ds


def _plain(value: Any) -> Any:
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, MultiValue):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, (int, float, str)) or value is None:
        return value
    return str(value)


def answer_to_dict(identifier: Dataset, level: str) -> dict[str, Any]:
    """One C-FIND match as ``{keyword: value}`` with every requested key present ('' if absent)."""
    out: dict[str, Any] = {}
    for keyword in RETURN_KEYS[level]:
        value = identifier.get(keyword, "")
        value = _plain(value if value is not None else "")
        if keyword.startswith("NumberOf") or keyword in ("SeriesNumber", "InstanceNumber"):
            value = int(value) if value not in ("", None) else None
        if keyword == "ModalitiesInStudy" and isinstance(value, str):
            value = [value] if value else []
        out[keyword] = value
    return out
