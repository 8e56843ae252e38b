"""Training on Ray Train: one loop for a laptop CPU, a CI runner and N GPU nodes (DDP).

    fit(cfg) ─ build_trainer(cfg) ─ checks.prepare_data, MLflow run (driver) ─ TorchTrainer
                                          └─ train_loop_per_worker (every rank):
                                               start_worker: data → model + loss → checkpoint
                                               each epoch: train_one_epoch (+ check_preemption)
                                               → end_epoch: validate → ray.train.report(metrics,
                                               checkpoint)

Starting or joining Ray is gsenet.runtime's job (shared with search/).

Ray Train resumes a run from (storage_path, name), so the name is derived from the config (no
timestamps): rerunning the same command after a crash continues from the latest checkpoint, with
the same step count and data position. Only rank 0 writes checkpoints and logs to MLflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsenet import metrics as M
from gsenet.config import ExperimentConfig, dump_yaml, flatten, from_dict, to_dict
from gsenet.errors import GSENetError, TrainingError
from gsenet.runtime import CONTROLLER_POLL_ENV, reuse_freed_memory

log = logging.getLogger("gsenet.train")


# ----------------------------------------------------------------------------------------------
# Driver side (Ray start-up lives in gsenet.runtime)
# ----------------------------------------------------------------------------------------------
def default_run_name(cfg: ExperimentConfig) -> str:
    """cfg.train.name, else a hash of everything that shapes the run (stable across restarts)."""
    if cfg.train.name:
        return cfg.train.name
    shaping = to_dict(cfg)
    shaping.pop("tracking")
    # Where and how it runs, not what it computes: a run resumed on a node with other CPUs or a GPU
    # (a preempted spot VM replaced by another type) keeps its name, and so its checkpoints.
    where = ("cpus_per_worker", "gpus_per_worker", "gpu_resource", "log_every", "preemption_check_every")
    where += ("checkpoint_every", "trace_dir")  # how often it saves and what it logs of itself
    for key in ("name", "storage_path", "max_failures", *where):
        shaping["train"].pop(key)
    digest = hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]
    return f"gsenet-{digest}"


@dataclasses.dataclass
class BuiltTrainer:
    """A TorchTrainer ready to fit, and the MLflow run its rank 0 logs to (which `fit` closes with
    the outcome; a sweep trial renames it)."""

    trainer: Any  # gsenet.failures.GSENetTrainer
    mlflow_uri: str
    mlflow_run_id: str


def build_trainer(
    cfg: ExperimentConfig,
    *,
    name: str | None = None,
    train_callbacks: list = (),
    mlflow_parent_run_id: str | None = None,
    mlflow_tags: dict | None = None,
) -> BuiltTrainer:
    """A ready-to-fit TorchTrainer and its MLflow run. Checks the dataset and creates the MLflow run
    first, so a broken dataset or an unreachable tracking server is a clear error before any worker
    starts."""
    import ray.train

    from gsenet import tracking
    from gsenet.checks import prepare_data
    from gsenet.failures import GSENetTrainer
    from gsenet.runtime import DEFAULT_STORAGE, poll_train_workers_often
    from gsenet.storage import open_storage_filesystem

    cfg = from_dict(to_dict(cfg))  # a validated private copy
    poll_train_workers_often()  # read when fit() starts the controller
    name = name or default_run_name(cfg)
    _, report = prepare_data(cfg.data, cfg.model.sample_rate)
    excluded = sorted(report.bad_recordings) if cfg.data.skip_bad_recordings else []

    filesystem, storage_path = open_storage_filesystem(cfg.train.storage_path or DEFAULT_STORAGE)
    uri = tracking.resolve_tracking_uri(cfg.tracking.mlflow_uri)
    run_id = tracking.start_training_run(
        uri,
        cfg.tracking.experiment,
        name,
        f"{cfg.train.storage_path or storage_path}/{name}",
        params=flatten(cfg),
        config_yaml=dump_yaml(cfg),
        data_summary={**report.summary, "excluded_recordings": excluded},
        parent_run_id=mlflow_parent_run_id,
        tags=mlflow_tags,
    )
    gpus = cfg.train.gpus_per_worker
    use_gpu = gpus > 0 and not cfg.train.gpu_resource  # a stand-in resource trains on CPU
    resources = {"CPU": cfg.train.cpus_per_worker, **({cfg.train.gpu_resource or "GPU": gpus} if gpus > 0 else {})}
    trainer = GSENetTrainer(  # a TorchTrainer that does not retry errors which cannot go away
        train_loop_per_worker,
        train_loop_config={
            "config": to_dict(cfg),
            "exclude": excluded,
            "mlflow_uri": uri,
            "mlflow_run_id": run_id,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=run_config(cfg, name, storage_path, filesystem, train_callbacks),
    )
    return BuiltTrainer(trainer, uri, run_id)


def run_config(cfg: ExperimentConfig, name: str, storage_path: str, filesystem, callbacks: list):
    """Where the run's results go (resumable by name), its retries, checkpoints and callbacks."""
    import ray.train

    from gsenet.runtime import worker_env

    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
        # Kept by the metric that defines "best" (a sweep sets it to its own metric), so the
        # best epoch's checkpoint is never the one Ray deletes.
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.train.keep_checkpoints,
            checkpoint_score_attribute=cfg.train.checkpoint_metric,
            checkpoint_score_order=cfg.train.resolved_checkpoint_mode(),
        ),
        callbacks=list(callbacks),
        worker_runtime_env={"env_vars": worker_env()},
    )


