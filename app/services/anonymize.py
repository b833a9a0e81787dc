"""De-identified export of studies (DICOM PS3.15 Annex E basic profile, simplified), to a folder or zip.

Actions follow the profile's codes: D (replace with a dummy), Z (empty), X (remove), U (replace
UID with a new one, consistently across the whole export so references still resolve). Dates are
either removed (emptied) or kept, by policy; private tags, curves and overlays' text are removed.
Pixel data is kept as is (burned-in text is out of scope; the export flags it in
BurnedInAnnotation only if the source said so).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from app.services.task_types import Cancelled
from hulu_common.atomic import atomic_output, write_bytes_atomic

# Patient/study identity replaced with dummies (D).
DUMMY = {
    "PatientName": "ANONYMOUS",
    "PatientID": "ANON",
}
# Emptied (Z): type 2 attributes that must stay present.
EMPTY = ("AccessionNumber", "ReferringPhysicianName", "StudyID", "PatientBirthDate", "PatientSex")
# Removed (X).
REMOVE = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "MilitaryRank",
    "BranchOfService",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "DeviceSerialNumber",
    "ProtocolName",
    "RequestAttributesSequence",
    "ImageComments",
    "StudyComments",
    "RequestedProcedureDescription",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ReferencedPatientSequence",
    "ReferencedStudySequence",
    "IssuerOfPatientID",
    "PatientBirthTime",
    "CountryOfResidence",
    "RegionOfResidence",
    "CurrentPatientLocation",
    "AdmittingDiagnosesDescription",
)
DATE_KEYWORDS = (
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstanceCreationTime",
    "AcquisitionDateTime",
)
# UIDs that identify instances/studies and must be replaced consistently (U).
UID_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID",
    "ReferencedFrameOfReferenceUID",
    "MediaStorageSOPInstanceUID",
    "SynchronizationFrameOfReferenceUID",
    "IrradiationEventUID",
    "DimensionOrganizationUID",
)


@dataclass
class DeidPolicy:
    """How to de-identify: patient dummies, whether dates are kept, a per-export UID map."""

    patient_name: str = DUMMY["PatientName"]
    patient_id: str = DUMMY["PatientID"]
    keep_dates: bool = False
    uid_map: dict[str, str] = field(default_factory=dict)
    salt: str = field(default_factory=lambda: os.urandom(16).hex())

    def new_uid(self, old: str) -> str:
        """A fresh UID for ``old``, the same one every time within this export."""
        if old not in self.uid_map:
            digest = hashlib.sha256((self.salt + old).encode()).hexdigest()
            self.uid_map[old] = generate_uid(prefix=None, entropy_srcs=[digest])
        return self.uid_map[old]


def deidentify(ds: Dataset, policy: DeidPolicy) -> Dataset:
    """De-identify ``ds`` in place (and return it)."""
    ds.remove_private_tags()
    for kw in REMOVE:
        if kw in ds:
            delattr(ds, kw)
    for kw in EMPTY:
        if kw in ds:
            setattr(ds, kw, "")
    ds.PatientName = policy.patient_name
    ds.PatientID = policy.patient_id
    if not policy.keep_dates:
        for kw in DATE_KEYWORDS:
            if kw in ds:
                setattr(ds, kw, "")

    def remap(dataset: Dataset, elem) -> None:
        if elem.keyword in UID_KEYWORDS and elem.value:
            if elem.VM > 1:
                elem.value = [policy.new_uid(str(v)) for v in elem.value]
            else:
                elem.value = policy.new_uid(str(elem.value))
        elif elem.VR == "PN" and elem.value and elem.keyword not in ("PatientName",):
            elem.value = ""

    ds.walk(remap)
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 basic profile (simplified)" + (
        "; dates retained" if policy.keep_dates else ""
    )
    return ds


def _atomic_write_dataset(ds: Dataset, path: Path) -> None:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue())


class ExportError(Exception):
    """The export cannot start (destination not writable, or it would overwrite an earlier export)."""


def _check_destination(destination: Path, to_zip: bool) -> None:
    """Refuse before any work: a folder that cannot be written, or that already holds an export
    (the same ``seriesNNN/imgNNNNN.dcm`` names would silently replace the earlier study's files)."""
    folder = destination.parent if to_zip else destination
    if not to_zip and (destination / "series001").exists():
        raise ExportError(f"{destination} already holds an anonymised export: choose an empty folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExportError(f"cannot write to {folder}: {reason}. Choose another folder.") from None


def export_anonymized(
    files: Sequence[Path],
    destination: Path,
    *,
    policy: DeidPolicy | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """De-identify ``files`` into ``destination`` (a folder, or a ``.zip`` file).

    Output names are ``<series#>/<instance#>.dcm`` built from the new UIDs' order, never from
    patient data. Returns the relative names written. A cancelled export raises
    :class:`Cancelled` and leaves no partial zip behind; :class:`ExportError` says why an export
    cannot start (nothing is written then).
    """
    policy = policy or DeidPolicy()
    destination = Path(destination)
    to_zip = destination.suffix.lower() == ".zip"
    _check_destination(destination, to_zip)
    staging = Path(tempfile.mkdtemp(prefix="anon-", dir=destination.parent)) if to_zip else destination
    series_index: dict[str, int] = {}
    names: list[str] = []
    total = len(files)
    try:
        for n, src in enumerate(files, 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            ds = pydicom.dcmread(src)
            series = str(ds.get("SeriesInstanceUID", ""))
            deidentify(ds, policy)
            s = series_index.setdefault(series, len(series_index) + 1)
            name = f"series{s:03d}/img{n:05d}.dcm"
            _atomic_write_dataset(ds, staging / name)
            names.append(name)
            if progress:
                progress(n, total, f"{n}/{total} images")
        if to_zip:
            with (
                atomic_output(destination) as tmpzip,
                zipfile.ZipFile(tmpzip, "w", zipfile.ZIP_DEFLATED) as zf,
            ):
                for name in names:
                    zf.write(staging / name, name)
    finally:
        if to_zip:
            shutil.rmtree(staging, ignore_errors=True)
    return names
