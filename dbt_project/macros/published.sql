{#- The published aggregates: a per-hospital daily (or monthly) relation summed to every area and
    period analysts use, from the exact counts — never from suppressed ones (docs/marts.md,
    "Published aggregates"). hqms.marts.publish then suppresses at this grain. -#}

{#- Areas form one tree: country (CN) → 南方/北方 (flu_region) → province → city. Hospitals
    without a registered province or city sit under 'unknown', so every parent is exactly the sum
    of its children — the column relations the complementary suppression protects. -#}
{% macro _area(level) -%}
    {%- set areas = {
        'country': ("'CN'", "cast(null as varchar)", "cast(null as varchar)"),
        'flu_region': ('b._flu_region', "'country'", "'CN'"),
        'province': ('b._province', "'flu_region'", 'b._flu_region'),
        'city': ('b._city', "'province'", 'b._province'),
    } -%}
    {{ return(areas[level]) }}
{%- endmacro %}

{% macro _period(period, date_column) -%}
    {%- set periods = {
        'day': ('b.' ~ date_column, "strftime(b." ~ date_column ~ ", '%Y-%m-%d')"),
        'week': ('b._week_start', 'b._week_label'),
        'month': ('b._month_start', 'b._month_label'),
    } -%}
    {{ return(periods[period]) }}
{%- endmacro %}

{% macro area_period_rollup(relation, date_column, counts, sums=[], periods=['day', 'week', 'month'], keys=[]) -%}
    {#- One row per (period_type, period, area[, keys]) with hospitals (distinct org_code), every
        column of `counts` summed as BIGINT and every column of `sums` (money) as DECIMAL(18,2);
        a sum stays NULL when none of its inputs has a value (absent, not zero: docs/marts.md). -#}
    with base as (
        select
            s.*,
            d.week_start as _week_start,
            d.week_label as _week_label,
            d.month_start as _month_start,
            d.month_label as _month_label,
            coalesce(fr.flu_region, 'unknown') as _flu_region,
            coalesce(s.province_code, 'unknown') as _province,
            coalesce(s.city_code, 'unknown') as _city
        from {{ relation }} as s
        inner join {{ ref('dim_date') }} as d on d.date_day = s.{{ date_column }}
        left join {{ ref('flu_surveillance_regions') }} as fr on fr.province_code = s.province_code
    ),

    rolled as (
        {%- for period in periods %}
        {%- set p = hqms._period(period, date_column) %}
        {%- for level in ['country', 'flu_region', 'province', 'city'] %}
        {%- set a = hqms._area(level) %}
        select
            '{{ period }}' as period_type,
            {{ p[0] }} as period_start,
            {{ p[1] }} as period_label,
            '{{ level }}' as region_level,
            {{ a[0] }} as region_code,
            {{ a[1] }} as parent_level,
            {{ a[2] }} as parent_code,
            {%- for k in keys %}
            b.{{ k }},
            {%- endfor %}
            cast(count(distinct b.org_code) as {{ dbt.type_bigint() }}) as hospitals,
            {%- for m in counts %}
            {{ hqms.sum_int('b.' ~ m) }} as {{ m }},
            {%- endfor %}
            {%- for m in sums %}
            cast(sum(b.{{ m }}) as decimal(18, 2)) as {{ m }},
            {%- endfor %}
            true as _rolled
        from base as b
        group by {{ p[0] }}, {{ p[1] }}, {{ a[0] }}, {{ a[2] }}{% for k in keys %}, b.{{ k }}{% endfor %}
        {{ "union all" if not (loop.last and period == periods[-1]) }}
        {%- endfor %}
        {%- endfor %}
    )

    select
        r.period_type,
        r.period_start,
        case r.period_type when 'day' then r.period_start when 'week' then r.period_start + 6
             else cast(last_day(r.period_start) as date) end as period_end,
        r.period_label,
        d.season,
        r.region_level,
        r.region_code,
        case
            when r.region_level = 'country' then '全国'
            when r.region_level = 'flu_region' then coalesce(
                (select min(fr.flu_region_zh) from {{ ref('flu_surveillance_regions') }} as fr
                 where fr.flu_region = r.region_code), '未知')
            else coalesce(reg.name_zh, '未知')
        end as region_name,
        r.parent_level,
        r.parent_code,
        {%- for k in keys %}
        r.{{ k }},
        {%- endfor %}
        r.hospitals,
        {%- for m in counts + sums %}
        r.{{ m }},
        {%- endfor %}
        {{ hqms.build_timestamp() }} as _built_at
    from rolled as r
    inner join {{ ref('dim_date') }} as d on d.date_day = r.period_start
    left join {{ ref('regions') }} as reg
        on (r.region_level = 'province' and reg.level = 'province' and reg.province_code = r.region_code)
        or (r.region_level = 'city' and reg.level = 'city' and reg.region_code = r.region_code)
{%- endmacro %}

{% macro ratio(numerator, denominator) -%}
    cast({{ numerator }} as {{ hqms.type_double() }}) / nullif({{ denominator }}, 0)
{%- endmacro %}

{% macro icd10_chapters() -%}
    {#- The chapter numerals of the icd10_chapters seed in chapter order (I … XXII): one count
        column per chapter in the outpatient aggregates. The calling model needs
        `-- depends_on: {{ ref('icd10_chapters') }}` (dbt cannot see a ref inside `execute`). -#}
    {%- if not execute %}{{ return([]) }}{% endif -%}
    {%- set sql = "select chapter from " ~ ref('icd10_chapters') ~ " order by chapter_number" -%}
    {{ return(run_query(sql).columns[0].values() | list) }}
{%- endmacro %}
