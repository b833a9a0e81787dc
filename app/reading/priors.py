"""Priors: the same patient's other studies in the local archive (plain Python).

A study is a prior of the open one when its Patient ID is exactly the same and so is its Issuer
of Patient ID (0010,0021): the same ID from another issuer may be another person. A study without
a Patient ID has no priors. The archive index holds no issuer, so it is read from the first file
of each candidate study (only studies whose ID already matches are read).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom

from dicom_net.archive import Archive
from dicom_net.archive_index import StudyRecord

log = logging.getLogger(__name__)


def issuer_of_patient_id(archive: Archive, study_uid: str) -> str | None:
    """The study's Issuer of Patient ID ("" when absent), None when no header can be read."""
    for series in archive.series(study_uid):
        for instance in archive.instances(series.series_uid)[:1]:
            try:
                ds = pydicom.dcmread(
                    Path(instance.path), stop_before_pixels=True, specific_tags=["IssuerOfPatientID"]
                )
            except Exception as exc:  # noqa: BLE001 - an unreadable file: try the next series
                log.warning("priors: header of study %s unreadable (%s)", study_uid, type(exc).__name__)
                continue
            return str(ds.get("IssuerOfPatientID", "") or "").strip()
    return None


def find_priors(archive: Archive, study: StudyRecord) -> list[StudyRecord]:
    """The patient's other studies in the archive, newest first."""
    patient_id = study.patient_id.strip()
    if not patient_id:
        return []
    candidates = [
        s
        for s in archive.studies(patient_id=patient_id)
        if s.study_uid != study.study_uid and s.patient_id.strip() == patient_id
    ]
    if not candidates:
        return []
    issuer = issuer_of_patient_id(archive, study.study_uid)
    if issuer is None:
        return []
    priors = [s for s in candidates if issuer_of_patient_id(archive, s.study_uid) == issuer]
    log.info("priors of study %s: %d", study.study_uid, len(priors))
    return sorted(priors, key=lambda s: (s.study_date, s.study_time), reverse=True)
