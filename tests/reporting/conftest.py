"""Fixtures of the reporting tests: the tiny Hulu-Med model (see model_fixtures), an archived CT study."""

import pytest

from dicom_net.archive import Archive
from dicom_net.paths import default_archive_dir
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from tests.reporting.model_fixtures import tiny_model_folder, tiny_model_service

__all__ = ["archived_study", "tiny_model_folder", "tiny_model_service"]


@pytest.fixture
def archived_study(tmp_path):
    """A small CT study in the workstation's archive: (Study Instance UID, its files)."""
    datasets = list(
        ct_series(
            SeriesGeometry(rows=24, columns=24, slices=6), patient={"id": "CLI-PID", "accession": "CLI-ACC"}
        )
    )
    paths = write_datasets(datasets, tmp_path / "incoming")
    with Archive(default_archive_dir()) as archive:
        for path in paths:
            archive.store_file(path)
    return datasets[0].StudyInstanceUID, paths