def fit(cfg: ExperimentConfig, **kwargs):
    """Train (or resume) one run; returns the ray.train.Result. Errors raised by our own code in
    a worker (e.g. a non-finite loss) come back as the same GSENetError type with its message."""
    import ray.train

    from gsenet import tracking

    built = build_trainer(cfg, **kwargs)
    uri, run_id = built.mlflow_uri, built.mlflow_run_id
    try:
        result = built.trainer.fit()
    except ray.train.TrainingFailedError as exc:
        tracking.finish_run(uri, run_id, "FAILED")
        raise _user_error(exc) from exc
    except BaseException:
        tracking.finish_run(uri, run_id, "KILLED")
        raise
    tracking.finish_run(uri, run_id, "FINISHED")
    return result


def _user_error(exc: BaseException) -> BaseException:
    """The GSENetError a worker raised (Ray wraps it per rank), as its own type and message."""
    from gsenet.failures import find_user_error

    error = find_user_error(exc)
    if error is not None:
        return type(error)(str(error))
    text = str(exc)  # a RayTaskError that could not re-create the original type
    for error_type in (TrainingError, GSENetError):
        marker = f"{error_type.__name__}: "
        if marker in text:
            return error_type(text.split(marker, 1)[1].strip().splitlines()[0])
    return exc


# ----------------------------------------------------------------------------------------------
# Worker side: small pieces, then the loop
# ----------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up to 1, then constant or cosine decay to `min_ratio` at `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def setup_device(cfg: ExperimentConfig, device: torch.device) -> torch.dtype | None:
    """TF32 on GPU and the autocast dtype (bf16 on GPU under "auto"; None = full fp32)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    precision = cfg.train.precision
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def check_autocast(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None) -> torch.dtype | None:
    """`dtype` if a forward pass runs under autocast with it, else None (fp32) with a warning, so a
    model op without a bf16 kernel (complex STFT parts) costs speed, not the run."""
    if dtype is None:
        return None
    x = torch.zeros(1, model.cfg.n_fft * 4, device=device)
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
            model(x, x)
        return dtype
    except RuntimeError as exc:
        print(f"gsenet: {dtype} autocast fails for this model on {device} ({exc}); training in fp32")
        return None


def make_train_loader(dataset, cfg: ExperimentConfig, start_batch: int, world_size: int):
    """This epoch's loader, skipping the batches already trained (after a mid-epoch checkpoint).

    Items are a function of (seed, epoch, index), so a sequential order over a suffix of the
    indices continues exactly where the run stopped, on every rank.
    """
    import ray.train.torch

    from gsenet.data import collate_batch

    skip = start_batch * cfg.data.batch_size * world_size
    subset = torch.utils.data.Subset(dataset, range(skip, len(dataset)))
    loader = torch.utils.data.DataLoader(
        subset,
        batch_size=cfg.data.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_batch,
    )
    return ray.train.torch.prepare_data_loader(loader)


def save_checkpoint(folder: Path, state: dict, cfg: ExperimentConfig) -> Path:
    """checkpoint.pt + config.yaml, each written atomically, then the manifest with their sha256."""
    from gsenet.checkpoint import write_checkpoint

    return write_checkpoint(folder, state, {"config.yaml": dump_yaml(cfg)})


def load_checkpoint(checkpoint) -> dict | None:
    """The state of Ray's latest checkpoint, or, when that one is partial, truncated or garbled
    (said by name), of the newest older checkpoint of the same run that verifies."""
    if checkpoint is None:
        return None
    from gsenet.checkpoint import CorruptCheckpointError, read_checkpoint

    tried = []
    for candidate in [checkpoint, *_older_checkpoints(checkpoint)]:
        name = candidate.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            with _private_copy(candidate) as folder:
                state = read_checkpoint(folder, allow_unverified=not tried)
        except (CorruptCheckpointError, OSError) as exc:
            print(f"gsenet: checkpoint {candidate.path} is not usable: {exc}; trying the one before it", flush=True)
            tried.append(name)
            continue
        if tried:
            print(f"gsenet: resuming from {candidate.path} (skipped {', '.join(tried)})", flush=True)
            state["progress"]["generation"] = state["progress"].get("generation", 0) + 1
        return state
    run = checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    raise TrainingError(
        f"no usable checkpoint in {run} (tried {', '.join(tried)}); move the run folder away "
        f"(or set train.name) to start over"
    )


@contextlib.contextmanager
def _private_copy(checkpoint):
    """A local folder with `checkpoint`'s files that only this process reads.

    Not `Checkpoint.as_directory()`: for remote storage it downloads into one folder per checkpoint
    that every rank on the node shares, and the last reader out deletes it, so a rank arriving as
    another leaves can read a folder being removed (seen in CI on gs://: rank 1 found the newest
    checkpoint empty and the run failed).
    """
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        yield checkpoint.path
        return
    with tempfile.TemporaryDirectory(prefix="gsenet-resume-") as folder:
        yield checkpoint.to_directory(folder)


def _older_checkpoints(checkpoint) -> list:
    """The other checkpoint_* folders of `checkpoint`'s run, newest first, older than it."""
    import pyarrow.fs
    import ray.train

    from gsenet.checkpoint import newest_first, order_key

    run, name = checkpoint.path.rstrip("/").rsplit("/", 1)
    try:
        infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(run))
    except OSError:
        return []
    names = [i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory]
    return [
        ray.train.Checkpoint(path=f"{run}/{n}", filesystem=checkpoint.filesystem)
        for n in newest_first(names)
        if order_key(n) < order_key(name)
    ]


