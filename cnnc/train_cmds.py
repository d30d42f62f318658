"""`cnnc compile`, `train`, `evaluate` and `predict`: build a spec, feed it data, report."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .errors import CnncError


def add_subcommands(sub) -> None:
    c = sub.add_parser("compile", help="generate C for a spec and build it into an importable module")
    c.add_argument("spec")
    c.add_argument("-o", "--out", default="generated", help="output directory (default: generated/)")
    c.add_argument("--emit-c", action="store_true", help="write the C and header only; do not build")

    def threads(p):
        p.add_argument("--threads", type=_positive, metavar="N",
                       help="threads for the compiled kernels (default: every core, or OMP_NUM_THREADS)")

    def common(p, checkpoint_required=False):
        threads(p)
        p.add_argument("spec")
        p.add_argument("--data", help="an image folder, one subfolder per class; default: the built-in "
                       "UCI digits (for specs whose input is 8x8x1)")
        p.add_argument("--target", choices=("classes", "segments"), default="classes",
                       help="what the label input gets: the class of each image (default), or, with the "
                       "built-in digits, a class per pixel: 0 background, 1 + the digit for its ink")
        p.add_argument("--checkpoint", required=checkpoint_required,
                       help="checkpoint file (default for train: checkpoints/<model>.npz)")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--build-dir", default="generated", help="where compiled models are kept")

    t = sub.add_parser("train", help="train a spec on an image folder or the built-in digits")
    common(t)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--lr", type=float, help="learning rate (default: the spec's optimizer's)")
    t.add_argument("--validation-split", type=float, default=0.1,
                   help="fraction of the training data held out to pick the best checkpoint")
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    t.add_argument("--quiet", "-q", action="store_true", help="one line per epoch instead of a progress bar")
    t.add_argument("--workers", type=_positive, metavar="N",
                   help="train data-parallel on N processes of this host through mpiexec, the cores "
                   "split between them (needs the [mpi] extra; under mpiexec, each rank is a worker)")

    e = sub.add_parser("evaluate", help="loss and metrics of a checkpoint on held-out data")
    common(e, checkpoint_required=True)

    p = sub.add_parser("predict", help="top classes of images, with probabilities")
    p.add_argument("spec")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--build-dir", default="generated")
    threads(p)


def _positive(text: str) -> int:
    import argparse
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more; got {text!r}")
    return n


def compile_spec(spec: str, out_dir: str, emit_only: bool = False):
    from . import pipeline
    if not Path(spec).is_file():
        raise CnncError(f"no such spec file: {spec}")
    return pipeline.compile(spec, out_dir=out_dir, emit_only=emit_only)


def cmd_compile(args) -> int:
    t0 = time.perf_counter()
    result = compile_spec(args.spec, args.out, emit_only=args.emit_c)
    where = result if args.emit_c else Path(result.__file__).parent   # the package directory
    print(f"{'wrote C for' if args.emit_c else 'built'} {args.spec} -> {where} "
          f"in {time.perf_counter() - t0:.2f} s")
    return 0


# ---------------------------------------------------------------- data

def _feature_and_label(model):
    if not model.feature_inputs:
        raise CnncError(f"model `{model.name}` has no input that its outputs depend on")
    if not model.label_inputs:
        raise CnncError(f"model `{model.name}` has no label input: declare one (e.g. `input y: i32[N]`) "
                        "and use it in the loss")
    return model.feature_inputs[0], model.label_inputs[0]


def _digits(model, seed):
    """The built-in digits, shaped for the spec's feature input: [N, 8, 8, 1] or [N, 64]."""
    from .runtime.data import DIGITS_CLASSES, load_digits
    feat, _ = _feature_and_label(model)
    dtype, shape = model.inputs[feat]
    per = math.prod(d for d in shape[1:])
    if dtype != "f32" or per != 64:
        shown = f"{dtype}[N, {', '.join(map(str, shape[1:]))}]"
        raise CnncError(f"the built-in digits are 8x8 grey images (64 values each), but input `{feat}` is "
                        f"{shown}; pass --data DIR with an image folder (one subfolder per class)")
    x_tr, y_tr, x_te, y_te = load_digits(seed=seed)
    reshape = lambda a: a.reshape((len(a),) + tuple(shape[1:]))  # noqa: E731
    return reshape(x_tr), y_tr, reshape(x_te), y_te, list(DIGITS_CLASSES), "built-in UCI digits"


