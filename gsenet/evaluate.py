"""Evaluation: a model against the beamformer, the raw reference mic and reference systems, per
recording and by condition (`gsenet evaluate`, benchmarks/quality.py)."""

from __future__ import annotations

from pathlib import Path

from gsenet.config import DataConfig, ExperimentConfig, ModelConfig
from gsenet.enhance import enhance_arrays
from gsenet.model import GSENet
from gsenet.model_files import model_config_of

# Row-key suffix -> system, in table order. "" is the model; the baselines run on the beam.
SYSTEMS = {
    "": "model",
    "_beam": "beamformer",
    "_ref": "reference mic",
    "_wiener": "Wiener on beam",
    "_oracle_irm": "oracle IRM on beam",
}
METRICS = (("si_sdr", "SI-SDR"), ("pesq", "PESQ"), ("stoi", "STOI"))


def evaluate_model(
    model: GSENet,
    model_cfg: ExperimentConfig | ModelConfig,
    data_root: str | Path,
    split: str = "test",
    *,
    data_cfg=None,
    streaming: bool = False,
    perceptual: bool = True,
    max_recordings: int = 0,
    baselines: bool = True,
) -> list[dict]:
    """One row per recording: SI-SDR / PESQ-wb / STOI of the enhanced output, the beamformer output
    (`*_beam`), the reference mic (`*_ref`) and, with `baselines`, a Wiener filter on the beam
    (`*_wiener`) and the oracle ideal ratio mask on the beam (`*_oracle_irm`, the ceiling of a real
    mask); the improvements over the beamformer (`*_improvement`, `*_vs_beam<suffix>`); and the
    recording's meta.json (as `meta.<key>`) so results can be broken down by condition."""
    import json

    from gsenet import metrics as M
    from gsenet.baselines import run_baselines
    from gsenet.data import RecordingDataset
    from gsenet.progress import tracked

    if data_cfg is None:
        data_cfg = model_cfg.data if isinstance(model_cfg, ExperimentConfig) else DataConfig()
    sr = model_config_of(model_cfg).sample_rate
    dataset = RecordingDataset(Path(data_root) / split, data_cfg, sr)
    rows = []
    count = len(dataset) if not max_recordings else min(max_recordings, len(dataset))
    for index in tracked(range(count), f"evaluate {split}", unit="rec"):
        item, recording = dataset[index], dataset.recordings[index]
        beam, ref, target = (item[k].numpy() for k in ("beam", "ref", "target"))
        enhanced = enhance_arrays(model, beam, ref, streaming=streaming)
        row = {"recording": item["name"], "seconds": round(len(target) / sr, 3)}
        signals = {"": enhanced, "_beam": beam, "_ref": ref}
        if baselines:
            signals.update({f"_{name}": out for name, out in run_baselines(beam, target, sr).items()})
        for suffix, signal in signals.items():
            for key, value in M.score(signal, target, sr, perceptual=perceptual).items():
                row[f"{key}{suffix}"] = value
        for key, _ in METRICS:
            if key in row:
                row[f"{key}_improvement"] = row[key] - row[f"{key}_beam"]
                for suffix in signals.keys() - {"", "_beam"}:
                    row[f"{key}_vs_beam{suffix}"] = row[f"{key}{suffix}"] - row[f"{key}_beam"]
        meta_path = Path(recording.folder) / "meta.json"
        if meta_path.is_file():
            for key, value in json.loads(meta_path.read_text()).items():
                if isinstance(value, (int, float, str, bool)):
                    row[f"meta.{key}"] = value
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean of every numeric metric column (NaNs skipped)."""
    from gsenet.metrics import nanmean

    keys = [k for k in rows[0] if not k.startswith("meta.") and k not in ("recording",)] if rows else []
    return {f"mean_{k}": nanmean(r.get(k) for r in rows) for k in keys if isinstance(rows[0][k], float)}


def format_table(rows: list[dict], summary: dict[str, float]) -> str:
    """Per-recording SI-SDR / PESQ / STOI for enhanced vs beamformer vs reference mic, the means, then
    one line per system (model, beamformer, reference mic, baselines), overall and by condition."""
    columns = list(METRICS)
    columns = [(k, t) for k, t in columns if rows and k in rows[0]]
    header = f"{'recording':<24}" + "".join(f"{t + ' ' + w:>14}" for k, t in columns for w in ("enh", "beam", "ref"))
    lines = [header, "-" * len(header)]

    def fmt(values: list) -> str:
        return "".join(f"{v:>14.3f}" for v in values)

    for row in rows:
        lines.append(
            f"{row['recording'][:24]:<24}" + fmt([row[f"{k}{s}"] for k, _ in columns for s in ("", "_beam", "_ref")])
        )
    lines.append("-" * len(header))
    lines.append(f"{'mean':<24}" + fmt([summary[f"mean_{k}{s}"] for k, _ in columns for s in ("", "_beam", "_ref")]))
    gains = ", ".join(f"{t} {summary[f'mean_{k}_improvement']:+.3f}" for k, t in columns)
    lines.append(f"improvement over the beamformer: {gains}")
    lines += ["", system_table(rows, "all recordings")]
    conditions = sorted({r["meta.condition"] for r in rows if isinstance(r.get("meta.condition"), str)})
    for condition in conditions if len(conditions) > 1 else []:
        lines += ["", system_table([r for r in rows if r.get("meta.condition") == condition], condition)]
    return "\n".join(lines)


def system_table(rows: list[dict], title: str) -> str:
    """One line per system present in `rows`: mean SI-SDR, SI-SDR over the beamformer, PESQ, STOI."""
    from gsenet.metrics import nanmean

    keys = [k for k, _ in METRICS if rows and k in rows[0]]
    lines = [f"{title} ({len(rows)} recordings)", f"{'system':<22}{'SI-SDR':>9}{'vs beam':>9}{'PESQ':>7}{'STOI':>7}"]
    for suffix, name in SYSTEMS.items():
        if not rows or f"si_sdr{suffix}" not in rows[0]:
            continue
        means = {k: nanmean(r[f"{k}{suffix}"] for r in rows) for k in keys}
        gain = nanmean(r[f"si_sdr{suffix}"] - r["si_sdr_beam"] for r in rows)
        perceptual = "".join(f"{means[k]:>7.2f}" if k in means else f"{'-':>7}" for k in ("pesq", "stoi"))
        lines.append(f"{name:<22}{means['si_sdr']:>9.2f}{gain:>+9.2f}{perceptual}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
