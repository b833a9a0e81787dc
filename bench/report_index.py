"""Finding one study's reports among many: the store's study index vs reading every report file
(the former method, reproduced here as the peer in the same run), and the index rebuild.

    .venv/bin/python bench/report_index.py [--reports 5000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.reporting.atomic import read_json
from app.reporting.audit import INDEX_NAME, ReportStore
from app.reporting.report import Report, StudyInfo


def scan_every_file(root: Path, study_uid: str) -> list[Report]:
    """The former ``reports_for_study``: parse every report.json, keep the study's."""
    found = [
        Report.from_dict(d)
        for p in root.glob("*/report.json")
        if (d := read_json(p))["study"]["study_instance_uid"] == study_uid
    ]
    return sorted(found, key=lambda r: r.created_at)


def median_ms(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "reports"
        text = "Findings line with some length.\n" * 12
        for n in range(args.reports):  # two reports per study, written plainly (setup only)
            report = Report(StudyInfo(study_instance_uid=f"1.2.826.0.1.{n // 2}", patient_id="P"))
            report.set_text("findings", text)
            folder = root / report.report_id
            folder.mkdir(parents=True)
            (folder / "report.json").write_text(json.dumps(report.to_dict()))
        target = f"1.2.826.0.1.{args.reports // 4}"
        store = ReportStore(root)

        def rebuild() -> None:
            (root / INDEX_NAME).unlink(missing_ok=True)
            ReportStore(root).study_index()

        rebuild_ms = median_ms(rebuild, runs=3)
        expected = [r.report_id for r in scan_every_file(root, target)]
        assert [r.report_id for r in store.reports_for_study(target)] == expected and len(expected) == 2
        scan_ms = median_ms(lambda: scan_every_file(root, target))
        index_ms = median_ms(lambda: store.reports_for_study(target))
    print(f"{args.reports} reports, open one study's 2 reports (median of 5):")
    print(f"  read every report file (former): {scan_ms:9.1f} ms")
    print(f"  through the study index:         {index_ms:9.1f} ms   ({scan_ms / index_ms:.0f}x faster)")
    print(f"  index rebuild from the files:    {rebuild_ms:9.1f} ms   (missing/damaged index, once)")


if __name__ == "__main__":
    main()
