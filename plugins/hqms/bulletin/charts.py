"""The bulletin's charts: Vega-Lite specs built with altair, rendered to PNG by vl-convert.

PNG, not SVG: the page must look the same wherever it is opened, and SVG text would depend on
the reader having a CJK font. vl-convert renders without a browser; it finds the Noto CJK fonts
(Debian fonts-noto-cjk) once their folder is registered, else every 汉字 would be a box.
"""
from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

import altair as alt

FONT = "Noto Sans CJK SC"
FONT_DIRS = (Path("/usr/share/fonts/opentype/noto"), Path("/usr/share/fonts/truetype/noto"))
WIDTH, HEIGHT = 560, 220
SEASON_COLOURS = ["#bdbdbd", "#8c8c8c", "#d62728"]  # earlier seasons grey, the current one red


@cache
def _vl_convert():  # imported lazily: `hqms --help` stays fast
    import vl_convert

    for folder in FONT_DIRS:
        if folder.is_dir():
            vl_convert.register_font_directory(str(folder))
    return vl_convert


def png_data_uri(chart: alt.TopLevelMixin) -> str:
    spec = chart.configure(font=FONT).configure_view(stroke=None).to_dict()
    png = _vl_convert().vegalite_to_png(spec, scale=2)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def epidemic_curves(rows: list[dict]) -> alt.TopLevelMixin:
    """Weekly cases by season (x: week of the season, week 14 = 1), one panel per area."""
    data = alt.Data(values=rows)
    seasons = sorted({r["season"] for r in rows})
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("season_week:Q", title="监测周次（第14周=1）", scale=alt.Scale(domain=[1, 53])),
        y=alt.Y("cases:Q", title="流感病例数"),
        color=alt.Color("season:N", title="监测年度",
                        scale=alt.Scale(domain=seasons, range=SEASON_COLOURS[-len(seasons):])),
        tooltip=["season:N", "iso_week:Q", "cases:Q"],
    ).properties(width=WIDTH // 3, height=HEIGHT).facet(
        column=alt.Column("region_name:N", title=None, sort=["全国", "南方", "北方", "未知"]))


def positivity(rows: list[dict]) -> alt.TopLevelMixin:
    long = [{"week": r["week"], "type": label, "rate": r[key]}
            for r in rows for key, label in (("positivity_a", "甲型"), ("positivity_b", "乙型"))
            if r[key] is not None]
    return alt.Chart(alt.Data(values=long)).mark_line(point=True).encode(
        x=alt.X("week:O", title="周"), y=alt.Y("rate:Q", title="阳性率", axis=alt.Axis(format="%")),
        color=alt.Color("type:N", title="型别"),
    ).properties(width=WIDTH, height=HEIGHT, title="发热门诊流感病毒检测阳性率（按型别）")


def ages(rows: list[dict]) -> alt.TopLevelMixin:
    return alt.Chart(alt.Data(values=[r for r in rows if r["cases"] is not None])).mark_bar().encode(
        x=alt.X("band:N", title="年龄组", sort=[r["band"] for r in rows]),
        y=alt.Y("cases:Q", title="病例数"),
    ).properties(width=WIDTH, height=HEIGHT, title="本周流感病例年龄分布")


def severe(rows: list[dict]) -> alt.TopLevelMixin:
    long = [{"week": r["week"], "kind": label, "n": r[key]}
            for r in rows for key, label in (("severe_cases", "重症"), ("deaths", "死亡")) if r[key] is not None]
    return alt.Chart(alt.Data(values=long)).mark_bar().encode(
        x=alt.X("week:O", title="周"), y=alt.Y("n:Q", title="病例数"),
        color=alt.Color("kind:N", title=None), xOffset="kind:N",
    ).properties(width=WIDTH, height=HEIGHT, title="重症与死亡病例（本监测年度）")


def fever_load(rows: list[dict]) -> alt.TopLevelMixin:
    return alt.Chart(alt.Data(values=[r for r in rows if r["visits"] is not None])).mark_line(point=True).encode(
        x=alt.X("day:O", title="日期"),
        y=alt.Y("visits:Q", title="就诊人次"),
        color=alt.Color("region_name:N", title="省份"),
    ).properties(width=WIDTH, height=HEIGHT, title="本周发热门诊就诊人次（按省）")


def reporting_heatmap(rows: list[dict]) -> alt.TopLevelMixin:
    statuses = ["按时", "迟报", "未报", "未到期"]
    return alt.Chart(alt.Data(values=rows)).mark_rect(stroke="white").encode(
        x=alt.X("day:O", title="报告日期"),
        y=alt.Y("org_name:N", title=None),
        color=alt.Color("status:N", title="上报情况", scale=alt.Scale(
            domain=statuses, range=["#2ca02c", "#ff7f0e", "#d62728", "#dddddd"])),
        tooltip=["org_code:N", "day:O", "status:N"],
    ).properties(width=WIDTH // 2, height=alt.Step(14)).facet(
        column=alt.Column("stream:N", title=None))
