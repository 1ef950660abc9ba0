"""The ``snncal`` command line: argument parsing and printing over the API, nothing else.

    snncal train      --arch resnet20_he --dataset cifar10 --data-dir DIR --epochs 30 --out runs/ann
    snncal convert    --checkpoint runs/ann/best --method light --T 32 --out runs/snn
    snncal evaluate   --snn runs/snn/snn --T 16 32 64 128 256 --stats --out runs/eval
    snncal sweep      --checkpoint runs/ann/best --methods none light --T 32 64 --seeds 0 1 --out runs/sweep
    snncal reproduce  --checkpoint runs/ann/best --out runs/table9
    snncal export     --snn runs/snn/snn --nir runs/snn/snn.nir [--target spikingjelly]
    snncal quickstart --out runs/quickstart

Options come from the dataclasses (``TrainConfig``, ``ConvertConfig``), so the command line and the
API share one set of names, defaults and checks. Every bad value is one line on stderr and exit
code 2, before any expensive work.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snncal.app.options import add_options, from_args, positive_int
from snncal.core import distributed as dist
from snncal.core.config import ConvertConfig
from snncal.core.export.peers import TARGETS

__all__ = [
    "build_parser",
    "main",
]

log = logging.getLogger("snncal")

_EPILOG = "Run `snncal COMMAND -h` for the options of a command."


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line, like every other error of the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def _say(*lines: str) -> None:
    print("\n".join(lines), flush=True)


def _echo(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed command line as plain data, for results files."""
    return {k: v for k, v in vars(args).items() if k != "func"}


# ----------------------------------------------------------------------------- options


def _run_options(p: argparse.ArgumentParser, out: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=out, help=f"output folder (default: {out})")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:1, ...")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's, one per physical core); results of "
                   "calibration depend on it, never on the machine's load")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars (default: on)")
    g.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug, tracebacks)")


def _model_options(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", required=checkpoint_required,
                   help="ANN checkpoint (PATH or PATH.safetensors, as written by `snncal train`)")
    g.add_argument("--dataset", default=None, help="data set name (default: the checkpoint's)")
    g.add_argument("--data-dir", default=None, help="data set root (default: the data set's default)")


def _test_options(p: argparse.ArgumentParser) -> None:
    """How the commands that evaluate read the test split."""
    g = p.add_argument_group("evaluation")
    g.add_argument("--test-images", type=positive_int, default=None,
                   help="evaluate on N test images evenly spaced through the split (default: all)")
    g.add_argument("--eval-batch-size", type=positive_int, default=100, help="test batch size (default: 100)")
    _workers_option(g)


def _workers_option(g: Any) -> None:
    g.add_argument("--workers", type=int, default=0, choices=range(0, 65), metavar="N",
                   help="DataLoader worker processes (default: 0)")


def _ints(p: argparse.ArgumentParser, flag: str, default: Sequence[int], text: str) -> None:
    p.add_argument(flag, type=positive_int, nargs="+", default=list(default),
                   help=f"{text} (default: {' '.join(map(str, default))})")


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


# ----------------------------------------------------------------------------- commands


def _cmd_train(args: argparse.Namespace) -> int:
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


def _cmd_convert(args: argparse.Namespace) -> int:
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
        _say("", calibration_table(snn.calibration))
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
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


def _cmd_grid(args: argparse.Namespace) -> int:
    """Methods x T x seeds for one model, into one resumable results file."""
    return _experiment(args, "sweep", args.methods, args.T, args.seeds, "Sweep")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """The protocol of the paper's Table 9: every method at T in 32..2048 over seeds, with the
    paper's published rows beside ours for its networks."""
    seeds = list(range(args.seed, args.seed + args.num_seeds))
    return _experiment(args, "reproduce", args.methods, args.T, seeds, "Table 9 protocol", paper=True)


def _cmd_export(args: argparse.Namespace) -> int:
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


