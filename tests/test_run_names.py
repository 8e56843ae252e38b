"""What the MLflow UI shows: experiments open in model-training mode, trials have short names
that say what differs, and a run can carry a markdown description (the sweep's summary)."""

from __future__ import annotations

from mlflow import MlflowClient

from search.space import load_space, parse_space


def test_trial_labels_say_what_was_sampled():
    space = load_space("smoke")
    params = {"model.width_multiplier": 0.5, "model.dilation_depth": 2, "loss.si_sdr": 0.4123, "optim.lr": 0.00123}
    assert space.trial_label("a1b2c_00003", params) == "t03 w0.5 d2 si0.41 lr0.0012"
    assert space.trial_label("custom", {"model.dilation_depth": 1}) == "custom d1"


def test_trial_labels_of_list_choices_and_unknown_keys():
    space = load_space("default")
    params = {"model.widths": [16, 32, 32, 64, 64, 128], "model.skip_connection": "add", "optim.lr": 1e-5}
    assert space.trial_label("x_00012", params) == "t12 ws1 add lr1e-05"
    other = parse_space({"parameters": {"data.segment_seconds": {"type": "choice", "values": [1.0, 2.0]}}})
    assert other.trial_label("x_00001", {"data.segment_seconds": 2.0}) == "t01 ss2"


def test_experiment_kind_run_name_and_note(tmp_path):
    from gsenet.tracking import get_or_create_experiment, name_run, set_run_note

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    experiment_id = get_or_create_experiment(uri, "names")
    client = MlflowClient(uri)
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    older = client.create_experiment("older")  # made without the tag (an older gsenet): tagged on next use
    assert get_or_create_experiment(uri, "older") == older
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"

    run_id = client.create_run(experiment_id, run_name="search-smoke-20260101-000000-a1b2c_00003").info.run_id
    name_run(uri, run_id, "t03 w0.5 d2")
    note = "## Top trials\n\n| trial | val_si_sdr |\n|---|---|\n| t03 | 4.2 |\n"
    set_run_note(uri, run_id, note)
    run = client.get_run(run_id)
    assert run.info.run_name == "t03 w0.5 d2"
    assert run.data.tags["mlflow.note.content"] == note
    name_run("sqlite:///" + str(tmp_path / "missing" / "x.db"), run_id, "t04")  # best effort: warns, no raise


def test_a_runs_default_name_depends_on_what_it_computes_not_where_it_runs():
    from gsenet.config import ExperimentConfig
    from gsenet.train import default_run_name

    base = default_run_name(ExperimentConfig())
    elsewhere = ExperimentConfig()
    elsewhere.train.cpus_per_worker, elsewhere.train.gpus_per_worker, elsewhere.train.log_every = 8.0, 1.0, 5
    assert default_run_name(elsewhere) == base  # resumed on another node type: same run, same checkpoints
    different = ExperimentConfig()
    different.optim.lr *= 2
    assert default_run_name(different) != base and base.startswith("gsenet-")
    different.train.name = "mine"
    assert default_run_name(different) == "mine"
