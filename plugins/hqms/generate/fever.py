"""The fever-clinic stream of one hospital: fever_ visits and their drug_, lab_ and examine_ rows.

Every visit has a 门诊就诊流水号 (P7000) that links it to its prescription lines, lab results and
imaging reports. Most patients get a blood count and CRP; in flu season most are tested for
influenza A/B antigen (the flu tests the surveillance looks for) and some for SARS-CoV-2; a
quarter get a chest image. A positive flu test drives the diagnosis (J10.x) and an oseltamivir
prescription. Each day's files carry only that day's visits.
"""
from __future__ import annotations

import numpy as np

from hqms import spec
from hqms.generate import epidemic
from hqms.generate.common import (RESPIRATORY, cents, choose_rows, fmt, person_pcodes, serials,
                                  take, yuan)
from hqms.generate.people import make_people
from hqms.generate.records import Records, sort_records
from hqms.generate.registry import Hospital
from hqms.generate.values import Context, fill, pick

MIN = np.timedelta64(60, "s")
DAY_S = np.timedelta64(86400, "s")

#: (code, name, class, form code, form name, spec, frequency, per dose, unit, times/day, days,
#:  western 1 / patent TCM 2, essential drug)
DRUGS = (
    ("XY0001", "布洛芬缓释胶囊", "解热镇痛药", "02", "胶囊剂", "0.3g*20粒", "bid", 0.3, "g", 2, 3, "1", "1"),
    ("XY0002", "对乙酰氨基酚片", "解热镇痛药", "01", "片剂", "0.5g*12片", "tid", 0.5, "g", 3, 3, "1", "1"),
    ("XY0003", "磷酸奥司他韦胶囊", "抗病毒药", "02", "胶囊剂", "75mg*10粒", "bid", 75.0, "mg", 2, 5, "1", "1"),
    ("XY0004", "阿莫西林胶囊", "抗菌药", "02", "胶囊剂", "0.25g*24粒", "tid", 0.5, "g", 3, 5, "1", "1"),
    ("XY0005", "盐酸氨溴索口服溶液", "祛痰药", "03", "口服溶液剂", "100ml:0.6g", "tid", 10.0, "ml", 3, 5, "1", "2"),
    ("XY0006", "头孢克肟分散片", "抗菌药", "01", "片剂", "0.1g*6片", "bid", 0.1, "g", 2, 5, "1", "2"),
    ("ZC0001", "连花清瘟胶囊", "中成药", "02", "胶囊剂", "0.35g*24粒", "tid", 1.4, "g", 3, 5, "2", "1"),
    ("ZC0002", "蓝芩口服液", "中成药", "03", "口服溶液剂", "10ml*6支", "tid", 10.0, "ml", 3, 3, "2", "2"),
)
_OSELTAMIVIR, _ANTIBIOTICS = 2, (3, 5)

#: Lab panels: (report code, report name, specimen, [(item code, item name, unit, ref, lo, hi)]).
#: Qualitative items have unit None.
BLOOD = ("XCG", "血常规", "静脉血", (
    ("WBC", "白细胞计数", "10^9/L", "3.5-9.5", 3.5, 9.5),
    ("NEUT%", "中性粒细胞百分比", "%", "40-75", 40.0, 75.0),
    ("LYMPH%", "淋巴细胞百分比", "%", "20-50", 20.0, 50.0),
    ("HGB", "血红蛋白", "g/L", "115-175", 115.0, 175.0),
    ("PLT", "血小板计数", "10^9/L", "125-350", 125.0, 350.0),
))
CRP = ("CRP", "C反应蛋白", "静脉血", (("CRP", "C反应蛋白", "mg/L", "0-10", 0.0, 10.0),))
FLU_AG = ("LGKY", "流感病毒抗原检测", "鼻咽拭子", (
    ("FLUA", "甲型流感病毒抗原", None, "阴性", 0, 0),
    ("FLUB", "乙型流感病毒抗原", None, "阴性", 0, 0),
))
COV_AG = ("XGKY", "新型冠状病毒抗原检测", "鼻咽拭子", (("SARS2", "新型冠状病毒抗原", None, "阴性", 0, 0),))

