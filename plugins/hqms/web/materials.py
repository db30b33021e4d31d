"""资料下载: the data pack hospitals download (《发热门诊医疗服务监测系统数据对接 用户操作说明》 §3.3), generated from the spec.

《发热门诊医疗服务监测系统数据对接 用户操作说明》 lists the pack's contents: 工作说明, 接口标准 (an ``.xlsx``), 上传文件模板 (templates). We
build each from :mod:`hqms.spec` on request, so what hospitals download is always what intake
checks: the standard's sheets list every column with its code, name, type, format, length,
whether it is required and its value set; each template is the file's header row, in GBK with
CRLF line ends like the exporters the standard was written for, named so it passes the
naming rule (``fever_模板.csv``).
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from urllib.parse import quote

from hqms import spec

STREAM_ZH = {"flu": "流感", "fever": "发热门诊", "outpatient": "门（急）诊诊疗信息页"}
STANDARD_NAME = "医疗服务监测数据上报标准接口.xlsx"
#: Values listed per column in the standard before "…" (national code tables run to thousands).
MAX_VALUES = 60


@dataclass(frozen=True)
class Material:
    slug: str
    title: str
    file_name: str
    media_type: str


def catalogue() -> list[Material]:
    """What 资料下载 offers, in page order."""
    items = [
        Material("work-instructions", "工作说明", "工作说明.html", "text/html; charset=utf-8"),
        Material("interface-standard", "接口标准", STANDARD_NAME,
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        Material("templates", "上传文件模板（全部）", "上传文件模板.zip", "application/zip"),
    ]
    items += [Material(f"template-{ds.id}", f"上传文件模板：{ds.title_zh}（{ds.prefix}*.csv）",
                       template_name(ds), "text/csv; charset=gbk")
              for ds in spec.datasets().values()]
    items.append(Material("data-pack", "数据报送文件包（以上全部）", "数据报送文件包.zip", "application/zip"))
    return items


def find(slug: str) -> Material | None:
    return next((m for m in catalogue() if m.slug == slug), None)


def template_name(ds: spec.Dataset) -> str:
    return f"{ds.prefix}模板.csv"


def template_csv(ds: spec.Dataset) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(ds.codes)
    return buf.getvalue().encode("gbk")


def _value_set(col: spec.Column) -> str:
    values = spec.allowed_values(col)
    if not values:
        return ""
    shown = [f"{k}={v}" for k, v in list(values.items())[:MAX_VALUES]]
    more = f"；…（共 {len(values)} 项，见代码表 {col.code_table}）" if len(values) > MAX_VALUES else ""
    return "；".join(shown) + more


def standard_xlsx() -> bytes:
    """The interface standard: an overview sheet, then one sheet per dataset."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    overview = wb.active
    overview.title = "说明"
    overview.append(["数据流", "文件命名", "数据集", "Dataset", "列数"])
    for ds in spec.datasets().values():
        overview.append([STREAM_ZH.get(ds.stream, ds.stream), f"{ds.prefix}*****.csv", ds.title_zh,
                         ds.title_en, len(ds.columns)])
    header = ["序号", "数据项编码", "数据项名称", "英文说明", "数据类型", "格式", "最大长度", "是否必填",
              "值域", "备注"]
    for ds in spec.datasets().values():
        sheet = wb.create_sheet(ds.prefix.rstrip("_")[:31])
        sheet.append([f"{ds.title_zh}（{ds.prefix}*****.csv）"])
        sheet.append(header)
        for n, col in enumerate(ds.columns, start=1):
            sheet.append([n, col.code, col.zh, col.en, col.type, " / ".join(col.formats),
                          col.max_length, "是" if col.required else "否", _value_set(col), col.note])
        sheet["A1"].font = Font(bold=True)
        for cell in sheet[2]:
            cell.font = Font(bold=True)
        for letter, width in zip("ABCDEFGHIJ", (6, 12, 24, 30, 10, 18, 10, 8, 50, 50)):
            sheet.column_dimensions[letter].width = width
        for row in sheet.iter_rows(min_row=3):
            for cell in row:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    for cell in overview[1]:
        cell.font = Font(bold=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def templates_zip() -> bytes:
    return _zip({template_name(ds): template_csv(ds) for ds in spec.datasets().values()})


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def build(slug: str, work_instructions: str) -> bytes:
    """The bytes of one material; ``work_instructions`` is the rendered 工作说明 page."""
    if slug == "work-instructions":
        return work_instructions.encode("utf-8")
    if slug == "interface-standard":
        return standard_xlsx()
    if slug == "templates":
        return templates_zip()
    if slug.startswith("template-"):
        return template_csv(spec.dataset(slug.removeprefix("template-")))
    if slug == "data-pack":
        return _zip({"工作说明.html": work_instructions.encode("utf-8"), STANDARD_NAME: standard_xlsx(),
                     "上传文件模板.zip": templates_zip()})
    raise KeyError(slug)


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII fallback and the UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name)}"


def streams_for_instructions() -> list[dict]:
    """Per stream: its files (prefix and title), for the 工作说明 page."""
    return [{"stream": s, "zh": STREAM_ZH[s],
             "files": [(f"{ds.prefix}*****.csv", ds.title_zh) for ds in spec.stream_datasets(s)]}
            for s in spec.STREAMS]
