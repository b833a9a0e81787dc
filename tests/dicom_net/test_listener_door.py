"""What a sender hears when the door refuses: an Error Comment saying why, and no store-then-abort."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, _config

from dicom_net.listener import ListenerConfig, start_listener
from dicom_net.listener_dataphase import pdata_pdu
from tests.dicom_net.conftest import LISTENER_AET, archive_is_empty
from tests.dicom_net.dicom_objects import part10, small_ct

pytestmark = pytest.mark.network_peer


def _associate(port: int):
    ae = AE(ae_title="DOOR")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET)
    assert assoc.is_established
    return assoc


@pytest.mark.parametrize("fast_data_phase", [True, False])
def test_failure_statuses_carry_an_error_comment_saying_why(tmp_path: Path, fast_data_phase: bool) -> None:
    handle = start_listener(
        ListenerConfig(
            aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", fast_data_phase=fast_data_phase
        )
    )
    try:
        assoc = _associate(handle.port)
        short, bad_uid = small_ct(1)[0], small_ct(1)[0]
        short.PixelData = bytes(short.PixelData)[:-64]
        bad_uid.StudyInstanceUID = "1.2.3.ABC"
        refused = assoc.send_c_store(short)
        assert refused.Status == 0xA900 and "pixel data" in refused.ErrorComment
        refused = assoc.send_c_store(bad_uid)
        assert refused.Status >= 0xA000 and "Study Instance UID" in refused.ErrorComment
        trailing = tmp_path / "trailing.dcm"
        trailing.write_bytes(part10(small_ct(1)[0]) + b"\0" * 8)
        _config.STORE_SEND_CHUNKED_DATASET = True  # the file's bytes as they are
        try:
            refused = assoc.send_c_store(trailing)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False
        assert refused.Status >= 0xA000 and refused.ErrorComment.startswith("bytes after the last element")
        stored = assoc.send_c_store(small_ct(1)[0])
        assert stored.Status == 0x0000 and "ErrorComment" not in stored
        assoc.release()
    finally:
        handle.stop(grace_s=1.0)


def _command(sop_class: str, sop_instance: str) -> bytes:
    """A C-STORE-RQ command set without (0000,0110) Message ID."""

    def element(tag: int, value: bytes) -> bytes:
        value += b"\0" * (len(value) % 2)
        return struct.pack("<HHI", 0, tag, len(value)) + value

    body = b"".join(
        (
            element(0x0002, sop_class.encode()),
            element(0x0100, struct.pack("<H", 0x0001)),
            element(0x0700, struct.pack("<H", 0)),
            element(0x0800, struct.pack("<H", 0x0000)),
            element(0x1000, sop_instance.encode()),
        )
    )
    return element(0x0000, struct.pack("<I", len(body))) + body


@pytest.mark.parametrize("fast_data_phase", [True, False])
def test_a_store_request_without_a_message_id_is_refused_before_anything_is_stored(
    tmp_path: Path, fast_data_phase: bool
) -> None:
    handle = start_listener(
        ListenerConfig(
            aet=LISTENER_AET, port=0, archive_dir=tmp_path / "arc", fast_data_phase=fast_data_phase
        )
    )
    try:
        assoc = _associate(handle.port)
        context = assoc.accepted_contexts[0].context_id
        ds = small_ct(1)[0]
        blob = part10(ds)
        dataset = blob[144 + struct.unpack_from("<I", blob, 140)[0] :]
        raw = assoc.dul.socket.socket
        raw.sendall(pdata_pdu(context, _command(ds.SOPClassUID, ds.SOPInstanceUID)))
        try:  # the dataset follows, as a sender would send it; the listener may be gone by now
            item = struct.pack(">IBB", len(dataset) + 2, context, 0x02) + dataset
            raw.sendall(struct.pack(">BBI", 0x04, 0, len(item)) + item)
        except OSError:
            pass
        deadline = time.monotonic() + (5 if fast_data_phase else 1)
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted or not fast_data_phase  # pynetdicom's own path ignores the message
        time.sleep(0.2)  # an object stored anyway would be indexed within the batch window
        assert archive_is_empty(handle.archive.root)
        assert handle.archive.instance_count() == 0
        assoc.abort()
    finally:
        handle.stop(grace_s=1.0)
