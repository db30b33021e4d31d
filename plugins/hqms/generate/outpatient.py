"""The monthly outpatient information page (门（急）诊诊疗信息页, mzsy_) of one hospital.

One row per visit. Visit types follow RC041 (1 急诊 with triage level and disposition, 2 普通门诊
…); registration ≤ check-in ≤ consultation; a disposition "急诊转入院" carries the admission-order
time; revisits, infusions and chronic-disease patients are flagged; the diagnosis fits the
department; fees add up (every item is part of ZFY, 自付 ≤ ZFY, 抗菌药物费 ≤ 西药费) and the
"used western / patent medicine" flags agree with the drug fees.
"""
from __future__ import annotations

import numpy as np

from hqms import spec
from hqms.generate import epidemic
from hqms.generate.common import cents, choose_rows, ethnicity, fmt, id_documents, marital, take, yuan
from hqms.generate.people import make_people, names
from hqms.generate.records import Records
from hqms.generate.registry import Hospital
from hqms.generate.values import COMORBIDITIES, Context, fill, pick

MIN = np.timedelta64(60, "s")

#: Department → (name, weight for adults, [(ICD-10, diagnosis)]).
DEPARTMENTS = {
    "0301": ("呼吸内科", 0.16, (("J06.900", "急性上呼吸道感染"), ("J20.900", "急性支气管炎"),
                            ("J44.900", "慢性阻塞性肺疾病"), ("J45.900", "支气管哮喘"),
                            ("J11.100x001", "流行性感冒"))),
    "0304": ("心血管内科", 0.14, (("I10.x00", "高血压"), ("I25.103", "冠状动脉粥样硬化性心脏病"),
                              ("I48.900", "心房颤动"))),
    "0307": ("内分泌科", 0.1, (("E11.900", "2型糖尿病"), ("E03.900", "甲状腺功能减退症"))),
    "0302": ("消化内科", 0.12, (("K29.700", "胃炎"), ("K21.900", "胃食管反流病"))),
    "0403": ("骨科", 0.1, (("M54.500", "腰痛"), ("M17.900", "膝关节病"))),
    "12": ("口腔科", 0.08, (("K02.900", "龋病"), ("K05.100", "慢性龈炎"))),
    "10": ("眼科", 0.07, (("H10.900", "结膜炎"), ("H52.100", "近视"))),
    "13": ("皮肤科", 0.07, (("L20.900", "特应性皮炎"), ("L50.900", "荨麻疹"))),
    "07": ("儿科", 0.0, (("J06.900", "急性上呼吸道感染"), ("J20.900", "急性支气管炎"),
                       ("A09.900", "感染性腹泻"), ("J11.100x001", "流行性感冒"))),
    "20": ("急诊医学科", 0.0, (("R50.900", "发热"), ("R10.400", "腹痛"), ("S09.900", "头部损伤"),
                          ("J11.100x001", "流行性感冒"), ("I20.000", "不稳定型心绞痛"))),
}
_ADULT_DEPTS = [d for d, (_, w, _) in DEPARTMENTS.items() if w > 0]
_COMPLAINT = {"0301": "咳嗽{d}天", "0304": "头晕、胸闷{d}天", "0307": "口干、多饮{d}月",
              "0302": "上腹痛{d}天", "0403": "腰腿痛{d}周", "12": "牙痛{d}天", "10": "眼红、眼痒{d}天",
              "13": "皮疹伴瘙痒{d}天", "07": "发热、咳嗽{d}天", "20": "突发不适{d}小时"}
#: Item fee columns of the page; ZFY is their sum.
FEE_ITEMS = ("YLFWF", "ZLCZF", "HLF", "QTFY", "BLZDF", "ZDF", "YXXZDF", "LCZDXMF", "FSSZLXMF",
             "SSZLF", "KFF", "ZYZLF", "XYF", "ZCYF", "ZCYF1", "XF", "BDBLZPF", "QDBLZPF", "NXYZLZPF",
             "XBYZLZPF", "JCYYCLF", "YYCLF", "SSYCXCLF", "QTF")
#: "其中" columns: parts of another item, not added to ZFY.
FEE_SUBSETS = {"ZLF": "FSSZLXMF", "MZF": "SSZLF", "SSF": "SSZLF", "KJYWF": "XYF"}
_OTHER_DX = tuple((f"MZZD_JBBM{k}", f"MZZD_QTZD{k}") for k in range(1, 11))
_ALLERGENS = ("青霉素", "头孢类抗生素", "磺胺类药物", "阿司匹林")


