"""Compile once: the persistent compilation cache's settings, and programs shared in-process."""

import os

import jax
import numpy as np
import pytest
from jax._src import compilation_cache

import valuation as va
from valuate.cli import main
from valuation.compile_cache import ENV, cache_folder, enable_compile_cache


@pytest.mark.parametrize("setting", ["off", "OFF", "0", "false", "no"])
def test_the_environment_turns_the_cache_off(monkeypatch, setting, tmp_path):
    monkeypatch.setenv(ENV, setting)
    assert cache_folder() is None
    assert enable_compile_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_default_folder_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "valuate" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "valuate" / "jax"
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"


@pytest.fixture
def pristine_cache():
    """JAX's cache settings restored (and its cache object reset) around a test."""
    saved = (jax.config.jax_compilation_cache_dir,
             jax.config.jax_persistent_cache_min_compile_time_secs)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
    compilation_cache.reset_cache()


def test_compiled_programs_land_in_the_folder(monkeypatch, tmp_path, pristine_cache):
    folder = tmp_path / "cache"
    monkeypatch.setenv(ENV, str(folder))
    assert enable_compile_cache() == str(folder)
    assert jax.config.jax_compilation_cache_dir == str(folder)
    jax.jit(lambda a: (a * a).sum() + 1.5)(np.arange(7.0, dtype=np.float32))
    assert any(folder.iterdir())  # one compiled program written
    # A folder already set (by the user or an earlier call) is left alone.
    monkeypatch.setenv(ENV, str(tmp_path / "other"))
    assert enable_compile_cache() == str(folder)
    assert not (tmp_path / "other").exists()


def test_the_cli_flag_turns_it_off(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))  # restored after the test
    calls = []
    monkeypatch.setattr("valuate.cli.enable_compile_cache", lambda: calls.append(1))
    missing = ["value", str(tmp_path / "missing.csv"), "--label", "y", "--method", "knn",
               "--out", str(tmp_path / "v.csv")]
    assert main(missing + ["--no-compile-cache"]) != 0  # the file is missing
    assert calls == [] and os.environ[ENV] == "off"
    assert main(missing) != 0
    assert calls == [1]


def test_a_second_utility_reuses_the_compiled_programs(cancer, rng):
    train, valid = cancer
    masks = (rng.random((4, train.n)) < 0.5).astype(np.float32)
    first = va.make_utility(va.logistic_regression(2), train, valid, chunk=4)
    second = va.make_utility(va.logistic_regression(2), train, valid, chunk=4)
    assert second._score is first._score and second._fit is first._fit
    np.testing.assert_array_equal(first(masks), second(masks))
    other = va.make_utility(va.logistic_regression(2), train, valid, chunk=4, l2=2.0)
    assert other._score is not first._score  # l2 is compiled in: its own program
    assert va.mlp(2, [64]) is va.mlp(2, (64,))
    assert va.mlp(2, (64,), activation=jax.nn.tanh) is not va.mlp(2, (64,))


def test_an_unhashable_model_still_gets_its_programs(blobs, rng):
    train, valid = blobs

    class Apply(list):  # a list: unhashable, as some modules' bound methods are
        def __call__(self, params, x):
            return base.apply(params, x)

    base = va.logistic_regression(2)
    model = base._replace(apply=Apply(), name="logistic_regression(custom)")
    masks = (rng.random((3, train.n)) < 0.5).astype(np.float32)
    ours = va.make_utility(model, train, valid, chunk=4)(masks)
    np.testing.assert_array_equal(ours, va.make_utility(base, train, valid, chunk=4)(masks))
