"""`hulu-workstation snapshot`: specific pixels of the written PNG, for folders and archived UIDs.

The phantom is 112 x 96 pixels of 2 mm centred on the LPS origin (224 x 192 mm); rendered into a
448 x 384 window it is shown at exactly 2 screen pixels per mm, so an LPS point maps to a known
screen pixel without asking the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import vtk
from vtk.util import numpy_support

from app.cli.main import main
from dicom_net.synthetic import SeriesGeometry, ct_series, ultrasound_cine, write_datasets

SIZE = "448x384"
GEOMETRY = SeriesGeometry(rows=96, columns=112, slices=48, slice_step=2.0)


def read_png(path: Path) -> np.ndarray:
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    w, h, _ = image.GetDimensions()
    comps = image.GetPointData().GetScalars().GetNumberOfComponents()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, comps)[::-1]


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantom")
    write_datasets(ct_series(GEOMETRY, series_uid="1.2.826.0.1.3680043.8.498.4242"), folder)
    return folder


def grey(png: np.ndarray, x: float, y: float) -> int:
    r, g, b = png[int(y), int(x), :3]
    assert r == g == b, "expected a grey image pixel"
    return int(r)


def is_label_colour(pixel: np.ndarray) -> bool:
    r, g, b = (int(v) for v in pixel[:3])
    return r > 180 and g > 140 and b < 110


def run(args: list[str]) -> int:
    return main(["snapshot", *args])


def test_axial_snapshot_left_on_right_anterior_up(phantom_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "axial.png"
    assert (
        run(
            [
                str(phantom_dir),
                "--out",
                str(out),
                "--plane",
                "axial",
                "--position",
                "1",
                "--window",
                "400",
                "--level",
                "40",
                "--size",
                SIZE,
            ]
        )
        == 0
    )
    png = read_png(out)
    assert png.shape[:2] == (384, 448)

    def screen(x_mm: float, y_mm: float) -> tuple[float, float]:  # image right = +x, down = +y
        return (x_mm + 112) * 2, (y_mm + 96) * 2

    assert grey(png, *screen(60, 0)) == 255  # left marker (1500 HU) on the image's right
    assert 126 <= grey(png, *screen(-60, 0)) <= 129  # soft tissue (40 HU at level 40) on its left
    assert grey(png, *screen(0, -50)) == 255  # anterior marker at the top
    assert 126 <= grey(png, *screen(0, 50)) <= 129
    assert grey(png, *screen(41, -89)) == 255  # bone ring (700 HU): 0.8 < (x/150)^2 + (y/100)^2 <= 0.9
    assert grey(png, *screen(-111, -95)) == 0  # air in the corner
    # orientation letters at the edges, none in the middle
    right_edge = png[172:212, 420:448]
    assert any(is_label_colour(p) for p in right_edge.reshape(-1, png.shape[2]))
    assert not any(is_label_colour(p) for p in png[150:230, 150:300].reshape(-1, png.shape[2]))


def test_coronal_and_sagittal_have_head_up(phantom_dir: Path, tmp_path: Path) -> None:
    # coronal at y = 1 mm: 224 mm wide (x), 96 mm high (z from -47 to 47, +-1 mm pixel edge), 2 px/mm
    out = tmp_path / "coronal.png"
    assert (
        run(
            [
                str(phantom_dir),
                "--out",
                str(out),
                "--plane",
                "coronal",
                "--position",
                "1",
                "--window",
                "400",
                "--level",
                "40",
                "--size",
                SIZE,
            ]
        )
        == 0
    )
    png = read_png(out)
    top = 384 / 2 - 48 * 2  # screen row of z = +48 mm (the top edge of the image)

    def screen(x_mm: float, z_mm: float) -> tuple[float, float]:
        return (x_mm + 112) * 2, top + (48 - z_mm) * 2

    assert grey(png, *screen(1, 40)) == 255  # head marker above the centre
    assert 126 <= grey(png, *screen(1, -40)) <= 129
    assert grey(png, *screen(60, 1)) == 255  # left marker on the right

    out = tmp_path / "sagittal.png"
    assert (
        run(
            [
                str(phantom_dir),
                "--out",
                str(out),
                "--plane",
                "sagittal",
                "--position",
                "1",
                "--window",
                "400",
                "--level",
                "40",
                "--size",
                "384x384",
            ]
        )
        == 0
    )
    png = read_png(out)  # 192 mm (y) x 96 mm (z) at 2 px/mm, centred
    left, top = (384 - 384) / 2, 384 / 2 - 96

    def sag(y_mm: float, z_mm: float) -> tuple[float, float]:  # image right = posterior (+y)
        return left + (y_mm + 96) * 2, top + (48 - z_mm) * 2

    assert grey(png, *sag(-50, 1)) == 255  # anterior marker on the LEFT
    assert 126 <= grey(png, *sag(50, 1)) <= 129
    assert grey(png, *sag(1, 40)) == 255  # head marker up


def test_series_uid_is_found_in_the_archive(phantom_dir: Path, tmp_path: Path) -> None:
    from dicom_net.archive import Archive

    with Archive(tmp_path / "archive") as archive:
        for f in sorted(phantom_dir.glob("*.dcm")):
            archive.store_file(f)
    by_uid, by_folder = tmp_path / "uid.png", tmp_path / "folder.png"
    common = ["--plane", "axial", "--index", "20", "--size", "200x200"]
    assert (
        run(
            [
                "1.2.826.0.1.3680043.8.498.4242",
                "--archive",
                str(tmp_path / "archive"),
                "--out",
                str(by_uid),
                *common,
            ]
        )
        == 0
    )
    assert run([str(phantom_dir), "--out", str(by_folder), *common]) == 0
    assert np.array_equal(read_png(by_uid), read_png(by_folder))


def test_unknown_series_and_bad_position_fail_cleanly(
    phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dicom_net.archive import Archive

    Archive(tmp_path / "archive").close()
    out = tmp_path / "none.png"
    assert run(["1.2.3.4.5", "--archive", str(tmp_path / "archive"), "--out", str(out)]) == 2
    assert "series UID known to the archive" in capsys.readouterr().err
    assert run([str(phantom_dir), "--out", str(out), "--position", "900"]) == 2
    assert "outside the volume" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_slab_snapshot_shows_marker_outside_the_thin_plane(phantom_dir: Path, tmp_path: Path) -> None:
    thin, slab = tmp_path / "thin.png", tmp_path / "slab.png"
    base = [
        str(phantom_dir),
        "--plane",
        "axial",
        "--position",
        "27",
        "--window",
        "400",
        "--level",
        "40",
        "--size",
        SIZE,
    ]
    assert run([*base, "--out", str(thin)]) == 0
    assert run([*base, "--out", str(slab), "--slab", "20", "--slab-mode", "mip"]) == 0
    x, y = (1 + 112) * 2, (1 + 96) * 2  # the pixel at (1, 1) mm, under the head marker (z 33..47)
    assert 126 <= grey(read_png(thin), x, y) <= 129
    assert grey(read_png(slab), x, y) == 255


def test_cine_frame_snapshot(tmp_path: Path) -> None:
    write_datasets([ultrasound_cine(frames=10, rows=120, columns=160)], tmp_path / "us")
    for frame in (0, 9):
        out = tmp_path / f"f{frame}.png"
        assert run([str(tmp_path / "us"), "--out", str(out), "--frame", str(frame), "--size", "320x240"]) == 0
        png = read_png(
            out
        )  # 2 screen pixels per image pixel; disc centre column 160 * (0.2 + 0.6 * frame / 9)
        disc_x = 2 * 160 * (0.2 + 0.6 * frame / 9)
        other_x = 2 * 160 * (0.2 + 0.6 * (9 - frame) / 9)
        assert abs(int(png[120, int(disc_x), 0]) - 220) <= 2
        assert int(png[120, int(other_x), 0]) < 100


def test_radiograph_native_view_keeps_side_marker_on_the_right(tmp_path: Path) -> None:
    from dicom_net.synthetic import radiograph
    from viewer.qt.snapshot import projection_labels

    assert projection_labels(["L", "F"]) == {"right": "L", "left": "R", "bottom": "F", "top": "H"}
    write_datasets([radiograph()], tmp_path / "dx")
    out = tmp_path / "dx.png"
    # 832 x 1024 pixels of 0.3 mm in 416 x 512: half a screen pixel per image pixel
    assert run([str(tmp_path / "dx"), "--out", str(out), "--size", "416x512"]) == 0
    png = read_png(out)
    # side marker block (4000 in a 4096/2048 window) at image columns 707..773, rows 51..122
    assert abs(grey(png, 370, 45) - round(4000 / 4096 * 255)) <= 2
    assert grey(png, 416 - 370, 45) < 100
    assert any(is_label_colour(p) for p in png[236:276, 390:416].reshape(-1, png.shape[2]))


def test_dynamic_series_frame_picks_the_phase(tmp_path: Path) -> None:
    from dicom_net.synthetic import ct_phantom_hu

    uid, geometry = "1.2.826.0.1.3680043.8.498.778", SeriesGeometry(rows=32, columns=32, slices=4)
    for acquisition, offset in ((1, 0.0), (2, 1000.0)):
        datasets = list(
            ct_series(
                geometry,
                series_uid=uid,
                frame_of_reference_uid=uid + ".1",
                hu=lambda p, o=offset: ct_phantom_hu(p) + o,
            )
        )
        for ds in datasets:
            ds.AcquisitionNumber = acquisition
        write_datasets(datasets, tmp_path / "dyn" / str(acquisition))
    values = []
    for frame in (0, 1):
        out = tmp_path / f"phase{frame}.png"
        assert (
            run(
                [
                    str(tmp_path / "dyn"),
                    "--out",
                    str(out),
                    "--frame",
                    str(frame),
                    "--window",
                    "2000",
                    "--level",
                    "1000",
                    "--size",
                    "64x64",
                ]
            )
            == 0
        )
        values.append(grey(read_png(out), 20, 32))  # soft tissue: 40 HU, then 1040 HU
    assert values[0] < 40 and values[1] > 120


@pytest.mark.parametrize(
    ("plane", "where", "slab", "overlay"),
    [
        ("native", ["--index", "20"], 0.0, "full"),
        ("coronal", ["--position", "-11"], 12.0, "full"),
        ("sagittal", ["--index", "40"], 0.0, "none"),
    ],
)
def test_snapshot_is_pixel_identical_to_the_stack_view(
    qtbot, phantom_dir: Path, tmp_path: Path, plane: str, where: list[str], slab: float, overlay: str
) -> None:
    """One render path: the PNG equals what the GUI's StackView shows (image, letters, texts, scale bar)."""
    from viewer.loader import load_series
    from viewer.qt.slice_view import StackView

    view = StackView()
    qtbot.addWidget(view)
    view.resize(448, 384)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(load_series([phantom_dir]).volumes[0], plane=plane)
    view.set_slab(slab)
    if where[0] == "--index":
        view.set_slice(int(where[1]))
    else:
        view.show_position(float(where[1]))
    view.set_window(350, 60)
    gui = view.render_to_array(overlays=overlay != "none")
    out = tmp_path / "view.png"
    assert (
        run(
            [
                str(phantom_dir),
                "--out",
                str(out),
                "--plane",
                plane,
                *where,
                "--slab",
                str(slab),
                "--window",
                "350",
                "--level",
                "60",
                "--size",
                "448x384",
                "--overlay",
                overlay,
            ]
        )
        == 0
    )
    png = read_png(out)[..., :3]
    assert png.shape == gui.shape
    assert np.array_equal(png, gui)
    if overlay == "full":  # the comparison covers the overlay: corner text is there in both
        assert any(is_label_colour(p) for p in png[:20, 200:250].reshape(-1, 3))  # top letter
        assert (png[4:18, 300:444].max(axis=2) > 200).any()  # series description, top right
