"""The ``snncal`` command line, a thin layer over the API.

    snncal train      --arch resnet20_he --dataset cifar10 --data-dir DIR --epochs 30 --out runs/ann
    snncal convert    --checkpoint runs/ann/best --method light --T 32 --out runs/snn
    snncal evaluate   --snn runs/snn/snn --T 16 32 64 128 256 --out runs/eval
    snncal sweep      --checkpoint runs/ann/best --methods none light --T 32 64 --seeds 0 1 --out runs/sweep
    snncal reproduce  --checkpoint runs/ann/best --out runs/table9
    snncal quickstart --out runs/quickstart

Every command takes ``--device``, ``--workers``, ``--seed`` and ``--out``, echoes its full
configuration into its results and writes every file atomically. Conversion options are the fields
of :class:`snncal.ConvertConfig` (``--threshold``, ``--per-channel``, ``--num-images``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from snncal.app import quickstart as qs
from snncal.core.config import ConvertConfig, make_config
from snncal.core.graph import ConversionError

log = logging.getLogger("snncal")

_EPILOG = "Run `snncal COMMAND -h` for the options of a command."


# ----------------------------------------------------------------------------- options


def _field_help() -> dict[str, str]:
    """Help text of each ConvertConfig field, from its docstring's Attributes section."""
    doc = ConvertConfig.__doc__ or ""
    helps: dict[str, str] = {}
    name = None
    for line in doc.split("Attributes:", 1)[-1].splitlines():
        m = re.match(r"^\s{8}(\w+): (.*)$", line)
        if m:
            name, helps[m.group(1)] = m.group(1), m.group(2)
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return {k: v.replace("%", "%%").replace("``", "") for k, v in helps.items()}


