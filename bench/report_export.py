"""Report export speed: ORU^R01 over MLLP (our client vs python-hl7's asyncio client, same
receiver, same run), the persistent outbox (atomic + fsync per state change), and SR building.

    .venv/bin/python bench/report_export.py [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hl7  # noqa: E402
import hl7.mllp  # noqa: E402

from app.reporting.audit import AuditRecord  # noqa: E402
from app.reporting.dicom_sr import build_report_sr  # noqa: E402
from app.reporting.export import queue_report_to_ris  # noqa: E402
from app.reporting.hl7_oru import OruR01  # noqa: E402
from app.reporting.mllp import MllpEndpoint, send_message  # noqa: E402
from app.reporting.outbox import Outbox  # noqa: E402
from app.reporting.report import KeyImage, Report, StudyInfo  # noqa: E402
from dicom_net.synthetic import SeriesGeometry, ct_series  # noqa: E402
from tests.reporting.hl7_receivers import python_hl7_receiver  # noqa: E402

FINDINGS = "\n".join(f"Line {i}: Müller | ^ & ~ \\ 中文 finding text of ordinary length." for i in range(20))


def signed_report(study_uid: str = "1.2.826.0.1.3680043.8.498.1") -> Report:
    report = Report(
        StudyInfo(
            study_uid,
            accession_number="ACC",
            patient_id="PID",
            patient_name="Doe^Jane",
            modality="CT",
            study_description="CT chest",
        )
    )
    report.set_text("findings", FINDINGS)
    report.set_text("impression", "No acute abnormality.")
    report.sign("final", "Doe, John")
    return report


def bench_mllp(address: str, count: int) -> tuple[float, float]:
    report = signed_report()
    payloads = [OruR01(report, control_id=f"B{i:08d}").encode() for i in range(count)]
    endpoint = MllpEndpoint.parse(address)
    start = time.perf_counter()
    for payload in payloads:
        assert send_message(endpoint, payload).accepted
    ours = count / (time.perf_counter() - start)

    texts = [p.decode("utf-8") for p in payloads]
    host, port = address.rsplit(":", 1)

    async def peer() -> None:
        for text in texts:  # one connection per message, like ours
            reader, writer = await hl7.mllp.open_hl7_connection(host, int(port), encoding="utf-8")
            writer.writemessage(hl7.parse(text))
            await writer.drain()
            ack = await reader.readmessage()
            assert str(ack.segment("MSA")[1]) == "AA"
            writer.close()
            await writer.wait_closed()

    start = time.perf_counter()
    asyncio.run(peer())
    theirs = count / (time.perf_counter() - start)
    return ours, theirs


def bench_outbox(address: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox", base_delay=0.0)
        start = time.perf_counter()
        for i in range(count):
            report = signed_report(f"1.2.826.0.1.3680043.8.498.{i + 2}")
            queue_report_to_ris(
                report, AuditRecord(report.report_id, report.study.study_instance_uid), outbox, address
            )
        delivered = outbox.process_due()
        assert all(m.state.value == "delivered" for m in delivered) and len(delivered) == count
        return count / (time.perf_counter() - start)


def bench_sr(count: int) -> float:
    datasets = list(ct_series(SeriesGeometry(rows=16, columns=16, slices=4)))
    report = Report(StudyInfo.from_dataset(datasets[0]))
    report.set_text("findings", FINDINGS)
    report.key_images.append(
        KeyImage(datasets[1].SeriesInstanceUID, datasets[1].SOPInstanceUID, datasets[1].SOPClassUID)
    )
    report.sign("final", "Doe, John")
    start = time.perf_counter()
    for _ in range(count):
        build_report_sr(report, datasets[1:2])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with python_hl7_receiver("AA") as receiver:
        ours, theirs = bench_mllp(receiver.address, args.messages)
        print(
            f"ORU over MLLP, {args.messages} messages of {len(FINDINGS.splitlines()) + 1} text lines: "
            f"ours {ours:.0f} msg/s, python-hl7 asyncio client {theirs:.0f} msg/s (ratio {ours / theirs:.2f})"
        )
        rate = bench_outbox(receiver.address, args.messages // 2)
        print(f"outbox queue + deliver (atomic, fsync): {rate:.0f} msg/s")
    print(f"Comprehensive SR build (highdicom, 1 key image): {bench_sr(50):.0f} SR/s")


if __name__ == "__main__":
    main()
