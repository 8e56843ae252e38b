"""gsenet.failures: which failures Ray Train retries, and what a gsenet trainer starts."""

from __future__ import annotations


def test_trainer_leaves_out_ray_data_only_without_datasets():
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks import DatasetsCallback

    from gsenet.failures import GSENetTrainer, without_unused_datasets

    scaling = ray.train.ScalingConfig(num_workers=1)
    ray_defaults = TorchTrainer(lambda: None, scaling_config=scaling)._create_default_callbacks()
    ours = GSENetTrainer(lambda: None, scaling_config=scaling)._create_default_callbacks()
    assert any(isinstance(callback, DatasetsCallback) for callback in ray_defaults)  # what Ray would start
    # Everything else Ray sets up stays, in Ray's order (backend, placement-group cleaner, metrics...).
    assert [type(c) for c in ours] == [type(c) for c in ray_defaults if not isinstance(c, DatasetsCallback)]
    assert without_unused_datasets(ray_defaults, {"train": object()}) is ray_defaults  # a run with datasets
