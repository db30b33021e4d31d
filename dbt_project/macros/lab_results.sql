{#- How a lab result reads: positive, negative, undetermined or pending (docs/marts.md, "Lab
    results"). Written once here and used by every mart that counts tested or positive
    (int_fever_visits over lab_, int_flu_visits over lis_).

    Reading "contains 阳" as positive counted 非阳性 (not positive) and 阴阳性待定 (undetermined) as
    positive, ignored the numeric result, and counted a test without a result yet as tested
    (found in review). The text is therefore read by explicit wordings, in this order — each list is
    checked only when the lists before it did not match, so a wording that contains another
    (非阳性 ⊃ 阳性, 阴阳性待定 ⊃ 阴性) is listed before it:

      pending       the text says the result is not out yet;
      undetermined  the text says the result cannot be read (yet): 待定, 可疑, 待复查, ±, invalid …;
      negative      a negated positive: 非阳性, 未检出, not detected …;
      positive      阳性, 弱阳性, 检出, +, positive, detected …;
      negative      阴性, -, negative ….

    The text is compared after trimming, lower-casing, removing spaces and mapping full-width
    ＋－（） to +-(). A text none of the lists reads, or no text, leaves the decision to the result
    flag and the numeric result: -#}

{% macro lab_result_wordings() -%}
    {#- (status, how, wordings) in the order they are tried: `contains` matches anywhere in the
        normalised text, `equals` the whole of it. -#}
    {{ return([
        ('pending', 'contains', ['待检', '检测中', '未出', '待报告', '未报告', '未完成', 'pending']),
        ('undetermined', 'contains', ['待定', '可疑', '待复查', '不确定', '无法判断', '无法判定', '灰区',
                                      '无效', '±', '+/-', 'equivocal', 'indeterminate', 'inconclusive',
                                      'borderline', 'invalid']),
        ('negative', 'contains', ['非阳性', '未检出', '未检测到', '未见', 'notdetected', 'nondetected',
                                  'undetected', 'nonreactive', 'non-reactive', 'notpositive']),
        ('positive', 'contains', ['阳性', '弱阳', '检出', 'positive', 'detected', 'reactive']),
        ('positive', 'equals', ['阳', '+', '++', '+++', '++++', '(+)', '(++)', '(+++)', '(++++)', 'pos']),
        ('negative', 'contains', ['阴性', 'negative']),
        ('negative', 'equals', ['阴', '-', '(-)', '--', 'neg', '无']),
    ]) }}
{%- endmacro %}

{% macro lab_result_status(text, value='null', reference_range='null', flag='null', flag_codes=none,
                           flag_first=false) -%}
    {#- 'positive' | 'negative' | 'undetermined' | 'pending' of one result (SQL expressions):

        1. flag_first (a dataset whose flag IS the positive/negative code, lis_ P8004 结果是否阳性):
           a flag of flag_codes decides;
        2. the text (`text`, e.g. P7621 结果定性), read by lab_result_wordings;
        3. no text and no numeric value (`value`, P7620 结果数值): 'pending' — no result yet,
           not tested, whatever the flag says;
        4. a flag of flag_codes (P7625 结果异常标识: 1 normal → negative; 2 abnormal / positive,
           21 low, 22 high → outside the reference range → positive);
        5. the numeric value against `reference_range` (P7618 参考值: "a-b", "a~b", "<b", "≤b",
           ">a", "≥a"; for a pathogen test the reference range is the negative range, so outside
           it is positive — above a cut-off index, or below a Ct cut-off);
        6. otherwise 'undetermined' (a result that cannot be read). -#}
    {%- set codes = flag_codes if flag_codes is not none else
                    {'1': 'negative', '2': 'positive', '21': 'positive', '22': 'positive'} -%}
    {%- set norm = "lower(replace(translate(trim(" ~ text ~ "), '＋－（）：　', '+-():'), ' ', ''))" -%}
    {%- set number = hqms.lab_number(value) -%}
    {%- set flag_case -%}
        case trim({{ flag }}){% for code, status in codes.items() %} when '{{ code }}' then '{{ status }}'{% endfor %} end
    {%- endset -%}
    case
        {%- if flag_first %}
        when ({{ flag_case }}) is not null then {{ flag_case }}
        {%- endif %}
        {%- for status, how, wordings in hqms.lab_result_wordings() %}
        when {% if how == 'equals' -%}
            {{ norm }} in ({% for w in wordings %}'{{ w }}'{{ ', ' if not loop.last }}{% endfor %})
        {%- else -%}
            ({% for w in wordings %}{{ norm }} like '%{{ w }}%'{{ ' or ' if not loop.last }}{% endfor %})
        {%- endif %} then '{{ status }}'
        {%- endfor %}
        when coalesce({{ norm }}, '') = '' and coalesce(trim({{ value }}), '') = '' then 'pending'
        when ({{ flag_case }}) is not null then {{ flag_case }}
        when {{ number }} is not null and ({{ hqms.lab_range_bound(reference_range, 'low') }} is not null
                                          or {{ hqms.lab_range_bound(reference_range, 'high') }} is not null)
            then case when {{ hqms.lab_within_range(number, reference_range) }} then 'negative' else 'positive' end
        else 'undetermined'
    end
{%- endmacro %}

{% macro lab_number(value) -%}
    {#- A numeric result as written (kept as text: "<0.5", ">1000", "1.2E3"): the number after an
        optional comparison sign, else NULL. -#}
    try_cast(regexp_replace(trim({{ value }}), '^[<>≤≥=]+\s*', '') as {{ hqms.type_double() }})
{%- endmacro %}

{% macro lab_range_bound(reference_range, side) -%}
    {#- The low or high bound of a reference range written "a-b" / "a~b" (also full-width, with
        spaces), "<b" / "<=b" / "≤b" (high only) or ">a" / ">=a" / "≥a" (low only); NULL when the
        range is not written that way (a word such as 阴性, or nothing). -#}
    {%- set r = "replace(translate(trim(" ~ reference_range ~ "), '～－—＜＞＝', '~--<>='), ' ', '')" -%}
    {%- set num = '[0-9]+(\.[0-9]+)?' -%}
    case
        when regexp_matches({{ r }}, '^{{ num }}[-~]{{ num }}$')
            then try_cast(regexp_extract({{ r }}, '{{ "^(" ~ num ~ ")[-~]" if side == "low" else "[-~](" ~ num ~ ")$" }}', 1)
                          as {{ hqms.type_double() }})
        {%- if side == 'low' %}
        when regexp_matches({{ r }}, '^(>|>=|≥){{ num }}$')
            then try_cast(regexp_extract({{ r }}, '({{ num }})$', 1) as {{ hqms.type_double() }})
        {%- else %}
        when regexp_matches({{ r }}, '^(<|<=|≤){{ num }}$')
            then try_cast(regexp_extract({{ r }}, '({{ num }})$', 1) as {{ hqms.type_double() }})
        {%- endif %}
    end
{%- endmacro %}

{% macro lab_within_range(number, reference_range) -%}
    {#- The number lies inside the reference range (bounds inclusive). -#}
    (({{ hqms.lab_range_bound(reference_range, 'low') }} is null or {{ number }} >= {{ hqms.lab_range_bound(reference_range, 'low') }})
     and ({{ hqms.lab_range_bound(reference_range, 'high') }} is null or {{ number }} <= {{ hqms.lab_range_bound(reference_range, 'high') }}))
{%- endmacro %}