def checkpoint_folder_name(step: int, generation: int, suffix: str = "") -> str:
    from gsenet.checkpoint import folder_name

    return folder_name(step, generation, suffix)


def commit_checkpoint(checkpoint, dir_name: str):
    """Ray's checkpoint upload, made all-or-nothing: on a local filesystem the files go to a hidden
    staging folder renamed into place; elsewhere (gs://) the manifest is copied last, so a folder
    cut short never verifies. A failed upload leaves nothing behind; a full disk is one DiskFullError
    naming the folder (never retried: it will not go away by itself)."""
    import pyarrow.fs
    import ray.train

    from gsenet.checkpoint import MANIFEST, is_no_space, no_space_error

    storage = ray.train.get_context().get_storage()
    fs, source = storage.storage_filesystem, checkpoint.path
    dest = storage.build_checkpoint_path_from_name(dir_name)
    local = isinstance(fs, pyarrow.fs.LocalFileSystem)
    target = f"{dest.rsplit('/', 1)[0]}/.staging-{dir_name}" if local else dest
    try:
        fs.create_dir(target)
        for info in pyarrow.fs.LocalFileSystem().get_file_info(pyarrow.fs.FileSelector(source)):
            if info.base_name != MANIFEST:
                pyarrow.fs.copy_files(info.path, f"{target}/{info.base_name}", destination_filesystem=fs)
        pyarrow.fs.copy_files(f"{source}/{MANIFEST}", f"{target}/{MANIFEST}", destination_filesystem=fs)
        if local:
            if fs.get_file_info(dest).type != pyarrow.fs.FileType.NotFound:
                fs.delete_dir(dest)  # a same-name leftover (e.g. rewritten after a fall-back)
            fs.move(target, dest)
    except OSError as exc:
        try:
            fs.delete_dir(target)  # the staging folder, or the partial checkpoint (gs://)
        except OSError:
            pass
        if is_no_space(exc):
            raise no_space_error(dest, exc) from None
        raise
    return ray.train.Checkpoint(path=dest, filesystem=fs)


def cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def train_step(
    forward, parameters, loss_fn, optimizer, batch: dict, device, autocast_dtype: torch.dtype | None, grad_clip: float
) -> torch.Tensor:
    """One optimizer step on a collated batch: forward under autocast, the loss in float32,
    backward, optional clipping, step. Returns the detached loss; a non-finite loss is returned
    before anything is updated (the caller says why). benchmarks/gpu_check.py times this function."""
    beam, ref, target = (batch[k].to(device, non_blocking=True) for k in ("beam", "ref", "target"))
    lengths = batch["lengths"].to(device)
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        estimate = forward(beam, ref)
    loss, _ = loss_fn(estimate.float(), target, lengths)
    if not torch.isfinite(loss):
        return loss.detach()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    return loss.detach()


