"""DICOM objects for a study's findings: a Comprehensive 3D SR (TID 1500), a Parametric Map of each hip's attention
on the source grid, and an optional Secondary Capture. Built with highdicom (the ``dicom-node`` extra); torch-free.

    from sranet.runtime.dicom_out import (AlgorithmInfo, AttentionMap, AttentionPatch, HeadLocation, HipFinding,
                                          read_source_series, write_dicom_outputs)
    source = read_source_series("study/series_folder")
    paths = write_dicom_outputs(source, [HipFinding(...), HipFinding(...)], AlgorithmInfo(sha, "model.onnx"), "out")

From a study's predictions (``sranet.runtime.study.predict_study_outcome``)::

    outcome = predict_study_outcome(predictor, "study/series_folder")
    write_dicom_outputs(source, study_findings(outcome.prediction), algorithm_info(predictor), "out")
"""

from sranet.runtime.dicom_out.finding import AlgorithmInfo, AttentionMap, AttentionPatch, HeadLocation, HipFinding
from sranet.runtime.dicom_out.from_results import algorithm_info, attention_map, prediction_finding, study_findings
from sranet.runtime.dicom_out.source import SourceFrame, SourceSeries, read_source_series
from sranet.runtime.dicom_out.writer import DicomOutput, build_dicom_outputs, save_dataset, write_dicom_outputs

__all__ = [
    "AlgorithmInfo", "AttentionMap", "AttentionPatch", "DicomOutput", "HeadLocation", "HipFinding", "SourceFrame",
    "SourceSeries", "algorithm_info", "attention_map", "build_dicom_outputs", "prediction_finding",
    "read_source_series", "save_dataset", "study_findings", "write_dicom_outputs",
]
