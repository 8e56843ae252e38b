"""Hyperparameter sweeps over GSENet configs (Ray Tune + Optuna)."""
