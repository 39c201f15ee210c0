"""``heatmap_3d.png``: |x| over tokens x channels of one sample, as a 3D surface, for the module with the
largest value among those the heatmap pattern selected (``arrays.zarr/activations/heatmap``)."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import figure

MAX_SIDE = 256  # the surface is drawn on at most this many tokens and channels (block maxima)


def draw(results):
    act = results.activations
    if not act or not act.get("config", {}).get("visualization", {}).get("enabled", {}).get("heatmap_3d", False):
        return None
    peak = results.activation_heatmap_peak()
    if peak is None:
        return None
    name, a = peak
    a = np.asarray(a, dtype=np.float32)
    steps = [-(-n // min(n, MAX_SIDE)) for n in a.shape]  # tokens and channels per drawn cell
    a = _pool(a)
    cfg = act["config"]["visualization"]["heatmap_3d"]
    fig = figure(9, 6.5)
    ax = fig.add_subplot(projection="3d")
    tokens, channels = np.meshgrid(np.arange(a.shape[0]) * steps[0], np.arange(a.shape[1]) * steps[1], indexing="ij")
    ax.plot_surface(tokens, channels, a, cmap="viridis", linewidth=0, antialiased=False)
    elev, azim = (cfg.get("view_angle") or [30, 45])[:2]
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel("token")
    ax.set_ylabel("channel")
    ax.set_zlabel("|x|")
    ax.set_title(f"{name} ({'input' if cfg.get('is_input') else 'output'}), sample {cfg.get('sample_idx', 0)}")
    return fig


def _pool(a: np.ndarray) -> np.ndarray:
    for axis in (0, 1):
        n = a.shape[axis]
        if n > MAX_SIDE:
            k = -(-n // MAX_SIDE)
            pad = (-n) % k
            widths = [(0, 0), (0, 0)]
            widths[axis] = (0, pad)
            a = np.pad(a, widths)
            shape = list(a.shape)
            shape[axis : axis + 1] = [shape[axis] // k, k]
            a = a.reshape(shape).max(axis=axis + 1)
    return a
