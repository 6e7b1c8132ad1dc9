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
from valuation.shapley import data_oob, max_draws, msr_banzhaf, stderr_below

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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 workers for this module's Ray tests (skipped without Ray)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    yield ray
    ray.shutdown()


@pytest.mark.slow  # starts a local Ray cluster
def test_ray_fan_out_equals_one_process_even_when_a_worker_dies(ray_cluster, tmp_path):
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

    fanned = ray_run(estimator, DiesOnce(dataclasses.replace(utility)), key=key, draws=12,
                     progress=False)
    assert os.path.exists(marker)  # a worker did die, and its task was re-run
    assert (fanned.draws, fanned.evaluations) == (alone.draws, alone.evaluations)
    np.testing.assert_array_equal(fanned.estimate.values, alone.estimate.values)
    np.testing.assert_array_equal(fanned.estimate.stderr, alone.estimate.stderr)


def _interrupted_after(saves: int, monkeypatch):
    """Patch the runner's checkpoint writer so that the driver is interrupted (Ctrl-C)
    right after its `saves`-th checkpoint; returns the list of saves made."""
    import valuation.runner

    save, made = valuation.runner.save_checkpoint, []

    def save_then_interrupt(*args):
        save(*args)
        made.append(int(args[2].draws))
        if len(made) == saves:
            monkeypatch.setattr(valuation.runner, "save_checkpoint", save)
            raise KeyboardInterrupt

    monkeypatch.setattr(valuation.runner, "save_checkpoint", save_then_interrupt)
    return made


@pytest.mark.slow  # starts a local Ray cluster
@pytest.mark.parametrize("method", ["oob", "banzhaf"])
def test_interrupted_ray_run_resumes_to_the_single_process_values(ray_cluster, tmp_path,
                                                                  monkeypatch, method):
    utility = problem()[0]  # 2 models per chunk; 4 draws per task: two folds per task
    run = {"method": method, "seed": 3, "progress": False, "batch": 4,
           "stop": max_draws(13)}  # 13 draws: no batch size but 1 and 13 divides them
    alone = va.value(utility, **run)
    path = str(tmp_path / "checkpoint.npz")
    made = _interrupted_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        va.value(utility, ray="local", checkpoint=path, **run)
    assert made == [4, 8]  # the pooled prefix of draws, whatever order tasks finished in
    resumed = va.value(utility, ray="local", checkpoint=path, **run)
    assert resumed.extra["resumed"] and resumed.extra["draws"] == 13
    assert resumed.extra["evaluations"] == alone.extra["evaluations"] == 13
    np.testing.assert_array_equal(resumed.counts, alone.counts)
    # the same draws and scores; tasks fold 2 chunks before pooling: float64 order only
    np.testing.assert_allclose(resumed.values, alone.values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(resumed.stderr, alone.stderr, rtol=1e-9)
    # one format: the single-process runner resumes a Ray checkpoint and vice versa
    again = va.value(utility, checkpoint=path, **run)
    np.testing.assert_array_equal(again.values, resumed.values)
    single = str(tmp_path / "single.npz")
    va.value(utility, checkpoint=single, **{**run, "stop": max_draws(8)})
    extended = va.value(utility, ray="local", checkpoint=single, **run)
    np.testing.assert_allclose(extended.values, alone.values, rtol=1e-12, atol=1e-15)


@pytest.mark.slow  # starts a local Ray cluster
def test_ray_run_with_one_chunk_per_task_resumes_bit_for_bit(ray_cluster, tmp_path,
                                                             monkeypatch):
    from valuation.distributed import ray_run

    utility = problem()[0]
    estimator = data_oob(batch=2)  # one engine chunk per task: the runner's exact sums
    key = jax.random.PRNGKey(7)
    alone = va.run(estimator, utility, key=key, stop=max_draws(11), progress=False)
    path = str(tmp_path / "checkpoint.npz")
    _interrupted_after(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ray_run(estimator, utility, key=key, draws=11, checkpoint=path, progress=False)
    resumed = ray_run(estimator, utility, key=key, draws=11, checkpoint=path,
                      progress=False)
    assert resumed.resumed and (resumed.draws, resumed.evaluations) == (11, 11)
    np.testing.assert_array_equal(resumed.estimate.values, alone.estimate.values)
    np.testing.assert_array_equal(resumed.estimate.stderr, alone.estimate.stderr)


def test_ray_option_errors():
    utility = problem()[0]
    with pytest.raises(va.ValuationError, match=r"unknown option\(s\) \['ray'\]"):
        va.value(utility, method="loo", ray="local", progress=False)
    with pytest.raises(va.ValuationError, match="index lives in this process"):
        va.value(utility, method="knn", ray="local", index="hnsw", progress=False)
    with pytest.raises(va.ValuationError, match="fixed budget"):
        va.value(utility, method="banzhaf", ray="local", stop=stderr_below(0.01),
                 progress=False)
    with pytest.raises(va.ValuationError, match="pip install ray|running moments"):
        va.value(utility, method="tmc", ray="local", progress=False)


@pytest.mark.slow  # starts a local Ray cluster
@pytest.mark.parametrize("options", [{}, {"epsilon": 0.05, "valid_sample": 30}],
                         ids=["exact", "truncated-sampled"])
def test_ray_knn_blocks_give_the_values_of_one_process(ray_cluster, options):
    from valuation.shapley import knn_shapley

    rng = np.random.default_rng(1)
    xt, yt = rng.normal(size=(300, 4)), rng.integers(0, 2, 300)
    xv, yv = rng.normal(size=(70, 4)), rng.integers(0, 2, 70)
    run = {"k": 5, "chunk": 1, "key": jax.random.PRNGKey(0), **options}  # 2-5 blocks
    alone = knn_shapley(xt, yt, xv, yv, **run)
    fanned = knn_shapley(xt, yt, xv, yv, ray="local", **run)
    for got, want in zip(fanned, alone):  # values, stderr, counts: the same bits
        np.testing.assert_array_equal(got, want)
    assert np.any(alone.values != 0)


@pytest.mark.slow  # starts a local Ray cluster
def test_cli_ray_local_checkpoints_and_resumes_to_the_single_process_table(
        ray_cluster, tmp_path, monkeypatch):
    import pandas as pd

    from valuate.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    data = tmp_path / "data.csv"
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                  "y": (x[:, 0] > 0).astype(int)}).to_csv(data, index=False)
    args = ["value", str(data), "--label", "y", "--method", "banzhaf", "--budget", "40",
            "--batch", "16", "--quiet"]  # 16 + 16 + 8 draws
    assert main([*args, "--out", str(tmp_path / "alone.csv")]) == 0
    out = tmp_path / "ray.csv"
    made = _interrupted_after(1, monkeypatch)
    assert main([*args, "--out", str(out), "--ray", "local"]) == 130  # Ctrl-C
    assert made == [16] and (tmp_path / "ray.csv.job" / "checkpoint.npz").exists()
    assert main([*args, "--out", str(out), "--ray", "local"]) == 0  # the same command
    # one engine chunk per task: the single-process sums, bit for bit
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "alone.csv"),
                                  check_exact=True)
    assert not (tmp_path / "ray.csv.job").exists()  # removed once the table is written