@dataclasses.dataclass
class Progress:
    """Where the run is: what a checkpoint must restore besides the weights."""

    step: int = 0  # optimizer steps done
    epoch: int = 1  # the epoch in progress (1-based)
    batch: int = 0  # batches of `epoch` already trained (mid-epoch checkpoints)
    best_val_loss: float = math.inf
    best_score: float | None = None  # best train.checkpoint_metric so far (the best_model's)
    best_epoch: int = 0  # the epoch that scored it (0: none yet)
    last_val: dict = dataclasses.field(default_factory=dict)  # the last validation's metrics (preemption report)
    generation: int = 0  # times the run fell back past a corrupt checkpoint (new folders get _g<n>)

    @classmethod
    def restore(cls, saved: dict) -> Progress:
        """From a checkpoint's dict; fields an older checkpoint lacks keep their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def improves(self, value: float, mode: str) -> bool:
        """Whether `value` of the checkpoint metric beats the best so far (NaN never does)."""
        if not math.isfinite(value):
            return False
        return self.best_score is None or (value > self.best_score if mode == "max" else value < self.best_score)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(model, loss_fn, dataset, cfg: ExperimentConfig, device, autocast_dtype, rank: int, world: int):
    """Loss terms and SI-SDR on all validation recordings (sharded over ranks, summed), plus PESQ,
    STOI and audio examples for the first `train.metric_subset` recordings (rank 0)."""
    import torch.distributed as dist

    sr = cfg.model.sample_rate
    subset = min(cfg.train.metric_subset, len(dataset))
    mine = list(range(subset)) if rank == 0 else []
    mine += list(range(subset + rank, len(dataset), world))
    term_names = cfg.loss.active_terms()
    # [loss, count, si_sdr, si_sdr_beam, terms...] summed over recordings
    sums = torch.zeros(4 + len(term_names), dtype=torch.float64, device=device)
    perceptual, examples = {"pesq": [], "stoi": []}, []
    for index in mine:
        item = dataset[index]
        beam, ref, target = (item[k][None].to(device) for k in ("beam", "ref", "target"))
        lengths = torch.tensor([item["length"]], device=device)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            estimate = model(beam, ref)
        estimate = estimate.float()
        total, terms = loss_fn(estimate, target, lengths)
        est, tgt, bm = (x[0].cpu().numpy() for x in (estimate, target, beam))
        sums[:4] += torch.tensor([float(total), 1.0, M.si_sdr(est, tgt), M.si_sdr(bm, tgt)], dtype=torch.float64)
        for i, name in enumerate(term_names):
            sums[4 + i] += float(terms[name])
        if index < subset:
            perceptual["pesq"].append(M.pesq_wb(est, tgt, sr))
            perceptual["stoi"].append(M.stoi(est, tgt, sr))
            signals = {"ref": item["ref"].numpy(), "beam": bm, "enhanced": est, "target": tgt}
            examples.append((item["name"], signals))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    n = max(1.0, float(sums[1]))
    terms = {name: float(sums[4 + i]) / n for i, name in enumerate(term_names)}
    # PESQ/STOI are rank 0's (other ranks report NaN; only rank 0's report reaches Tune and MLflow).
    quality = {
        "si_sdr": float(sums[2]) / n,
        "si_sdr_beam": float(sums[3]) / n,
        "si_sdr_improvement": float(sums[2] - sums[3]) / n,
        "pesq": M.nanmean(perceptual["pesq"]),
        "stoi": M.nanmean(perceptual["stoi"]),
    }
    return validation_metrics(float(sums[0]) / n, terms, quality), examples


def validation_metrics(loss: float, loss_terms: dict[str, float], quality: dict[str, float]) -> dict[str, float]:
    """The validation report's names: `val_loss`, each loss term as `val_loss_<term>` and each
    quality metric as `val_<metric>`. Loss terms share names with metrics (si_sdr), so they live
    under their own prefix; a collision is an error, never a silent overwrite."""
    return M.disjoint_union(
        {"val_loss": loss},
        {f"val_loss_{name}": value for name, value in loss_terms.items()},
        {f"val_{name}": value for name, value in quality.items()},
    )


# ----------------------------------------------------------------------------------------------
# The loop every worker runs: start, then per epoch train_one_epoch and end_epoch
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Worker:
    """One worker's training run: what the loop's named steps share."""

    cfg: ExperimentConfig
    rank: int
    world: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    train_set: Any  # SegmentDataset
    val_set: Any  # RecordingDataset
    model: torch.nn.Module  # as Ray prepared it (DDP-wrapped with more than one worker)
    bare: torch.nn.Module  # the GSENet itself (checkpoints, validation)
    forward: Any  # `model`, or torch.compile(model)
    loss_fn: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    progress: Progress
    best_state: dict | None  # rank 0: the weights of the best epoch so far
    start_step: int  # where this (possibly resumed) run picked up
    flops_per_audio_second: float
    peak_flops: float
    logger: Any = None  # rank 0's RunLogger (None elsewhere or without MLflow)
    preempt_saved: bool = False

    @property
    def audio_per_step(self) -> float:
        """Seconds of audio per optimizer step (all ranks)."""
        return self.cfg.data.batch_size * self.world * self.train_set.segment / self.cfg.model.sample_rate


@dataclasses.dataclass
class EpochStats:
    loss_sum: float = 0.0
    steps: int = 0
    seconds: float = 0.0


def train_loop_per_worker(loop_config: dict) -> None:
    worker = start_worker(loop_config)
    while worker.progress.epoch <= worker.cfg.train.epochs:
        stats = train_one_epoch(worker)
        end_epoch(worker, stats)
    if worker.logger is not None:
        _log_final_models(worker, loop_config)


def worker_datasets(cfg: ExperimentConfig, world: int, exclude: list[str]):
    """This worker's training segments and validation recordings. The driver checked the dataset
    (checks.prepare_data) and passes the bad recordings to leave out; here the root is only
    resolved (gs:// -> this node's cache), by the same rule."""
    from gsenet.checks import local_data_root
    from gsenet.data import RecordingDataset, SegmentDataset

    data_root, sr = local_data_root(cfg.data), cfg.model.sample_rate
    length = cfg.train.steps_per_epoch * cfg.data.batch_size * world
    train_set = SegmentDataset(data_root / "train", cfg.data, sr, seed=cfg.train.seed, length=length, exclude=exclude)
    val_set = RecordingDataset(
        data_root / "val", cfg.data, sr, exclude=exclude, max_recordings=cfg.data.val_max_recordings
    )
    return train_set, val_set


def make_optimizer(model: torch.nn.Module, cfg: ExperimentConfig):
    """AdamW and its per-step LR schedule (warm-up, then constant or cosine)."""
    o, total_steps = cfg.optim, cfg.train.epochs * cfg.train.steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, o.warmup_steps, total_steps, o.schedule, o.min_lr_ratio)
    )
    return optimizer, scheduler