#: Abnormal flags as the exporter maps them (interface-fields §4.3): 1 normal, 22 high, 21 low,
#: 2 abnormal / positive. The meaning of 21/22 is our reading.
FLAG_NORMAL, FLAG_HIGH, FLAG_LOW, FLAG_POSITIVE = "1", "22", "21", "2"

_SYMPTOMS = (("01", "发热"), ("02", "咳嗽"), ("03", "咽痛"), ("04", "肌肉酸痛"), ("05", "乏力"))


def _visits(h: Hospital, first: np.datetime64, last: np.datetime64, rng: np.random.Generator,
            scale: float):
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    season = epidemic.flu_season(days, h.province_code)
    mean = epidemic.BASE_FEVER * h.size * scale * (0.45 + 0.55 * season) * epidemic.weekday_factor(days)
    counts = rng.poisson(mean)
    day = np.repeat(days, counts)
    n = len(day)
    time = day.astype("datetime64[s]") + rng.integers(0, 86400, size=n).astype("timedelta64[s]")
    order = np.argsort(time, kind="stable")
    day, time = day[order], time[order]
    flu_pos = rng.random(n) < 0.55 * np.repeat(season, counts)[order]
    flu_b = rng.random(n) < epidemic.influenza_b_share(day)
    return day, time, flu_pos, flu_b


def _dx(rng: np.random.Generator, flu_pos: np.ndarray, pneumonia: np.ndarray):
    n = len(flu_pos)
    resp = choose_rows(rng, (0.6, 0.0, 0.25, 0.1, 0.05, 0.0), n)
    code = [RESPIRATORY[r][0] for r in resp.tolist()]
    name = [RESPIRATORY[r][1] for r in resp.tolist()]
    for i in np.flatnonzero(pneumonia).tolist():
        code[i], name[i] = "J18.900", "肺炎"
    for i in np.flatnonzero(flu_pos).tolist():
        code[i], name[i] = ("J10.000", "流行性感冒伴有肺炎，其他流感病毒被标明") if pneumonia[i] \
            else ("J10.100", "流行性感冒伴有其他呼吸道表现，其他流感病毒被标明")
    return code, name


