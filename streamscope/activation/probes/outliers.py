"""Outlier tokens (the seed's outlier plots): per sample, the tokens of a watched module's output whose largest
|x| exceeds ``outlier.threshold`` x that sample's median |x|; their positions, token ids and text, and the
channels they occur in (``activations.json["outliers"]``, ``outliers.csv``)."""

from __future__ import annotations

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import Outliers


class State(Outliers):
    def update(self, call) -> None:
        x = call.x_out
        if x is not None and x.is_floating_point():
            for s, xs in call.samples(x):
                self.add(xs, s)

    def reduce(self) -> dict:
        return self.result()


def pattern(watch, vis: dict) -> str:
    """``outlier.pattern``; by default (null) the decoder layers, whatever the family names them."""
    return vis["outlier"]["pattern"] or watch.layer_pattern


def watched_layers(watch, vis: dict) -> list[str]:
    return watch.matching([pattern(watch, vis)], within_selection=False)


def record(reduced: dict, run) -> dict:
    layers, massive = {}, {}
    ids = run.input_ids
    for n, r in reduced.items():
        r = dict(r)
        r["token_ids"] = [int(ids[s, t]) for s, t in r["positions"]]
        if run.decode is not None and run.vis["outlier"]["decode_tokens"]:
            r["tokens"] = [run.decode(i) for i in r["token_ids"]]
        for c, k in r["channels"].items():
            massive[c] = massive.get(c, 0) + k
        layers[n] = r
    return {"layers": layers, "massive_channels": dict(sorted(massive.items(), key=lambda kv: (-kv[1], int(kv[0])))[:20]),
            "threshold": float(run.vis["outlier"]["threshold"]), "pattern": run.facts.get("outlier_pattern")}  # fmt: skip


def files(reduced: dict, run) -> dict:
    from streamscope.activation.export import write_csv

    rows = []
    for layer, r in record(reduced, run)["layers"].items():
        texts = r.get("tokens") or [None] * len(r["positions"])
        for (s, t), tid, text in zip(r["positions"], r["token_ids"], texts):
            rows.append({"module": layer, "sample": s, "position": t, "token_id": tid, "token": text})
    write_csv(run.out / "outliers.csv", rows, ["module", "sample", "position", "token_id", "token"])
    return {"outliers.csv": None}


def check(vis: dict, fail) -> None:
    from streamscope.activation.config import check_patterns

    t = vis["outlier"]["threshold"]
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
        fail("visualization.outlier.threshold", f"must be a positive number; got {t!r}")
    pattern = vis["outlier"]["pattern"]
    check_patterns(fail, "visualization.outlier.pattern", [pattern] if isinstance(pattern, str) else pattern, optional=True)


PROBE = Probe(
    name="outliers",
    help="outlier tokens: |x| above outlier.threshold x the sample's median |x|, their tokens and channels",
    section="outlier",
    options={"threshold": 64, "pattern": None, "decode_tokens": True},
    enabled={"outlier_layer_wise": True, "outlier_position": True, "outlier_token": True},
    watches=watched_layers,
    new=lambda vis, name, scratch: State(float(vis["outlier"]["threshold"])),
    restore=lambda vis, data: State.restore(data),
    check=check,
    record=record,
    files=files,
)
