"""Peers running snncal's NIR export: accuracy, agreement and simulation time against snncal's.

For a saved SNN and a test subset (images evenly spaced through the test split), exports the network
once per peer (``export_nir(target=peer)``), runs it in the peer (``run_peer``, which sets what the
peer lets a user set), and writes one row per peer to docs/data/peers.json: snncal's accuracy, the
peer's, the fraction of images where their predictions agree, and the peer's simulation time over
snncal's in the same run. A peer that is not installed or fails gets a row with its error. Rows of
an earlier run with the same label and peer are replaced; docs/interop.md's table is printed from
the file by ``python benchmarks/tables.py peers docs/data/peers.json``.

    python benchmarks/peers.py --snn runs/quickstart/snn_light_T32 --dataset fashion-mnist \\
        --data /usr/share/datasets/fashion-mnist --images 2000 --label "resnet20 light T=32"
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from record import provenance, write_json

from snncal.ann.data.datasets import build_dataset
from snncal.core.export import export_nir, load, read_meta
from snncal.core.export.peer_run import PEERS, run_peer
from snncal.core.subsets import evenly_spaced

ROWS = Path(__file__).resolve().parents[1] / "docs" / "data" / "peers.json"


def _batches(dataset, batch: int):
    xs, ys = [], []
    for i in range(len(dataset)):
        x, y = dataset[i]
        xs.append(x)
        ys.append(int(y))
        if len(xs) == batch or i == len(dataset) - 1:
            yield torch.stack(xs), torch.tensor(ys)
            xs, ys = [], []


def measure(snn_path: str, dataset: str, data: str | None, images: int, batch: int, peers, label: str):
    """One row per peer (see the module doc)."""
    snn = load(snn_path)
    shape = read_meta(snn_path)["meta"].get("input_shape")
    test = evenly_spaced(build_dataset(dataset, data, split="test"), images)
    graphs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for peer in peers:
            graphs[peer] = export_nir(snn, input_shape=shape, target=peer)
    ref_pred, labels, seconds = [], [], {"snncal": 0.0, **{p: 0.0 for p in peers}}
    preds: dict[str, list] = {p: [] for p in peers}
    errors: dict[str, str] = {}
    for x, y in _batches(test, batch):
        t0 = time.perf_counter()
        ref_pred.append(snn.simulate(x).argmax(1))
        seconds["snncal"] += time.perf_counter() - t0
        labels.append(y)
        for peer in peers:
            if peer in errors:
                continue
            t0 = time.perf_counter()
            try:
                preds[peer].append(run_peer(peer, graphs[peer], x, snn.T).argmax(1))
            except Exception as err:  # a missing or failing peer is a row, not a crash
                errors[peer] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            seconds[peer] += time.perf_counter() - t0
    ref, y = torch.cat(ref_pred), torch.cat(labels)
    base = {"label": label, "snn": str(snn_path), "dataset": dataset, "images": len(y), "T": snn.T,
            "snncal_acc": round(100 * float((ref == y).float().mean()), 2)}
    rows = []
    for peer in peers:
        row = {**base, "peer": peer}
        if peer in errors:
            row["error"] = errors[peer]
        else:
            p = torch.cat(preds[peer])
            row.update(peer_acc=round(100 * float((p == y).float().mean()), 2),
                       agreement=round(100 * float((p == ref).float().mean()), 2),
                       time_ratio=round(seconds[peer] / seconds["snncal"], 2))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--snn", required=True, help="SNN saved by `snncal convert`")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data", default=None, help="data set root")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=str(ROWS))
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    rows = measure(args.snn, args.dataset, args.data, args.images, args.batch, args.peers, args.label)
    for row in rows:
        print(json.dumps(row))
    out = Path(args.out)
    kept = json.loads(out.read_text())["rows"] if out.exists() else []
    new = {(r["label"], r["peer"]) for r in rows}
    kept = [r for r in kept if (r["label"], r["peer"]) not in new]
    write_json(out, {"provenance": provenance(torch.get_num_threads()), "rows": kept + rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
