"""Non-image series in the reading room: listed with their type, never loaded as images, opened in
their own viewer (SR tree, PDF pages) with a searchable tag browser - on the real widgets."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from PySide6.QtCore import Qt

from app.gui.study_browser import OBJECT_KIND_ROLE, STUDY_UID_ROLE
from app.reading.layouts import Layout
from viewer.sources import source_for_plane


def report_sr(reference: Dataset) -> Dataset:
    from app.reporting.dicom_sr import build_report_sr
    from app.reporting.report import Report, StudyInfo

    report = Report(StudyInfo.from_dataset(reference))
    report.set_text("findings", "Small left pleural effusion.")
    report.sign("final", "Doe^Jane")
    return build_report_sr(report, [reference])


def encapsulated_pdf(reference: Dataset) -> Dataset:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=24)
    pdf.cell(text="Outside referral letter")
    data = bytes(pdf.output())
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        setattr(ds, keyword, reference.get(keyword, ""))
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), 77, 1
    ds.Modality, ds.SeriesDescription = "DOC", "Referral"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    return ds


@pytest.fixture
def study_with_objects(demo_archive, tmp_path):
    from pydicom import dcmread

    ct_study = demo_archive.studies()[0].study_uid
    ct_series = next(s for s in demo_archive.series(ct_study) if s.modality == "CT")
    reference = dcmread(demo_archive.instances(ct_series.series_uid)[0].path, stop_before_pixels=True)
    for name, ds in (("sr.dcm", report_sr(reference)), ("pdf.dcm", encapsulated_pdf(reference))):
        path = tmp_path / name
        ds.save_as(path, enforce_file_format=True)
        demo_archive.store_file(path)
    return demo_archive, ct_study


def strip_items(strip) -> dict[str, object]:
    return {strip.item(n).data(OBJECT_KIND_ROLE): strip.item(n) for n in range(strip.count())}


def test_non_image_series_are_listed_by_type_and_open_in_their_viewer(study_with_objects, make_window, qtbot):
    archive, study_uid = study_with_objects
    window = make_window(archive)
    window.open_study(study_uid)
    strip = window.reading.strip
    qtbot.waitUntil(lambda: {"sr", "pdf"} <= set(strip_items(strip)), timeout=30000)
    items = strip_items(strip)
    assert "structured report (SR)" in items["sr"].text() and "encapsulated PDF" in items["pdf"].text()
    assigned = [slot.series_uid for slot in window.session.slots]
    strip.itemDoubleClicked.emit(items["sr"])
    [dialog] = window.reading.object_dialogs
    assert [slot.series_uid for slot in window.session.slots] == assigned  # never fed to the image loader
    assert items["sr"].data(STUDY_UID_ROLE) not in assigned
    tree = dialog.content
    values = []
    stack = [tree.topLevelItem(0)]
    while stack:
        item = stack.pop()
        values.append(item.text(1))
        stack.extend(item.child(n) for n in range(item.childCount()))
    assert "Small left pleural effusion." in values
    dialog.tags.search.setText("pleural")
    assert "TextValue" in dialog.tags.visible_names() and "PatientID" not in dialog.tags.visible_names()
    dialog.close()
    strip.itemDoubleClicked.emit(items["pdf"])
    pdf_dialog = window.reading.object_dialogs[-1]
    [page] = pdf_dialog.content.page_labels
    image = page.pixmap().toImage()
    assert image.width() > 500 and image.pixelColor(5, 5).lightness() > 240  # a white page, rendered here
    pdf_dialog.close()


def test_tag_browser_keeps_the_parents_of_a_nested_match(qtbot):
    from pydicom.sequence import Sequence as DicomSequence

    from app.gui.object_views import TagBrowser
    from viewer.objects.tags import tag_rows

    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.840.99"
    ds.ReferencedImageSequence = DicomSequence([item])
    browser = TagBrowser(tag_rows(ds))
    qtbot.addWidget(browser)
    browser.search.setText("1.2.840.99")
    assert browser.visible_names() == ["ReferencedImageSequence", "Item 1", "ReferencedSOPInstanceUID"]
    browser.search.setText("")
    assert "PatientName" in browser.visible_names()
    assert browser.tree.topLevelItem(0).flags() & Qt.ItemFlag.ItemIsEnabled


def ct_datasets(archive, study_uid):
    from pydicom import dcmread

    series = next(s for s in archive.series(study_uid) if s.modality == "CT")
    return series.series_uid, [dcmread(i.path) for i in archive.instances(series.series_uid)]


def archive_seg(archive, datasets, mask, folder) -> None:
    """A binary SEG of one segment over ``datasets``, stored in ``archive`` as a received file would be."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )  # fmt: skip
    seg = hd.seg.Segmentation(
        datasets, mask, "BINARY", [description], generate_uid(), 95, generate_uid(), 1, "Hulu", "t", "1", "0"
    )
    seg.save_as(folder / "seg.dcm")
    archive.store_file(folder / "seg.dcm")