def simulate(h: Hospital, first: np.datetime64, last: np.datetime64, seed: int,
             scale: float) -> dict[str, Records]:
    """Fever-clinic records of hospital ``h`` for visit days first…last, by dataset id."""
    rng = np.random.default_rng([seed, 2, h.index])
    day, time, flu_pos, flu_b = _visits(h, first, last, rng, scale)
    n = len(time)
    ds = {d.id: d for d in spec.stream_datasets("fever")}
    fever = ds["fever"]
    p = make_people(rng, h, day, epidemic.AGE_MIX_FEVER)
    serial = serials("FR", h.index * 10_000_000, n, 10)
    card = serials("MZ", h.index * 10_000_000 + 5_000_000, n, 10)
    pneumonia = rng.random(n) < 0.08
    imaged = pneumonia | (rng.random(n) < 0.2)
    tested_flu = flu_pos | (rng.random(n) < 0.75)
    tested_cov = rng.random(n) < 0.3
    dx_code, dx_name = _dx(rng, flu_pos, pneumonia)
    temp = np.round(rng.uniform(37.3, 40.2, size=n), 1)
    onset = time - rng.integers(2, 96, size=n) * np.timedelta64(3600, "s")
    onset_days = ((time - onset) / DAY_S).astype(int) + 1
    prescriptions = _prescriptions(rng, flu_pos, pneumonia, p.age)
    drug_cost = np.array([sum(c for _, c in items) for items in prescriptions], dtype=np.int64)
    exam_cost = np.where(imaged, cents(rng, n, 80, 400), 0) + cents(rng, n, 40, 180)
    reg = cents(rng, n, 10, 30)
    total = reg + drug_cost + exam_cost
    payment = pick(rng, fever.column("P1"), n, {"1": 0.3, "2": 0.25, "3": 0.1, "7": 0.35})
    self_pay = np.where(np.asarray(payment) == "7", total,
                        np.floor(total * rng.uniform(0.2, 0.7, size=n)).astype(np.int64))
    symptom = rng.integers(len(_SYMPTOMS), size=n).tolist()
    bound = person_pcodes(rng, fever, p, h.province_code)
    bound.update({
        "P900": [h.org_code] * n, "P6891": [h.name] * n, "P686": [""] * n,
        "P800": np.where(rng.random(n) < 0.7, "-", "").tolist(), "P7501": ["01"] * n,
        "P7502": card, "P7000": serial, "P7505": [str(k) for k in rng.integers(1, 3, size=n).tolist()],
        "P7520": np.where(rng.random(n) < 0.85, "1", "2").tolist(), "P7521": ["2"] * n,
        "P7504": ["1602"] * n, "P7522": ["发热门诊"] * n, "P7506": fmt(fever, "P7506", time),
        "P7507": [f"发热{d}天" for d in onset_days.tolist()],
        "P7523": [f"患者{d}天前出现发热，最高体温{t}℃，伴咳嗽、咽痛。" for d, t in
                  zip(onset_days.tolist(), temp.tolist())],
        "P7524": [f"T:{t}℃ P:{pr}次/分 R:20次/分，咽部充血，双肺呼吸音粗。" for t, pr in
                  zip(temp.tolist(), rng.integers(78, 118, size=n).tolist())],
        "P7525": [_SYMPTOMS[s][0] for s in symptom], "P7526": [_SYMPTOMS[s][1] for s in symptom],
        "P7527": [f"体温{t}℃" for t in temp.tolist()], "P7528": fmt(fever, "P7528", onset),
        "P7529": np.where(pneumonia & (rng.random(n) < 0.4), "1", "2").tolist(),
        "P28": dx_code, "P281": dx_name, "P7530": np.where(flu_pos, "1", "2").tolist(), "P1": payment,
        "P7508": yuan(total), "P7509": yuan(reg), "P7510": yuan(drug_cost), "P7511": yuan(exam_cost),
        "P7512": yuan(self_pay),
    })
    out = {"fever": _records(fever, fill(fever, n, rng, bound, Context(h, time, p)), time)}
    link = {"P7502": card, "P7506": fmt(fever, "P7506", time), "P7000": serial, "P4": p.name}
    if "drug" in ds:
        out["drug"] = _drug(ds["drug"], h, rng, time, link, prescriptions)
    if "lab" in ds:
        out["lab"] = _lab(ds["lab"], h, rng, time, link, tested_flu, tested_cov, flu_pos, flu_b,
                          pneumonia, p.sex)
    if "examine" in ds:
        out["examine"] = _examine(ds["examine"], h, rng, time, link, imaged, pneumonia)
    return {k: sort_records(v) for k, v in out.items()}


def _records(ds, cols, visit_time: np.ndarray) -> Records:
    day = visit_time.astype("datetime64[D]").astype(np.int64)
    return Records(ds, cols, day, day)


def _prescriptions(rng, flu_pos, pneumonia, age) -> list[list[tuple[int, int]]]:
    """Per visit the DRUGS indices prescribed and their cost in cents."""
    out = []
    for pos, pn, a in zip(flu_pos.tolist(), pneumonia.tolist(), age.tolist()):
        items = {int(rng.integers(0, 2))}
        if pos:
            items.add(_OSELTAMIVIR)
        if pn or rng.random() < 0.15:
            items.add(_ANTIBIOTICS[int(rng.integers(2))])
        if rng.random() < 0.4:
            items.add(int(rng.integers(4, len(DRUGS))) if a >= 6 else 4)
        out.append([(i, int(rng.integers(1500, 12000))) for i in sorted(items)])
    return out


def _link(link: dict[str, list[str]], visit: list[int]) -> dict[str, list[str]]:
    return {k: take(v, visit) for k, v in link.items()}


