"""The `cnnc` command: check, compile, train, evaluate, predict, export."""
from __future__ import annotations

import argparse
import sys

from . import __version__

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 70


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnc", description="A compiler for convolutional networks: check a .cnn spec, compile it "
        "to C kernels, train and run it.",
        epilog="Run `cnnc COMMAND --help` for a command's options.")
    p.add_argument("--version", action="version", version=f"cnnc {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="parse and shape-check a spec; print a model summary")
    c.add_argument("spec", help="path to a .cnn file")
    c.add_argument("--format", choices=("text", "json"), default="text",
                   help="diagnostics as text for people or JSON for editors")
    c.add_argument("--desugar", action="store_true", help="print the spec in core forms (layers expanded)")
    c.add_argument("--dump", action="store_true", help="print the typed graph")
    c.add_argument("--quiet", "-q", action="store_true", help="print diagnostics only, no summary")

    from . import commands
    commands.add_subcommands(sub)
    return p


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        from . import commands
        return commands.run(args)
    except KeyboardInterrupt:
        print("cnnc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:             # `cnnc check --desugar f.cnn | head`: the reader left
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:          # anything else is a cnnc bug, never the user's spec
        from .errors import report_bug
        report_bug(exc, debug=args.debug)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