def start_worker(loop_config: dict) -> Worker:
    """Data, model, optimizer, the latest checkpoint (if any), DDP, rank 0's MLflow logger."""
    import ray.train
    import ray.train.torch

    from gsenet.losses import GSENetLoss
    from gsenet.model import GSENet, count_parameters
    from gsenet.throughput import matmul_peak_flops, training_flops_per_audio_second, worker_threads

    cfg = from_dict(loop_config["config"])
    torch.set_num_threads(worker_threads(cfg.train.cpus_per_worker))  # every CPU this worker was given
    reuses_memory = cfg.train.reuse_freed_memory and reuse_freed_memory()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    autocast_dtype = setup_device(cfg, device)
    train_set, val_set = worker_datasets(cfg, world, loop_config.get("exclude", []))

    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank (DDP also broadcasts)
    model = GSENet(cfg.model).to(device)
    autocast_dtype = check_autocast(model, device, autocast_dtype)
    # MFU as nanoGPT reports it: conv FLOPs trained per second against this worker's matmul peak.
    flops_per_audio_second = training_flops_per_audio_second(cfg.model)
    peak_flops = matmul_peak_flops(device, autocast_dtype or torch.float32)  # draws from torch's RNG
    loss_fn = GSENetLoss(cfg.loss)
    optimizer, scheduler = make_optimizer(model, cfg)
    progress, best_state = Progress(), None
    restored = load_checkpoint(ray.train.get_checkpoint())
    if restored is not None:
        model.load_state_dict(restored["model"], strict=True)
        optimizer.load_state_dict(restored["optimizer"])
        scheduler.load_state_dict(restored["scheduler"])
        progress = Progress.restore(restored["progress"])
        best_state = restored.get("best_model")
    prepared = ray.train.torch.prepare_model(model)
    bare = prepared.module if hasattr(prepared, "module") else prepared
    worker = Worker(
        cfg, rank, world, device, autocast_dtype, train_set, val_set, prepared, bare,
        forward=torch.compile(prepared) if cfg.train.compile and device.type == "cuda" else prepared,
        loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, progress=progress, best_state=best_state,
        start_step=progress.step, flops_per_audio_second=flops_per_audio_second, peak_flops=peak_flops,
    )  # fmt: skip
    speed = {"torch_threads": torch.get_num_threads(), "matmul_peak_gflops": worker.peak_flops / 1e9}
    speed["reuse_freed_memory"] = reuses_memory  # glibc's heap keeps freed activations (runtime.py)
    # What the run's Train controller polled at: Ray hands it on from the driver, via the controller.
    speed["train_controller_poll_s"] = os.environ.get(CONTROLLER_POLL_ENV, "Ray's default")
    worker.logger = _rank0_logger(loop_config, rank, cfg, device, count_parameters(bare), speed)
    trace(worker, "start", step=progress.step, epoch=progress.epoch, batch=progress.batch,
          mlflow=worker.logger is not None)  # fmt: skip
    if rank == 0:
        where = f"step {progress.step} (epoch {progress.epoch}, batch {progress.batch})" if restored else "scratch"
        print(
            f"gsenet: {world} worker(s) on {device} ({speed['torch_threads']} threads, matmul peak "
            f"{speed['matmul_peak_gflops']:.0f} GFLOP/s), {count_parameters(bare):,} parameters, from {where}"
        )
    return worker


