"""`ValuationResult`: per-sample values with their error bars, ids and provenance.

Where it sits: the common output of every value family (Shapley, influence, dynamics) and of
the meta-learner. It is the only place where sample ids, the method's name and configuration
meet the numbers. Sign convention for every method: higher value = more valuable to the target
model.

A result is immutable; sorting, slicing and merging return new results, and ids always travel
with their values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from .errors import ValuationError

__all__ = [
    "ValuationResult",
    "Z",
    "atomic_write",
    "categorize",
    "package_versions",
    "reference_point",
    "write_json",
    "write_text",
]


# Categories from error bars: "harmful" / "useless" / "useful" with `z` standard errors on
# each side of a method's reference point (valuate/table.py states the rules in full).
Z = 1.96


def reference_point(method: str, n_classes: int, *, target_variance: float | None = None
                    ) -> float:
    """The value that separates harmful from useful samples for a method.

    0 for marginal-contribution values (Shapley, Banzhaf, leave-one-out, KNN-Shapley,
    influence) and margins. For scores of how well a sample itself is predicted, the score of
    a predictor that knows nothing: Data-OOB's out-of-bag accuracy against chance
    `1 / n_classes`; for a regression target (`n_classes == 0`), whose scores are minus
    squared errors, the constant prediction of the training mean, whose mean squared error
    is `target_variance` (the training targets' variance): Data-OOB `-target_variance`,
    the dynamics loss (half the squared error) `-target_variance / 2` and its EL2N
    (`-|residual|`) `-sqrt(target_variance)`.

    Raises:
      ValuationError: a regression target without `target_variance`.
    """
    if n_classes:
        return 1.0 / n_classes if method == "data_oob" else 0.0
    chance = {"data_oob": 1.0, "dynamics_loss": 0.5, "dynamics_el2n": None}
    if method not in chance:
        return 0.0
    if target_variance is None:
        raise ValuationError(f"the reference point of {method} on a regression target is the "
                             "mean predictor's error: pass target_variance=")
    if method == "dynamics_el2n":
        return -float(np.sqrt(target_variance))
    return -chance[method] * float(target_variance)


def categorize(values: np.ndarray, stderr: np.ndarray, *, z: float = Z,
               reference: float = 0.0) -> np.ndarray:
    """"harmful" / "useless" / "useful" per sample from `value +/- z * stderr`: harmful
    when the whole interval lies below `reference`, useful when above, else useless."""
    values, stderr = np.asarray(values, float), np.asarray(stderr, float)
    out = np.full(values.shape, "useless", dtype=object)
    out[values + z * stderr < reference] = "harmful"
    out[values - z * stderr > reference] = "useful"
    return out


def package_versions() -> dict[str, str]:
    """Versions of valuate and the libraries its numbers depend on (a fresh dict)."""
    return dict(_versions())


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: parsing package metadata costs about a millisecond each."""
    out = []
    for name in ("valuate", "jax", "jaxlib", "optax", "numpy", "pandas"):
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call `write(tmp_path)`, then rename the temporary file onto `path`.

    A reader never sees a half-written file: either the old one or the complete new one.
    The file gets the usual mode of a new file (0666 less the umask), not the 0600 of the
    temporary file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    umask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@dataclasses.dataclass(frozen=True, eq=False)
class ValuationResult:
    """Values of n samples, with standard errors, update counts and provenance.

    Attributes:
      values: `(n,)` float64, higher = more valuable.
      stderr: `(n,)` standard error of each value (0 for exact methods).
      counts: `(n,)` number of updates (marginal contributions, models, seeds) behind each value.
      ids: `(n,)` the samples' ids, in the order of the input data.
      method: the method's name, e.g. "tmc_shapley".
      params: JSON-ready method parameters (including the target model's description).
      seed: the seed the run used, or None for deterministic methods.
      versions: package versions (see `package_versions`).
      extra: JSON-ready additions (timings, evaluations used, stopping reason).
    """

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    ids: np.ndarray
    method: str
    params: dict = dataclasses.field(default_factory=dict)
    seed: int | None = None
    versions: dict = dataclasses.field(default_factory=package_versions)
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        for name, dtype in (("values", np.float64), ("stderr", np.float64), ("counts", np.int64)):
            arr = np.asarray(getattr(self, name), dtype=dtype)
            if arr.shape != (n,):
                raise ValuationError(f"{name} has shape {arr.shape} for {n} ids")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        ids = np.asarray(self.ids)
        ids.setflags(write=False)
        object.__setattr__(self, "ids", ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        head = f"ValuationResult(method={self.method!r}, n={len(self)}"
        if len(self):
            head += (f", values in [{self.values.min():.4g}, {self.values.max():.4g}], "
                     f"median stderr {np.median(self.stderr):.3g}")
        return head + ")"

    def __getitem__(self, index) -> ValuationResult:
        """Rows by integer positions, a slice or a boolean mask (ids kept with their rows)."""
        index = np.arange(len(self))[index]
        index = np.atleast_1d(index)
        return dataclasses.replace(self, values=self.values[index], stderr=self.stderr[index],
                                   counts=self.counts[index], ids=self.ids[index])

    @property
    def ranks(self) -> np.ndarray:
        """Rank of each sample, 1 = most valuable (ties by input order)."""
        order = np.argsort(-self.values, kind="stable")
        ranks = np.empty(len(self), dtype=np.int64)
        ranks[order] = np.arange(1, len(self) + 1)
        return ranks

    def to_dataframe(self) -> pd.DataFrame:
        """One row per sample in input order: id, value, stderr, count, rank."""
        return pd.DataFrame({"id": self.ids, "value": self.values, "stderr": self.stderr,
                             "count": self.counts, "rank": self.ranks})

    def _repr_html_(self) -> str:
        """Notebook display: the summary line, then the 5 lowest and 5 highest samples."""
        import html

        parts = [f"<p><b>{html.escape(repr(self))}</b>, seed {self.seed}</p>"]
        for title, part in (("lowest values", self.bottom(5)), ("highest values", self.top(5))):
            parts.append(f"<p>{title}</p>" + part.to_dataframe().drop(columns="rank")
                         .to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        return "\n".join(parts)

    def plot(self, highlight: np.ndarray | None = None, *, z: float = 1.96):
        """A matplotlib figure: values by rank with +/- z * stderr bands, and their histogram.

        Args:
          highlight: optional `(n,)` boolean mask of samples to mark (e.g. flipped labels),
            drawn in a second colour in both panels.
          z: half-width of the bands, in standard errors.

        Returns:
          The `matplotlib.figure.Figure` (needs the "plots" extra: pip install 'valuate[plots]').
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ValuationError("plotting needs matplotlib; pip install 'valuate[plots]'"
                                 ) from None
        mark = np.zeros(len(self), bool) if highlight is None else np.asarray(highlight, bool)
        if mark.shape != (len(self),):
            raise ValuationError(f"highlight has shape {mark.shape} for {len(self)} samples; "
                                 "pass one boolean per sample")
        order = np.argsort(-self.values, kind="stable")
        rank = np.arange(1, len(self) + 1)
        v, e = self.values[order], np.where(np.isfinite(self.stderr), self.stderr, 0.0)[order]
        fig = Figure(figsize=(9, 3.5))
        left, right = fig.subplots(1, 2)
        left.fill_between(rank, v - z * e, v + z * e, alpha=0.3, label=f"±{z:g} stderr")
        left.plot(rank, v, lw=1, label="value")
        left.scatter(rank[mark[order]], v[mark[order]], s=12, color="C3", zorder=3,
                     label="highlighted")
        left.axhline(0.0, color="k", lw=0.5)
        left.set(xlabel="rank (1 = most valuable)", ylabel="value", title=self.method)
        bins = np.histogram_bin_edges(self.values, bins=30)
        right.hist(self.values[~mark], bins=bins, alpha=0.7, label="others")
        right.hist(self.values[mark], bins=bins, alpha=0.7, color="C3", label="highlighted")
        right.set(xlabel="value", ylabel="samples")
        if mark.any():
            left.legend(fontsize="small")
            right.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def sort(self, *, descending: bool = True) -> ValuationResult:
        """A copy sorted by value (most valuable first by default)."""
        order = np.argsort(-self.values if descending else self.values, kind="stable")
        return self[order]

    def top(self, k: int) -> ValuationResult:
        """The k most valuable samples, best first."""
        return self.sort()[:k]

    def bottom(self, k: int) -> ValuationResult:
        """The k least valuable samples (the most harmful), worst first."""
        return self.sort(descending=False)[:k]

    def align(self, ids) -> ValuationResult:
        """The rows for `ids`, in that order (e.g. to join back to a data set)."""
        position = pd.Index(self.ids).get_indexer(np.asarray(ids))
        if (position < 0).any():
            raise ValuationError("some ids are not in this result; check that the result "
                                 "comes from the same data")
        return self[position]

    def merge(self, other: ValuationResult) -> ValuationResult:
        """Pool two runs of the same method on the same samples (e.g. a continued run).

        Means are weighted by counts and variances pooled exactly (Chan et al.'s parallel
        update of the sum of squared deviations), treating each value as the mean of `count`
        independent updates with standard error `sqrt(var / count)`.
        """
        if other.method != self.method:
            raise ValuationError(f"cannot merge {other.method!r} into {self.method!r}")
        if len(other) != len(self) or set(other.ids.tolist()) != set(self.ids.tolist()):
            raise ValuationError("cannot merge results of different samples")
        other = other.align(self.ids)
        n1, n2 = self.counts.astype(float), other.counts.astype(float)
        n = n1 + n2
        safe = np.maximum(n, 1.0)
        mean = (n1 * self.values + n2 * other.values) / safe
        m2 = (_sum_sq(self) + _sum_sq(other)
              + (other.values - self.values) ** 2 * n1 * n2 / safe)
        var = m2 / np.maximum(n - 1.0, 1.0)
        stderr = np.sqrt(var / safe)
        extra = {**self.extra, "merged_from": [self.extra, other.extra]}
        return dataclasses.replace(self, values=mean, stderr=stderr, counts=n.astype(np.int64),
                                   extra=extra)

    # -- persistence -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's contents."""
        return {"method": self.method, "params": self.params, "seed": self.seed,
                "versions": self.versions, "extra": self.extra, "n": len(self)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the table (`.parquet`, `.csv` or `.npz`) and a JSON sidecar `path + ".json"`.

        Both files are written atomically (temporary file, then rename).
        """
        path = os.fspath(path)
        frame = self.to_dataframe()
        if path.endswith(".parquet"):
            atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        elif path.endswith(".csv"):
            atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        elif path.endswith(".npz"):
            def write(tmp):
                with open(tmp, "wb") as f:
                    np.savez(f, **{c: frame[c].to_numpy() for c in frame.columns})
            atomic_write(path, write)
        else:
            raise ValuationError(f"unknown result format {path!r}; use .parquet, .csv or .npz")
        write_json(path + ".json", self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ValuationResult:
        """Read a result written by `save`."""
        path = os.fspath(path)
        if not os.path.exists(path) or not os.path.exists(path + ".json"):
            raise ValuationError(f"{path!r} or its sidecar {path + '.json'!r} is missing")
        if path.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif path.endswith(".csv"):
            frame = pd.read_csv(path)
        else:
            with np.load(path, allow_pickle=True) as z:
                frame = pd.DataFrame({k: z[k] for k in z.files})
        with open(path + ".json") as f:
            meta = json.load(f)
        return cls(values=frame["value"].to_numpy(), stderr=frame["stderr"].to_numpy(),
                   counts=frame["count"].to_numpy(), ids=frame["id"].to_numpy(),
                   method=meta["method"], params=meta["params"], seed=meta["seed"],
                   versions=meta["versions"], extra=meta["extra"])


def _sum_sq(r: ValuationResult) -> np.ndarray:
    """Sum of squared deviations behind a result's standard errors."""
    n = r.counts.astype(float)
    return r.stderr ** 2 * n * np.maximum(n - 1.0, 0.0)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path`, atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write `record` as indented JSON, atomically (numpy scalars and arrays as lists)."""
    write_text(path, json.dumps(record, indent=2, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
