"""Which series an object belongs over: SEG, presentation states and key objects name their
images' series; an RT structure set names them through its frame of reference."""

from __future__ import annotations

from pydicom import Dataset


def referenced_series_uids(ds: Dataset) -> set[str]:
    found = {
        str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s
    }
    for evidence in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        found |= {str(s.SeriesInstanceUID) for s in evidence.get("ReferencedSeriesSequence", [])}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            found |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])}
    return found