def _drug(ds, h, rng, time, link, prescriptions) -> Records:
    visit = [v for v, items in enumerate(prescriptions) for _ in items]
    rows = [item for items in prescriptions for item in items]
    m = len(rows)
    d = [DRUGS[i] for i, _ in rows]
    issued = (time + rng.integers(5, 40, size=len(time)) * MIN)[visit]
    stop = issued + np.array([x[10] for x in d]) * DAY_S
    rx_no = serials("CF", h.index * 10_000_000, len(prescriptions), 10)
    bound = {**_link(link, visit),
             "P7800": take(rx_no, visit), "P7801": fmt(ds, "P7801", issued),
             "P7802": [x[11] for x in d], "P7803": ["01"] * m, "P7804": ["药品"] * m,
             "P7805": [x[0] for x in d], "P7806": [x[1] for x in d], "P7807": [""] * m, "P7808": [""] * m,
             "P7809": [""] * m, "P7810": [x[11] for x in d],
             "P7811": ["西药" if x[11] == "1" else "中成药" for x in d],
             "P7812": [x[3] for x in d], "P7813": [x[4] for x in d], "P7814": [x[5] for x in d],
             "P7815": [x[6] for x in d], "P7816": [f"{x[7] * x[9] * x[10]:g}" for x in d],
             "P7817": [f"{x[7]:g}" for x in d], "P7818": [x[8] for x in d], "P7819": ["1"] * m,
             "P7820": ["口服"] * m, "P7821": ["阴性" if x[2] == "抗菌药" and "西林" in x[1] else "" for x in d],
             "P7822": fmt(ds, "P7822", issued), "P7823": fmt(ds, "P7823", stop),
             "P7824": [str(x[10]) for x in d], "P7825": ["1" if x[2] in ("抗病毒药", "抗菌药") else "2" for x in d],
             "P7826": ["2"] * m, "P7827": ["1602"] * m, "P7828": ["发热门诊"] * m,
             "P7832": [x[12] for x in d]}
    return _records(ds, fill(ds, m, rng, bound, Context(h, issued)), time[visit])