def _folder(model, root, seed):
    from .runtime.data import ImageFolder
    feat, _ = _feature_and_label(model)
    dtype, shape = model.inputs[feat]
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise CnncError(f"input `{feat}` must be an image batch [N, height, width, 1 or 3] to read an "
                        f"image folder; it is {dtype}{list(shape)}")
    folder = ImageFolder(root, size=(shape[1], shape[2]), channels=shape[3])
    x, y, names = folder.load()
    return x, y, names


def _segments(model, data):
    """The digits with a per-pixel target (runtime.data.digit_segments) for the label input."""
    from .runtime.data import DIGITS_CLASSES, digit_segments
    x_tr, y_tr, x_te, y_te, _, what = data
    _, label = _feature_and_label(model)
    dtype, shape = model.inputs[label]
    if dtype != "i32" or tuple(shape[1:]) != (8, 8):
        raise CnncError(f"--target segments gives each 8x8 digit a class id per pixel, so label input `{label}` "
                        f"must be i32[N, 8, 8]; it is {dtype}[N, {', '.join(map(str, shape[1:]))}]")
    names = ["background"] + [f"ink of {c}" for c in DIGITS_CLASSES]
    return (x_tr, digit_segments(x_tr, y_tr), x_te, digit_segments(x_te, y_te), names,
            what + ", a class per pixel (0 background, 1 + the digit for ink)")


def _dataset(model, args):
    if getattr(args, "target", "classes") == "segments":
        if args.data:
            raise CnncError("--target segments is derived from the built-in digits; drop --data")
        return _segments(model, _digits(model, args.seed))
    if args.data:
        x, y, names = _folder(model, args.data, args.seed)
        from .runtime.data import split
        x_tr, y_tr, x_te, y_te = split(x, y, 0.2, seed=args.seed)
        return x_tr, y_tr, x_te, y_te, names, f"image folder {args.data}"
    return _digits(model, args.seed)


# ---------------------------------------------------------------- commands

def _model(args, seed=None):
    module = compile_spec(args.spec, args.build_dir)
    model = module.Model(seed=args.seed if seed is None else seed)
    if args.threads:
        model.threads = args.threads
    return model


def _default_checkpoint(model) -> str:
    return os.path.join("checkpoints", f"{model.name}.npz")


def cmd_train(args) -> int:
    from .runtime import distributed
    if distributed.under_mpi():
        return _as_rank(args, _train)
    if args.workers and args.workers > 1:
        from . import workers
        return workers.launch(args)
    return _train(args, None)


def _train(args, group) -> int:
    from .runtime import plot_history
    from .runtime.train import evaluate, fit
    root = group is None or group.is_root
    say = print if root else (lambda *a, **k: None)
    t0 = time.perf_counter()

    def setup():
        model = _model(args)
        if args.lr is not None:
            model.lr = args.lr
        return (model, time.perf_counter() - t0) + _dataset(model, args)
    model, built, x_tr, y_tr, x_te, y_te, names, what = _together(group, setup)
    ckpt = args.checkpoint or _default_checkpoint(model)
    if root:
        os.makedirs(os.path.dirname(os.path.abspath(ckpt)), exist_ok=True)
    ranks = f" on {group.size} workers x {model.threads} threads" if group is not None else ""
    say(f"training {args.spec} on {what}: {len(x_tr)} examples ({len(x_te)} held out for testing), "
        f"batch {args.batch_size}, {args.epochs} epochs{ranks}; compiled in {built:.1f} s", file=sys.stderr)
    t1 = time.perf_counter()
    history = fit(model, x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size,
                  validation_split=args.validation_split, seed=args.seed, checkpoint=ckpt,
                  resume=args.resume, verbose=2 if args.quiet else 1, meta={"classes": names},
                  distributed=group if group is not None else False)
    seconds = time.perf_counter() - t1
    result = evaluate(model, x_te, y_te, batch_size=256, distributed=group if group is not None else False)
    png = plot_history(history, os.path.splitext(ckpt)[0] + ".png") if root else None
    shown = ", ".join(f"{k} {_fmt(k, v)}" for k, v in result.items())
    say(f"held-out test ({len(x_te)} examples): {shown}")
    say(f"trained in {seconds:.1f} s; checkpoint {ckpt}" + (f"; curves {png}" if png else ""))
    return 0


