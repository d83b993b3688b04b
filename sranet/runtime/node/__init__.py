"""``sranet serve``: a DICOM node that receives CT studies, processes each when it goes quiet and sends the results
back (pynetdicom; the ``dicom-node`` extra). Torch-free; the processing function is injected.

    from sranet.runtime.node import DicomNode, Destination, NodeConfig, StudyResult

    def process(folder):                      # one study's received instances (*.dcm)
        ...                                   # read, localise, predict, build DICOM objects
        return StudyResult(datasets, {"hips": 2})

    DicomNode(NodeConfig(spool="spool", destination=Destination("127.0.0.1", 4242, "ORTHANC")), process).serve_forever()
"""

from sranet.runtime.node.node import DicomNode, NodeConfig, Processor, StudyResult
from sranet.runtime.node.processors import load_processor
from sranet.runtime.node.sender import Destination
from sranet.runtime.node.spool import Spool

__all__ = ["Destination", "DicomNode", "NodeConfig", "Processor", "Spool", "StudyResult", "load_processor"]