def shown_ct(window, qtbot, series_uid):
    def ready():
        return [vp for vp in window.reading.viewports if vp.series_uid == series_uid and vp.view is not None]

    qtbot.waitUntil(lambda: bool(ready()), timeout=60000)
    [vp] = ready()[:1]
    return vp


def test_a_segmentation_is_drawn_over_its_series_and_segments_toggle(
    demo_archive, make_window, qtbot, tmp_path
):
    import numpy as np

    study_uid = demo_archive.studies()[0].study_uid
    series_uid, datasets = ct_datasets(demo_archive, study_uid)
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    mask = np.zeros((len(datasets), datasets[0].Rows, datasets[0].Columns), dtype=bool)
    mask[:, 40:80, 50:90] = True  # a block through every slice: visible on whatever slice is shown
    archive_seg(demo_archive, datasets, mask, tmp_path)
    window = make_window(demo_archive)
    window.open_study(study_uid)
    vp = shown_ct(window, qtbot, series_uid)
    strip = window.reading.strip
    qtbot.waitUntil(lambda: "seg" in strip_items(strip), timeout=30000)
    strip.itemDoubleClicked.emit(strip_items(strip)["seg"])
    views = window.reading._slice_views(vp)
    assert views and all(len(v.object_layers) == 1 for v in views)
    view = views[0]
    frame = view.layer_frame(view.object_layers[0])
    assert frame.rgba is not None and (frame.rgba[..., 3] > 0).sum() > 0
    qtbot.waitUntil(lambda: view.render_to_array().shape[0] > 0, timeout=5000)
    shown = view.render_to_array()
    panel = window.reading.object_dialogs[-1]
    panel.list.item(0).setCheckState(Qt.CheckState.Unchecked)  # segment toggled off
    assert view.layer_frame(view.object_layers[0]).rgba is None
    hidden = view.render_to_array()
    assert (
        np.abs(shown.astype(int) - hidden.astype(int)).sum(axis=2) > 30
    ).sum() > 100  # the overlay was drawn


def test_a_presentation_state_sets_window_rotation_and_flip(demo_archive, make_window, qtbot, tmp_path):
    import highdicom as hd

    study_uid = demo_archive.studies()[0].study_uid
    series_uid, datasets = ct_datasets(demo_archive, study_uid)
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=datasets, series_instance_uid=generate_uid(), series_number=96,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Hulu", manufacturer_model_name="t",
        software_versions="1", device_serial_number="0", content_label="BONE",
        voi_lut_transformations=[hd.pr.SoftcopyVOILUTTransformation(window_center=500.0, window_width=2000.0)],
    )  # fmt: skip
    gsps.ImageHorizontalFlip, gsps.ImageRotation = "Y", 180
    gsps.save_as(tmp_path / "pr.dcm")
    demo_archive.store_file(tmp_path / "pr.dcm")
    window = make_window(demo_archive)
    window.open_study(study_uid)
    vp = shown_ct(window, qtbot, series_uid)
    strip = window.reading.strip
    qtbot.waitUntil(lambda: "pr" in strip_items(strip), timeout=30000)
    strip.itemDoubleClicked.emit(strip_items(strip)["pr"])
    state = window.reading._slice_views(vp)[0].state
    assert (state.window_width, state.window_center) == (2000.0, 500.0)
    assert state.rotation == 180 and state.flip_h


