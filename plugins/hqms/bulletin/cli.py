"""``hqms bulletin --week 2025-W03 [--admin] [--out DIR] [--no-pdf] [--no-upload]``."""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bulletin", help="weekly influenza bulletin (流感监测周报): HTML + PDF from the published marts")
    p.add_argument("--week", help="epidemiological week YYYY-Www (default: the last closed week)")
    p.add_argument("--admin", action="store_true",
                   help="administrators' variant: adds the reporting heat map (hospital × day)")
    p.add_argument("--out", type=Path, help="folder for the files (default: $HQMS_MARTS_DIR/bulletin/<week>)")
    p.add_argument("--no-pdf", action="store_true", help="HTML only (no Chromium needed)")
    p.add_argument("--no-upload", action="store_true", help="write local files only, skip the marts bucket")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hqms import config
    from hqms.bulletin import render, weeks

    today = datetime.now(config.CHINA_TZ).date()
    week = weeks.parse_week(args.week) if args.week else weeks.last_closed_week(today)
    files = render.build(week, admin=args.admin, out_dir=args.out, pdf=not args.no_pdf, upload=not args.no_upload)
    print(f"bulletin {files.week} ({files.variant}): {files.html}" + (f", {files.pdf}" if files.pdf else ""))
    for key in files.object_keys:
        print(f"  → marts bucket: {key}")
    return 0