def simulate(h: Hospital, first: np.datetime64, last: np.datetime64, seed: int,
             scale: float) -> dict[str, Records]:
    """Outpatient-page records of hospital ``h`` for visit days first…last (window = visit day)."""
    ds = spec.dataset("mzsy")
    rng = np.random.default_rng([seed, 3, h.index])
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    mean = epidemic.BASE_OUTPATIENT * h.size * scale * epidemic.weekday_factor(days)
    counts = rng.poisson(mean)
    day = np.repeat(days, counts)
    n = len(day)
    p = make_people(rng, h, day, epidemic.AGE_MIX_OUTPATIENT)
    jzlx = pick(rng, ds.column("JZLX"), n, {"1": 0.14, "2": 0.76, "3": 0.05, "4": 0.03, "5": 0.01,
                                           "9": 0.01})
    emergency = np.asarray(jzlx) == "1"
    child = p.age < 14
    dept = np.asarray(_ADULT_DEPTS)[choose_rows(rng, [DEPARTMENTS[d][1] for d in _ADULT_DEPTS], n)]
    dept = np.where(emergency, "20", np.where(child, "07", dept))
    minute = np.where(emergency, rng.integers(0, 24 * 60, size=n), rng.integers(8 * 60, 17 * 60 + 30, size=n))
    jzsj = day.astype("datetime64[s]") + (minute * 60 + rng.integers(0, 60, size=n)).astype("timedelta64[s]")
    order = np.argsort(jzsj, kind="stable")
    jzsj, dept, emergency, day = jzsj[order], dept[order], emergency[order], day[order]
    jzlx = take(jzlx, order)
    p = p.subset(order)
    bdsj = jzsj - rng.integers(2, 90, size=n) * MIN
    ghsj = bdsj - rng.integers(1, 60, size=n) * MIN
    internet = np.asarray(jzlx) == "4"
    triage = pick(rng, ds.column("JZHZFJ"), n, {"1": 0.02, "2": 0.08, "3": 0.35, "4": 0.55})
    disposition = pick(rng, ds.column("JZHZQX"), n, {"1": 0.74, "2": 0.02, "4": 0.01, "6": 0.1, "7": 0.13})
    admitted = emergency & (np.asarray(disposition) == "7")
    dx_pick = [DEPARTMENTS[d][2][int(r * len(DEPARTMENTS[d][2]))] for d, r in
               zip(dept.tolist(), rng.random(n).tolist())]
    revisit = rng.random(n) < np.where(np.isin(dept, ["0304", "0307"]), 0.7, 0.3)
    chronic = np.isin(dept, ["0304", "0307"]) & (rng.random(n) < 0.5)
    infusion = (rng.random(n) < np.where(emergency, 0.35, 0.05)) & ~internet
    allergy = rng.random(n) < 0.08
    other_allergy = rng.random(n) < 0.03
    extra = _extra_dx(rng, p.age)
    fees = _fees(rng, n, infusion, emergency, internet)
    bound = {
        "JGMC": [h.name] * n, "ZZJGDM": [h.org_code] * n, "USERNAME": [h.uploader] * n,
        "JZKH": [f"MZ{h.index:04d}{k:09d}" for k in range(n)], "XM": p.name, "XB": p.sex,
        "CSRQ": fmt(ds, "CSRQ", p.birth), "HY": marital(rng, p.age), "GJ": ["156"] * n,
        "MZ": ethnicity(rng, n, h.province_code), "XZZ": p.address, "LXDH": p.mobile,
        "YWGMS": np.where(allergy, "2", "1").tolist(),
        "GMYW": [_ALLERGENS[int(k)] if a else "" for k, a in
                 zip(rng.integers(len(_ALLERGENS), size=n).tolist(), allergy.tolist())],
        "QTGMS": np.where(other_allergy, "2", "1").tolist(),
        "QTGMY": np.where(other_allergy, "花粉", "").tolist(),
        "GHSJ": fmt(ds, "GHSJ", ghsj), "BDSJ": fmt(ds, "BDSJ", np.where(internet, np.datetime64("NaT"), bdsj)),
        "JZSJ": fmt(ds, "JZSJ", jzsj), "JZKS": [DEPARTMENTS[d][0] for d in dept.tolist()],
        "JZKSDM": dept.tolist(), "JZYS": names(rng, n),
        "JZYSZC": pick(rng, ds.column("JZYSZC"), n, {"1": 0.15, "2": 0.25, "3": 0.4, "4": 0.2}),
        "JZLX": jzlx, "FZ": np.where(revisit, "1", "2").tolist(), "SY": np.where(infusion, "1", "2").tolist(),
        "MZMTBHZ": np.where(chronic, "1", "2").tolist(),
        "JZHZFJ": np.where(emergency, triage, "").tolist(),
        "JZHZQX": np.where(emergency, disposition, "").tolist(),
        "ZYZKJSJ": fmt(ds, "ZYZKJSJ", np.where(admitted, jzsj + rng.integers(20, 180, size=n) * MIN,
                                               np.datetime64("NaT"))),
        "HZZS": [_COMPLAINT[d].format(d=k) for d, k in zip(dept.tolist(), rng.integers(1, 6, size=n).tolist())],
        "MZZD_ZYZD": [x[1] for x in dx_pick], "MZZD_JBBM": [x[0] for x in dx_pick],
        "XYSY": np.where(fees["XYF"] > 0, "1", "2").tolist(), "ZCYSY": np.where(fees["ZCYF"] > 0, "1", "2").tolist(),
    }
    bound.update(id_documents(rng, ds, "ZJLB", "ZJHM", p, "1", "9", "6"))
    bound["ZJHM"] = [num if t != "9" else "-" for t, num in zip(bound["ZJLB"], bound["ZJHM"])]
    for slot, (code, name) in enumerate(_OTHER_DX):
        bound[code] = [COMORBIDITIES[e[slot]][0] if len(e) > slot else "" for e in extra]
        bound[name] = [COMORBIDITIES[e[slot]][1] if len(e) > slot else "" for e in extra]
    for col in ds.columns:  # procedure blocks: none on an ordinary outpatient visit
        if col.code[:4] in ("SSCZ", "MZFS", "MZYS", "SHJB"):
            bound[col.code] = [""] * n
    total = sum(fees[c] for c in FEE_ITEMS if c in fees)
    self_pay = np.floor(total * rng.uniform(0.2, 1.0, size=n)).astype(np.int64)
    bound.update({c: yuan(v) for c, v in fees.items()})
    bound.update({"ZFY": yuan(total), "ZFJE": yuan(self_pay)})
    cols = fill(ds, n, rng, bound, Context(h, jzsj, p))
    d = day.astype(np.int64)
    return {"mzsy": Records(ds, cols, d, d)}