def _add_convert_options(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One option per :class:`ConvertConfig` field (default: the dataclass's default)."""
    g = p.add_argument_group("conversion options (snncal.ConvertConfig)")
    helps = _field_help()
    for f in dataclasses.fields(ConvertConfig):
        if f.name in skip:
            continue
        flag = "--T" if f.name == "T" else "--" + f.name.replace("_", "-")
        text = f"{helps.get(f.name, '')} (default: {f.default})"
        if isinstance(f.default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            g.add_argument(flag, dest=f.name, type=type(f.default), default=None, help=text)


def _convert_config(args: argparse.Namespace, skip: Sequence[str] = (), **fixed: Any) -> ConvertConfig:
    """The ConvertConfig of parsed options (unset ones keep their defaults) and ``fixed``."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ConvertConfig)
        if f.name not in skip and getattr(args, f.name, None) is not None
    }
    return make_config(None, **{**given, **fixed})


def _add_run_options(
    p: argparse.ArgumentParser, out: str, seed: str | None = "seed of the calibration images"
) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=out, help=f"output folder (default: {out})")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:1, ...")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    if seed:
        g.add_argument("--seed", type=int, default=0, help=f"{seed} (default: 0)")
    g.add_argument("--threads", default="auto",
                   help="torch CPU threads; auto: one per idle core (default: auto)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars (default: on)")
    g.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")


def _add_data_options(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", required=checkpoint_required,
                   help="ANN checkpoint (PATH or PATH.safetensors, as written by `snncal train`)")
    g.add_argument("--dataset", default=None, help="data set name (default: the checkpoint's)")
    g.add_argument("--data-dir", default=None, help="data set root (default: the data set's default)")
    g.add_argument("--test-images", type=int, default=None,
                   help="evaluate on N test images evenly spaced through the split (default: all)")
    g.add_argument("--eval-batch-size", type=int, default=100, help="test batch size (default: 100)")


def _int_list(p: argparse.ArgumentParser, flag: str, default: Sequence[int], text: str) -> None:
    p.add_argument(
        flag, type=int, nargs="+", default=list(default), help=f"{text} (default: {list(default)})"
    )


# ----------------------------------------------------------------------------- plumbing


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _set_threads(value: str | int | None) -> None:
    """``auto``: one thread per core that the system load leaves idle (at least one)."""
    if value in (None, ""):
        return
    if value == "auto":
        cores = os.cpu_count() or 1
        try:
            busy = round(os.getloadavg()[0])
        except (AttributeError, OSError):  # no load average (Windows)
            busy = 0
        value = max(1, min(cores, cores - busy))
    torch.set_num_threads(int(value))
    log.info("using %d CPU threads", int(value))


def _load_ann(path: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    from snncal.ann.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


def _has_bn(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _checkpoint_digest(path: str) -> str:
    from snncal.core.files import checkpoint_paths

    weights, _ = checkpoint_paths(path)
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def _datasets(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[str, Dataset, Dataset]:
    """(name, calibration set = train split without augmentation, test split)."""
    from snncal.ann.data import build_dataset

    name = args.dataset or meta.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its data set; pass --dataset")
    calib = build_dataset(name, args.data_dir, "train", augment="none")
    test = build_dataset(name, args.data_dir, "test")
    return name, calib, test


def _test_loader(test: Dataset, args: argparse.Namespace) -> tuple[DataLoader, str]:
    """Loader of the fixed test subset of ``--test-images``, and its description."""
    from snncal.app.experiment import subset_name, test_subset

    subset = test_subset(test, args.test_images)
    loader = DataLoader(subset, batch_size=args.eval_batch_size, num_workers=args.workers)
    return loader, subset_name(len(subset), len(test))  # type: ignore[arg-type]


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed command line as plain data, for results files."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _say(*lines: str) -> None:
    print("\n".join(lines), flush=True)


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    """Train a zoo model with the paper's recipe (snncal.ann.train)."""
    from snncal.ann.train import config_from_args, train
    from snncal.core.files import atomic_write_json

    cfg = config_from_args(args)
    out = Path(cfg.out_dir)
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
    from snncal.app.report import calibration_table
    from snncal.core.convert import convert
    from snncal.core.export import save

    cfg = _convert_config(args, seed=args.seed)  # bad options fail before anything loads
    device = _device(args.device)
    model, meta = _load_ann(args.checkpoint, device)
    name, calib, _ = _datasets(args, meta)
    t0 = time.perf_counter()
    snn = convert(model, calib, cfg)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    path = save(snn, out / "snn", meta={
        "ann": meta, "config": cfg.to_dict(), "input_shape": list(calib[0][0].shape),
        "ann_checkpoint": str(Path(args.checkpoint).resolve()), "dataset": name, "convert_seconds": seconds,
        "command": _config(args),
    })
    _say(f"converted {meta['arch']} ({name}) with method={cfg.method}, T={cfg.T}, "
         f"threshold={cfg.threshold} in {seconds:.1f} s: {len(snn.neurons())} IF layers")
    if snn.calibration is not None and snn.calibration.layers:
        _say("", calibration_table(snn.calibration))
    _say(f"saved {path} (+ .json)", f"next: snncal evaluate --snn {out / 'snn'} --out {out / 'eval'}")
    return 0


def _evaluation_inputs(args: argparse.Namespace, device: torch.device) -> tuple:
    """(SNN or None, ANN or None, data set name, test loader, subset description) for ``evaluate``.

    Without ``--checkpoint``, the ANN is the one the SNN was converted from, if its file is still there.
    """
    from snncal.ann.data import build_dataset
    from snncal.core.export import load, read_meta
    from snncal.core.files import checkpoint_paths

    if not (args.snn or args.checkpoint):
        raise ValueError("give --snn (an SNN from `snncal convert`) and/or --checkpoint (an ANN)")
    snn = load(args.snn, device) if args.snn else None
    snn_meta = read_meta(args.snn)["meta"] if args.snn else {}
    ann_path = args.checkpoint or snn_meta.get("ann_checkpoint")
    if ann_path and not args.checkpoint and not checkpoint_paths(ann_path)[0].exists():
        ann_path = None  # the SNN's ANN has moved: report the SNN only
    model, meta = _load_ann(ann_path, device) if ann_path else (None, snn_meta.get("ann", {}))
    name = args.dataset or snn_meta.get("dataset") or meta.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its data set; pass --dataset")
    loader, subset = _test_loader(build_dataset(name, args.data_dir, "test"), args)
    return snn, model, name, loader, subset


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Accuracy of an ANN and/or an SNN at several T, and the SNN's per-layer firing rates."""
    from snncal.app import plots
    from snncal.app.report import rates_table
    from snncal.app.results import markdown_table, write_json
    from snncal.core.evaluate import evaluate, firing_rates

    device = _device(args.device)
    snn, model, name, loader, subset = _evaluation_inputs(args, device)
    result: dict[str, Any] = {"config": _config(args), "dataset": name, "test_images": len(loader.dataset),
                              "test_subset": subset}
    if model is not None:
        result["ann_acc"] = evaluate(model, loader, device=device, progress=args.progress)["ann"]
    ann = f"{result['ann_acc']:.2f}" if "ann_acc" in result else "-"
    _say(f"{name}, {subset}", "")
    out = Path(args.out)
    if snn is None:
        _say(f"ANN accuracy: {ann}%")
    else:
        accs = evaluate(snn, loader, T=args.T, device=device, progress=args.progress)
        rates = firing_rates(snn, loader, T=args.rate_T, max_images=args.rate_images)
        result.update(snn_acc=accs, snn_T=snn.T, rates=rates, calibration=snn.calibration)
        label = f"SNN ({snn.calibration.method if snn.calibration else '?'}, calibrated for T={snn.T})"
        _say(markdown_table(["network", "ANN", *(f"T={T}" for T in accs)],
                            [[label, ann, *(f"{a:.2f}" for a in accs.values())]]))
        n = min(args.rate_images, result["test_images"])
        _say(f"firing rates on {n} images (T={rates[0].T}):", "", rates_table(rates))
        result["files"] = {"rates_plot": str(plots.plot_firing_rates(rates, out / "firing_rates.png"))}
    write_json(out / "evaluate.json", result)
    _say(f"wrote {out / 'evaluate.json'}")
    return 0


def _grid(args: argparse.Namespace, stem: str, methods: Sequence[str], Ts: Sequence[int],
          seeds: Sequence[int], title: str, paper: bool = False) -> int:
    """Shared body of ``sweep`` and ``reproduce``: run the grid, then write JSON/CSV/Markdown/PNG."""
    from snncal.app import plots
    from snncal.app.experiment import ensure_ann_accuracy, run_sweep
    from snncal.app.results import ResultsFile, accuracy_table, write_csv
    from snncal.core.files import atomic_write_text

    base = _convert_config(args, skip=("method", "T", "seed"))
    for method, T in zip(methods, Ts):  # bad options fail before anything loads
        make_config(base, method=method, T=T)
    device = _device(args.device)
    model, meta = _load_ann(args.checkpoint, device)
    name, calib, test = _datasets(args, meta)
    loader, subset = _test_loader(test, args)
    protocol = {
        "checkpoint_sha256": _checkpoint_digest(args.checkpoint), "arch": meta["arch"],
        "dataset": name, "test_images": subset,
        "convert": {k: v for k, v in base.to_dict().items() if k not in ("method", "T", "seed")},
    }
    out = Path(args.out)
    results = ResultsFile(out / f"{stem}.json", _config(args), protocol)
    ann_acc = ensure_ann_accuracy(results, model, loader, device)
    results.set_ann(
        arch=meta["arch"], checkpoint=str(args.checkpoint), checkpoint_test_acc=meta.get("test_acc")
    )
    rows = run_sweep(model, calib, loader, results, methods, Ts, seeds, base, device, args.progress)
    title = f"{title}: {meta['arch']} on {name}"
    seed_text = f"seeds {', '.join(map(str, seeds))} (mean ± std)" if len(seeds) > 1 else f"seed {seeds[0]}"
    columns = {"Use BN": "yes" if _has_bn(model) else "no"} if paper else None
    table = accuracy_table(rows, ann_acc, methods, Ts, columns=columns)
    caption = (f"Top-1 accuracy (%) on {subset}; each SNN converted and "
               f"calibrated for its T ({base.num_images} calibration images, threshold={base.threshold}), "
               f"{seed_text}.")
    files = {
        "json": str(results.path),
        "csv": str(write_csv(out / f"{stem}.csv", rows)),
        "markdown": str(atomic_write_text(out / f"{stem}.md", f"# {title}\n\n{caption}\n\n{table}")),
        "plot": str(plots.plot_accuracy(rows, out / f"{stem}.png", ann_acc, title=title, methods=methods)),
    }
    results.set_extra(files=files)
    _say(f"# {title}", "", caption, "", table, "wrote " + ", ".join(files.values()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Methods x T x seeds for one model, into one resumable results file."""
    return _grid(args, "sweep", args.methods, args.T, args.seeds or [args.seed], "Sweep")


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The protocol of the paper's Table 9: ANN, then each method at T in 32..2048, 5 seeds."""
    seeds = list(range(args.seed, args.seed + args.num_seeds))
    return _grid(args, "reproduce", args.methods, args.T, seeds, "Table 9 protocol", paper=True)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train a small CNN, convert it with none / light / advanced, sweep T, write table and plots."""
    cfg = qs.QuickstartConfig(
        out=args.out, data=args.data, epochs=args.epochs, batch_size=args.batch_size, augment=args.augment,
        methods=tuple(args.methods), Ts=tuple(args.T), test_images=args.test_images,
        calib_images=args.calib_images, seed=args.seed, device=str(_device(args.device)),
        workers=args.workers, progress=args.progress,
    )
    name = "CIFAR-10 from " + args.data if args.data else "Fashion-MNIST (Debian package)"
    _say(f"snncal quickstart: cnn_small on {name}; {cfg.epochs} epochs, then "
         f"{len(cfg.methods)} methods x T in {list(cfg.Ts)}; SNNs evaluated on {cfg.test_images} "
         "test images evenly spaced through the test set")
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
    from snncal.ann.train import build_parser as train_parser
    from snncal.app.experiment import PAPER_METHODS, PAPER_TS

    parser = argparse.ArgumentParser(
        prog="snncal", description="Convert trained CNNs into spiking networks with post-training "
        "calibration (Li et al., ICML 2021).", epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    train_parser(p)
    p.add_argument("--out", dest="out_dir", default=argparse.SUPPRESS, help="alias of --out-dir")
    p.add_argument("-v", "--verbose", action="count", default=1, help="log more")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("convert", help=cmd_convert.__doc__, description=cmd_convert.__doc__)
    _add_data_options(p)
    _add_convert_options(p, skip=("seed",))
    _add_run_options(p, "runs/convert")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__, description=cmd_evaluate.__doc__)
    _add_data_options(p, checkpoint_required=False)
    p.add_argument("--snn", default=None, help="SNN checkpoint written by `snncal convert`")
    _int_list(p, "--T", (16, 32, 64, 128, 256), "simulation lengths, all from one simulation")
    p.add_argument("--rate-T", type=int, default=None, help="T of the firing-rate run (default: the SNN's)")
    p.add_argument("--rate-images", type=int, default=256, help="images for firing rates (default: 256)")
    _add_run_options(p, "runs/evaluate", seed=None)
    p.set_defaults(func=cmd_evaluate)

    grids = (("sweep", cmd_sweep, "runs/sweep"), ("reproduce", cmd_reproduce, "runs/reproduce"))
    for name, func, out in grids:
        p = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        _add_data_options(p)
        p.add_argument("--methods", nargs="+", default=list(PAPER_METHODS),
                       help="calibration methods (none, light, advanced or '+'-joined steps)")
        Ts = PAPER_TS if name == "reproduce" else (32, 64, 128, 256)
        _int_list(p, "--T", Ts, "simulation lengths; one conversion per T")
        if name == "sweep":
            p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: --seed")
        else:
            p.add_argument("--num-seeds", type=int, default=5, help="seeds --seed .. --seed+N-1")
        _add_convert_options(p, skip=("seed", "method", "T"))
        _add_run_options(p, out)
        p.set_defaults(func=func)

    p = sub.add_parser("quickstart", help=cmd_quickstart.__doc__, description=cmd_quickstart.__doc__)
    d = qs.QuickstartConfig()
    p.add_argument("--data", default=None,
                   help="a CIFAR-10 ImageFolder copy (ROOT/{train,test}/<class>/*); "
                   "default: Fashion-MNIST from /usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"training batch size (default: {d.batch_size})")
    p.add_argument("--augment", default=None, help="none / basic / paper (default: none on Fashion-MNIST, "
                   "basic on CIFAR-10)")
    p.add_argument("--methods", nargs="+", default=list(d.methods),
                   help=f"calibration methods (default: {' '.join(d.methods)})")
    _int_list(p, "--T", d.Ts, "simulation lengths; one conversion per T")
    p.add_argument("--test-images", type=int, default=d.test_images,
                   help=f"SNNs are evaluated on N test images evenly spaced through the test set "
                   f"(default: {d.test_images})")
    p.add_argument("--calib-images", type=int, default=d.calib_images,
                   help=f"calibration images per conversion (default: {d.calib_images})")
    _add_run_options(p, d.out, seed="seed of training and of the calibration images")
    p.set_defaults(func=cmd_quickstart)
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snncal`` command."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.command != "train":
        _set_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ConversionError) as err:
        if args.verbose >= 2:
            raise
        print(f"snncal {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
