"""`gsenet enhance MODEL INPUT OUTPUT [--ref REF.wav] [--streaming]`.

INPUT is one recording folder (OUTPUT: a .wav file), a dataset root or split folder (OUTPUT: a folder
mirroring it, one enhanced.wav per recording), or a beamformer WAV with `--ref` the reference-mic WAV
(OUTPUT: a .wav file). Output is written at the model's sample rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint folder, model folder, or MLflow model URI")
    parser.add_argument("input", help="recording folder, dataset/split folder, or beamformer WAV (with --ref)")
    parser.add_argument("output", help="output WAV (one recording / WAV pair) or folder (dataset)")
    parser.add_argument("--ref", default="", help="reference-mic WAV when INPUT is a beamformer WAV")
    parser.add_argument("--streaming", action="store_true", help="run the causal streaming path (hop by hop)")
    parser.add_argument("--mlflow-uri", default="", help="tracking URI for models:/ and runs:/ sources")


def run(args: argparse.Namespace) -> int:
    from gsenet.audio import read_audio, resample, write_audio
    from gsenet.config import DataConfig, ExperimentConfig
    from gsenet.errors import DataError
    from gsenet.inference import enhance_arrays, load_model, model_config_of
    from gsenet.progress import tracked

    if args.streaming:
        one_thread_for_streaming()
    model, cfg = load_model(args.model, tracking_uri=args.mlflow_uri)
    sr = model_config_of(cfg).sample_rate
    data_cfg = cfg.data if isinstance(cfg, ExperimentConfig) else DataConfig()
    source, output = Path(args.input), Path(args.output)
    if source.is_file():
        if not args.ref:
            raise DataError(f"{source}: a single WAV needs --ref REF.wav (the reference microphone)")
        (beam, beam_sr), (ref, ref_sr) = read_audio(source), read_audio(args.ref)
        beam, ref = resample(beam, beam_sr, sr), resample(ref, ref_sr, sr)
        n = min(len(beam), len(ref))
        if len(beam) != len(ref):
            print(f"note: {source} and {args.ref} differ in length; using the first {n} samples of both")
        write_audio(output, enhance_arrays(model, beam[:n], ref[:n], streaming=args.streaming), sr, subtype="FLOAT")
        print(f"wrote {output}")
        return 0
    folders = _recording_folders(source, data_cfg)
    if not folders:
        raise DataError(f"{source}: no recordings found (expected {data_cfg.beam_channel} in it or its subfolders)")
    single = folders == [source]
    for folder in tracked(folders, "enhance", enabled=not single, unit="rec"):
        enhanced = _enhance_folder(model, folder, data_cfg, sr, args.streaming)
        target = output if single and output.suffix == ".wav" else output / folder.relative_to(source) / "enhanced.wav"
        write_audio(target, enhanced, sr, subtype="FLOAT")
        if single:
            print(f"wrote {target}")
    if not single:
        print(f"wrote {len(folders)} enhanced recordings under {output}")
    return 0


def one_thread_for_streaming() -> None:
    """The streamer runs a few tiny ops per hop; with several intra-op threads each op waits for the
    thread pool, which on a busy machine means a scheduler time slice: a 4-s file took 92 s with 2
    threads and 1.7 s with 1 (see README). One thread is also what a real-time device has."""
    import torch

    torch.set_num_threads(1)


def _recording_folders(source: Path, data_cfg) -> list[Path]:
    """The folder itself if it is a recording, else every recording below it (split or dataset)."""
    if (source / data_cfg.beam_channel).is_file():
        return [source]
    return sorted(p.parent for p in source.rglob(data_cfg.beam_channel))


def _enhance_folder(model, folder: Path, data_cfg, sr: int, streaming: bool):
    """Beamformer + reference mic of one recording (no target needed), resampled to the model's rate."""
    from gsenet.audio import read_audio, resample
    from gsenet.inference import enhance_arrays

    (beam, beam_sr), (ref, ref_sr) = (
        read_audio(folder / data_cfg.beam_channel),
        read_audio(folder / data_cfg.ref_channel),
    )
    beam, ref = resample(beam, beam_sr, sr), resample(ref, ref_sr, sr)
    n = min(len(beam), len(ref))
    return enhance_arrays(model, beam[:n], ref[:n], streaming=streaming)
