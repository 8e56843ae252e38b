"""Learning curves and the shipped pretrained model: plain PyTorch on gsenet's own model, loss and data.

    # a learning curve (e.g. before/after a recipe change): SI-SDR over the beamformer vs steps
    python benchmarks/train_quality.py curve --train-data D --eval-data T --steps 300 \\
        --out curves/mask --set model.width_multiplier=0.5 model.output_mode=residual_mask

    # the pretrained model: simulate, train, write gsenet/pretrained/<name>/, then its model card
    python benchmarks/train_quality.py pretrained --name sim-w05 --minutes 36 ...
    python benchmarks/train_quality.py card --name sim-w05 --test-data WORK/test_array ...

Why not `gsenet train`: this is the same model (gsenet.model.GSENet), loss (gsenet.losses),
data pipeline (gsenet.data.SegmentDataset, collate_batch), recipe (gsenet/configs/quality.yaml)
and LR schedule (gsenet.train.lr_factor), without Ray's worker processes, whose start-up and
per-epoch reporting cost minutes on a shared 2-core machine, and with an evaluation every few
steps on the *array-scheme* test pipeline (what the quality table measures) for the curves.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "gsenet" / "configs" / "quality.yaml"


def experiment_config(recipe: Path, overrides: list[str], train_data: Path):
    from gsenet.config import apply_overrides, load_yaml

    return apply_overrides(load_yaml(recipe), [*overrides, f"data.path={train_data}"])


def eval_set(root: Path, split: str, n: int, sr: int) -> list[dict]:
    from gsenet.config import DataConfig
    from gsenet.data import RecordingDataset

    dataset = RecordingDataset(root / split, DataConfig(), sr)
    items = [dataset[i] for i in range(min(n, len(dataset)) if n else len(dataset))]
    return [{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in item.items()} for item in items]


@torch.no_grad()
def si_sdr_gain(model, items: list[dict]) -> float:
    """Mean SI-SDR of the model's output minus the beamformer's, in dB (gsenet.metrics.si_sdr)."""
    from gsenet.inference import enhance_arrays
    from gsenet.metrics import si_sdr

    model.eval()
    gains = []
    for item in items:
        enhanced = enhance_arrays(model, item["beam"], item["ref"])
        gains.append(si_sdr(enhanced, item["target"]) - si_sdr(item["beam"], item["target"]))
    model.train()
    return float(np.mean(gains))


def train(
    cfg,
    steps: int,
    eval_items: list[dict],
    eval_every: int,
    max_minutes: float,
    log=print,
    val_items=None,
    snapshot: Path | None = None,
) -> dict:
    """Train `steps` steps or `max_minutes`, whichever comes first; returns the model, the curve and
    the timing. The LR schedule runs on steps only: `max_minutes` is a safety stop. (It used to run on
    max(step / steps, minutes / max_minutes): on the shared machine the first 100 steps of
    pretrained:sim-w05 took 31 of its 36 minutes, so the cosine was 85% done at step 100 and the LR
    was 0.1x its peak for the remaining 288 steps: the flat curve.)"""
    from gsenet.data import SegmentDataset, collate_batch
    from gsenet.losses import GSENetLoss
    from gsenet.model import GSENet, count_parameters
    from gsenet.train import lr_factor, setup_device, train_step

    sr, o = cfg.model.sample_rate, cfg.optim
    train_set = SegmentDataset(
        Path(cfg.data.path) / "train", cfg.data, sr, seed=cfg.train.seed, length=steps * cfg.data.batch_size
    )
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=False, drop_last=True, collate_fn=collate_batch
    )
    torch.manual_seed(cfg.train.seed)
    model = GSENet(cfg.model)
    loss_fn = GSENetLoss(cfg.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, o.warmup_steps, steps, o.schedule, o.min_lr_ratio)
    )
    cpu = torch.device("cpu")
    autocast_dtype = setup_device(cfg, cpu)  # train.precision, as `gsenet train` reads it (auto = fp32 on CPU)
    precision = "bf16 autocast" if autocast_dtype is not None else "fp32"
    log(f"{count_parameters(model):,} parameters, {steps} steps of batch {cfg.data.batch_size}, {precision}")
    curve = [{"step": 0, "si_sdr_vs_beam": si_sdr_gain(model, eval_items), "loss": float("nan"), "minutes": 0.0}]
    if val_items:  # the training distribution's own held-out split: tells mismatch from plateau
        curve[0]["val_si_sdr_vs_beam"] = si_sdr_gain(model, val_items)
    log(f"step 0: SI-SDR vs beam {curve[0]['si_sdr_vs_beam']:+.2f} dB")
    start, running, done = time.time(), [], 0  # the clock starts after the step-0 evaluation
    parameters = list(model.parameters())
    for step, batch in enumerate(loader, start=1):
        # gsenet train's own step: a non-finite loss comes back before anything is updated.
        loss = train_step(model, parameters, loss_fn, optimizer, batch, cpu, autocast_dtype, o.grad_clip)
        if not torch.isfinite(loss):  # as `gsenet train` does: stop at once and say where
            kept = f"; {snapshot} keeps the weights of the last evaluation" if snapshot else ""
            raise RuntimeError(f"non-finite training loss at step {step} on {batch['names']}{kept}")
        scheduler.step()
        running.append(float(loss))  # train_step returns it detached
        done = step
        out_of_time = (time.time() - start) / 60 > max_minutes
        if step % eval_every == 0 or step == steps or out_of_time:
            point = {
                "step": step,
                "si_sdr_vs_beam": si_sdr_gain(model, eval_items),
                "loss": float(np.mean(running)),
                "minutes": round((time.time() - start) / 60, 2),
            }
            if val_items:
                point["val_si_sdr_vs_beam"] = si_sdr_gain(model, val_items)
            curve.append(point)
            running = []
            if snapshot and all(torch.isfinite(p).all() for p in parameters):  # a run that dies keeps them
                torch.save({"model": model.state_dict(), "curve": curve, "step": step}, snapshot)
            val = f" (train-scheme val {point['val_si_sdr_vs_beam']:+.2f})" if val_items else ""
            log(
                f"step {step}: loss {point['loss']:.4f}, SI-SDR vs beam {point['si_sdr_vs_beam']:+.2f} dB{val}, "
                f"{point['minutes']:.1f} min"
            )
        if out_of_time:
            lr = optimizer.param_groups[0]["lr"]
            log(f"stopping at step {step} of {steps}: the {max_minutes} min budget is spent (LR {lr:.2e})")
            break
    return {"model": model.eval(), "curve": curve, "steps": done, "minutes": (time.time() - start) / 60}


def plot_curves(curves: dict[str, list[dict]], path: Path, title: str, ylim=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, curve in curves.items():
        (line,) = ax.plot(
            [p["step"] for p in curve], [p["si_sdr_vs_beam"] for p in curve], marker="o", ms=3, label=label
        )
        val = [p for p in curve if "val_si_sdr_vs_beam" in p]
        if val:  # dashed: the training scheme's own val split
            ax.plot(
                [p["step"] for p in val],
                [p["val_si_sdr_vs_beam"] for p in val],
                ls="--",
                color=line.get_color(),
                label=f"{label} (training scheme's val split)",
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("SI-SDR over the beamformer (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------
def run_curve(args) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = experiment_config(Path(args.config), args.set, Path(args.train_data))
    items = eval_set(Path(args.eval_data), args.eval_split, args.eval_recordings, cfg.model.sample_rate)
    val_items = None
    if args.val_recordings:  # the training data's own val split
        val_items = eval_set(Path(args.train_data), "val", args.val_recordings, cfg.model.sample_rate)
    result = train(cfg, args.steps, items, args.eval_every, args.max_minutes, val_items=val_items)
    (out / "curve.json").write_text(json.dumps({"overrides": args.set, "curve": result["curve"]}, indent=1))
    print(f"curve written to {out / 'curve.json'}")
    if args.save_model:  # for `gsenet evaluate` / the per-condition tables afterwards
        from gsenet.inference import save_model_folder

        save_model_folder(result["model"].state_dict(), cfg.model, Path(args.save_model))
        print(f"model written to {args.save_model}")


def run_plot(args) -> None:
    curves = {}
    for spec in args.curves:
        label, _, path = spec.partition("=")
        saved = json.loads(Path(path).read_text())
        curves[label] = saved["curve"] if isinstance(saved, dict) else saved  # `curve` or a pretrained folder's
    print(plot_curves(curves, Path(args.png), args.title, args.ylim))


def versions() -> dict:
    import numpy
    import scipy

    import gsenet

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "gsenet": getattr(gsenet, "__version__", "unknown"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }


# `pretrained --array-mix`: array-scheme training parts with beamformers and geometries the test set
# (superdirective, 3 mics on a 2 cm circle, seed 2) does not use, so its beamformer stays unseen.
ARRAY_PARTS = (
    ("array_mvdr_s4", 900, 4, {"beamformer": "mvdr"}),
    ("array_ds_s5", 600, 5, {"beamformer": "ds"}),
    ("array_mvdr4_s6", 600, 6, {"beamformer": "mvdr", "n_mics": 4, "array_radius_m": 0.035}),
)


def mix_datasets(out: Path, roots: list[Path], splits=("train", "val")) -> Path:
    """One dataset root whose splits link every recording of `roots`, named <recording>__<root> so
    that sorted names interleave the parts: the curve's val points and the level calibration use
    the first recordings of the val split. (Named <root>__<recording>, sim-mix-w05's first 16 val
    recordings were all from one part, the delay-and-sum one.)"""
    for split in splits:
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # rebuilt each time: a re-run never keeps old (or renamed) links
            if stale.is_symlink():
                stale.unlink()
        for root in roots:
            for recording in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                (folder / f"{recording.name}__{root.name}").symlink_to(recording.resolve(), target_is_directory=True)
    return out


def simulate_training_data(work: Path, args) -> Path:
    """The paper-scheme set, plus (with --array-mix) the ARRAY_PARTS, mixed into one root."""
    from gsenet.simulate import simulate_dataset

    paper = simulate_dataset(work / "train_paper", args.train_recordings, seed=1, scheme="paper", workers=args.threads)
    if not args.array_mix:
        return paper
    parts = [
        simulate_dataset(work / name, n, seed=seed, scheme="array", workers=args.threads, progress=False, **fields)
        for name, n, seed, fields in ARRAY_PARTS
    ]
    return mix_datasets(work / "train_mix", [paper, *parts])


def run_pretrained(args) -> None:
    from gsenet.config import dump_yaml
    from gsenet.inference import save_model_folder
    from gsenet.simulate import simulate_dataset

    torch.set_num_threads(args.threads)
    work = Path(args.work_dir).resolve()
    t0 = time.time()
    workers = args.threads  # simulation is one process per core
    train_root = simulate_training_data(work, args)
    test_root = simulate_dataset(
        work / "test_array", args.test_recordings, seed=2, scheme="array", beamformer="superdirective",
        sir_db=(0.0, 0.0), split_fractions=(0.0, 0.0, 1.0), workers=workers,
    )  # fmt: skip  # the quality table's held-out test set (benchmarks/quality.py)
    simulate_minutes = (time.time() - t0) / 60
    cfg = experiment_config(Path(args.config), args.set, train_root)
    # Curve on the first test recordings; the final numbers below use the whole test split.
    items = eval_set(test_root, "test", args.eval_recordings, cfg.model.sample_rate)
    # The training scheme's own val split too: tells train/test mismatch from a plateau.
    val_items = eval_set(train_root, "val", args.eval_recordings, cfg.model.sample_rate)
    result = train(
        cfg, args.steps, items, args.eval_every, args.minutes, val_items=val_items, snapshot=work / "snapshot.pt"
    )

    # The scale-invariant losses leave the output level free: put it at the target's level.
    gain_db = calibrate_level(result["model"], val_items)
    log_line = f"output level calibrated by {gain_db:+.2f} dB on {len(val_items)} val recordings"
    print(log_line)
    folder = ROOT / "gsenet" / "pretrained" / args.name
    if folder.exists():
        shutil.rmtree(folder)
    save_model_folder(result["model"].state_dict(), cfg.model, folder)
    (folder / "training.yaml").write_text(dump_yaml(cfg))
    (folder / "versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    (folder / "curve.json").write_text(json.dumps(result["curve"], indent=1) + "\n")
    plot_curves({args.name: result["curve"]}, folder / "curve.png", f"{args.name}: array-scheme test recordings")
    training = {
        "command": "python benchmarks/train_quality.py pretrained " + " ".join(args.argv),
        "train_recordings": args.train_recordings,
        "array_parts": [
            {"name": name, "recordings": n, "seed": seed, **fields} for name, n, seed, fields in ARRAY_PARTS
        ]
        if args.array_mix
        else [],
        "test_recordings": args.test_recordings,
        "steps": result["steps"],
        "batch_size": cfg.data.batch_size,
        "segment_seconds": cfg.data.segment_seconds,
        "train_minutes": round(result["minutes"], 1),
        "simulate_minutes": round(simulate_minutes, 1),
        "threads": args.threads,
        "output_level_calibration": {"gain_db": round(gain_db, 2), "data": "train data's val split"},
    }
    (folder / "training.json").write_text(json.dumps(training, indent=1) + "\n")
    print(f"pretrained model written to {folder} ({result['steps']} steps, {result['minutes']:.1f} min)")
    if not args.no_card:
        run_card(argparse.Namespace(name=args.name, test_data=str(test_root), early_test_data="",
                                    work_dir=str(work), eval_recordings=args.eval_recordings, threads=args.threads,
                                    no_perceptual=False))  # fmt: skip


def calibrate_level(model, items: list[dict]) -> float:
    """Re-level the model's output to its target's on `items` (gsenet.enhance.calibrate_output_level,
    as `gsenet train` does for the models it logs); the gain applied in dB."""
    from gsenet.enhance import calibrate_output_level

    return calibrate_output_level(model, items)


def run_calibrate(args) -> None:
    """Re-level a shipped model on the training scheme's val split; rewrites its model.pt."""
    from gsenet.inference import load_model, pretrained_folder
    from gsenet.model_files import MODEL_WEIGHTS

    torch.set_num_threads(args.threads)
    folder = pretrained_folder(args.name)
    model, cfg = load_model(f"pretrained:{args.name}")
    items = eval_set(Path(args.data), args.split, args.recordings, cfg.sample_rate)
    gain_db = calibrate_level(model, items)
    # Only the weights change (as gsenet.inference.save_model_folder writes them); config, versions
    # and card stay.
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, folder / MODEL_WEIGHTS)
    training = json.loads((folder / "training.json").read_text())
    training["output_level_calibration"] = {
        "gain_db": round(gain_db + training.get("output_level_calibration", {}).get("gain_db", 0.0), 2),
        "command": "python benchmarks/train_quality.py calibrate " + " ".join(args.argv),
    }
    (folder / "training.json").write_text(json.dumps(training, indent=1) + "\n")
    print(
        f"pretrained:{args.name}: output scaled by {gain_db:+.2f} dB (median level gain to the target on {len(items)} recordings)"
    )


