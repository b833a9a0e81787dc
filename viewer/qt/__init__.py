"""Qt widgets around VTK: the interactive views of the viewer.

Rendering: every view is a plain QWidget (``canvas.VtkCanvas``) whose VTK scene renders into
an offscreen render window and is painted as a QImage, with annotations drawn by QPainter.
The same code runs under a real display, Xvfb and ``QT_QPA_PLATFORM=offscreen``;
``QWidget.grab()`` captures everything. Without a DISPLAY, VTK is pointed at EGL here.

State lives in plain-Python models (``viewer.view_state.ViewState``, ``Crosshair``,
``VolumeState``, ``viewer.cine.CinePlayer``); each view takes its model(s) at construction (or
makes its own) and only observes it; ``detach()`` stops observing. A 2D view renders
``viewer.view_state.displayed_image(volume, state)``. Planes are ``viewer.reslice.PlaneImage``.

Public API (for the app shell; every view also has ``render_to_array(overlays=True) ->
np.ndarray (H, W, 3) uint8`` and ``describe() -> dict``, "what is on screen" for the AI):

``slice_view.StackView`` - scroll a series' acquired slices (or, with ``plane=``, its axial/
    coronal/sagittal planes; ``set_slab(mm, mode)``, ``show_position(mm)``).
    ``set_volume(volume, metadata=None, plane="native")``, ``set_slice(i)``, ``current_slice_index()``,
    ``set_window(width, center)``, ``window_level()``, ``presets()``/``apply_preset(name)``
    (file's WC/WW first, then the modality's), ``set_tool(name)`` with name in ``TOOLS``
    (window, pan, zoom, crosshair, length, angle, rectangle, ellipse, arrow, text), ``measurements``
    (click one to select it, drag a handle to move it; Delete/Backspace remove it),
    ``current_plane()``, ``orientation_labels()``, ``state`` (flip/rotate/invert/zoom/pan),
    ``calibration`` (measurements in px when the pixel size is unknown), ``show_overlay`` and
    ``overlay_parts`` (subset of ``OVERLAY_PARTS``). ``viewer.qt.snapshot`` renders through it.
    Signals: ``slice_changed(int)``, ``window_changed(float, float)``,
    ``measurement_added(Measurement)``, ``cursor_value_changed(dict | None)``.
    Mouse: left = active tool (default W/L drag: right widens, down raises level), right drag
    zoom, middle drag pan, wheel slices (Ctrl+wheel zoom). Keys: ``viewer.view_state.VIEW_BINDINGS``.
``mpr_view.MprView`` - linked axial/coronal/sagittal views (``views[name]`` are SliceViews).
    ``set_volume``, ``set_crosshair(lps)``, ``crosshair_position()``,
    ``rotate_crosshair(plane, radians)`` (oblique; also a drag from a line's disc handle or
    Shift+drag with the crosshair tool), ``reset_rotation()``; the crosshair follows clicks with
    the crosshair tool or Ctrl+click,
    ``set_slab(thickness_mm, "mip"|"minip"|"mean")``, ``set_window``, ``window_level``.
    Signals: ``crosshair_moved(np.ndarray)``, ``window_changed``, ``slab_changed(float, str)``.
``volume_view.VolumeRenderView`` - CPU ray-cast 3D: ``set_volume``, ``presets()``,
    ``set_preset("CT bone"|"CT soft tissue"|"MIP")``, ``reset_camera()``, ``rotate(az, el)``,
    ``zoom(f)``, ``world_to_screen(lps)``. Coarse rays while dragging. Signals:
    ``preset_changed(str)``, ``camera_changed()``.
``cine_view.CineView(clock=time.monotonic)`` - multi-frame playback at the recorded rate:
    ``set_volume``, ``play()``, ``pause()``, ``toggle()``, ``set_speed(x)``,
    ``set_loop("loop"|"once"|"bounce")``, ``seek(frame)``, ``current_frame()``, ``tick()``.
    Signal: ``frame_changed(int)``.
"""

import os

# Our canvases always render offscreen, so they need no X window: EGL gives the same render path
# under Xvfb, a real display and offscreen Qt (an X-backed window once crashed under Xvfb).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