def checkpoint_state(worker: Worker) -> dict:
    return {
        "model": cpu_state(worker.bare),
        "optimizer": worker.optimizer.state_dict(),
        "scheduler": worker.scheduler.state_dict(),
        "progress": dataclasses.asdict(worker.progress),
        "config": to_dict(worker.cfg),
        "best_model": worker.best_state,
    }


def report(worker: Worker, metrics: dict, with_checkpoint: bool, suffix: str = "") -> None:
    """Every rank calls this the same number of times (it is a barrier); rank 0 adds the files."""
    import ray.train

    progress = worker.progress
    if not (with_checkpoint and worker.rank == 0):
        trace(worker, "report", step=progress.step, epoch=progress.epoch, batch=progress.batch, checkpoint="")
        ray.train.report(metrics)
        return
    dir_name = checkpoint_folder_name(progress.step, progress.generation, suffix)
    trace(worker, "report", step=progress.step, epoch=progress.epoch, batch=progress.batch, checkpoint=dir_name)
    with tempfile.TemporaryDirectory(prefix="gsenet-ckpt-") as folder:
        save_checkpoint(Path(folder), checkpoint_state(worker), worker.cfg)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_dir_name=dir_name,
            checkpoint_upload_fn=commit_checkpoint,
        )


def trace(worker: Worker, event: str, **fields) -> None:
    """train.trace_dir: one JSON line per event in <trace_dir>/rank<r>.jsonl, written before the
    event's collective, so a rank killed inside it still leaves what it was doing."""
    if not worker.cfg.train.trace_dir:
        return
    path = Path(worker.cfg.train.trace_dir) / f"rank{worker.rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(
            json.dumps({"event": event, "rank": worker.rank, "pid": os.getpid(), "t": time.time(), **fields}) + "\n"
        )


def train_one_epoch(worker: Worker) -> EpochStats:
    """The rest of the epoch in progress (from progress.batch), one optimizer step per batch."""
    cfg, progress, o = worker.cfg, worker.progress, worker.cfg.optim
    worker.model.train()
    worker.train_set.set_epoch(progress.epoch)
    loader = make_train_loader(worker.train_set, cfg, progress.batch, worker.world)
    stats, t0 = EpochStats(), time.perf_counter()
    for batch in loader:
        loss = train_step(
            worker.forward, worker.model.parameters(), worker.loss_fn, worker.optimizer, batch,
            worker.device, worker.autocast_dtype, o.grad_clip,
        )  # fmt: skip
        if not torch.isfinite(loss):
            raise non_finite_loss_error(loss.item(), batch, progress, worker.rank, o)
        worker.scheduler.step()
        progress.step += 1
        progress.batch += 1
        trace(worker, "step", step=progress.step, epoch=progress.epoch, batch=progress.batch, names=batch["names"])
        stats.loss_sum, stats.steps = stats.loss_sum + loss.item(), stats.steps + 1
        if worker.rank == 0 and progress.step % cfg.train.log_every == 0:
            elapsed = time.perf_counter() - t0
            print(
                f"step {progress.step:6d} | epoch {progress.epoch} | loss {loss.item():.4f} | "
                f"lr {worker.scheduler.get_last_lr()[0]:.2e} | "
                f"{stats.steps * worker.audio_per_step / elapsed:7.1f} s audio/s"
            )
        check_preemption(worker)
        checkpoint_mid_epoch(worker)
    stats.seconds = time.perf_counter() - t0
    return stats


def checkpoint_mid_epoch(worker: Worker) -> None:
    """Every train.checkpoint_every steps, except on an epoch's last batch (end_epoch checkpoints
    there): a checkpoint that resumes at the next batch of this epoch."""
    every, progress = worker.cfg.train.checkpoint_every, worker.progress
    if not every or progress.step % every or progress.batch >= worker.cfg.train.steps_per_epoch:
        return
    report(worker, _mid_epoch_metrics(progress, worker.scheduler, worker.cfg), with_checkpoint=True)