def system_lines(rows: list[dict], title: str) -> list[str]:
    """Markdown table: one line per system (model, beam, ref, baselines) of the given rows."""
    from gsenet.inference import SYSTEMS
    from gsenet.metrics import nanmean

    lines = [f"**{title}** ({len(rows)} recordings)", "", "| system | SI-SDR (dB) | vs beamformer | PESQ-wb | STOI |"]
    lines.append("|---|---|---|---|---|")
    for suffix, name in SYSTEMS.items():
        if f"si_sdr{suffix}" not in rows[0]:
            continue
        mean = {k: nanmean(r.get(f"{k}{suffix}") for r in rows) for k in ("si_sdr", "pesq", "stoi")}
        gain = nanmean(r[f"si_sdr{suffix}"] - r["si_sdr_beam"] for r in rows)
        label = "**GSENet (this model)**" if suffix == "" else name
        lines.append(f"| {label} | {mean['si_sdr']:.2f} | {gain:+.2f} | {mean['pesq']:.2f} | {mean['stoi']:.3f} |")
    return [*lines, ""]


@torch.no_grad()
def guide_check(model, test_root: Path, sr: int) -> list[str]:
    """Whether the model's gain comes from the reference mic: SI-SDR over the beam as given and with
    the ref replaced by the beam (no contrast for the guide to use), overall and by condition."""
    from gsenet.enhance import enhance_arrays
    from gsenet.metrics import si_sdr

    rows = []
    for item in eval_set(test_root, "test", 0, sr):
        beam, ref, target = item["beam"], item["ref"], item["target"]
        meta = json.loads((test_root / "test" / item["name"] / "meta.json").read_text())
        base = si_sdr(beam, target)
        rows.append(
            {
                "condition": meta.get("condition", ""),
                "given": si_sdr(enhance_arrays(model, beam, ref), target) - base,
                "ref_is_beam": si_sdr(enhance_arrays(model, beam, beam), target) - base,
            }
        )
    lines = ["**Does it use the reference mic?** SI-SDR over the beamformer (dB), the model as given and with", "its ref input replaced by the beam:", "", "| recordings | as given | ref := beam | from the ref |", "|---|---|---|---|"]  # fmt: skip
    for condition in ["", *sorted({r["condition"] for r in rows})]:
        subset = [r for r in rows if condition in ("", r["condition"])]
        given, blind = np.mean([r["given"] for r in subset]), np.mean([r["ref_is_beam"] for r in subset])
        label = f"{condition or 'all'} ({len(subset)})"
        lines.append(f"| {label} | {given:+.2f} | {blind:+.2f} | {given - blind:+.2f} |")
    return [*lines, ""]