def _lab(ds, h, rng, time, link, tested_flu, tested_cov, flu_pos, flu_b, pneumonia, sex) -> Records:
    n = len(time)
    blood = rng.random(n) < 0.85
    panels: list[tuple[int, tuple]] = []
    for v in range(n):
        if blood[v]:
            panels += [(v, BLOOD), (v, CRP)]
        if tested_flu[v]:
            panels.append((v, FLU_AG))
        if tested_cov[v]:
            panels.append((v, COV_AG))
    k = len(panels)
    req = serials("SQ", h.index * 10_000_000, k, 10)
    rep = serials("BG", h.index * 10_000_000, k, 10)
    spe = serials("BB", h.index * 10_000_000, k, 10)
    panel_visit = np.asarray([v for v, _ in panels], dtype=int)
    p_sample = time[panel_visit] + rng.integers(10, 40, size=k) * MIN
    p_sent = p_sample + rng.integers(5, 20, size=k) * MIN
    p_tested = p_sent + rng.integers(5, 30, size=k) * MIN
    p_report = p_tested + rng.integers(20, 90, size=k) * MIN
    of_panel = [j for j, (_, panel) in enumerate(panels) for _ in panel[3]]
    items = [(panel, item) for _, panel in panels for item in panel[3]]
    visit = panel_visit[of_panel].tolist()
    req_no, rep_no, specimen = take(req, of_panel), take(rep, of_panel), take(spe, of_panel)
    m = len(visit)
    vis = np.asarray(visit, dtype=int)
    sample, sent = p_sample[of_panel], p_sent[of_panel]
    tested, report = p_tested[of_panel], p_report[of_panel]
    value, qual, flag = [], [], []
    draws = rng.random(m).tolist()
    for (_, item), v, r in zip(items, visit, draws):
        code, _, unit, _, lo, hi = item
        if unit is None:
            positive = (code == "FLUA" and flu_pos[v] and not flu_b[v]) or \
                       (code == "FLUB" and flu_pos[v] and flu_b[v]) or (code == "SARS2" and r < 0.03)
            value.append("")
            qual.append("阳性" if positive else "阴性")
            flag.append(FLAG_POSITIVE if positive else FLAG_NORMAL)
            continue
        if code == "HGB" and sex[v] == "2":
            lo, hi = 115.0, 150.0
        # Flu lowers lymphocytes, bacterial pneumonia raises white cells and CRP.
        shift = 0.0
        if code in ("WBC", "NEUT%", "CRP") and pneumonia[v]:
            shift = 0.6 * (hi - lo)
        elif code == "LYMPH%" and flu_pos[v]:
            shift = -0.3 * (hi - lo)
        x = round(lo + (hi - lo) * (r * 1.1 - 0.05) + shift, 1)
        x = max(x, 0.0)
        value.append(f"{x:g}")
        qual.append("")
        flag.append(FLAG_HIGH if x > hi else FLAG_LOW if x < lo else FLAG_NORMAL)
    bound = {**_link(link, visit), "P7601": [h.org_code] * m, "P7602": [h.name] * m,
             "P7603": [pa[1] for pa, _ in items], "P7604": [pa[0] for pa, _ in items],
             "P7605": req_no, "P7606": [pa[1] + "申请单" for pa, _ in items],
             "P7607": fmt(ds, "P7607", tested), "P7608": fmt(ds, "P7608", report),
             "P7609": fmt(ds, "P7609", sent), "P7610": fmt(ds, "P7610", sample), "P7611": specimen,
             "P7612": [pa[2] for pa, _ in items], "P7613": [it[0] for _, it in items],
             "P7614": [it[1] for _, it in items], "P7615": [it[0] for _, it in items],
             "P7616": [it[1] for _, it in items],
             "P7617": ["胶体金法" if it[2] is None else "仪器法" for _, it in items],
             "P7618": [it[3] for _, it in items], "P7619": [it[2] or "" for _, it in items],
             "P7620": value, "P7621": qual, "P7622": rep_no, "P7623": [it[0] for _, it in items],
             "P7624": [it[1] for _, it in items], "P7625": flag}
    return _records(ds, fill(ds, m, rng, bound, Context(h, report)), time[vis])


def _examine(ds, h, rng, time, link, imaged, pneumonia) -> Records:
    visit = np.flatnonzero(imaged)
    m = len(visit)
    ct = rng.random(m) < 0.6
    when = time[visit] + rng.integers(20, 120, size=m) * MIN
    positive = pneumonia[visit]
    finding = np.where(positive, "双肺下叶见斑片状磨玻璃密度影，边界不清。", "双肺纹理清晰，未见明确实变影。")
    conclusion = np.where(positive, "双肺感染性病变，考虑肺炎。", "胸部未见明显异常。")
    bound = {**_link(link, visit.tolist()), "P7701": [h.name] * m, "P7702": [h.org_code] * m,
             "P7703": serials("JC", h.index * 10_000_000, m, 10),
             "P7704": serials("YX", h.index * 10_000_000, m, 10),
             "P7705": np.where(ct, "胸部CT平扫报告", "胸部DR报告").tolist(),
             "P7706": fmt(ds, "P7706", when), "P7707": np.where(ct, "CT", "DR").tolist(),
             "P7708": np.where(ct, "CT0101", "DR0101").tolist(),
             "P7709": np.where(ct, "CT检查", "数字X线摄影").tolist(),
             "P7710": np.where(ct, "胸部CT平扫", "胸部正位片").tolist(),
             "P7711": np.where(ct, "CT0101", "DR0101").tolist(),
             "P7712": np.where(ct, "胸部CT平扫", "胸部正位片").tolist(), "P7713": ["胸部"] * m,
             "P7714": np.where(positive, "1", "2").tolist(), "P7715": finding.tolist(),
             "P7716": np.where(positive, FLAG_POSITIVE, FLAG_NORMAL).tolist(),
             "P7717": conclusion.tolist()}
    return _records(ds, fill(ds, m, rng, bound, Context(h, when)), time[visit])
