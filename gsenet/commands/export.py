"""`gsenet export MODEL OUT --format onnx|torchscript`: a self-contained model folder.

OUT gets model.pt + model.yaml (loadable by `gsenet.inference.load_model`) and model.onnx or
model.ts (loadable with onnxruntime / torch.jit.load alone, no gsenet code). The export is checked
against PyTorch on a random signal of another length and batch size than the tracing example.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder, model folder, or MLflow model URI")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--mlflow-uri", default="", help="tracking URI for models:/ and runs:/ sources")


def run(args: argparse.Namespace) -> int:
    from gsenet.inference import check_export, export_model, load_model, model_config_of

    model, cfg = load_model(args.model, tracking_uri=args.mlflow_uri)
    path = export_model(model, model_config_of(cfg), args.out, args.format)
    report = check_export(model, path)
    print(f"wrote {path}")
    print(
        f"max |export - pytorch| = {report['max_abs_error']:.2e} on a [2, {report['samples']}] batch; "
        f"real-time factor {report['rtf']:.4f} ({report['runtime']}, 1 thread)"
    )
    return 0
