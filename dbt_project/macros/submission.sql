{% macro submission_rollup(relation, period_column) -%}
    {#- Reporting by region for administrators (川卫办医政便函〔2025〕2号): per (period, stream, province|city),
        hospitals expected / received / on time, reporting rate and on-time rate (DHIS2 style:
        both over the hospitals expected whose period is due). A period not yet due (its deadline
        has not passed when the mart is built: due = false) has no rates — NULL, not a 0 % that
        is only "not yet" — while hospitals_reported / hospitals_on_time already count what came. -#}
    {%- for level in ['province', 'city'] %}
    select
        s.{{ period_column }},
        s.stream,
        '{{ level }}' as region_level,
        s.{{ level }}_code as region_code,
        r.name_zh as region_name,
        count(*) as hospitals_expected,
        {{ hqms.count_if('s.received') }} as hospitals_reported,
        {{ hqms.count_if('s.on_time') }} as hospitals_on_time,
        {{ hqms.count_if('s.due') }} = count(*) as due,
        cast({{ hqms.count_if('s.due and s.received') }} as {{ hqms.type_double() }})
            / nullif({{ hqms.count_if('s.due') }}, 0) as reporting_rate,
        cast({{ hqms.count_if('s.due and s.on_time') }} as {{ hqms.type_double() }})
            / nullif({{ hqms.count_if('s.due') }}, 0) as on_time_rate,
        {{ hqms.sum_int('s.records') }} as records,
        {{ hqms.sum_int('s.conforming_records') }} as conforming_records,
        {{ hqms.build_timestamp() }} as _built_at
    from {{ relation }} as s
    {{ hqms.region_name_join(level, 's.' ~ level ~ '_code') }}
    {{ caller() if caller is defined }}
    group by s.{{ period_column }}, s.stream, s.{{ level }}_code, r.name_zh
    {{ "union all" if not loop.last }}
    {%- endfor %}
{%- endmacro %}
