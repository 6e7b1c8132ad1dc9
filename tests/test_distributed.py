"""Sharding the utility batch over devices: the same values as one device.

Four CPU devices exist only in a fresh process (`XLA_FLAGS` is read when jax starts), so the
sharded run happens in a subprocess and the single-device reference here.
"""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import valuation as va
from valuation.distributed import shard
from valuation.shapley import max_draws, msr_banzhaf, stderr_below

SCRIPT = """
import sys
import jax, numpy as np
sys.path.insert(0, {root!r})
from tests.test_distributed import problem
from valuation.distributed import ShardedUtility, shard
assert jax.device_count() == 4, jax.devices()
utility, weights, keys, run = problem()
sharded = shard(utility)
assert isinstance(sharded, ShardedUtility) and sharded.chunk == 4 * utility.chunk
params = sharded.fit(weights[:6], key=keys[:6])  # 6 rows: padded to 8 over 4 devices
assert params["linear"]["w"].shape[0] == 6
assert len(params["linear"]["w"].sharding.device_set) == 4
np.savez({out!r}, scores=sharded(weights, key=keys), w=params["linear"]["w"], **run())
"""


def problem():
    """A utility with 2 models per device, weights and keys, and Monte Carlo runs."""
    train, valid = va.make_classification(120, 4, seed=3).split(0.6, 0.4, seed=0)
    utility = va.make_utility(va.logistic_regression(2), train, valid, chunk=2)
    weights = (np.random.default_rng(0).random((16, train.n)) < 0.5).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)

    def run():
        out = {}
        for method, draws in (("banzhaf", 16), ("oob", 8)):
            result = va.value(utility, method=method, stop=max_draws(draws), seed=1,
                              progress=False, batch=8)
            out[method] = result.values
        return out

    return utility, weights, keys, run


def test_four_devices_give_the_values_of_one(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "sharded.npz")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(root=root, out=out)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    sharded = np.load(out)
    utility, weights, keys, run = problem()
    assert shard(utility) is utility  # one device here: nothing to split
    # each device runs the one-device program on its 2 rows: identical bits
    np.testing.assert_array_equal(sharded["scores"], utility(weights, key=keys))
    one_device = [utility.fit(weights[i:i + 2], key=keys[i:i + 2])["linear"]["w"]
                  for i in (0, 2, 4)]  # the 2-model program, as on each of the 4 devices
    np.testing.assert_array_equal(sharded["w"], np.concatenate(one_device))
    for method, values in run().items():
        # same draws and scores; the running moments fold chunks of 8 instead of 2 rows,
        # which reorders float64 sums
        np.testing.assert_allclose(sharded[method], values, rtol=1e-12, atol=1e-15)


@pytest.mark.slow  # starts a local Ray cluster
def test_ray_fan_out_equals_one_process_even_when_a_worker_dies(tmp_path):
    ray = pytest.importorskip("ray")
    from valuation.distributed import ray_run

    utility = problem()[0]
    estimator = msr_banzhaf(batch=2)  # one engine chunk per task: bit-identical pooling
    key = jax.random.PRNGKey(4)
    alone = va.run(estimator, utility, key=key, stop=max_draws(12), progress=False)
    marker = str(tmp_path / "died")

    class DiesOnce:
        """The utility, but the first call anywhere kills its worker process."""

        def __init__(self, utility):
            self.utility, self.n, self.chunk = utility, utility.n, utility.chunk

        def __call__(self, weights, key=None):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return self.utility(weights, key=key)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
    try:
        fanned = ray_run(estimator, DiesOnce(dataclasses.replace(utility)), key=key,
                         draws=12, progress=False)
    finally:
        ray.shutdown()
    assert os.path.exists(marker)  # a worker did die, and its task was re-run
    assert (fanned.draws, fanned.evaluations) == (alone.draws, alone.evaluations)
    np.testing.assert_array_equal(fanned.estimate.values, alone.estimate.values)
    np.testing.assert_array_equal(fanned.estimate.stderr, alone.estimate.stderr)


def test_ray_option_errors():
    utility = problem()[0]
    with pytest.raises(va.ValuationError, match=r"unknown option\(s\) \['ray'\]"):
        va.value(utility, method="knn", ray="local", progress=False)
    with pytest.raises(va.ValuationError, match="fixed budget"):
        va.value(utility, method="banzhaf", ray="local", stop=stderr_below(0.01),
                 progress=False)
    with pytest.raises(va.ValuationError, match="no checkpoints"):
        va.value(utility, method="oob", ray="local", checkpoint="state.npz", progress=False)
    with pytest.raises(va.ValuationError, match="pip install ray|running moments"):
        va.value(utility, method="tmc", ray="local", progress=False)


@pytest.mark.slow  # starts a local Ray cluster
def test_cli_ray_local_writes_the_single_process_table(tmp_path):
    pytest.importorskip("ray")
    import pandas as pd

    from valuate.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    data = tmp_path / "data.csv"
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                  "y": (x[:, 0] > 0).astype(int)}).to_csv(data, index=False)
    args = ["value", str(data), "--label", "y", "--method", "banzhaf", "--budget", "64",
            "--batch", "16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "alone.csv")]) == 0
    try:
        assert main([*args, "--out", str(tmp_path / "ray.csv"), "--ray", "local"]) == 0
    finally:
        import ray

        ray.shutdown()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ray.csv"),
                                  pd.read_csv(tmp_path / "alone.csv"))