_RUN_FIELDS = ("out", "device", "threads", "workers", "progress")  # QuickstartConfig's, set by _run_options


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """Train a small CNN, convert it with none / light / advanced at every T, write table and plots."""
    from snncal.app import quickstart as qs
    from snncal.app.runtime import check_out_dir, device

    cfg = from_args(qs.QuickstartConfig, args, skip=_RUN_FIELDS, out=args.out, threads=args.threads or 2,
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


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``snncal`` parser with one sub-parser per command."""
    from snncal.ann.train import TrainConfig
    from snncal.app.experiment import PAPER_METHODS, PAPER_TS
    from snncal.app.quickstart import QuickstartConfig

    parser = _Parser(
        prog="snncal", description="Convert trained CNNs into spiking networks with post-training "
        "calibration (Li et al., ICML 2021).", epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = command("train", _cmd_train)
    add_options(p, TrainConfig, "training (snncal.ann.train.TrainConfig)", skip=("out_dir",))
    p.add_argument("--out", default="runs/train", help="checkpoints, logs and resume state")
    p.add_argument("-v", "--verbose", action="count", default=1, help="log more")

    p = command("convert", _cmd_convert)
    _model_options(p)
    add_options(p, ConvertConfig, "conversion (snncal.ConvertConfig)")
    _run_options(p, "runs/convert")

    p = command("evaluate", _cmd_evaluate)
    _model_options(p, checkpoint_required=False)
    _test_options(p)
    p.add_argument("--snn", default=None, help="SNN saved by `snncal convert`")
    _ints(p, "--T", (16, 32, 64, 128, 256), "simulation lengths, all from one simulation")
    p.add_argument("--rate-T", type=positive_int, default=None,
                   help="T of the firing-rate and cost run (default: the SNN's)")
    p.add_argument("--rate-images", type=positive_int, default=256,
                   help="images for firing rates and costs (default: 256)")
    p.add_argument("--stats", action="store_true", help="synaptic operations, MACs and energy per image")
    _run_options(p, "runs/evaluate")

    grids = (("sweep", _cmd_grid, "runs/sweep"), ("reproduce", _cmd_reproduce, "runs/reproduce"))
    for name, func, out in grids:
        p = command(name, func)
        _model_options(p)
        _test_options(p)
        default = PAPER_METHODS if name == "reproduce" else ("none", "light", "advanced")
        p.add_argument("--methods", nargs="+", default=list(default),
                       help=f"calibration methods (snncal.core.calibrate.METHODS or '+'-joined steps; "
                       f"default: {' '.join(default)})")
        _ints(p, "--T", PAPER_TS if name == "reproduce" else (32, 64, 128, 256), "one conversion per T")
        if name == "sweep":
            p.add_argument("--seeds", type=int, nargs="+", default=[0], help="default: 0")
        else:
            p.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
            p.add_argument("--num-seeds", type=positive_int, default=5, help="seeds --seed .. --seed+N-1")
        add_options(p, ConvertConfig, "conversion (snncal.ConvertConfig)", skip=("seed", "method", "T"))
        _run_options(p, out)

    p = command("export", _cmd_export)
    p.add_argument("--snn", required=True, help="SNN saved by `snncal convert`")
    p.add_argument("--nir", required=True, help="NIR file to write (e.g. snn.nir)")
    p.add_argument("--target", default="nir", choices=list(TARGETS),
                   help="the consumer to write for: a peer target folds the thresholds into the weights "
                        "(every IF at threshold 1) and writes only Conv2d, Affine, Flatten and IF nodes")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more")

    p = command("quickstart", _cmd_quickstart)
    d = QuickstartConfig()
    add_options(p, QuickstartConfig, "quickstart (snncal.app.quickstart.QuickstartConfig)", skip=_RUN_FIELDS)
    _workers_option(p)
    _run_options(p, d.out)
    for action in p._actions:  # the quickstart's table must not depend on the machine: fixed threads
        if action.dest == "threads":
            action.help = f"CPU threads (default: {d.threads}, fixed so that the table is the same on "\
                "a busy and an idle machine)"
    return parser


def _setup_logging(verbose: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snncal`` command: exit code 2 and one line for a bad input, 1 and one
    line for anything unexpected (``-vv`` shows the traceback).

    Under ``torchrun`` every rank runs the command on its share of the data (docs/distributed.md);
    rank 0 alone prints and writes files.
    """
    args = build_parser().parse_args(argv)
    args.gpu = dist.start()
    if not dist.is_main():
        args.verbose, args.progress = -1, False
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (rank 0 prints the tables)
    _setup_logging(args.verbose)
    ok = False
    try:
        code = args.func(args)
        ok = True
        return code
    except (ValueError, OSError, ImportError) as err:  # bad input: files, values, missing extras
        if args.verbose >= 2:
            raise
        print(f"snncal {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.verbose >= 2:
            raise
        print(f"snncal {args.command}: internal error: {type(err).__name__}: {err} "
              "(run with -vv for the traceback)", file=sys.stderr)
        return 1
    finally:
        dist.stop(wait=ok)  # a rank that failed does not wait for the others
