"""WADO-RS faults injected at fixed points by a small DICOMweb server in this process: a stream
that stalls after its first object (cancel and the read deadline both end it), and an object of
another study (refused, the rest kept)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from dicom_net import scu
from dicom_net.archive import Archive
from dicom_net.pacs_nodes import DicomWebNode
from dicom_net.scu_assoc import PacsTimeout
from dicom_net.synthetic import SeriesGeometry, ct_series

BOUNDARY = "faultboundary"


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class FaultyServer:
    """Answers QIDO-RS counts and sends ``objects`` by WADO-RS; with ``stall`` it stops after the
    first object and holds the connection open until the test ends."""

    objects: list[bytes]
    stall: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    state = FaultyServer(objects=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if "?" in self.path:  # QIDO-RS: the count of instances
                count = {"vr": "IS", "Value": [len(state.objects)]}
                body = json.dumps([{"00201208": count, "00201209": count}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(200)
            self.send_header(
                "Content-Type", f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            )
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            for index, obj in enumerate(state.objects):
                chunk = (b"\r\n" if index else b"") + head + obj
                if state.stall and index == 1:
                    chunk = chunk[:300]  # half an object, then nothing
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if state.stall and index == 1:
                    state.release.wait(60)
                    return
            end = f"\r\n--{BOUNDARY}--".encode()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


def _study(slices: int) -> list[Dataset]:
    return list(ct_series(SeriesGeometry(rows=16, columns=16, slices=slices)))


def test_cancel_ends_a_stalled_stream_within_the_grace_time(server: FaultyServer, tmp_path: Path) -> None:
    datasets = _study(3)
    server.objects, server.stall = [_part10(d) for d in datasets], True
    node = DicomWebNode("faulty", server.url, timeout_s=60)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 1:  # the stream stalls after this object: cancel while we wait on it
            threading.Timer(0.2, cancel.set).start()

    start = time.monotonic()
    with Archive(tmp_path / "arc") as archive:
        result = scu.retrieve(
            node, datasets[0].StudyInstanceUID, archive=archive, progress=progress, cancel=cancel
        )
        assert archive.instance_count() == 1
    assert time.monotonic() - start < 10  # grace time 2 s, far below the 60 s read deadline
    assert result.cancelled and result.stored == [datasets[0].SOPInstanceUID]


def test_a_stalled_stream_ends_at_the_nodes_deadline(server: FaultyServer, tmp_path: Path) -> None:
    datasets = _study(3)
    server.objects, server.stall = [_part10(d) for d in datasets], True
    node = DicomWebNode("faulty", server.url, timeout_s=1.5)
    with Archive(tmp_path / "arc") as archive:
        with pytest.raises(PacsTimeout, match=r"WADO-RS study retrieve on faulty .*no answer within 1.5 s"):
            scu.retrieve(node, datasets[0].StudyInstanceUID, archive=archive)
        assert archive.instance_count() == 1  # what arrived before the stall is kept


def test_an_object_of_another_study_is_refused_and_the_rest_kept(
    server: FaultyServer, tmp_path: Path
) -> None:
    datasets = _study(2)
    stranger = _study(1)[0]
    server.objects = [_part10(datasets[0]), _part10(stranger), _part10(datasets[1])]
    node = DicomWebNode("faulty", server.url, timeout_s=10)
    with Archive(tmp_path / "arc") as archive:
        result = scu.retrieve(node, datasets[0].StudyInstanceUID, archive=archive)
        assert archive.study(stranger.StudyInstanceUID) is None and archive.instance_count() == 2
    assert result.store_failures == [stranger.SOPInstanceUID] and not result.ok
    assert result.stored == [datasets[0].SOPInstanceUID, datasets[1].SOPInstanceUID]
