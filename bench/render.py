"""Frames/s of the viewer's Qt widgets beside the bare VTK pipeline doing the same work, same run.

    .venv/bin/python bench/render.py [--slices 128] [--seconds 2]

Cases at 512x512 per view: single slice (scroll), 3-plane MPR (crosshair moves), 20 mm slab MIP,
CPU ray-cast volume rendering (full and interactive quality, camera orbits), and the MPR+3D layout.
The "ours" column is the widget doing a full update (model change, VTK render, read-back, QPainter
paint with overlays); "bare VTK" renders the equivalent VTK pipeline into an offscreen window.
Under a real X display (e.g. xvfb-run) the stock QVTKRenderWindowInteractor is measured too.
Runs headless without a DISPLAY (QT_QPA_PLATFORM=offscreen, VTK on EGL).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import vtk  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

from dicom_net.synthetic import SeriesGeometry, ct_phantom_hu  # noqa: E402
from viewer.qt.canvas import VtkCanvas  # noqa: E402
from viewer.qt.mpr_view import MprView  # noqa: E402
from viewer.qt.slice_view import StackView  # noqa: E402
from viewer.qt.volume_view import VolumeRenderView  # noqa: E402
from viewer.volume import Volume  # noqa: E402

SIZE = 512


def phantom(slices: int) -> Volume:
    g = SeriesGeometry(rows=SIZE, columns=SIZE, pixel_spacing=(0.625, 0.625), slices=slices, slice_step=1.25)
    positions = g.slice_positions()
    voxels = np.stack([ct_phantom_hu(g.pixel_lps(p)) for p in positions]).astype(np.int16)
    direction = np.stack([g.row_dir(), g.col_dir(), g.normal()], axis=1)
    return Volume(
        voxels,
        (0.625, 0.625, 1.25),
        tuple(positions[0]),
        direction,
        metadata={"modality": "CT", "file_windows": [(400.0, 40.0, "")]},
    )


Step = Callable[[int], None]


def paired_fps(
    ours: Step, bare: Step | None, seconds: float, canvases: Sequence[VtkCanvas], rounds: int = 6
) -> tuple[float, float | None]:
    """Frames/s of ``ours`` and ``bare``, run in alternating short rounds so that load from
    other processes on the machine hits both alike; checks each canvas rendered every frame."""
    steps = {"ours": ours} if bare is None else {"ours": ours, "bare": bare}
    frames, elapsed = dict.fromkeys(steps, 0), dict.fromkeys(steps, 0.0)
    for step in steps.values():
        step(0)  # warm-up: first upload, shader compile
    rendered = [c.frames_rendered for c in canvases]
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / rounds or frames[name] == 0:
                frames[name] += 1
                step(frames[name])
            elapsed[name] += time.perf_counter() - start
    for canvas, before in zip(canvases, rendered):
        if canvas.frames_rendered - before < frames["ours"]:
            raise RuntimeError(f"{type(canvas).__name__} skipped renders: the figure would be wrong")
    rate = {name: frames[name] / elapsed[name] for name in steps}
    return rate["ours"], rate.get("bare")


def offscreen_window(width: int = SIZE, height: int = SIZE) -> vtk.vtkRenderWindow:
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)  # as VtkCanvas: no MSAA (costly on a software renderer)
    window.SetSize(width, height)
    return window


def vtk_image(volume: Volume) -> vtk.vtkImageData:
    image = vtk.vtkImageData()
    k, j, i = volume.voxels.shape
    image.SetDimensions(i, j, k)
    image.SetSpacing(*volume.spacing)
    image.SetOrigin(*volume.origin)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(volume.voxels.ravel(), deep=True))
    return image


def bare_single_slice(volume: Volume) -> Callable[[int], None]:
    window = offscreen_window()
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    image = vtk.vtkImageData()
    image.SetDimensions(SIZE, SIZE, 1)
    image.SetSpacing(0.625, 0.625, 1)
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(image)
    actor.GetProperty().SetColorWindow(400)
    actor.GetProperty().SetColorLevel(40)
    actor.GetProperty().SetInterpolationTypeToNearest()  # as StackView: grey LUT, nearest pixels
    lut = vtk.vtkLookupTable()
    lut.SetNumberOfTableValues(256)
    lut.SetRampToLinear()
    lut.SetSaturationRange(0, 0)
    lut.SetValueRange(0, 1)
    lut.Build()
    actor.GetProperty().SetLookupTable(lut)
    actor.GetProperty().UseLookupTableScalarRangeOff()
    renderer.AddActor(actor)
    renderer.GetActiveCamera().ParallelProjectionOn()

    def step(n: int) -> None:
        k = n % volume.voxels.shape[0]
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(volume.voxels[k].ravel(), deep=True))
        image.Modified()
        if n == 0:
            renderer.ResetCamera()
        window.Render()

    return step


def bare_reslice_planes(volume: Volume, slab_mm: float = 0.0) -> Callable[[int], None]:
    """vtkImageReslice x3 (axial/coronal/sagittal through a moving point), one window each."""
    image = vtk_image(volume)
    axes = [
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
        ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
    ]
    pipelines = []
    for u, v, n in axes:
        reslice = vtk.vtkImageReslice()
        reslice.SetInputData(image)
        reslice.SetOutputDimensionality(2)
        reslice.SetResliceAxesDirectionCosines(*u, *v, *n)
        reslice.SetInterpolationModeToLinear()
        if slab_mm:
            reslice.SetSlabModeToMax()
            reslice.SetSlabNumberOfSlices(int(slab_mm / min(volume.spacing)))
        window = offscreen_window()
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        actor = vtk.vtkImageActor()
        actor.GetMapper().SetInputConnection(reslice.GetOutputPort())
        actor.GetProperty().SetColorWindow(400)
        actor.GetProperty().SetColorLevel(40)
        renderer.AddActor(actor)
        renderer.GetActiveCamera().ParallelProjectionOn()
        pipelines.append((reslice, window, renderer))
    depth = volume.voxels.shape[0] * volume.spacing[2]

    def step(n: int) -> None:
        z = (n % 40 - 20) * 1.25
        point = (n % 50 - 25) * 2.0, (n % 30 - 15) * 2.0, max(min(z, depth / 2 - 1), -depth / 2 + 1)
        for reslice, window, renderer in pipelines:
            reslice.SetResliceAxesOrigin(*point)
            if n == 0:
                reslice.Update()
                renderer.ResetCamera()
            window.Render()

    return step


def bare_volume(volume: Volume, interactive: bool) -> Callable[[int], None]:
    window = offscreen_window()
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    mapper = vtk.vtkFixedPointVolumeRayCastMapper()
    mapper.SetInputData(vtk_image(volume))
    mapper.SetAutoAdjustSampleDistances(False)
    mapper.SetImageSampleDistance(2.0 if interactive else 1.0)
    mapper.SetSampleDistance(min(volume.spacing) * (1.0 if interactive else 0.5))
    color, opacity = vtk.vtkColorTransferFunction(), vtk.vtkPiecewiseFunction()
    for value, r, g, b in [
        (-1000, 0, 0, 0),
        (150, 0.55, 0.25, 0.15),
        (300, 0.9, 0.8, 0.6),
        (1500, 1, 1, 0.95),
    ]:
        color.AddRGBPoint(value, r, g, b)
    for value, a in [(-1000, 0), (150, 0), (300, 0.25), (1500, 0.9)]:
        opacity.AddPoint(value, a)
    prop = vtk.vtkVolumeProperty()
    prop.SetColor(color)
    prop.SetScalarOpacity(opacity)
    prop.SetInterpolationTypeToLinear()
    actor = vtk.vtkVolume()
    actor.SetMapper(mapper)
    actor.SetProperty(prop)
    renderer.AddVolume(actor)
    camera = renderer.GetActiveCamera()  # anterior view, as VolumeRenderView.reset_camera
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetPosition(0.0, -1.0, 0.0)
    camera.SetViewUp(0.0, 0.0, 1.0)
    renderer.ResetCamera()

    def step(n: int) -> None:
        renderer.GetActiveCamera().Azimuth(5)
        window.Render()

    return step


def stock_qvtk_single_slice(app: QApplication, volume: Volume) -> Step | None:
    """Scrolling in the stock QVTKRenderWindowInteractor, default settings (needs a real X display)."""
    if not os.environ.get("DISPLAY") or app.platformName() != "xcb":
        return None
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

    widget = QVTKRenderWindowInteractor()
    widget.resize(SIZE, SIZE)
    widget.show()
    renderer = vtk.vtkRenderer()
    widget.GetRenderWindow().AddRenderer(renderer)
    image = vtk.vtkImageData()
    image.SetDimensions(SIZE, SIZE, 1)
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(image)
    renderer.AddActor(actor)

    def step(n: int) -> None:
        k = n % volume.voxels.shape[0]
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(volume.voxels[k].ravel(), deep=True))
        image.Modified()
        if n == 0:
            renderer.ResetCamera()
        widget.GetRenderWindow().Render()
        app.processEvents()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    t0 = time.perf_counter()
    volume = phantom(args.slices)
    print(
        f"phantom {SIZE}x{SIZE}x{args.slices} int16 built in {time.perf_counter() - t0:.1f} s; "
        f"Qt platform {app.platformName()}, {args.seconds:g} s per case"
    )
    rows: list[tuple[str, tuple[float, float | None]]] = []
    s = args.seconds

    stack = StackView()
    stack.resize(SIZE, SIZE)
    stack.show()
    stack.set_volume(volume)
    n_slices = volume.voxels.shape[0]

    def stack_step(n: int) -> None:
        stack.set_slice(n % n_slices)
        stack.repaint()

    mpr = MprView()
    mpr.resize(3 * SIZE + 4, SIZE)
    mpr.show()
    mpr.set_volume(volume)

    def mpr_step(n: int) -> None:
        mpr.set_crosshair(((n % 50 - 25) * 2.0, (n % 30 - 15) * 2.0, (n % 40 - 20) * 1.25))
        mpr.repaint()

    vr = VolumeRenderView()
    vr.resize(SIZE, SIZE)
    vr.show()
    vr.set_volume(volume)
    app.processEvents()  # first expose: from here on repaint() paints synchronously

    def vr_step(n: int) -> None:
        vr.rotate(5, 0)
        vr.repaint()

    def layout_step(n: int) -> None:
        mpr_step(n)
        vr_step(n)

    planes = list(mpr.views.values())
    rows.append(("single slice (scroll)", paired_fps(stack_step, bare_single_slice(volume), s, [stack])))
    rows.append(
        ("3-plane MPR (crosshair moves)", paired_fps(mpr_step, bare_reslice_planes(volume), s, planes))
    )
    mpr.set_slab(20.0, "mip")
    rows.append(
        ("3-plane 20 mm slab MIP", paired_fps(mpr_step, bare_reslice_planes(volume, 20.0), s, planes))
    )
    mpr.set_slab(0.0)
    rows.append(("volume rendering, full quality", paired_fps(vr_step, bare_volume(volume, False), s, [vr])))
    vr.set_interacting(True)
    rows.append(("volume rendering, interactive", paired_fps(vr_step, bare_volume(volume, True), s, [vr])))
    bare_planes, bare_3d = bare_reslice_planes(volume), bare_volume(volume, True)

    def bare_layout_step(n: int) -> None:
        bare_planes(n)
        bare_3d(n)

    rows.append(
        ("3-plane MPR + 3D (interactive)", paired_fps(layout_step, bare_layout_step, s, [*planes, vr]))
    )
    vr.set_interacting(False)

    mpr.close()
    vr.close()
    app.processEvents()  # nothing else left to paint while the stock widget's event loop runs
    stock = stock_qvtk_single_slice(app, volume)
    qvtk = None if stock is None else paired_fps(stack_step, stock, s, [stack])
    print(f"\n{'case (512x512 per view)':34s} {'ours fps':>9s} {'bare VTK':>9s} {'ratio':>6s}")
    for name, (ours, bare) in rows:
        bare_text = f"{bare:9.1f}" if bare is not None else f"{'-':>9s}"
        ratio = f"{ours / bare:6.2f}" if bare else f"{'-':>6s}"
        print(f"{name:34s} {ours:9.1f} {bare_text} {ratio}")
    if qvtk is not None:
        print(
            f"\nsingle slice, paired: ours {qvtk[0]:.1f} fps, "
            f"stock QVTKRenderWindowInteractor {qvtk[1]:.1f} fps"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
