"""Crash and contention: several writer processes, kill -9 mid-import, a really full disk."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_net.archive import Archive, StorageFull
from dicom_net.synthetic import write_datasets
from dicom_net.validation import inspect_part10
from tests.dicom_net.dicom_objects import part10, small_ct

REPO = Path(__file__).resolve().parents[2]


def assert_index_points_only_at_complete_files(archive: Archive) -> int:
    rows = archive._db.execute("SELECT path, size, sop_instance_uid FROM instances").fetchall()
    for rel, size, sop in rows:
        data = (archive.root / rel).read_bytes()
        assert len(data) == size
        assert inspect_part10(data).sop_instance_uid == sop
    return len(rows)


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO)


def test_concurrent_writer_processes_store_each_object_once(tmp_path: Path) -> None:
    shared = write_datasets(small_ct(12, rows=64), tmp_path / "shared")
    own = [write_datasets(small_ct(4, rows=64), tmp_path / f"own{i}") for i in range(3)]
    root = tmp_path / "arc"
    Archive(root).close()
    writers = [
        _python(f"""
        from pathlib import Path
        from dicom_net.archive import Archive
        a = Archive(Path({str(root)!r}))
        files = [Path(p) for p in {[str(p) for p in shared + own[i]]!r}]
        for p in (files if {i} % 2 else reversed(files)):
            a.store_file(p)
        """)
        for i in range(3)
    ]
    assert [w.wait(120) for w in writers] == [0, 0, 0]
    archive = Archive(root)
    assert assert_index_points_only_at_complete_files(archive) == 12 + 3 * 4
    assert len(list(archive.studies_dir.rglob("*.dcm"))) == 24
    assert list(archive.tmp_dir.iterdir()) == []
    assert sorted(s.instance_count for s in archive.studies()) == [4, 4, 4, 12]


def test_kill_9_mid_import_never_leaves_the_index_pointing_at_partial_files(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_datasets(small_ct(150, rows=256), source)  # ~130 KiB each: the kill lands mid-write often
    root = tmp_path / "arc"
    Archive(root).close()
    writer = _python(f"""
        from pathlib import Path
        from dicom_net.archive import Archive
        from dicom_net.importer import import_paths
        import_paths(Archive(Path({str(root)!r})), [Path({str(source)!r})])
        """)
    deadline = time.monotonic() + 60
    while len(list((root / "studies").rglob("*.dcm"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    files_on_disk = len(list((root / "studies").rglob("*.dcm")))
    assert 20 <= files_on_disk < 150, "the writer should have been killed mid-import"

    archive = Archive(root)  # opening sweeps the dead writer's temp file
    indexed = assert_index_points_only_at_complete_files(archive)
    assert files_on_disk - 1 <= indexed <= files_on_disk  # at most the file being indexed lacks a row
    assert list(archive.tmp_dir.iterdir()) == []
    assert archive.reindex() == files_on_disk
    assert assert_index_points_only_at_complete_files(archive) == files_on_disk


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_really_full_disk_raises_storage_full_and_leaves_no_partial_file(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "1m") as disk:
        archive = Archive(disk / "arc", min_free_bytes=0)  # no safety margin: hit ENOSPC for real
        slices = small_ct(40, rows=96)  # ~18 KiB each: the disk fills after a few dozen
        stored = 0
        with pytest.raises(StorageFull):
            for ds in slices:
                archive.store_bytes(part10(ds))
                stored += 1
        assert 0 < stored < 40
        assert list(archive.tmp_dir.iterdir()) == []
        assert assert_index_points_only_at_complete_files(archive) == stored
        assert len(list(archive.studies_dir.rglob("*.dcm"))) == stored
        archive.close()


def test_start_scan_adopts_a_file_killed_between_link_and_index_row(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    first, second = small_ct(3, rows=16), small_ct(1, rows=16)
    with Archive(root) as archive:
        for ds in first:
            archive.store_bytes(part10(ds))
        assert archive.adopt_unindexed() == 0  # first scan: records where the next one may start
    writer = _python(f"""
        import os
        from pathlib import Path
        from dicom_net.archive import Archive
        a = Archive(Path({str(root)!r}))
        a.store_bytes({part10(second[0])!r}, defer_index=True)  # linked; its row waits ~50 ms
        os.kill(os.getpid(), 9)
        """)
    assert writer.wait(60) == -signal.SIGKILL
    with Archive(root) as archive:
        assert archive.instance_count() == 3  # the killed writer's row never came
        assert archive.adopt_unindexed() == 1
        assert {r.sop_instance_uid for r in archive.instances(str(second[0].SeriesInstanceUID))} == {
            str(second[0].SOPInstanceUID)
        }
        assert assert_index_points_only_at_complete_files(archive) == 4
        assert archive.adopt_unindexed() == 0


def test_start_scan_reads_only_series_folders_changed_since_the_last_scan(tmp_path: Path) -> None:
    root = tmp_path / "arc"
    old, new = small_ct(2, rows=16), small_ct(2, rows=16)
    with Archive(root) as archive:
        stored = [archive.store_bytes(part10(ds)) for ds in old]
        assert archive.adopt_unindexed() == 0
        old_folder = stored[0].path.parent
        # an unindexed file in a folder unchanged since the scan (its mtime set back) is not read ...
        stray = old_folder / "1.2.3.4.5.dcm"
        stray.write_bytes(part10(small_ct(1, rows=16)[0]))
        os.utime(old_folder, (time.time() - 3600, time.time() - 3600))
        archive.store_bytes(part10(new[0]))
        archive._db.execute("DELETE FROM instances WHERE sop_instance_uid = ?", (str(new[0].SOPInstanceUID),))
        # ... while the changed folder is: its missing row is found again
        assert archive.adopt_unindexed() == 1
        assert archive.instance_count() == 3
        assert archive.reindex() == 4  # the full scan reads every folder


def test_spare_temp_files_of_the_listener_path_are_removed_on_close_and_swept_after_a_kill(
    tmp_path: Path,
) -> None:
    root = tmp_path / "arc"
    series = small_ct(6, rows=16)
    with Archive(root) as archive:
        for ds in series:
            archive.store_bytes(part10(ds), defer_index=True)
        deadline = time.monotonic() + 10
        while len(list(archive.spare_dir.iterdir())) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        spares = list(archive.spare_dir.iterdir())
        assert len(spares) == 4 and all(p.stat().st_size == 0 for p in spares)  # ready, and empty
        assert archive.instance_count() == 6
        assert assert_index_points_only_at_complete_files(archive) == 6
    assert list((root / "spare").iterdir()) == [] and list((root / "tmp").iterdir()) == []
    writer = _python(f"""
        import os, time
        from pathlib import Path
        from dicom_net.archive import Archive
        a = Archive(Path({str(root)!r}))
        a.store_bytes({part10(small_ct(1, rows=16)[0])!r}, defer_index=True)
        while len(list(a.spare_dir.iterdir())) < 4:
            time.sleep(0.01)
        os.kill(os.getpid(), 9)
        """)
    assert writer.wait(60) == -signal.SIGKILL
    assert len(list((root / "spare").iterdir())) == 4  # left by the killed writer
    with Archive(root) as archive:
        assert list(archive.spare_dir.iterdir()) == []  # a dead writer's spares are swept at open
