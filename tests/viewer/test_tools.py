"""Measurement math: lengths and angles in mm space, ROI statistics in modality units."""

import math

import numpy as np
import pytest

from viewer.tools import angle_deg, length_mm, measure, pixel_value, roi_stats


def test_length_uses_anisotropic_spacing():
    assert length_mm((0, 0), (3, 4), (1.0, 1.0)) == pytest.approx(5.0)
    assert length_mm((10, 10), (10, 30), (0.5, 2.5)) == pytest.approx(50.0)


def test_angle_in_mm_space():
    assert angle_deg((10, 0), (0, 0), (0, 10), (1, 1)) == pytest.approx(90.0)
    # 1 px right and 1 px down is 45 deg only with square pixels
    assert angle_deg((1, 0), (0, 0), (1, 1), (1, 2)) == pytest.approx(math.degrees(math.atan(2)))
    with pytest.raises(ValueError):
        angle_deg((0, 0), (0, 0), (1, 1), (1, 1))


def test_roi_on_uniform_region_reads_its_value():
    image = np.full((64, 64), -1000, dtype=np.int16)
    image[10:40, 20:50] = 40
    stats = roi_stats(image, (22, 12), (47, 37), (0.5, 0.5), "rectangle")
    assert (stats.mean, stats.sd, stats.minimum, stats.maximum) == (40, 0, 40, 40)
    assert stats.pixel_count == 26 * 26
    assert stats.area_mm2 == pytest.approx(25 * 0.5 * 25 * 0.5)


def test_ellipse_roi_statistics_and_area():
    image = np.zeros((101, 101))
    image[:, 50:] = 100  # right half
    stats = roi_stats(image, (30, 30), (70, 70), (1, 1), "ellipse")
    assert stats.area_mm2 == pytest.approx(math.pi * 20 * 20)
    assert stats.minimum == 0 and stats.maximum == 100
    assert 45 < stats.mean < 55  # about half the disc is 100
    assert stats.sd == pytest.approx(np.sqrt(stats.mean * (100 - stats.mean)), rel=1e-6)


def test_pixel_value_nearest_and_outside():
    image = np.arange(12).reshape(3, 4)
    assert pixel_value(image, (2.4, 1.4)) == 6
    assert pixel_value(image, (3.6, 0)) is None


def test_measure_checks_point_count_and_formats():
    m = measure("length", [(0, 0), (0, 10)], np.zeros((4, 4)), (0.7, 0.7), ("axial", 3))
    assert m.text() == "7.0 mm"
    with pytest.raises(ValueError):
        measure("angle", [(0, 0), (1, 1)], np.zeros((4, 4)), (1, 1), ())