def test_a_key_object_selection_frames_its_images_and_goes_to_them(
    demo_archive, make_window, qtbot, tmp_path
):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    study_uid = demo_archive.studies()[0].study_uid
    series_uid, datasets = ct_datasets(demo_archive, study_uid)
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    keys = [datasets[5], datasets[30]]
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest, referenced_objects=keys)
    kos = hd.ko.KeyObjectSelectionDocument(keys, content, generate_uid(), 97, generate_uid(), 1, "Hulu")
    kos.save_as(tmp_path / "kos.dcm")
    demo_archive.store_file(tmp_path / "kos.dcm")
    window = make_window(demo_archive)
    window.open_study(study_uid)
    shown_ct(window, qtbot, series_uid)
    window.reading.set_layout(Layout.ONE)  # a 1x1 stack of the acquired slices
    vp = shown_ct(window, qtbot, series_uid)
    strip = window.reading.strip
    qtbot.waitUntil(lambda: "kos" in strip_items(strip), timeout=30000)
    strip.itemDoubleClicked.emit(strip_items(strip)["kos"])
    views = window.reading._slice_views(vp)
    layer = views[0].object_layers[-1]
    key_uids = {keys[0].SOPInstanceUID, keys[1].SOPInstanceUID}
    stack = vp.view
    shown = source_for_plane(stack.volume, stack.stack_plane, stack.current_slice_index())
    assert shown.sop_instance_uid in key_uids  # it went to the first key image ...
    [frame] = layer.frame_for(stack.plane).polylines  # ... and frames it
    assert frame.label == "KEY IMAGE" and views == [stack]
    stack.set_slice((stack.current_slice_index() + 3) % stack.state.slice_count)
    assert layer.frame_for(stack.plane).polylines == []  # an ordinary slice is not marked
    dialog = window.reading.object_dialogs[-1]
    dialog.image_requested.emit(keys[1].SOPInstanceUID)  # choosing the other key image goes there
    shown = source_for_plane(stack.volume, stack.stack_plane, stack.current_slice_index())
    assert shown.sop_instance_uid == keys[1].SOPInstanceUID


def test_tags_of_the_image_on_screen(demo_archive, make_window, qtbot):
    study_uid = demo_archive.studies()[0].study_uid
    series_uid, datasets = ct_datasets(demo_archive, study_uid)
    window = make_window(demo_archive)
    window.open_study(study_uid)
    shown_ct(window, qtbot, series_uid)
    window.reading.set_layout(Layout.ONE)
    vp = shown_ct(window, qtbot, series_uid)
    stack = vp.view
    dialog = window.reading.show_image_tags()
    shown = source_for_plane(stack.volume, stack.stack_plane, stack.current_slice_index())
    dialog.tags.search.setText(shown.sop_instance_uid)
    assert "SOPInstanceUID" in dialog.tags.visible_names()  # the tags of exactly this image
    assert dialog.content is None and dialog.kind == "image"


def test_a_segmentation_is_never_drawn_over_a_series_it_does_not_belong_to(
    demo_archive, make_window, qtbot, tmp_path
):
    import numpy as np

    study_uid = demo_archive.studies()[0].study_uid
    ct_uid, datasets = ct_datasets(demo_archive, study_uid)
    mask = np.ones((len(datasets), datasets[0].Rows, datasets[0].Columns), dtype=bool)
    archive_seg(demo_archive, datasets, mask, tmp_path)
    window = make_window(demo_archive)
    window.open_study(study_uid)
    shown_ct(window, qtbot, ct_uid)
    window.reading.set_layout(Layout.ONE)
    other = next(s.series_uid for s in demo_archive.series(study_uid) if s.modality == "DX")
    window.reading.assign(0, other)
    qtbot.waitUntil(
        lambda: (
            window.reading.viewports[0].series_uid == other and window.reading.viewports[0].view is not None
        ),
        timeout=60000,
    )
    messages = []
    window.reading.status_message.connect(messages.append)
    strip = window.reading.strip
    qtbot.waitUntil(lambda: "seg" in strip_items(strip), timeout=30000)
    strip.itemDoubleClicked.emit(strip_items(strip)["seg"])
    assert messages and "show the series it belongs to" in messages[-1]
    assert all(not v.object_layers for v in window.reading._slice_views(window.reading.viewports[0]))
