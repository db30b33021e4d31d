{% macro submission_rollup(relation, period_column) -%}
    {#- Reporting by region for administrators (seed 004): per (period, stream, province|city),
        hospitals expected / received / on time, reporting rate and on-time rate (DHIS2 style:
        both over the hospitals expected). -#}
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
        cast({{ hqms.count_if('s.received') }} as {{ hqms.type_double() }}) / count(*) as reporting_rate,
        cast({{ hqms.count_if('s.on_time') }} as {{ hqms.type_double() }}) / count(*) as on_time_rate,
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
