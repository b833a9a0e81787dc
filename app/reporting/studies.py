"""A study in the local archive as the reporting code needs it: series files and header info."""

from __future__ import annotations

from pathlib import Path

from app.reporting.report import StudyInfo

IMAGE_MODALITIES_LAST = ("SR", "KO", "PR", "SEG", "RTSTRUCT", "DOC")


def open_archive(path: Path | None):
    """The archive at ``path`` (default: the workstation's); never creates one by mistake."""
    from dicom_net.archive import INDEX_NAME, Archive
    from dicom_net.paths import default_archive_dir

    root = Path(path) if path else default_archive_dir()
    if not (root / INDEX_NAME).is_file():
        raise ValueError(f"no archive at {root}")
    return Archive(root)


def study_series_paths(study_uid: str, archive_dir: Path | None) -> list[tuple[str, str, list[Path]]]:
    """(series UID, modality, files) of the study's series, image series with most files first."""
    with open_archive(archive_dir) as archive:
        if archive.study(study_uid) is None:
            raise ValueError(f"study {study_uid} is not in the archive")
        found = [
            (s.series_uid, s.modality, [Path(i.path) for i in archive.instances(s.series_uid)])
            for s in archive.series(study_uid)
        ]
    return sorted(found, key=lambda s: (s[1] in IMAGE_MODALITIES_LAST, -len(s[2])))


def study_info(paths: list[Path]) -> StudyInfo:
    from pydicom import dcmread

    return StudyInfo.from_dataset(dcmread(paths[0], stop_before_pixels=True))
