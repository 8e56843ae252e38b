"""Reference values of mf-prior-bench's multi-fidelity Hartmann benchmarks, for tests/test_searcher.py.

mf-prior-bench pins numpy < 2, so it lives in a throwaway venv, not in the project's:

    python -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install mf-prior-bench==1.10.0
    /tmp/mfvenv/bin/python benchmarks/mfhartmann_reference.py > tests/fixtures/mfhartmann_reference.json

Records, per benchmark: the noiseless value (noise=0) of a few configs at a few fidelities, and
the mean and sd of the noise (noisy minus noiseless) over many configs at a few fidelities.
"""

import json
import random

import mfpbench
import numpy as np

FIDELITIES = (1, 3, 10, 40, 100)


def main() -> None:
    rng = random.Random(0)
    out = {"mfpbench": "1.10.0", "benchmarks": {}}
    for name in ("mfh3_good", "mfh3_bad", "mfh6_good", "mfh6_bad"):
        dims = int(name[3])
        quiet = mfpbench.get(name, seed=1, noise=0.0)
        noisy = mfpbench.get(name, seed=1)
        configs = [{f"X_{i}": rng.random() for i in range(dims)} for _ in range(4)]
        configs.append(
            dict(quiet.optimum.as_dict())
            if hasattr(quiet.optimum, "as_dict")
            else {f"X_{i}": x for i, x in enumerate(quiet.Generator.optimum)}
        )
        values = [[quiet.query(quiet.Config.from_dict(c), at=z).error for z in FIDELITIES] for c in configs]
        many = [{f"X_{i}": rng.random() for i in range(dims)} for _ in range(400)]
        noise = {}
        for z in (1, 10, 50):
            diffs = [
                noisy.query(noisy.Config.from_dict(c), at=z).error - quiet.query(quiet.Config.from_dict(c), at=z).error
                for c in many
            ]
            noise[z] = {"mean": float(np.mean(diffs)), "sd": float(np.std(diffs)), "n": len(diffs)}
        out["benchmarks"][name] = {
            "bias": quiet.bias,
            "noise": noisy.noise,
            "fidelities": FIDELITIES,
            "configs": configs,
            "noiseless": values,
            "noise_stats": noise,
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
