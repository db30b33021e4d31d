"""Build the weekly bulletin: figures → charts → one self-contained HTML page → PDF → marts bucket.

The HTML inlines its charts (PNG data URIs) and styles, so the one file can be mailed or opened
offline. The PDF is the same page printed by headless Chromium (Playwright, Debian's
/usr/bin/chromium): what readers see on screen is what they print. The figures also travel in
the page as JSON (``<script id="figures">``) for machines and for the test that checks them
against the marts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import jinja2

from hqms import config as hqms_config
from hqms import warehouse_attach
from hqms.bulletin import charts
from hqms.bulletin.figures import Figures, collect
from hqms.bulletin.weeks import EpiWeek, last_closed_week
from hqms.marts.publish import ADMIN_SNAPSHOT_NAME, SNAPSHOT_NAME

TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""\
<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>流感监测周报 {{ f.week }}{% if f.variant == 'admin' %}（管理版）{% endif %}</title>
<style>
 body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", sans-serif; margin: 24px auto;
        max-width: 760px; color: #222; line-height: 1.5; }
 h1 { font-size: 22px; margin-bottom: 0; } h2 { font-size: 17px; border-bottom: 1px solid #ccc; margin-top: 28px; }
 .sub { color: #666; margin-top: 4px; } table { border-collapse: collapse; width: 100%; }
 td, th { border-bottom: 1px solid #eee; padding: 4px 6px; text-align: right; } td:first-child, th:first-child { text-align: left; }
 .up { color: #c62828; } .down { color: #2e7d32; } img { max-width: 100%; } .note { color: #666; font-size: 12px; }
 section { page-break-inside: avoid; }
</style></head><body>
<h1>流感监测周报{% if f.variant == 'admin' %}（管理版）{% endif %}</h1>
<p class="sub">{{ f.week[:4] }}年第{{ f.week[6:]|int }}周（{{ f.week_start }} 至 {{ f.week_end }}）· 监测年度 {{ f.season }}</p>

<section><h2>一、本周概况</h2>
<table id="headlines"><tr><th>指标（全国）</th><th>本周</th><th>上周</th><th>较上周</th></tr>
{% for h in f.headlines %}<tr data-key="{{ h.key }}"><td>{{ h.label }}</td>
<td class="value">{{ fmt(h.value, h.kind, h.reported) }}</td><td>{{ fmt(h.previous, h.kind, h.previous_reported) }}</td>
<td class="{{ 'up' if (h.change or 0) > 0 else 'down' if (h.change or 0) < 0 else '' }}">{{ change(h) }}</td></tr>
{% endfor %}
{% for stream, r in f.reporting.items() %}<tr data-key="reporting_rate_{{ stream }}"><td>{{ streams[stream] }}上报率 / 及时率</td>
<td class="value">{{ fmt(r.reporting_rate, 'rate') }} / {{ fmt(r.on_time_rate, 'rate') }}</td><td colspan="2">{{ r.periods_received }}/{{ r.periods_due }} 医院·日</td></tr>
{% endfor %}</table>
<p class="note">* 小于5的计数，及为防止由合计反推而一并隐藏的数值；— 该周无上报数据。率的变化以百分点计。</p></section>

{% for title, img in images %}<section><h2>{{ title }}</h2>
{% if img %}<img alt="{{ title }}" src="{{ img }}">{% else %}<p>本周无数据。</p>{% endif %}</section>
{% endfor %}
<p class="note">数据来源：HQMS 医院质量监测系统流感与发热门诊监测上报数据（已发布汇总表 agg_flu、agg_fever、agg_reporting）。
流感监测年度为当年第14周至次年第13周；周为 ISO 8601 周（周一至周日）。</p>
<script type="application/json" id="figures">{{ figures_json }}</script>
</body></html>
""")
STREAMS = {"flu": "流感监测", "fever": "发热门诊", "outpatient": "门诊诊疗信息页"}


@dataclass(frozen=True)
class BulletinFiles:
    week: str
    variant: str
    html: Path
    pdf: Path | None
    object_keys: tuple[str, ...] = ()


def _fmt(value: float | int | None, kind: str, reported: bool = True) -> str:
    if not reported:
        return "—"
    if value is None:
        return "*"
    return f"{100 * value:.1f}%" if kind == "rate" else f"{value:,}"


def _change(h) -> str:
    if h.change is None:
        return "—"
    return f"{h.change:+.1f}个百分点" if h.kind == "rate" else f"{h.change:+.1f}%"


def _chart(build, rows: list[dict]) -> str | None:
    return charts.png_data_uri(build(rows)) if rows else None


