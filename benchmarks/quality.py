"""Does the guidance help? GSENet (beam+ref) vs SSENet (beam only) vs ref only, same budget.

    python benchmarks/quality.py                      # ~45-60 min on 2 CPU cores
    python benchmarks/quality.py --quick              # a few minutes: plumbing check, not a result

1. Simulates a training set with the paper's guided scheme (y0 = "beamformer" with interference
   attenuated by a random amount relative to the raw mic y1) and a held-out test set with the array
   scheme: a 3-mic, 2 cm circular array, a fixed (superdirective) beamformer steered at the target,
   0..2 interfering talkers at 0 dB from random directions, diffuse noise, RT60 0.15-0.45 s.
2. Trains the three input variants (`model.inputs` = beam+ref, beam, ref) with the recipe in
   gsenet/configs/quality.yaml and the same number of steps.
3. Scores each on the test set with gsenet.inference.evaluate_model, plus a BSS-eval style SIR:
   the enhanced signal is projected (128-tap filters) onto the target and the interference image at
   the reference mic, which the simulator re-creates exactly from (seed, index).
   Beside the models: the raw reference mic, the beamformer, a Wiener filter on the beam
   (gsenet.baselines.wiener: the classical level to beat) and the oracle ideal ratio mask on the beam
   (gsenet.baselines.oracle_irm: the ceiling of a real mask on the beam; it uses the clean target).
Prints one table overall and broken down by condition (interfering speech vs noise only) and by
interferer direction relative to the target, and writes results.csv/json in the work folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np

VARIANTS = ("ref", "beam", "beam+ref")
# Reference systems on the beam, as named in the table -> their suffix in evaluate_model's rows.
BASELINE_SYSTEMS = {"Wiener on beam": "_wiener", "oracle IRM": "_oracle_irm"}
RECIPE = Path(__file__).resolve().parents[1] / "gsenet" / "configs" / "quality.yaml"
EXPERIMENT = "gsenet-quality"  # MLflow experiment of the three training runs (work_dir/mlflow.db)


# ----------------------------------------------------------------------------------------------
# BSS-eval style SIR: how much of the output is (filtered) interference
# ----------------------------------------------------------------------------------------------
def _xcorr(a: np.ndarray, b: np.ndarray, taps: int) -> np.ndarray:
    """r[k] = sum_n a[n] b[n + k] for k in -(taps-1)..(taps-1), via FFT."""
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    full = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    return np.concatenate([full[-(taps - 1) :], full[:taps]])


def _project(y: np.ndarray, refs: list[np.ndarray], taps: int) -> np.ndarray:
    """Least-squares projection of y onto the span of `taps`-tap FIR-filtered references."""
    k = len(refs)
    gram = np.zeros((k * taps, k * taps))
    rhs = np.zeros(k * taps)
    lags = np.arange(taps)
    for i, a in enumerate(refs):
        rhs[i * taps : (i + 1) * taps] = _xcorr(a, y, taps)[taps - 1 :]  # sum_n a[n-j] y[n]
        for j, b in enumerate(refs):
            r = _xcorr(a, b, taps)  # gram[(i, p), (j, q)] = sum_n a[n-p] b[n-q] = r_ab[p - q]
            gram[i * taps : (i + 1) * taps, j * taps : (j + 1) * taps] = r[(lags[:, None] - lags[None, :]) + taps - 1]
    gram += 1e-9 * np.trace(gram) / len(gram) * np.eye(len(gram))
    filters = np.linalg.solve(gram, rhs)
    return sum(np.convolve(a, filters[i * taps : (i + 1) * taps])[: len(y)] for i, a in enumerate(refs))


def sir_db(estimate: np.ndarray, target: np.ndarray, interference: np.ndarray, taps: int = 128) -> float:
    """10 log10(|P_s y|^2 / |P_{s,i} y - P_s y|^2) (Vincent et al.'s SIR); NaN without interference."""
    if np.sum(interference**2) < 1e-12:
        return float("nan")
    y = estimate.astype(np.float64)
    s_part = _project(y, [target.astype(np.float64)], taps)
    both = _project(y, [target.astype(np.float64), interference.astype(np.float64)], taps)
    return float(10 * np.log10(np.sum(s_part**2) / max(np.sum((both - s_part) ** 2), 1e-12)))


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------
def simulate(work: Path, train_n: int, test_n: int, duration: float) -> tuple[Path, Path]:
    from gsenet.simulate import simulate_dataset

    train = simulate_dataset(work / "train_paper", train_n, seed=1, scheme="paper", duration_s=duration)
    test = simulate_dataset(
        work / "test_array",
        test_n,
        seed=2,
        scheme="array",
        duration_s=duration,
        beamformer="superdirective",
        sir_db=(0.0, 0.0),
        split_fractions=(0.0, 0.0, 1.0),
    )
    return train, test


def run_name(variant: str) -> str:
    return f"quality-{variant.replace('+', '_')}"


def train_variant(work: Path, data: Path, variant: str, epochs: int, steps: int, widths_mult: float) -> Path:
    from gsenet.config import apply_overrides, load_yaml
    from gsenet.train import fit

    cfg = apply_overrides(
        load_yaml(RECIPE),
        {
            "model.inputs": variant,
            "model.width_multiplier": widths_mult,
            "data.path": str(data),
            "train.epochs": epochs,
            "train.steps_per_epoch": steps,
            "train.storage_path": str(work / "runs"),
            "train.name": run_name(variant),
            "tracking.mlflow_uri": f"sqlite:///{work / 'mlflow.db'}",
            "tracking.experiment": EXPERIMENT,
        },
    )
    result = fit(cfg)
    best = result.get_best_checkpoint("val_loss", "min") if result.best_checkpoints else result.checkpoint
    return Path(best.path)


def variant_runs(work: Path):
    """(client, {variant: id of its latest MLflow run}) from the work dir's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    ids = {}
    for variant in VARIANTS:
        name = run_name(variant)
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id], f"attributes.run_name = '{name}'", order_by=["attributes.start_time DESC"]
        )  # fmt: skip
        if not runs:
            raise SystemExit(f"{work / 'mlflow.db'}: no MLflow run {name!r}; train the variants first")
        ids[variant] = runs[0].info.run_id
    return client, ids


def learning_curves(client, run_ids: dict[str, str]) -> dict[str, list[dict]]:
    """Each variant's validation SI-SDR over the beam at every epoch (its MLflow run's
    `val_si_sdr_improvement`: the training scheme's val split, not the array-scheme test set)."""
    curves = {}
    for variant, run_id in run_ids.items():
        history = sorted(client.get_metric_history(run_id, "val_si_sdr_improvement"), key=lambda m: m.step)
        curves[variant] = [{"step": m.step, "si_sdr_vs_beam": m.value} for m in history]
    return curves


def log_curves(work: Path) -> Path:
    """The variants' learning curves as one PNG in the work folder and in each variant's MLflow run."""
    from train_quality import plot_curves  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

    client, run_ids = variant_runs(work)
    curves = learning_curves(client, run_ids)
    path = plot_curves(
        curves, work / "learning_curves.png", "benchmarks/quality.py: validation (paper scheme) SI-SDR over the beam"
    )
    (work / "learning_curves.json").write_text(json.dumps(curves, indent=1))
    for run_id in run_ids.values():
        client.log_artifact(run_id, str(path), "learning_curves")
    return path


def interference_images(test_root: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    """Re-create each test recording's interference at the reference mic, at the written scale."""
    from gsenet.simulate import Sources, load_simulation_config, simulate_recording

    cfg, seed = load_simulation_config(test_root)
    sources = Sources(cfg)
    images = {}
    for row in rows:
        sim = simulate_recording(int(row["meta.index"]), "test", seed, cfg, sources)
        images[row["recording"]] = sim.interference[1]
    return images


def score_all(checkpoints: dict[str, Path], test_root: Path, perceptual: bool) -> list[dict]:
    from gsenet.data import RecordingDataset
    from gsenet.inference import evaluate_model, load_model

    rows: list[dict] = []
    enhanced_rows = {}
    for variant, checkpoint in checkpoints.items():
        model, cfg = load_model(str(checkpoint))
        enhanced_rows[variant] = evaluate_model(model, cfg, test_root, "test", perceptual=perceptual)
        enhanced_rows[variant + ":model"] = model
    first = enhanced_rows[next(iter(checkpoints))]
    images = interference_images(test_root, first)
    from gsenet.baselines import run_baselines
    from gsenet.config import DataConfig
    from gsenet.inference import enhance_arrays

    dataset = RecordingDataset(test_root / "test", DataConfig(), 16000)
    signals = {item["name"]: item for item in (dataset[i] for i in range(len(dataset)))}
    baseline_outputs = {
        name: run_baselines(item["beam"].numpy(), item["target"].numpy(), 16000) for name, item in signals.items()
    }
    references = {"reference mic": "_ref", "beamformer": "_beam", **BASELINE_SYSTEMS}
    for system in (*references, *checkpoints):
        for row in first if system in references else enhanced_rows[system]:
            item = signals[row["recording"]]
            target = item["target"].numpy()
            if system == "reference mic":
                suffix, signal = "_ref", item["ref"].numpy()
            elif system == "beamformer":
                suffix, signal = "_beam", item["beam"].numpy()
            elif system in BASELINE_SYSTEMS:
                suffix = BASELINE_SYSTEMS[system]
                signal = baseline_outputs[row["recording"]][suffix[1:]]
            else:
                suffix = ""
                signal = enhance_arrays(enhanced_rows[system + ":model"], item["beam"].numpy(), item["ref"].numpy())
            rows.append(
                {
                    "system": system,
                    "recording": row["recording"],
                    "condition": row.get("meta.condition", ""),
                    "si_sdr": row[f"si_sdr{suffix}"],
                    "si_sdr_vs_beam": row[f"si_sdr{suffix}"] - row["si_sdr_beam"],
                    "pesq": row.get(f"pesq{suffix}", float("nan")),
                    "stoi": row.get(f"stoi{suffix}", float("nan")),
                    "sir": sir_db(signal, target, images[row["recording"]]),
                    "direction": direction_bin(test_root / "test" / row["recording"] / "meta.json"),
                }
            )
    return rows


def direction_bin(meta_path: Path) -> str:
    """The closest interferer's separation from the target, binned (or 'none')."""
    meta = json.loads(meta_path.read_text())
    talkers = meta.get("sources", {}).get("interferers", [])
    separations = [abs(t["separation_deg"]) for t in talkers if "separation_deg" in t]
    if not separations:
        return "none"
    closest = min(separations)
    return "30-60" if closest < 60 else "60-120" if closest < 120 else "120-180"


def table(rows: list[dict], title: str) -> str:
    systems = list(dict.fromkeys(r["system"] for r in rows))
    lines = [f"\n{title}", f"{'system':<14} {'n':>3} {'SI-SDR':>7} {'vs beam':>8} {'PESQ':>5} {'STOI':>5} {'SIR':>6}"]
    for system in systems:
        mine = [r for r in rows if r["system"] == system]

        def mean(key: str, mine=mine) -> float:
            values = [r[key] for r in mine if not math.isnan(r[key])]
            return float(np.mean(values)) if values else float("nan")

        lines.append(
            f"{system:<14} {len(mine):>3} {mean('si_sdr'):>7.2f} {mean('si_sdr_vs_beam'):>+8.2f} "
            f"{mean('pesq'):>5.2f} {mean('stoi'):>5.3f} {mean('sir'):>6.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="quality_run")
    parser.add_argument("--train-recordings", type=int, default=400)
    parser.add_argument("--test-recordings", type=int, default=60)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--width-multiplier", type=float, default=0.5)
    parser.add_argument("--no-perceptual", action="store_true", help="skip PESQ/STOI")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the plumbing")
    parser.add_argument("--curves-only", action="store_true", help="plot and log the curves of a finished work dir")
    args = parser.parse_args()
    if args.curves_only:
        print(f"learning curves: {log_curves(Path(args.work_dir).resolve())}")
        return
    if args.quick:
        args.train_recordings, args.test_recordings, args.epochs, args.steps = 20, 6, 1, 5
    import ray

    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    train_root, test_root = simulate(work, args.train_recordings, args.test_recordings, args.duration)
    print(f"simulated in {time.time() - start:.0f} s: {train_root}, {test_root}")
    from gsenet.runtime import init_ray

    init_ray(num_cpus=2)
    checkpoints = {}
    for variant in VARIANTS:
        t0 = time.time()
        checkpoints[variant] = train_variant(work, train_root, variant, args.epochs, args.steps, args.width_multiplier)
        print(f"trained {variant} in {time.time() - t0:.0f} s -> {checkpoints[variant]}")
    ray.shutdown()
    print(f"learning curves: {log_curves(work)}")
    rows = score_all(checkpoints, test_root, perceptual=not args.no_perceptual)
    with open(work / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = [table(rows, "All test recordings (array scheme, superdirective beamformer)")]
    for condition in ("interfering_speech", "noise_only"):
        report.append(table([r for r in rows if r["condition"] == condition], f"Condition: {condition}"))
    for direction in ("30-60", "60-120", "120-180"):
        subset = [r for r in rows if r["direction"] == direction]
        if subset:
            report.append(table(subset, f"Closest interferer {direction} degrees from the target"))
    text = "\n".join(report)
    print(text)
    (work / "results.txt").write_text(text + "\n")
    print(f"\nsettings: {vars(args)}; total {time.time() - start:.0f} s; rows in {work / 'results.csv'}")


if __name__ == "__main__":
    main()
