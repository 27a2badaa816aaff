"""Export a training checkpoint as the shipped weights: `python -m disco_plug.export CHECKPOINT`."""

from __future__ import annotations

import argparse

from .checkpoint import export_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="training checkpoint (.safetensors)")
    parser.add_argument("--dest", default=None, help="destination (default: the bundled default weights)")
    parser.add_argument("--note", default="", help="free text stored in the metadata")
    args = parser.parse_args(argv)
    print(export_weights(args.checkpoint, args.dest, note=args.note))


if __name__ == "__main__":
    main()