def check_preemption(worker: Worker) -> None:
    """Every train.preemption_check_every steps: when Ray says this node is going away, write one
    just-in-time checkpoint; Ray restarts the group from it after the node goes."""
    import ray.train

    every, progress = worker.cfg.train.preemption_check_every, worker.progress
    if not every or progress.step % every or worker.preempt_saved:
        return
    if ray.train.get_preemption_info() is not None:  # a barrier: every rank calls it
        worker.preempt_saved = True
        metrics = _preemption_metrics(progress, worker.scheduler, worker.cfg)
        report(worker, metrics, with_checkpoint=True, suffix="_preempted")


def end_epoch(worker: Worker, stats: EpochStats) -> None:
    """Validate, keep the best weights, log (rank 0), report to Ray with a checkpoint."""
    cfg, progress = worker.cfg, worker.progress
    worker.bare.eval()
    val, examples = validate(
        worker.bare, worker.loss_fn, worker.val_set, cfg, worker.device, worker.autocast_dtype, worker.rank,
        worker.world,
    )  # fmt: skip
    epoch = progress.epoch
    progress.epoch, progress.batch = epoch + 1, 0  # the checkpoint resumes at the next epoch
    progress.last_val = {k: float(v) for k, v in val.items()}
    progress.best_val_loss = min(progress.best_val_loss, val["val_loss"])
    if progress.improves(val[cfg.train.checkpoint_metric], cfg.train.resolved_checkpoint_mode()):
        progress.best_score, progress.best_epoch = val[cfg.train.checkpoint_metric], epoch
        worker.best_state = cpu_state(worker.bare) if worker.rank == 0 else None
    metrics = epoch_metrics(worker, epoch, stats, val)
    if worker.logger is not None:
        worker.logger.log_metrics(metrics, progress.step)
        for name, signals in examples:
            worker.logger.log_audio_example(name, epoch, signals, cfg.model.sample_rate)
        print(
            f"epoch {epoch} | step {progress.step} | train {metrics['train_loss']:.4f} | "
            f"val {val['val_loss']:.4f} | SI-SDR {val['val_si_sdr']:.2f} dB "
            f"(beam {val['val_si_sdr_beam']:.2f}) | PESQ {val['val_pesq']:.2f} | STOI {val['val_stoi']:.3f} | "
            f"{metrics['audio_seconds_per_second']:.1f} s audio/s, {metrics['train_gflop_per_second']:.1f} "
            f"GFLOP/s = {100 * metrics['matmul_peak_fraction']:.0f}% of matmul peak"
        )
    report(worker, metrics, with_checkpoint=True)


def epoch_metrics(worker: Worker, epoch: int, stats: EpochStats, val: dict) -> dict:
    """What each epoch reports: training figures, speed (per worker) and the validation metrics."""
    metrics = M.disjoint_union(
        {
            "epoch": epoch,
            "step": worker.progress.step,
            "start_step": worker.start_step,
            "train_loss": stats.loss_sum / max(1, stats.steps),
            "lr": worker.scheduler.get_last_lr()[0],
            "audio_seconds_per_second": stats.steps * worker.audio_per_step / max(stats.seconds, 1e-9),
            "best_val_loss": worker.progress.best_val_loss,
        },
        val,
    )
    from gsenet.config import best_metric_name

    best_name = best_metric_name(worker.cfg.train.checkpoint_metric)
    if worker.progress.best_score is not None:  # what a sweep ranks a trial by: its best epoch
        metrics["best_epoch"] = worker.progress.best_epoch
        metrics.setdefault(best_name, worker.progress.best_score)  # best_val_loss is there already
    per_worker = metrics["audio_seconds_per_second"] / worker.world
    metrics["train_gflop_per_second"] = per_worker * worker.flops_per_audio_second / 1e9
    metrics["matmul_peak_fraction"] = metrics["train_gflop_per_second"] * 1e9 / worker.peak_flops  # per worker
    return metrics


def non_finite_loss_error(value: float, batch: dict, progress: Progress, rank: int, optim) -> TrainingError:
    """Names the recordings (and offsets) of the batch, and which of them hold non-finite or absurd
    samples (a float WAV with a 1e30 sample is finite, but its square is not)."""
    from gsenet.checks import MAX_ABS_SAMPLE

    names = list(batch.get("names", []))
    bad = [
        name
        for row, name in enumerate(names)
        if any(
            not torch.isfinite(batch[k][row]).all() or batch[k][row].abs().max() > MAX_ABS_SAMPLE
            for k in ("beam", "ref", "target")
        )
    ]
    where = f"recordings in the batch (name@sample offset): {', '.join(names)}" if names else "batch"
    cause = (
        f"non-finite or absurd (beyond +-{MAX_ABS_SAMPLE:g}) samples in {', '.join(bad)}: "
        "run `gsenet data check` and fix or exclude them"
        if bad
        else f"the inputs are finite: lower optim.lr (now {optim.lr}) or set optim.grad_clip, and check those recordings"
    )
    return TrainingError(
        f"non-finite loss ({value}) at step {progress.step + 1} (epoch {progress.epoch}, rank {rank}); {where}; {cause}"
    )