class _OtherRankFailed(Exception):
    """Another rank's setup failed and that rank reports why; this one stops quietly."""


class _SetupFailed(Exception):
    """This rank's setup failed and every rank knows: report `error` as one process would."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _together(group, fn):
    """fn() on every rank; if it raised anywhere, every rank stops: the error is reported by
    rank 0 if it had it, else by each rank that had it; the others exit quietly."""
    if group is None:
        return fn()
    try:
        result, error = fn(), None
    except Exception as e:              # checked below, with the other ranks
        result, error = None, e
    failed_here = error is not None
    if group.any(failed_here):
        root_failed = group.broadcast(failed_here)
        if failed_here and (group.is_root or not root_failed):
            raise _SetupFailed(error)
        raise _OtherRankFailed()
    return result


def _as_rank(args, fn) -> int:
    """Run a command as one rank of the MPI job that started this process."""
    from .runtime import distributed
    from .runtime.train import on_every_rank
    group = distributed.world()
    if getattr(args, "workers", None) not in (None, group.size):
        if not group.is_root:
            return 1
        raise CnncError(f"--workers {args.workers} under mpiexec, which started {group.size} ranks: "
                        "mpiexec -n sets the number of workers; drop --workers")
    if group.size > 1 and not args.threads:        # ranks on one host share its cores
        args.threads = max(1, _cores() // _ranks_on_this_host(group))
    try:
        return fn(args, group)
    except _OtherRankFailed:
        return 1
    except _SetupFailed as e:           # every rank stops; this one says why
        raise e.error from None
    except BaseException as e:
        if not on_every_rank(e):        # this rank's alone: the others must not wait for it
            group.fail(e)
        if group.is_root:               # every rank has it: rank 0 reports, the others stop quietly
            raise
        return 1


def _cores() -> int:
    from .runtime.model import available_cores
    return available_cores()


def _ranks_on_this_host(group) -> int:
    from mpi4py import MPI
    return group.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()


def cmd_evaluate(args) -> int:
    from .runtime import distributed
    if distributed.under_mpi():                 # each rank evaluates its shard
        return _as_rank(args, _evaluate)
    return _evaluate(args, None)


def _evaluate(args, group) -> int:
    from .runtime.checkpoint import load
    from .runtime.train import evaluate

    def setup():
        model = _model(args)
        load(args.checkpoint, model)
        return (model,) + _dataset(model, args)
    model, _, _, x_te, y_te, _, what = _together(group, setup)
    result = evaluate(model, x_te, y_te, batch_size=256, distributed=group if group is not None else False)
    if group is None or group.is_root:
        print(f"{what}, {len(x_te)} held-out examples: " + ", ".join(f"{k} {_fmt(k, v)}" for k, v in result.items()))
    return 0


def cmd_predict(args) -> int:
    from .runtime.checkpoint import load
    from .runtime.data import load_image
    model = _model(args, seed=0)
    extra = load(args.checkpoint, model)
    names = (extra.get("meta") or {}).get("classes")
    feat, _ = _feature_and_label(model)
    dtype, shape = model.inputs[feat]
    if len(shape) != 4:
        raise CnncError(f"input `{feat}` is not an image batch [N, height, width, channels]")
    images = []
    for path in args.images:
        try:
            images.append(load_image(path, (shape[1], shape[2]), shape[3]))
        except Exception as e:
            raise CnncError(f"cannot read image {path}: {e}") from None
    outputs = model.forward(**{feat: np.stack(images)})
    name, logits = next(iter(outputs.items()))
    probs = _softmax(logits) if not _is_distribution(logits) else logits
    for path, row in zip(args.images, probs):
        order = np.argsort(-row, kind="stable")[: args.top]
        ranked = ", ".join(f"{names[i] if names else i} {row[i]:.1%}" for i in order)
        print(f"{path}: {ranked}")
    return 0


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _is_distribution(a) -> bool:
    return bool(np.all(a >= 0) and np.allclose(a.sum(axis=-1), 1.0, atol=1e-4))


def _fmt(key, value) -> str:
    return f"{value:.2%}" if "acc" in key else f"{value:.4f}"


HANDLERS = {"compile": cmd_compile, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}