def _extra_dx(rng: np.random.Generator, age: np.ndarray) -> list[list[int]]:
    k = np.minimum(rng.poisson(np.where(age >= 60, 1.2, 0.15)), 3)
    return [sorted(set(rng.choice(len(COMORBIDITIES), size=int(m), replace=False).tolist())) if m else []
            for m in k.tolist()]


def _fees(rng: np.random.Generator, n: int, infusion, emergency, internet) -> dict[str, np.ndarray]:
    """Fee items in cents; "其中" subsets never exceed their parent."""
    zero = np.zeros(n, dtype=np.int64)
    lab = rng.random(n) < 0.4
    imaging = rng.random(n) < np.where(emergency, 0.4, 0.15)
    western = rng.random(n) < 0.7
    fees = {c: zero for c in (*FEE_ITEMS, *FEE_SUBSETS)}
    fees["YLFWF"] = np.where(internet, cents(rng, n, 5, 30), cents(rng, n, 10, 60))
    fees["ZLCZF"] = np.where(infusion, cents(rng, n, 20, 150), 0)
    fees["HLF"] = np.where(infusion, cents(rng, n, 5, 30), 0)
    fees["ZDF"] = np.where(lab, cents(rng, n, 20, 300), 0)
    fees["YXXZDF"] = np.where(imaging, cents(rng, n, 50, 600), 0)
    fees["XYF"] = np.where(western, cents(rng, n, 10, 500), 0)
    fees["KJYWF"] = np.where(western & (rng.random(n) < 0.2),
                             np.floor(fees["XYF"] * rng.uniform(0.2, 0.9, size=n)).astype(np.int64), 0)
    fees["ZCYF"] = np.where(rng.random(n) < 0.25, cents(rng, n, 20, 200), 0)
    fees["JCYYCLF"] = np.where(lab, cents(rng, n, 2, 20), 0)
    fees["YYCLF"] = np.where(infusion, cents(rng, n, 5, 40), 0)
    return fees
