"""The ``seapeft`` command line. Each verb lives in its own module under ``commands/``.

Errors a user can fix (bad paths, bad volumes, bad weights, bad settings: ``ValueError`` and
``FileNotFoundError``, which the library's own input errors derive from) end the command with one clear
line on stderr and exit status 2; any other exception is a bug and shows its traceback. Ctrl-C exits
with 130 and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

#: verb -> module under seapeft_monailabel.commands (each has ``add_arguments(parser)`` and ``run(args)``)
COMMANDS = {
    "generate": "generate",
    "library": "library",
    "search": "search",
    "finetune": "finetune",
    "overhead": "overhead",
    "quantize": "quantize",
    "predict": "predict",
    "adapters": "adapters",
    "pretrain": "pretrain",
    "bench": "bench",
    "dicom": "dicom",
    "explain": "explain",
    "errors": "errors",
    "real-data": "real_data",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seapeft", description="SEA-PEFT few-shot adaptation of 3D segmentation models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details and show library warnings")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb, module_name in COMMANDS.items():
        module = importlib.import_module(f"seapeft_monailabel.commands.{module_name}")
        doc = (module.__doc__ or "").strip().splitlines()[0]
        command = sub.add_parser(verb, help=doc, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        warnings.filterwarnings("ignore")
        logging.getLogger("monai").setLevel(logging.ERROR)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("seapeft: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:  # the library's errors for bad input derive from these
        if args.verbose:
            raise
        print(f"seapeft {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
