{% macro region_name_join(level, code_expr, alias='r') -%}
    {#- Join the regions seed for a province (2-digit province_code) or city (6-digit code). A city
        code is looked up by code alone (codes are unique in the seed): whatever unit a registry
        names as a hospital's city — a prefecture, a 省直辖县级 city such as 仙桃市, a municipality
        itself (110000), a code valid before a re-division — its roll-up line has a name. -#}
    left join {{ ref('regions') }} as {{ alias }}
    {%- if level == 'province' %}
        on {{ alias }}.level = 'province' and {{ alias }}.province_code = {{ code_expr }}
    {%- else %}
        on {{ alias }}.region_code = {{ code_expr }}
    {%- endif %}
{%- endmacro %}

{% macro sum_by_region(relation, period_column) -%}
    {#- A per-hospital daily mart summed to province and city: every count column of the
        relation (found at run time) summed, plus the number of hospitals with a row. Published
        region totals are far less often small cells than a single hospital's day. -#}
    {%- set keys = [period_column, 'org_code', 'province_code', 'city_code', '_built_at'] -%}
    {%- set measures = [] -%}
    {%- if execute -%}
        {%- for col in adapter.get_columns_in_relation(relation) -%}
            {%- if col.name not in keys -%}{%- do measures.append(col.name) -%}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- for level in ['province', 'city'] %}
    select
        s.{{ period_column }},
        '{{ level }}' as region_level,
        s.{{ level }}_code as region_code,
        r.name_zh as region_name,
        count(distinct s.org_code) as hospitals,
        {%- for m in measures %}
        {{ hqms.sum_int('s.' ~ m) }} as {{ m }},
        {%- endfor %}
        {{ hqms.build_timestamp() }} as _built_at
    from {{ relation }} as s
    {{ hqms.region_name_join(level, 's.' ~ level ~ '_code') }}
    {{ caller() if caller is defined }}
    group by s.{{ period_column }}, s.{{ level }}_code, r.name_zh
    {{ "union all" if not loop.last }}
    {%- endfor %}
{%- endmacro %}
