"""Objects around the images, built as real DICOM (highdicom, pydicom-data): SEG overlays land on the
voxels their geometry names, RTSTRUCT contours show in every plane, SR trees, KOS, GSPS, PDF, tags."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from viewer.loader import load_volume
from viewer.objects.gsps import read_presentation_state
from viewer.objects.kos import read_key_selection
from viewer.objects.pdf import encapsulated_pdf, render_pages
from viewer.objects.rtstruct import contour_on_plane, read_structures
from viewer.objects.seg import seg_overlay
from viewer.objects.sr import read_sr
from viewer.objects.tags import filter_rows, tag_rows
from viewer.reslice import plane_image
from viewer.volume import Volume

GEOMETRY = SeriesGeometry(rows=16, columns=20, slices=8, pixel_spacing=(2.0, 1.5), slice_step=2.5)


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A CT series stored feet-first in file order (so the SEG's frame order and the volume's differ)."""
    datasets = list(ct_series(GEOMETRY))[::-1]
    paths = write_datasets(datasets, tmp_path_factory.mktemp("ct"))
    volume, _ = load_volume(paths)
    return datasets, volume


def box_mask(datasets: list[Dataset]) -> tuple[np.ndarray, set[tuple[float, float, float]]]:
    """A box in source-image index space, and the LPS centres of its voxels."""
    mask = np.zeros((len(datasets), GEOMETRY.rows, GEOMETRY.columns), dtype=bool)
    mask[2:5, 4:9, 3:7] = True
    centres = set()
    for frame, ds in enumerate(datasets):
        lps = GEOMETRY.pixel_lps(np.asarray(ds.ImagePositionPatient, dtype=np.float64))
        for row, col in zip(*np.nonzero(mask[frame])):
            centres.add(tuple(np.round(lps[row, col], 3)))
    return mask, centres


def build_seg(datasets: list[Dataset], pixel_array: np.ndarray, kind: str) -> Dataset:
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        datasets, pixel_array, kind, [description], generate_uid(), 90, generate_uid(), 1,
        "Hulu", "tests", "1", "0",
    )  # fmt: skip
    buffer = io.BytesIO()
    seg.save_as(buffer)  # through bytes, as an archived file would be read
    return dcmread(io.BytesIO(buffer.getvalue()))


def overlay_plane_points(volume: Volume, mask: np.ndarray, plane: str, through: tuple) -> set[tuple]:
    """LPS centres of the pixels a plane through ``through`` shows as inside ``mask``."""
    shown = Volume(mask, volume.spacing, volume.origin, volume.direction)
    position = {"axial": through[2], "coronal": through[1]}[plane]
    image = plane_image(shown, plane, position)
    return {tuple(np.round(image.to_lps(r, c), 3)) for r, c in zip(*np.nonzero(image.pixels > 0.5))}


