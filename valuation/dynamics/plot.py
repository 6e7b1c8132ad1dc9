"""The data map: confidence against variability, one point per sample.

Where it sits: a view of `features.signals_frame` (Swayamdipta et al., "Dataset Cartography",
EMNLP 2020, figure 1). matplotlib is optional (`pip install 'valuate[plots]'`) and imported
only when a plot is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValuationError

__all__ = ["data_map_plot"]


def data_map_plot(frame: pd.DataFrame, *, mask: Any = None, ax: Any = None,
                  title: str = "Data map"):
    """Scatter of variability (x) against confidence (y), coloured by correctness or a mask.

    Args:
      frame: a `signals_frame` (needs columns confidence, variability, correctness).
      mask: optional boolean `(n,)`, e.g. the flipped labels of an experiment; marked points
        are drawn in red on top of the others. Without it the colour is correctness.
      ax: a matplotlib Axes to draw into; default a new figure.
      title: axes title.

    Returns:
      The matplotlib `Figure`.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValuationError("data_map_plot needs matplotlib; pip install 'valuate[plots]'"
                             ) from None
    missing = {"confidence", "variability", "correctness"} - set(frame.columns)
    if missing:
        raise ValuationError(f"frame lacks columns {sorted(missing)}; pass a signals_frame")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
    else:
        fig = ax.figure
    var, conf = frame["variability"].to_numpy(), frame["confidence"].to_numpy()
    if mask is None:
        points = ax.scatter(var, conf, c=frame["correctness"].to_numpy(), cmap="viridis",
                            vmin=0.0, vmax=1.0, s=12)
        fig.colorbar(points, ax=ax, label="correctness")
    else:
        mask = np.asarray(mask, bool)
        if mask.shape != (len(frame),):
            raise ValuationError(f"mask has shape {mask.shape} for {len(frame)} samples")
        ax.scatter(var[~mask], conf[~mask], s=10, c="tab:blue", label="other", alpha=0.6)
        ax.scatter(var[mask], conf[mask], s=14, c="tab:red", label="marked")
        ax.legend(loc="lower right")
    ax.set_xlabel("variability")
    ax.set_ylabel("confidence")
    ax.set_title(title)
    return fig
