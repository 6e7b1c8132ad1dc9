"""JAX's persistent compilation cache, in a user cache folder: compile once, not every run.

Where it sits: switched on lazily by `api.value` and the `valuate` command line (never at
import time), so that a second process reuses the compiled utility programs from disk instead
of compiling them again (several seconds each on a CPU).

Settings, in order of precedence:

* `VALUATE_COMPILE_CACHE=off` (or `0`, `false`, `no`) turns it off; any other value names the
  folder. The command line's `--no-compile-cache` does the same as `off`.
* A folder the user already gave JAX (`jax.config.update("jax_compilation_cache_dir", ...)`)
  is left alone, with its settings.
* Otherwise `$XDG_CACHE_HOME/valuate/jax`, else `~/.cache/valuate/jax`.

The cache holds compiled programs only (no data); JAX keys each entry on the program, the
JAX/XLA versions and the device, so a stale entry is never used. Delete the folder to reclaim
the space. JAX treats the folder as trusted: do not point it at a folder others can write.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

__all__ = ["cache_folder", "enable_compile_cache"]

ENV = "VALUATE_COMPILE_CACHE"
_OFF = ("off", "0", "false", "no")
# Programs that compile faster than this are not written: reading a tiny entry back costs
# about what compiling it does.
_MIN_COMPILE_SECONDS = 0.0


def cache_folder() -> Path | None:
    """The folder the cache would use: None when turned off by `VALUATE_COMPILE_CACHE`."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in _OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "valuate" / "jax"


def enable_compile_cache(folder: str | os.PathLike | None = None) -> str | None:
    """Point JAX's persistent compilation cache at `folder` (default `cache_folder()`).

    Changes global JAX configuration (`jax_compilation_cache_dir` and the minimum compile
    time of a cached program, 0.2 s) once per process; does nothing when the cache is turned
    off by `VALUATE_COMPILE_CACHE=off`, or when a cache folder is already set (by the user or
    an earlier call), and then returns that folder or None.

    Returns:
      The cache folder in use, or None when there is none.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if folder is None:
        folder = cache_folder()
        if folder is None:
            return None
    folder = str(Path(folder).expanduser())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:  # an unwritable home: run without the cache, and say so
        warnings.warn(f"valuate: no compilation cache ({err}); set {ENV}=off to silence",
                      stacklevel=2)
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_dir", folder)
    return folder