def run_card(args) -> None:
    """Score a shipped model on the array-scheme test set and write its model card (README.md)."""
    from gsenet.inference import evaluate_model, load_model, pretrained_folder, write_csv

    torch.set_num_threads(args.threads)
    folder = pretrained_folder(args.name)
    model, cfg = load_model(f"pretrained:{args.name}")
    rows = evaluate_model(model, cfg, Path(args.test_data), "test", perceptual=not args.no_perceptual)
    write_csv(rows, Path(args.work_dir) / f"{args.name}_evaluation.csv")
    training = json.loads((folder / "training.json").read_text())
    curve = json.loads((folder / "curve.json").read_text())
    text = [
        f"# pretrained:{args.name}",
        "",
        CARD_INTRO.format(**training, width=cfg.width_multiplier, array=array_text(training)),
        "",
    ]
    text += system_lines(rows, "Array-scheme test set, target = direct path")
    for condition in ("interfering_speech", "noise_only"):
        subset = [r for r in rows if r.get("meta.condition") == condition]
        if subset:
            text += system_lines(subset, f"Condition: {condition}")
    if args.early_test_data:
        early = evaluate_model(model, cfg, Path(args.early_test_data), "test", perceptual=False, baselines=False)
        gain = np.mean([r["si_sdr_improvement"] for r in early])
        text += [
            f"Against the early target (direct + 50 ms of reflections, same mixtures): SI-SDR "
            f"{np.mean([r['si_sdr'] for r in early]):.2f} dB, beamformer "
            f"{np.mean([r['si_sdr_beam'] for r in early]):.2f} dB, improvement {gain:+.2f} dB.",
            "",
        ]
    text += guide_check(model, Path(args.test_data), cfg.sample_rate)
    points = ", ".join("step {}: {:+.2f}".format(p["step"], p["si_sdr_vs_beam"]) for p in curve)
    text += [
        f"Learning curve (SI-SDR over the beamformer on the first {args.eval_recordings} test recordings): {points}.",
        "",
        "![learning curve](curve.png)",
        "",
        f"Versions: `{json.dumps(json.loads((folder / 'versions.json').read_text()))}`",
        "",
    ]
    (folder / "README.md").write_text("\n".join(text))
    print("\n".join(text))


