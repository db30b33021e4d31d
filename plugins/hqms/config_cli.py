"""``hqms config``: print the effective configuration (secrets masked)."""
from __future__ import annotations

import argparse
import json

from hqms import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = config.load().as_dict(mask_secrets=True)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print_tree(data)
    return 0


def _print_tree(data: dict, indent: int = 0) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {value}")