def html(figures: Figures) -> str:
    images = [
        ("二、流感病例流行曲线（按南北方与监测年度）", _chart(charts.epidemic_curves, figures.curves)),
        ("三、流感病毒检测阳性率（按型别）", _chart(charts.positivity, figures.positivity)),
        ("四、流感病例年龄分布", _chart(charts.ages, [a for a in figures.ages if a["cases"] is not None])),
        ("五、重症与死亡病例", _chart(charts.severe, figures.severe)),
        ("六、发热门诊就诊负荷", _chart(charts.fever_load, figures.fever_load)),
    ]
    if figures.variant == "admin":
        images.append(("七、医院上报及时性（医院 × 日）", _chart(charts.reporting_heatmap, figures.heatmap)))
    data = json.dumps(figures.as_dict(), ensure_ascii=False).replace("</", "<\\/")
    return TEMPLATE.render(f=figures, images=images, fmt=_fmt, change=_change, streams=STREAMS,
                           figures_json=jinja2.utils.markupsafe.Markup(data))


def print_pdf(html_path: Path, pdf_path: Path, chromium: Path) -> None:
    """The page printed to A4 by headless Chromium (``HQMS_CHROMIUM``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium))
        try:
            page = browser.new_page()
            page.goto(html_path.resolve().as_uri())
            page.pdf(path=str(pdf_path), format="A4", print_background=True,
                     margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
        finally:
            browser.close()


def build(week: EpiWeek, cfg: hqms_config.Config | None = None, *, admin: bool = False,
          out_dir: Path | None = None, pdf: bool = True, upload: bool = True) -> BulletinFiles:
    """Write ``bulletin[-admin].html`` (+ ``.pdf``) for ``week`` and, unless told not to, put them in
    the marts bucket: ``bulletin/<week>/`` for everyone, ``admin/bulletin/<week>/`` for the
    administrators' variant (hospital-level: the bucket policy keeps ``admin/`` from analysts)."""
    cfg = cfg or hqms_config.load()
    figures = collect(cfg.marts_dir / SNAPSHOT_NAME, week,
                      admin_snapshot=cfg.marts_dir / ADMIN_SNAPSHOT_NAME if admin else None)
    folder = out_dir or cfg.marts_dir / "bulletin" / week.label
    folder.mkdir(parents=True, exist_ok=True)
    name = "bulletin-admin" if admin else "bulletin"
    html_path = folder / f"{name}.html"
    html_path.write_text(html(figures), encoding="utf-8")
    pdf_path = folder / f"{name}.pdf" if pdf else None
    if pdf_path:
        print_pdf(html_path, pdf_path, cfg.chromium_path)
    keys: list[str] = []
    if upload:
        from hqms.objectstore import ObjectStore

        store = ObjectStore.from_config(cfg)
        store.ensure_buckets()
        prefix = f"{'admin/' if admin else ''}bulletin/{week.label}"
        for path in (html_path, pdf_path):
            if path:
                key = f"{prefix}/{path.name}"
                store.put_file(cfg.buckets["marts"], key, path, metadata={"week": week.label})
                keys.append(key)
    return BulletinFiles(week.label, figures.variant, html_path, pdf_path, tuple(keys))


def has_data(cfg: hqms_config.Config, week: EpiWeek) -> bool:
    """Whether the published flu or fever aggregates hold the week at all."""
    import duckdb

    snapshot = cfg.marts_dir / SNAPSHOT_NAME
    if not snapshot.exists():
        return False
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        return bool(con.execute(
            "SELECT count(*) FROM (SELECT period_label FROM marts.agg_flu UNION ALL SELECT period_label "
            "FROM marts.agg_fever) WHERE period_label = ?", [week.label]).fetchone()[0])
    finally:
        con.close()


def build_due(cfg: hqms_config.Config | None = None, today: date | None = None) -> list[BulletinFiles]:
    """What the daily marts DAG runs: the bulletins (public and administrators') of the newest
    week whose every daily report is due — a week closes on Sunday and its Sunday's packages are
    due by the end of Monday, so a week's bulletin appears on Tuesday's run — unless the marts
    bucket has them already or nothing was reported that week. Later corrections: on demand."""
    from hqms.objectstore import ObjectStore

    cfg = cfg or hqms_config.load()
    today = today or datetime.now(hqms_config.CHINA_TZ).date()
    week = last_closed_week(today - timedelta(days=1))
    store = ObjectStore.from_config(cfg)
    if store.stat(cfg.buckets["marts"], f"bulletin/{week.label}/bulletin.html") is not None or not has_data(cfg, week):
        return []
    public = build(week, cfg)
    with warehouse_attach.read_lock(cfg, "weekly bulletin"):  # the administrators' one reads the warehouse
        return [public, build(week, cfg, admin=True)]
