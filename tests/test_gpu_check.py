"""benchmarks/gpu_check.py without a GPU: it says "no CUDA device" and exits 0 (CI and laptops),
and `--device cpu` runs part 1 through the same code a GPU runs, as the GPU machines would:
without Ray, MLflow, Optuna or any other package beyond torch, numpy and pyyaml."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
# Installed here, absent on the GPU machines (or not needed there): importing any of them fails.
ABSENT = (
    "ray", "mlflow", "optuna", "pesq", "pystoi", "soundfile", "soxr", "scipy", "pyroomacoustics",
    "pandas", "pyarrow", "google", "sklearn", "matplotlib", "onnx", "onnxruntime",
)  # fmt: skip
TINY = ["--set", "model.widths=[4,4,8,8,8,8]", "--set", "model.dilation_depth=1"]
# Runs gpu_check.py as `python benchmarks/gpu_check.py ARGS` would, with the packages above made
# unimportable and gsenet.train.train_step counted (the benchmark must call that very function).
RUNNER = """
import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None
import gsenet.train
calls, original = [], gsenet.train.train_step
def counted(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)
gsenet.train.train_step = counted
sys.argv = [{script!r}, *{argv!r}]
try:
    runpy.run_path({script!r}, run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print("train_step calls:", len(calls))
sys.exit(code)
"""


def gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run the check itself")
def test_gpu_check_without_cuda_says_so_and_exits_0(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
    assert not (tmp_path / "out.json").exists()


def test_part_1_on_cpu_times_gsenet_train_step_with_only_torch_numpy_pyyaml(tmp_path):
    from gsenet.config import ExperimentConfig, apply_overrides
    from gsenet.throughput import training_flops_per_audio_second

    out, steps = tmp_path / "gpu_check.json", 1
    argv = ["--device", "cpu", "--out", str(out), "--batch", "1", "--seconds", "0.5", "--steps", str(steps)]
    argv += ["--inference-seconds", "0.5", "--streaming-seconds", "0.05", *TINY]
    runner = RUNNER.format(absent=ABSENT, script=str(SCRIPT), argv=argv)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())

    modes = ["320/160 fp32", "320/160 bf16", "1024/256 fp32", "1024/256 bf16"]  # torch.compile: GPU only
    assert list(results["training"]) == modes
    # Every timed step and warm-up step went through gsenet.train.train_step, not a copy of it.
    assert f"train_step calls: {len(modes) * (gpu_check_module().WARMUP_STEPS + steps)}" in done.stdout
    for key, figures in results["training"].items():
        assert "error" not in figures, (key, figures)
        n_fft, hop = (int(v) for v in key.split()[0].split("/"))
        model = apply_overrides(
            ExperimentConfig(),
            {"model.widths": [4, 4, 8, 8, 8, 8], "model.dilation_depth": 1, "model.n_fft": n_fft, "model.hop": hop},
        ).model
        assert figures["audio_s_per_s"] > 0
        expected = figures["audio_s_per_s"] * training_flops_per_audio_second(model) / 1e12
        assert figures["tflops"] == pytest.approx(expected, rel=1e-9), key
    inference = results["inference"]
    assert inference["offline_rtf_fp32"] > 0 and inference["offline_rtf_bf16"] > 0 and inference["streaming_rtf"] > 0
    assert inference["bf16_vs_fp32_si_sdr_db"] >= 30
    assert results["part2"] == {"skipped": "GPU only"}
    assert "bf16 output vs fp32: ok" in done.stdout and "320/160 bf16" in done.stdout