@pytest.mark.parametrize("kind", ["BINARY", "FRACTIONAL"])
def test_seg_overlay_lands_on_the_right_voxels_in_axial_and_coronal(ct, kind):
    datasets, volume = ct
    mask, centres = box_mask(datasets)
    pixels = mask.astype(np.float32) * (0.8 if kind == "FRACTIONAL" else 1.0)
    seg = build_seg(datasets, pixels, kind)
    if kind == "BINARY":
        assert seg.BitsAllocated == 1  # the 1-bit encoding every SEG reader must unpack
    overlay = seg_overlay(seg, volume)
    assert [s.label for s in overlay.segments] == ["lesion"] and overlay.fractional is (kind == "FRACTIONAL")
    lesion = overlay.mask(1)
    assert int((lesion > 0.5).sum()) == len(centres)
    if kind == "FRACTIONAL":
        assert np.isclose(lesion.max(), 0.8, atol=0.01)
    through = sorted(centres)[len(centres) // 2]
    for plane in ("axial", "coronal"):
        axis = 2 if plane == "axial" else 1
        expected = {c for c in centres if abs(c[axis] - through[axis]) < 1e-3}
        assert overlay_plane_points(volume, lesion, plane, through) == expected, plane


def build_rtstruct(datasets: list[Dataset]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 7, "GTV"
    ds.StructureSetROISequence = DicomSequence([roi])
    z = float(datasets[3].ImagePositionPatient[2])
    square = [(-6.0, -4.0, z), (6.0, -4.0, z), (6.0, 4.0, z), (-6.0, 4.0, z)]
    contour = Dataset()
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.NumberOfContourPoints = len(square)
    contour.ContourData = [v for p in square for v in p]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 7
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = DicomSequence([contour])
    ds.ROIContourSequence = DicomSequence([roi_contour])
    return ds


def test_rtstruct_contours_show_whole_on_their_slice_and_cut_in_coronal(ct):
    datasets, volume = ct
    [roi] = read_structures(build_rtstruct(datasets))
    assert (roi.number, roi.name, roi.colour) == (7, "GTV", (255, 0, 0))
    [contour] = roi.contours
    z = contour[0, 2]
    axial = plane_image(volume, "axial", z)
    whole, cuts = contour_on_plane(contour, axial.origin, np.cross(axial.row_dir, axial.col_dir), 1.25)
    assert len(whole) == 4 and cuts == []
    elsewhere = plane_image(volume, "axial", z + 2.5)
    whole, cuts = contour_on_plane(
        contour, elsewhere.origin, np.cross(elsewhere.row_dir, elsewhere.col_dir), 1.25
    )
    assert len(whole) == 0 and cuts == []  # a parallel plane one slice away shows nothing
    coronal = plane_image(volume, "coronal", 1.0)  # y = 1 mm crosses the square's x edges
    whole, cuts = contour_on_plane(contour, coronal.origin, np.cross(coronal.row_dir, coronal.col_dir), 1.0)
    [(a, b)] = cuts
    assert sorted([a[0], b[0]]) == pytest.approx([-6.0, 6.0]) and a[1] == pytest.approx(1.0)


def test_rtstruct_from_pydicom_data_lists_rois_with_colours():
    rois = read_structures(dcmread(get_testdata_file("rtstruct.dcm"), force=True))
    assert [(r.name, r.colour, len(r.contours)) for r in rois][0] == ("patient", (220, 160, 120), 3)
    assert all(len(r.open_contours) == 1 for r in rois[1:])  # isocentre points


def test_sr_view_lists_what_the_tree_holds():
    document = read_sr(dcmread(get_testdata_file("test-SR.dcm")))
    lines = [line.strip() for line in document.lines()]
    assert document.title == "Diagnosis" and (document.completion, document.verification) == (
        "COMPLETE",
        "VERIFIED",
    )
    assert "Diameter: 3 cm" in lines
    assert "Code: Sample Code 1 (99_OFFIS_DCMTK 2222)" in lines
    other = read_sr(dcmread(get_testdata_file("reportsi.dcm")))
    assert any(ref.sop_instance_uid for ref in other.references())  # image references can be opened


def test_our_report_sr_reads_back_with_its_text_and_evidence(ct):
    from app.reporting.dicom_sr import build_report_sr
    from app.reporting.report import Report, StudyInfo

    datasets, _ = ct
    report = Report(StudyInfo.from_dataset(datasets[0]))
    report.set_text("findings", "A 12 mm nodule in the right upper lobe.")
    report.set_text("impression", "Nodule, follow up.")
    report.sign("final", "Doe^Jane")
    document = read_sr(build_report_sr(report, [datasets[0]]))
    text = "\n".join(document.lines())
    assert "A 12 mm nodule in the right upper lobe." in text and "Nodule, follow up." in text


def test_key_object_selection_names_its_images(ct):
    datasets, _ = ct
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest, referenced_objects=datasets[2:4], description="two slices"
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        datasets[2:4], content, generate_uid(), 91, generate_uid(), 1, "Hulu"
    )
    selection = read_key_selection(kos)
    assert selection.title == "Of Interest" and selection.description == "two slices"
    assert selection.sop_instance_uids == {datasets[2].SOPInstanceUID, datasets[3].SOPInstanceUID}


def test_presentation_state_window_flip_rotation_and_annotations(ct):
    datasets, _ = ct
    layer = hd.pr.GraphicLayer(layer_name="MEASURE", order=1)
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=datasets[3:4],
        graphic_layer=layer,
        graphic_objects=[hd.pr.GraphicObject("POLYLINE", np.array([[2.0, 3.0], [10.0, 12.0]]), "PIXEL")],
        text_objects=[hd.pr.TextObject("nodule", "PIXEL", anchor_point=(10.0, 12.0))],
    )
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=datasets, series_instance_uid=generate_uid(), series_number=92,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Hulu", manufacturer_model_name="t",
        software_versions="1", device_serial_number="0", content_label="LUNG",
        graphic_annotations=[annotation], graphic_layers=[layer],
        voi_lut_transformations=[hd.pr.SoftcopyVOILUTTransformation(window_center=-600.0, window_width=1500.0)],
    )  # fmt: skip
    gsps.ImageHorizontalFlip, gsps.ImageRotation = "Y", 90
    state = read_presentation_state(gsps)
    assert state.window == (1500.0, -600.0) and state.flip_horizontal and state.rotation == 90
    assert state.applies_to(datasets[0].SOPInstanceUID)
    target = datasets[3].SOPInstanceUID
    [line] = state.graphics_for(target)
    assert line.kind == "POLYLINE" and line.points.tolist() == [[2.0, 3.0], [10.0, 12.0]]
    assert [t.text for t in state.texts_for(target)] == ["nodule"] and state.graphics_for(
        datasets[0].SOPInstanceUID
    ) == []


def test_encapsulated_pdf_is_extracted_and_rendered():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=28)
    pdf.cell(text="Outside report")
    data = bytes(pdf.output())
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    assert encapsulated_pdf(ds) == data
    [page] = render_pages(data, dpi=40)
    assert page.ndim == 3 and page.shape[2] == 3 and (page < 128).any() and (page > 250).mean() > 0.5