def _mid_epoch_metrics(progress: Progress, scheduler, cfg: ExperimentConfig) -> dict:
    """A mid-epoch report: the last completed epoch's numbers (every metric a sweep or the
    checkpoint manager may rank by; NaN before the first validation), flagged (ASHA ignores repeats)."""
    return M.disjoint_union(
        progress.last_val or {cfg.train.checkpoint_metric: math.nan},
        {
            "epoch": progress.epoch - 1,
            "step": progress.step,
            "best_val_loss": progress.best_val_loss,
            "lr": scheduler.get_last_lr()[0],
            "mid_epoch_checkpoint": 1,
        },
    )


def _preemption_metrics(progress: Progress, scheduler, cfg: ExperimentConfig) -> dict:
    """The just-in-time report of a node being preempted: a mid-epoch report, flagged as such."""
    return {**_mid_epoch_metrics(progress, scheduler, cfg), "preemption_checkpoint": 1}


def _rank0_logger(loop_config: dict, rank: int, cfg: ExperimentConfig, device, params: int, speed: dict):
    if rank != 0 or not loop_config.get("mlflow_run_id"):
        return None
    import ray

    from gsenet.tracking import RunLogger

    logger = RunLogger(loop_config["mlflow_uri"], loop_config["mlflow_run_id"])
    system = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "world_size": ray.train.get_context().get_world_size(),
        "parameters": params,
        "host": platform.node(),
        **speed,  # torch_threads, matmul_peak_gflops
    }
    logger.log_dict(system, "system.json")
    logger.set_tags({"gsenet.device": system["device_name"] or str(device), "gsenet.parameters": params})
    return logger


def level_items(val_set) -> list[dict]:
    """The first validation recordings (gsenet.enhance.LEVEL_RECORDINGS) as arrays, for levelled_state."""
    from gsenet.enhance import LEVEL_RECORDINGS

    items = [val_set[i] for i in range(min(LEVEL_RECORDINGS, len(val_set)))]
    return [{k: item[k][: item["length"]].numpy() for k in ("beam", "ref", "target")} for item in items]


def levelled_state(state: dict, cfg: ExperimentConfig, items: list[dict]) -> tuple[dict, float]:
    """The weights with the output level set to the target's on `items`
    (gsenet.enhance.calibrate_output_level), and the gain applied in dB."""
    from gsenet.enhance import calibrate_output_level
    from gsenet.model import GSENet

    model = GSENet(cfg.model)
    model.load_state_dict(state)
    model.eval()
    gain_db = calibrate_output_level(model, items)
    return cpu_state(model), gain_db


def _log_final_models(worker: Worker, loop_config: dict) -> None:
    """final_model and best_model (best by train.checkpoint_metric) as MLflow pyfuncs, each with its
    output re-levelled to the target's on validation recordings; the best one registered with alias
    `best` when tracking.register_model is set. Checkpoints keep the weights as trained."""
    from gsenet import tracking
    from gsenet.model_files import save_model_folder

    cfg, logger = worker.cfg, worker.logger
    final, items = cpu_state(worker.bare), level_items(worker.val_set)  # recordings read once for both
    models = {name: levelled_state(state, cfg, items) for name, state in
              (("final_model", final), ("best_model", worker.best_state or final))}  # fmt: skip
    for name, (_, gain_db) in models.items():
        print(f"gsenet: {name} output re-levelled by {gain_db:+.2f} dB (median gain to the target on val)")
    logger.log_metrics({f"{name}_output_gain_db": gain for name, (_, gain) in models.items()}, worker.progress.step)
    logger.flush()
    uri, run_id = loop_config["mlflow_uri"], loop_config["mlflow_run_id"]
    with tempfile.TemporaryDirectory(prefix="gsenet-model-") as folder:
        for name, (state, _) in models.items():
            model_folder = save_model_folder(state, cfg.model, Path(folder) / name)
            try:
                tracking.log_pyfunc_model(uri, run_id, model_folder, name, sample_rate=cfg.model.sample_rate)
            except Exception as exc:  # never lose the training run to a tracking outage
                log.warning("MLflow: could not log %s: %s", name, exc)
    if cfg.tracking.register_model:
        try:
            model_uri, version = tracking.register_model(uri, run_id, cfg.tracking.register_model)
            print(
                f"gsenet: registered the best model (by {cfg.train.checkpoint_metric}) as {model_uri} (version {version})"
            )
        except Exception as exc:
            log.warning("MLflow: could not register the best model as %r: %s", cfg.tracking.register_model, exc)
    logger.close()
