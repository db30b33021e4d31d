"""``hqms generate``: synthetic hospitals and their uploads (see :mod:`hqms.generate`)."""
from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import hqms.generate
from hqms import config, spec
from hqms.errors import UserError
from hqms.generate.writer import ENCODINGS


#: Record numbers and login names carry a 3-digit hospital number.
MAX_HOSPITALS = 999


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _streams(text: str) -> tuple[str, ...]:
    streams = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in streams if s not in spec.STREAMS]
    if unknown or not streams:
        raise argparse.ArgumentTypeError(f"streams must be some of {','.join(spec.STREAMS)}")
    return streams


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write synthetic hospitals and their zipped uploads",
                       description=(hqms.generate.__doc__ or "").split("\n\n")[0])
    p.add_argument("--hospitals", type=int, required=True, help="number of hospitals")
    p.add_argument("--start", type=_date, required=True, help="first upload day (YYYY-MM-DD)")
    p.add_argument("--days", type=int, required=True, help="number of upload days")
    p.add_argument("--seed", type=int, required=True, help="same seed and arguments → same bytes")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--errors", type=float, default=0.0,
                   help="probability that a data row carries exactly one defect (default 0)")
    p.add_argument("--encoding", choices=ENCODINGS, default="gbk", help="CSV encoding (default gbk)")
    p.add_argument("--streams", type=_streams, default=spec.STREAMS,
                   help="comma-separated streams (default flu,fever,outpatient)")
    p.add_argument("--scale", type=float, default=1.0, help="visit-volume multiplier (default 1)")
    p.add_argument("--lookback", type=int, default=7, help="flu re-send window in days (default 7)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hqms.generate.run import Options, generate

    if not 1 <= args.hospitals <= MAX_HOSPITALS or args.days < 1 or args.lookback < 1 or args.scale <= 0:
        raise UserError(f"--hospitals must be 1…{MAX_HOSPITALS}, --days and --lookback at least 1 "
                        "and --scale positive")
    if not 0.0 <= args.errors <= 1.0:
        raise UserError("--errors is a probability between 0 and 1")
    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out} is not empty; choose a new folder so runs never mix")
    opts = Options(out=args.out, hospitals=args.hospitals, start=args.start, days=args.days,
                   seed=args.seed, errors=args.errors, encoding=args.encoding, streams=args.streams,
                   scale=args.scale, lookback=args.lookback,
                   max_zip_bytes=config.load().max_zip_bytes, progress=not args.quiet)
    summary = generate(opts)
    print(json.dumps(summary["totals"], ensure_ascii=False))
    return 0
