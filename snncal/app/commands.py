"""The ``snncal`` commands: one function per sub-command, from parsed arguments to files and
printed lines over the API (the parser is :mod:`snncal.app.cli`).

Each ``cmd_*`` takes the ``argparse.Namespace`` of its sub-parser and returns the exit code; its
docstring is the command's help. Bad values raise ValueError (or OSError, ImportError), which
:func:`snncal.app.cli.main` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snncal.app.options import from_args
from snncal.core import distributed as dist
from snncal.core.config import ConvertConfig

__all__ = [
    "RUN_FIELDS",
    "cmd_convert",
    "cmd_evaluate",
    "cmd_export",
    "cmd_grid",
    "cmd_quickstart",
    "cmd_reproduce",
    "cmd_train",
]

log = logging.getLogger("snncal")
out = logging.getLogger("snncal.out")  # what a command reports: plain lines on stdout (cli.main)


def _say(*lines: str) -> None:
    out.info("\n".join(lines))


def _echo(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed command line as plain data, for results files."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _setup(args: argparse.Namespace) -> Any:
    """The device, after the checks every command makes first; sets the thread count. Under
    ``torchrun`` each rank takes its own GPU (``--device auto`` or ``cuda``)."""
    from snncal.app.runtime import check_out_dir, device, set_threads

    check_out_dir(args.out)
    dev = device(args.device)
    if args.gpu is not None and dev.type == "cuda":
        dev = args.gpu
    args.threads = set_threads(args.threads)
    return dev


def _load_ann(path: str, dev: Any) -> tuple[Any, dict[str, Any]]:
    from snncal.ann.checkpoint import load_checkpoint

    return load_checkpoint(path, device=dev)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a zoo model with the paper's recipe."""
    from snncal.ann.train import TrainConfig, train
    from snncal.app.runtime import check_out_dir
    from snncal.core.files import atomic_write_json

    cfg = from_args(TrainConfig, args, out_dir=args.out)
    out = check_out_dir(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        summary = train(cfg)
    finally:
        log.removeHandler(handler)
        handler.close()
    atomic_write_json(out / "summary.json", summary)
    _say(f"{cfg.arch} on {cfg.dataset}: test accuracy {summary['test_acc']:.2f}% "
         f"(best {summary['best_test_acc']:.2f}%) after {summary['epochs']} epochs, "
         f"{summary['train_seconds']:.0f} s",
         f"checkpoints: {summary['checkpoint']}, {summary['best_checkpoint']}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert and calibrate an ANN checkpoint; save the SNN (safetensors + JSON)."""
    from snncal.app.experiment import calibration_share
    from snncal.app.runtime import splits, training_split
    from snncal.app.tables import calibration_table
    from snncal.core.convert import convert
    from snncal.core.export import save

    cfg = from_args(ConvertConfig, args)
    dev = _setup(args)
    model, meta = _load_ann(args.checkpoint, dev)
    name, calib, _ = splits(meta, args.dataset, args.data_dir)
    train = training_split(name, args.data_dir, [cfg.method])
    t0 = time.perf_counter()
    snn = convert(model, calibration_share(calib, cfg), cfg, train_data=train, progress=args.progress)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    if not dist.is_main():
        return 0
    path = save(snn, out / "snn", meta={
        "ann": meta, "config": cfg.to_dict(), "input_shape": list(calib[0][0].shape),
        "ann_checkpoint": str(Path(args.checkpoint).resolve()), "dataset": name,
        "convert_seconds": seconds, "command": _echo(args),
    })
    _say(f"converted {meta['arch']} ({name}) with method={cfg.method}, T={cfg.T}, "
         f"threshold={cfg.threshold} in {seconds:.1f} s: {len(snn.neurons())} IF layers")
    if snn.calibration is not None and snn.calibration.layers:
        split = ", ".join(f"{k} {v:.1f}" for k, v in snn.calibration.step_seconds.items())
        _say("", calibration_table(snn.calibration), f"seconds by step: {split}")
    _say(f"saved {path} (+ .json)", f"next: snncal evaluate --snn {out / 'snn'} --out {out / 'eval'}")
    return 0


def _evaluation_inputs(args: argparse.Namespace, dev: Any) -> tuple:
    """(SNN or None, ANN or None, data set name, test split) for ``evaluate``; without
    ``--checkpoint`` the ANN is the one the SNN was converted from, if its file is still there."""
    from snncal.app.runtime import evaluation_split
    from snncal.core.export import load, read_meta
    from snncal.core.files import checkpoint_paths

    if not (args.snn or args.checkpoint):
        raise ValueError("give --snn (an SNN from `snncal convert`) and/or --checkpoint (an ANN)")
    snn_meta = read_meta(args.snn)["meta"] if args.snn else {}
    snn = load(args.snn, dev) if args.snn else None
    ann_path = args.checkpoint or snn_meta.get("ann_checkpoint")
    if ann_path and not args.checkpoint and not checkpoint_paths(ann_path)[0].exists():
        ann_path = None  # the SNN's ANN has moved: report the SNN only
    model, meta = _load_ann(ann_path, dev) if ann_path else (None, {})
    shape = {"dataset": snn_meta.get("dataset") or meta.get("dataset"),
             "input_size": snn_meta.get("input_shape") or meta.get("input_size")}
    name, test = evaluation_split(shape, args.dataset, args.data_dir)
    return snn, model, name, test


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Accuracy of an ANN and/or an SNN at several T; the SNN's firing rates and, with --stats,
    its synaptic operations and energy against the ANN."""
    from snncal.app.evaluation import run_evaluation

    dev = _setup(args)
    snn, model, name, test = _evaluation_inputs(args, dev)
    run_evaluation(
        snn, model, name, test, out=args.out, device=dev, T=args.T, test_images=args.test_images,
        rate_T=args.rate_T, rate_images=args.rate_images, cost=args.stats,
        batch_size=args.eval_batch_size, workers=args.workers, progress=args.progress,
        config=_echo(args), say=_say,
    )
    return 0


def _experiment(args: argparse.Namespace, stem: str, methods: Sequence[str], Ts: Sequence[int],
                seeds: Sequence[int], title: str, paper: bool = False) -> int:
    """Shared body of ``sweep`` and ``reproduce``: run the rows, then write and print the table."""
    from snncal.ann.checkpoint import digest
    from snncal.app.experiment import Experiment, grid
    from snncal.app.paper import NETWORKS
    from snncal.app.runtime import splits, training_split

    base = from_args(ConvertConfig, args, skip=("method", "T", "seed"))
    grid(methods, Ts, seeds)  # unknown methods and bad T fail before anything loads
    dev = _setup(args)
    model, meta = _load_ann(args.checkpoint, dev)
    name, calib, test = splits(meta, args.dataset, args.data_dir)
    experiment = Experiment(
        Path(args.out) / f"{stem}.json", model, calib, test, base, test_images=args.test_images,
        train_data=training_split(name, args.data_dir, methods),
        batch_size=args.eval_batch_size, workers=args.workers, device=dev, progress=args.progress,
        config=_echo(args),
        protocol={"checkpoint_sha256": digest(args.checkpoint), "arch": meta["arch"], "dataset": name},
    )
    rows = experiment.run(methods, Ts, seeds)
    experiment.results.set_ann(arch=meta["arch"], checkpoint=str(args.checkpoint),
                               checkpoint_test_acc=meta.get("test_acc"))
    title = f"{title}: {meta['arch']} on {name}"
    network = NETWORKS.get(meta["arch"]) if paper and name == "cifar10" else None
    from snncal.ann.train import has_batchnorm

    columns = {"Use BN": "yes" if has_batchnorm(model) else "no"} if paper else None
    table, files = experiment.write(rows, methods, Ts, title, network=network, columns=columns)
    if dist.is_main():
        _say(f"# {title}", "", table, "wrote " + ", ".join(files.values()))
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    """Methods x T x seeds for one model, into one resumable results file."""
    return _experiment(args, "sweep", args.methods, args.T, args.seeds, "Sweep")


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The protocol of the paper's Table 9: every method at T in 32..2048 over seeds, with the
    paper's published rows beside ours for its networks."""
    seeds = list(range(args.seed, args.seed + args.num_seeds))
    return _experiment(args, "reproduce", args.methods, args.T, seeds, "Table 9 protocol", paper=True)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a saved SNN to NIR (the neuromorphic intermediate representation)."""
    from snncal.core.export import export_nir, load, read_meta
    from snncal.core.export.peers import target

    snn = load(args.snn)
    export_nir(snn, args.nir, input_shape=read_meta(args.snn)["meta"].get("input_shape"),
               target=args.target)
    spec = target(args.target)
    _say(f"wrote {args.nir} for {spec.name} ({spec.loads}); it runs differently: {spec.approximates} "
         "(docs/interop.md)")
    return 0


# QuickstartConfig's fields that the parser's run options (cli._run_options) set
RUN_FIELDS = ("out", "device", "threads", "workers", "progress")


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train a small CNN, convert it with none / light / advanced at every T, write table and plots."""
    from snncal.app import quickstart as qs
    from snncal.app.runtime import check_out_dir, device

    cfg = from_args(qs.QuickstartConfig, args, skip=RUN_FIELDS, out=args.out, threads=args.threads or 2,
                    device=str(device(args.device)), workers=args.workers, progress=args.progress)
    check_out_dir(cfg.out)
    name = "CIFAR-10 from " + args.data if args.data else "Fashion-MNIST (Debian package)"
    _say(f"snncal quickstart: cnn_small on {name}; {cfg.epochs} epochs, then "
         f"{len(cfg.methods)} methods x T in {list(cfg.Ts)}; SNNs evaluated on {cfg.test_images} "
         f"test images evenly spaced through the test set; {cfg.threads} CPU threads")
    res = qs.run_quickstart(cfg, say=_say)
    s = res.seconds
    _say("", f"ANN: {res.ann_acc_full:.2f}% on the whole test set, {res.ann_acc:.2f}% on "
         f"{res.subset} (trained in {res.train_seconds:.0f} s)", "",
         f"SNN top-1 accuracy (%) on {res.subset}:", "", res.table,
         f"this run: train {s['train']:.0f} s, convert + evaluate {s['sweep']:.0f} s, "
         f"firing rates + export {s['rates']:.0f} s, total {s['total']:.0f} s (finished steps resume "
         "from the files under --out)",
         "wrote:", *(f"  {k}: {v}" for k, v in res.files.items()))
    return 0
