"""The ``snncal`` command line: the parser and the entry point; the commands themselves, one
function each, are :mod:`snncal.app.commands`.

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
from collections.abc import Sequence
from typing import Any

from snncal.app import commands
from snncal.app.options import add_options, positive_int
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

    p = command("train", commands.cmd_train)
    add_options(p, TrainConfig, "training (snncal.ann.train.TrainConfig)", skip=("out_dir",))
    p.add_argument("--out", default="runs/train", help="checkpoints, logs and resume state")
    p.add_argument("-v", "--verbose", action="count", default=1, help="log more")

    p = command("convert", commands.cmd_convert)
    _model_options(p)
    add_options(p, ConvertConfig, "conversion (snncal.ConvertConfig)")
    _run_options(p, "runs/convert")

    p = command("evaluate", commands.cmd_evaluate)
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

    grids = (("sweep", commands.cmd_grid, "runs/sweep"),
             ("reproduce", commands.cmd_reproduce, "runs/reproduce"))
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

    p = command("export", commands.cmd_export)
    p.add_argument("--snn", required=True, help="SNN saved by `snncal convert`")
    p.add_argument("--nir", required=True, help="NIR file to write (e.g. snn.nir)")
    p.add_argument("--target", default="nir", choices=list(TARGETS),
                   help="the consumer to write for: a peer target folds the thresholds into the weights "
                        "(every IF at threshold 1) and writes only Conv2d, Affine, Flatten and IF nodes")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more")

    p = command("quickstart", commands.cmd_quickstart)
    d = QuickstartConfig()
    add_options(p, QuickstartConfig, "quickstart (snncal.app.quickstart.QuickstartConfig)",
                skip=commands.RUN_FIELDS)
    _workers_option(p)
    _run_options(p, d.out)
    for action in p._actions:  # the quickstart's table must not depend on the machine: fixed threads
        if action.dest == "threads":
            action.help = f"CPU threads (default: {d.threads}, fixed so that the table is the same on "\
                "a busy and an idle machine)"
    return parser


def _setup_logging(verbose: int) -> None:
    """Progress and warnings on stderr at the level of ``-v``; each command's report
    (``snncal.out``) as plain lines on this call's stdout, whatever the level."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    out = logging.getLogger("snncal.out")
    out.propagate = False
    out.setLevel(logging.INFO)
    for old in list(out.handlers):  # stdout may have been replaced since the last call
        out.removeHandler(old)
    out.addHandler(logging.StreamHandler(sys.stdout))


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
