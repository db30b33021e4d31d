"""Synthetic patients, generated in batches (never copied from real people).

Names are a common surname plus one or two given-name characters; ID numbers are a county
of the hospital's province, the birth date (consistent with the age at the visit) and a sequence
whose parity encodes the sex, completed by :func:`hqms.validators.id_card_check_char` (valid by
construction, so ``make_id_card``'s slower re-validation is skipped), so they pass the check but
belong to nobody in particular; phones, addresses and employers are assembled from
small word lists. Every character is GBK-encodable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hqms.generate.registry import Hospital, counties_of, region_names
from hqms.generate.timefmt import DAY, completed_years, format_times
from hqms.validators import id_card_check_char

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
            "毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华建国文辉鑫宇浩然子涵欣怡梓萱雨"
         "轩博文思诗佳俊晨阳琳婷雪梅海燕志红玉兵成林峰斌飞凤洁倩颖慧宁")
STREETS = ("人民路", "建设路", "解放路", "中山路", "和平街", "新华路", "团结路", "光明街", "文化路",
           "胜利路", "青年路", "朝阳路", "滨江路", "东风路", "育才路", "振兴路", "学府路", "锦绣路")
EMPLOYERS = ("有限公司", "小学", "中学", "商贸公司", "建筑公司", "物流公司", "食品厂", "超市",
             "信息技术公司", "街道办事处", "社区卫生服务中心", "餐饮店")
EMPLOYER_WORDS = ("宏达", "远航", "金桥", "东方", "兴业", "启明", "恒信", "新力", "绿源", "鼎盛")
#: Mobile prefixes (second and third digit) in use on the mainland.
_MOBILE_PREFIXES = ("30", "31", "32", "33", "35", "36", "37", "38", "39", "50", "51", "52", "53",
                    "55", "56", "57", "58", "59", "66", "77", "80", "81", "82", "86", "87", "88", "89",
                    "98", "99")

#: Age bands (lo, hi inclusive) used by the stream age mixes.
AGE_BANDS = ((0, 4), (5, 14), (15, 24), (25, 44), (45, 64), (65, 79), (80, 96))


@dataclass
class People:
    """Column-oriented batch of ``n`` synthetic persons (all lists of str unless noted)."""

    sex: list[str]            # RC001 1 / 2
    birth: np.ndarray         # datetime64[D]
    age: np.ndarray           # int completed years at the reference date
    age_days: np.ndarray      # int days since birth at the reference date
    name: list[str]
    id_number: list[str]
    mobile: list[str]
    address: list[str]
    hukou_address: list[str]
    postcode: list[str]
    employer: list[str]
    employer_phone: list[str]
    contact_name: list[str]
    contact_relation: list[str]  # GB/T 4761 / RC033 code
    contact_phone: list[str]
    county: list[str]         # 6-digit region code of residence

    @property
    def n(self) -> int:
        return len(self.sex)

    def subset(self, idx: np.ndarray) -> People:
        """The persons at positions ``idx`` (a reordering or a selection)."""
        take = idx.tolist()
        return People(**{name: value[idx] if isinstance(value, np.ndarray) else [value[i] for i in take]
                         for name, value in vars(self).items()})


def _digits(rng: np.random.Generator, n: int, width: int) -> list[str]:
    values = rng.integers(0, 10 ** width, size=n)
    return [f"{v:0{width}d}" for v in values.tolist()]


def mobiles(rng: np.random.Generator, n: int) -> list[str]:
    pre = rng.integers(len(_MOBILE_PREFIXES), size=n).tolist()
    tail = _digits(rng, n, 8)
    return ["1" + _MOBILE_PREFIXES[p] + t for p, t in zip(pre, tail)]


def landlines(rng: np.random.Generator, n: int, area_code: str) -> list[str]:
    first = rng.integers(2, 9, size=n).tolist()
    tail = _digits(rng, n, 7)
    return [f"{area_code}-{f}{t}" for f, t in zip(first, tail)]


def names(rng: np.random.Generator, n: int) -> list[str]:
    s = rng.integers(len(SURNAMES), size=n).tolist()
    g1 = rng.integers(len(GIVEN), size=n).tolist()
    g2 = rng.integers(len(GIVEN), size=n).tolist()
    two = (rng.random(n) < 0.7).tolist()
    return [SURNAMES[a] + GIVEN[b] + (GIVEN[c] if t else "") for a, b, c, t in zip(s, g1, g2, two)]


def ages(rng: np.random.Generator, n: int, mix: tuple[float, ...]) -> np.ndarray:
    """Ages in years drawn from :data:`AGE_BANDS` with band weights ``mix``."""
    p = np.asarray(mix, dtype=float)
    band = rng.choice(len(AGE_BANDS), size=n, p=p / p.sum())
    lo = np.array([b[0] for b in AGE_BANDS])[band]
    hi = np.array([b[1] for b in AGE_BANDS])[band]
    return rng.integers(lo, hi + 1)


def _addresses(rng: np.random.Generator, n: int, counties: list[str], hospital: Hospital,
               region: dict[str, str]) -> tuple[list[str], list[str]]:
    province = region.get(hospital.province_code + "0000", "")
    city = hospital.city_name
    idx = rng.integers(len(counties), size=n).tolist()
    street = rng.integers(len(STREETS), size=n).tolist()
    no = rng.integers(1, 400, size=n).tolist()
    bld = rng.integers(1, 30, size=n).tolist()
    room = rng.integers(101, 2800, size=n).tolist()
    county_codes = [counties[i] for i in idx]
    text = [f"{province}{city}{region.get(c, '') if c != hospital.city_code else ''}"
            f"{STREETS[s]}{k}号{b}栋{r}室"
            for c, s, k, b, r in zip(county_codes, street, no, bld, room)]
    return text, county_codes


def make_people(rng: np.random.Generator, hospital: Hospital, ref: np.ndarray,
                age_mix: tuple[float, ...]) -> People:
    """One person per reference date in ``ref`` (datetime64[D], e.g. the visit day)."""
    n = len(ref)
    ref = ref.astype("datetime64[D]")
    region = region_names()
    years = ages(rng, n, age_mix)
    birth = ref - (years * 365.25 + rng.integers(0, 365, size=n)).astype(int) * DAY
    birth = np.maximum(birth, np.datetime64("1925-01-01"))
    age = completed_years(birth, ref)
    sex_male = rng.random(n) < 0.5
    sex = np.where(sex_male, "1", "2").tolist()
    seq = rng.integers(0, 50, size=n) * 20 + rng.integers(0, 5, size=n) * 2 + sex_male.astype(int)
    counties = counties_of(hospital.city_code)
    address, county = _addresses(rng, n, counties, hospital, region)
    hukou, _ = _addresses(rng, n, counties, hospital, region)
    body = [f"{c}{b}{s:03d}" for c, b, s in
            zip(county, format_times(birth, "YYYYMMDD"), seq.tolist())]
    ids = [b + id_card_check_char(b) for b in body]
    emp_w = rng.integers(len(EMPLOYER_WORDS), size=n).tolist()
    emp_k = rng.integers(len(EMPLOYERS), size=n).tolist()
    city_short = hospital.city_name.removesuffix("市")
    employer = [f"{city_short}{EMPLOYER_WORDS[w]}{EMPLOYERS[k]}" for w, k in zip(emp_w, emp_k)]
    relation = rng.choice(["1", "2", "3", "5", "7", "9"], size=n, p=[.45, .12, .12, .2, .06, .05])
    relation = np.where(age < 18, "5", relation).tolist()  # a child's contact is a parent
    return People(
        sex=sex, birth=birth, age=age, age_days=(ref - birth).astype(int), name=names(rng, n),
        id_number=ids, mobile=mobiles(rng, n), address=address, hukou_address=hukou,
        postcode=[hospital.postcode[:3] + f"{v:03d}" for v in rng.integers(0, 100, size=n).tolist()],
        employer=employer, employer_phone=landlines(rng, n, hospital.area_code),
        contact_name=names(rng, n), contact_relation=relation, contact_phone=mobiles(rng, n),
        county=county,
    )
