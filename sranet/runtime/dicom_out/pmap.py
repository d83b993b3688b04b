"""The attention map of one hip as a Parametric Map (float32 weights) on the source series' pixel grid.

The map is resampled onto the CT's own grid, cropped to the ROI (``sranet.runtime.dicom_out.resample`` says why):
same frame of reference, same orientation and pixel spacing, and every frame at a CT slice's exact position, so a
viewer overlays it pixel for pixel. Stored values are the attention weights themselves (real world value mapping:
identity, unit 1, quantity Saliency (DCM 130404)).
"""

from __future__ import annotations

from sranet.runtime.dicom_out.finding import AlgorithmInfo, HipFinding
from sranet.runtime.dicom_out.resample import MapOnSource
from sranet.runtime.dicom_out.source import SourceSeries


def _slice_thickness(source: SourceSeries) -> float:
    ds = source.first
    value = getattr(ds, "SliceThickness", None)
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if value is None and shared and getattr(shared[0], "PixelMeasuresSequence", None):
        value = getattr(shared[0].PixelMeasuresSequence[0], "SliceThickness", None)
    try:
        if value is not None and float(value) > 0:
            return float(value)
    except (TypeError, ValueError):
        pass
    if len(source.frames) > 1:  # no usable thickness: the slice spacing stands in for it
        import numpy as np

        p = [np.asarray(f.position_mm) @ source.normal for f in source.frames]
        return float(np.median(np.diff(p)))
    return 1.0


def build_parametric_map(source: SourceSeries, finding: HipFinding, on_source: MapOnSource,
                         algorithm: AlgorithmInfo, *, series_uid: str, sop_uid: str, series_number: int):
    """Build the Parametric Map (a highdicom ``ParametricMap``) of ``finding``'s attention, sampled as
    ``on_source`` (``resample_to_source``)."""
    import highdicom as hd
    from highdicom.pm import ParametricMap, RealWorldValueMapping
    from pydicom.sr.codedict import codes

    peak = float(on_source.pixels.max())
    mapping = RealWorldValueMapping(
        lut_label="ATTENTION", lut_explanation=f"{algorithm.name} attention weight",
        unit=codes.UCUM.NoUnits, value_range=(0.0, max(peak, 1e-6)), slope=1.0, intercept=0.0,
        quantity_definition=codes.DCM.Saliency)
    coordinate_system = hd.CoordinateSystemNames.PATIENT
    positions = [hd.PlanePositionSequence(coordinate_system, [round(float(v), 6) for v in p])
                 for p in on_source.positions]
    referenced = sorted({source.frames[n].dataset_index for n in on_source.frames})
    pm = ParametricMap(
        source_images=[source.datasets[i] for i in referenced],
        pixel_array=on_source.pixels,
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer="sranet", manufacturer_model_name=algorithm.name, software_versions=algorithm.version,
        device_serial_number=algorithm.model_sha256, contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # LINEAR_EXACT: the window spans [0, peak], and weights are far below 1 (a window narrower than 1 is
        # allowed only with this function)
        voi_lut_transformations=[hd.VOILUTTransformation(
            window_center=peak / 2 if peak > 0 else 0.5, window_width=peak if peak > 0 else 1.0,
            voi_lut_function="LINEAR_EXACT")],
        # the pixels are the model's weights spatially resampled onto the CT grid (QUANTITY, highdicom's default,
        # is not among the Defined Terms dciodvfy knows)
        derived_pixel_contrast="RESAMPLED",
        content_description=f"{algorithm.name} attention, {finding.side_name} hip",
        content_label="ATTENTION",
        pixel_measures=hd.PixelMeasuresSequence(
            pixel_spacing=list(source.pixel_spacing_mm), slice_thickness=_slice_thickness(source)),
        plane_orientation=hd.PlaneOrientationSequence(coordinate_system, source.orientation),
        plane_positions=positions,
        series_description=f"{algorithm.name} attention {finding.side_name} hip")
    pm.Laterality = finding.side  # General Series: the body part (hip) is paired, and this series is one hip's map
    return pm