def array_text(training: dict) -> str:
    """The card's words for the array-scheme training parts (empty for a paper-scheme-only model)."""
    parts = training.get("array_parts") or []
    if not parts:
        return ""
    described = [
        f"{p['recordings']} with {p['beamformer'].upper()} beams on {p.get('n_mics', 3)} mics"
        f" ({p.get('array_radius_m', 0.02) * 100:g} cm radius, seed {p['seed']})"
        for p in parts
    ]
    return " plus array-scheme recordings (`gsenet simulate --scheme array`): " + ", ".join(described)


CARD_INTRO = """GSENet (beam + reference mic, residual complex mask, width multiplier {width}) trained on
{train_recordings} simulated paper-scheme recordings (4 s, procedural speech and noise, RT60
0.15-0.45 s; `gsenet simulate --scheme paper --seed 1`){array}; 80% of each set is its train split; {steps} steps of batch {batch_size} x
{segment_seconds} s in {train_minutes} min on {threads} CPU threads (plus {simulate_minutes} min of
simulation) with the recipe gsenet/configs/quality.yaml. Command: `{command}`.
Scored on {test_recordings} held-out array-scheme recordings (a different pipeline: 3-mic 2 cm
circular array, superdirective beamformer steered at the target, 0-2 interfering talkers at 0 dB,
diffuse noise; seed 2). Procedural speech only: expect much worse on real recordings until it is
retrained on a speech corpus (`gsenet simulate --speech-dir`)."""


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p) -> None:
        p.add_argument("--config", default=str(RECIPE), help="recipe YAML (default gsenet/configs/quality.yaml)")
        p.add_argument("--set", nargs="*", default=[], help="dotted overrides, e.g. model.width_multiplier=0.5")
        p.add_argument("--steps", type=int, default=300)
        p.add_argument("--eval-every", type=int, default=50)
        p.add_argument("--eval-recordings", type=int, default=16)
        p.add_argument("--threads", type=int, default=2, help="torch threads")

    curve = sub.add_parser("curve", help="one learning curve")
    common(curve)
    curve.add_argument("--train-data", required=True, help="dataset root with train/")
    curve.add_argument("--eval-data", required=True, help="dataset root with the evaluation split")
    curve.add_argument("--eval-split", default="test")
    curve.add_argument("--max-minutes", type=float, default=60.0)
    curve.add_argument("--save-model", default="", help="also write the trained model folder here")
    curve.add_argument("--val-recordings", type=int, default=0, help="also score the train data's val split")
    curve.add_argument("--out", required=True)
    plot = sub.add_parser("plot", help="curves (label=curve.json ...) into one PNG")
    plot.add_argument("png")
    plot.add_argument("curves", nargs="+")
    plot.add_argument("--title", default="")
    plot.add_argument("--ylim", type=float, nargs=2, help="y-axis range in dB")
    pre = sub.add_parser("pretrained", help="simulate, train and write gsenet/pretrained/<name>/")
    common(pre)
    pre.add_argument("--name", required=True)
    pre.add_argument("--work-dir", default="pretrained_run")
    pre.add_argument("--train-recordings", type=int, default=400)
    pre.add_argument("--test-recordings", type=int, default=60)
    pre.add_argument("--minutes", type=float, default=40.0, help="training wall-time budget")
    pre.add_argument("--no-card", action="store_true", help="skip scoring the model and writing README.md")
    pre.add_argument(
        "--array-mix", action="store_true", help="add array-scheme recordings (ARRAY_PARTS) to the paper-scheme ones"
    )
    cal = sub.add_parser("calibrate", help="re-level a shipped model's output to its target's level")
    cal.add_argument("--name", required=True)
    cal.add_argument("--data", required=True, help="dataset root of the training scheme (its val split)")
    cal.add_argument("--split", default="val")
    cal.add_argument("--recordings", type=int, default=16)
    cal.add_argument("--threads", type=int, default=2)
    card = sub.add_parser("card", help="score a shipped model and write its model card")
    card.add_argument("--name", required=True)
    card.add_argument("--test-data", required=True, help="array-scheme dataset root with test/")
    card.add_argument("--early-test-data", default="", help="the same test set simulated with --target early")
    card.add_argument("--work-dir", default="pretrained_run", help="where the per-recording CSV goes")
    card.add_argument("--eval-recordings", type=int, default=16, help="recordings the curve was scored on")
    card.add_argument("--threads", type=int, default=2)
    card.add_argument("--no-perceptual", action="store_true", help="SI-SDR only (PESQ/STOI are slow)")
    args = parser.parse_args()
    args.argv = sys.argv[2:]
    commands = {
        "curve": run_curve,
        "plot": run_plot,
        "pretrained": run_pretrained,
        "calibrate": run_calibrate,
        "card": run_card,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