def test_tag_rows_fold_sequences_and_name_private_creators():
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "secret sauce")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = DicomSequence([item])
    rows = tag_rows(ds)
    private = next(r for r in rows if r.tag == "(0009,1001)")
    assert private.private_creator == "ACME 1.0" and private.value == "secret sauce"
    nested = next(r for r in rows if r.name == "ReferencedSOPInstanceUID")
    assert nested.depth == 2 and any(r.is_item and r.depth == 1 for r in rows)
    assert [r.name for r in filter_rows(rows, "doe")] == ["PatientName"]


def test_seg_layer_colours_the_lesion_pixels_of_the_shown_plane(ct):
    from viewer.objects.overlays import SegLayer

    datasets, volume = ct
    mask, centres = box_mask(datasets)
    layer = SegLayer(seg_overlay(build_seg(datasets, mask.astype(np.float32), "BINARY"), volume), volume)
    through = sorted(centres)[len(centres) // 2]
    for plane, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        image = plane_image(volume, plane, through[axis] if plane != "coronal" else through[1])
        frame = layer.frame_for(image)
        coloured = {tuple(np.round(image.to_lps(r, c), 3)) for r, c in zip(*np.nonzero(frame.rgba[..., 3]))}
        assert coloured == {c for c in centres if abs(c[axis] - through[axis]) < 1e-3}, plane
        assert tuple(frame.rgba[..., :3][frame.rgba[..., 3] > 0][0]) == layer.overlay.segments[0].colour
    layer.hidden.add(1)
    assert layer.frame_for(plane_image(volume, "axial", through[2])).rgba is None  # toggled off


def test_structure_layer_draws_the_contour_on_its_slice_and_the_cut_elsewhere(ct):
    from viewer.objects.overlays import StructureLayer

    datasets, volume = ct
    layer = StructureLayer(read_structures(build_rtstruct(datasets)), slice_tolerance_mm=1.25)
    z = float(datasets[3].ImagePositionPatient[2])
    axial = plane_image(volume, "axial", z)
    [outline] = layer.frame_for(axial).polylines
    assert outline.closed and outline.label == "GTV" and outline.colour == (255, 0, 0)
    corners = sorted(tuple(np.round(axial.to_lps(row, col), 3)) for col, row in outline.points)
    assert corners == sorted([(-6.0, -4.0, z), (6.0, -4.0, z), (6.0, 4.0, z), (-6.0, 4.0, z)])
    [cut] = layer.frame_for(plane_image(volume, "coronal", 1.0)).polylines
    assert not cut.closed and len(cut.points) == 2


def test_presentation_state_is_applied_to_the_view(ct):
    from viewer.objects.gsps import PresentationState, apply_to_view
    from viewer.view_state import ViewState

    state = ViewState()
    state.zoom_by(3.0)
    ps = PresentationState("LUNG", "", {}, (1500.0, -600.0), 90, True, (5.0, 3.0, 12.0, 10.0))
    apply_to_view(state, ps, image_shape=(16, 20), pixel_spacing=(2.0, 1.5))
    assert (state.window_width, state.window_center) == (1500.0, -600.0)
    assert state.rotation == 90 and state.flip_h
    assert state.zoom == pytest.approx(min(20 / 8, 16 / 8))  # the 8 x 8 pixel area fills the view
    # the area's centre (col 8.5, row 6.5) sits at the view centre: pan = display @ offset in mm
    expected = state.display_matrix() @ np.array([(8.5 - 10.5) * 1.5, (6.5 - 8.5) * 2.0])
    assert state.pan_mm == pytest.approx(tuple(expected))


def test_presentation_annotations_land_on_their_image_in_the_plane_shown(ct):
    from viewer.objects.overlays import PresentationLayer, file_geometry

    datasets, volume = ct
    target = datasets[4]
    layer = hd.pr.GraphicLayer(layer_name="ARROWS", order=1)
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[target],
        graphic_layer=layer,
        graphic_objects=[hd.pr.GraphicObject("POLYLINE", np.array([[2.5, 3.5], [10.5, 12.5]]), "PIXEL")],
        text_objects=[hd.pr.TextObject("here", "PIXEL", anchor_point=(10.5, 12.5))],
    )
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[target], series_instance_uid=generate_uid(), series_number=93,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Hulu", manufacturer_model_name="t",
        software_versions="1", device_serial_number="0", content_label="NOTE",
        graphic_annotations=[annotation], graphic_layers=[layer],
    )  # fmt: skip
    overlay = PresentationLayer(read_presentation_state(gsps), volume, file_geometry(volume))
    z = float(target.ImagePositionPatient[2])
    axial = plane_image(volume, "axial", z)
    line, note = overlay.frame_for(axial).polylines
    # PIXEL units: 0\0 is the image's top left corner, so 2.5\3.5 is the centre of pixel column 2, row 3
    pixel_lps = GEOMETRY.pixel_lps(np.asarray(target.ImagePositionPatient, dtype=np.float64))
    expected = [pixel_lps[3, 2], pixel_lps[12, 10]]
    assert np.allclose([axial.to_lps(row, col) for col, row in line.points], expected)
    assert note.label == "here" and np.allclose(axial.to_lps(*note.points[0][::-1]), pixel_lps[12, 10])
    assert overlay.frame_for(plane_image(volume, "axial", z + 2.5)).polylines == []  # another image
