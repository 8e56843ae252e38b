"""Using a trained model: the public API in one import (what the README shows). Each job lives in
its own module; this one only gathers them:

    gsenet.load         load_model: any source (checkpoint, model folder, run folder, MLflow URI,
                        pretrained:<name>), pretrained_names, pretrained_folder
    gsenet.model_files  the on-disk formats: save_model_folder, load_local_model, versions.json
    gsenet.enhance      enhance_arrays / enhance_tensor, offline or streaming
    gsenet.evaluate     evaluate_model, summarize, format_table, write_csv
    gsenet.export       export_model (ONNX / TorchScript), check_export
"""

from gsenet.enhance import enhance_arrays, enhance_tensor
from gsenet.evaluate import METRICS, SYSTEMS, evaluate_model, format_table, summarize, system_table, write_csv
from gsenet.export import EXPORT_FORMATS, FrameGrid, check_export, export_model
from gsenet.load import load_model, pretrained_folder, pretrained_names
from gsenet.model_files import load_local_model, model_config_of, save_model_folder

__all__ = [
    "EXPORT_FORMATS",
    "METRICS",
    "SYSTEMS",
    "FrameGrid",
    "check_export",
    "enhance_arrays",
    "enhance_tensor",
    "evaluate_model",
    "export_model",
    "format_table",
    "load_local_model",
    "load_model",
    "model_config_of",
    "pretrained_folder",
    "pretrained_names",
    "save_model_folder",
    "summarize",
    "system_table",
    "write_csv",
]
