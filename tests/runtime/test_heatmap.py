"""Attention maps back on the input grid (NIfTI) and PNG overlays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sranet.runtime.heatmap import attention_on_input_grid, overlay_png, save_attention_nifti
from sranet.runtime.volume import Volume


def _grid(P=4):
    return (np.arange(P**3).reshape(P, P, P) / np.arange(P**3).sum()).astype(np.float32)


def test_identity_plan_repeats_each_patch():
    att = _grid()
    plan = SimpleNamespace(offset=np.zeros(3), scale=np.ones(3))
    out = attention_on_input_grid(att, plan, (48, 48, 48), 48)
    assert out.shape == (48, 48, 48) and out.dtype == np.float32
    np.testing.assert_array_equal(out, att.repeat(12, 0).repeat(12, 1).repeat(12, 2))


def test_scaled_offset_plan_maps_patches_and_zeroes_outside():
    """Prepared voxel o samples source index offset + scale * o; source voxels outside the box get 0."""
    att = _grid()
    plan = SimpleNamespace(offset=np.array([10.0, 0.0, 5.0]), scale=np.array([0.5, 2.0, 1.0]))
    shape = (60, 100, 70)
    out = attention_on_input_grid(att, plan, shape, 48)
    # source d = 10 + 0.5 * o: d in [10, 33.5] is inside; patch edge every 12 prepared voxels = 6 source voxels
    assert out[:9].max() == 0 and out[35:].max() == 0
    assert out[10, 0, 5] == att[0, 0, 0]
    assert out[10 + 6, 0, 5] == att[1, 0, 0]          # o = 12 -> patch 1 along D
    assert out[10, 2 * 24, 5] == att[0, 2, 0]         # h = 2 * 24 -> o = 24 -> patch 2 along H
    assert out[10, 0, 5 + 47] == att[0, 0, 3] and out[10, 0, 5 + 48].max() == 0


def test_nifti_has_the_input_grid_and_ras_affine(tmp_path):
    import nibabel as nib

    direction = np.eye(3)
    vol = Volume(np.zeros((20, 30, 40), np.int16), spacing_mm=(2.5, 0.7, 0.8), origin_mm=(-100.0, -120.0, 50.0),
                 direction=direction)
    data = np.random.default_rng(0).random((20, 30, 40)).astype(np.float32)
    path = save_attention_nifti(data, vol, tmp_path / "a.nii.gz")
    img = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    # voxel (d, h, w) -> RAS = (-x, -y, z) of the LPS point the volume's affine gives
    point_lps = vol.index_to_patient(np.array([3.0, 4.0, 5.0]))
    ras = img.affine @ np.array([3.0, 4.0, 5.0, 1.0])
    np.testing.assert_allclose(ras[:3], point_lps * np.array([-1, -1, 1]))


def test_overlay_png_has_three_views_and_a_colour_bar(tmp_path):
    import cv2

    hu = np.full((40, 64, 64), -1000.0, np.float32)
    hu[10:30, 20:44, 20:44] = 800.0
    vol = Volume(hu, spacing_mm=(2.0, 1.0, 1.0))
    att = np.zeros_like(hu)
    att[15:25, 25:35, 25:35] = 0.2
    path = overlay_png(vol, att, (20, 30, 30), tmp_path / "x.png", title="case p=0.9", size_px=128)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] == 22 + 128 + 24 and image.shape[1] == 3 * 128 + 70
    panel = image[22 + 24:, :128]
    assert (panel[..., 2].astype(int) - panel[..., 0].astype(int)).max() > 50  # red-ish overlay where attention is high


def test_voxels_outside_the_roi_box_get_no_attention():
    """keep_aspect pads a thin ROI with samples beyond its box; those source voxels were never seen: 0 there."""
    from sranet.config import PreprocessConfig
    from sranet.runtime.preprocess import plan_resample
    from sranet.runtime.roi import parse_roi

    vol = Volume(hu=np.zeros((100, 64, 64), np.float32), spacing_mm=(1.0, 1.0, 1.0))
    plan = plan_resample(vol, PreprocessConfig(output_size=48, canonical=False), parse_roi("40:60,8:56,0:64"))
    out = attention_on_input_grid(np.full((4, 4, 4), 1 / 64, np.float32), plan, vol.shape, 48)
    inside = np.zeros(vol.shape, bool)
    inside[40:60, 8:56, 0:64] = True
    assert out[~inside].max() == 0 and out[inside].min() > 0


def test_coronal_and_sagittal_panels_show_the_head_at_the_top(tmp_path):
    import cv2

    # axial series, D along +z (feet to head); a bright block in the most superior slices only
    hu = np.full((40, 40, 40), -1000.0, np.float32)
    hu[30:40] = 1200.0
    volume = Volume(hu, (1.0, 1.0, 1.0), direction=np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    size = 120
    png = overlay_png(volume, np.zeros_like(hu), (20, 20, 20), tmp_path / "o.png", size_px=size)
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)[24:24 + size]  # no title band; skip the panel label
    for panel in (1, 2):  # coronal, sagittal
        view = image[:, panel * size:(panel + 1) * size].astype(float)
        assert view[: size // 4].mean() > 200 and view[-size // 4:].mean() < 50, f"panel {panel} is upside down"
    # the same data stored head-first (D along -z) is drawn the same way
    flipped = Volume(hu[::-1].copy(), (1.0, 1.0, 1.0), direction=np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]))
    png2 = overlay_png(flipped, np.zeros_like(hu), (20, 20, 20), tmp_path / "o2.png", size_px=size)
    np.testing.assert_array_equal(cv2.imread(str(png2)), cv2.imread(str(png)))
