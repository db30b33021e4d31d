{% macro flu_dx_columns() -%}
    {#- Diagnosis code columns of a flu_ record (spec names): principal + other 1..10. -#}
    {%- set cols = ['principal_dx_code'] -%}
    {%- for i in range(1, 11) -%}{%- do cols.append('other_dx' ~ i ~ '_code') -%}{%- endfor -%}
    {{ return(cols) }}
{%- endmacro %}

{% macro flu_icu_columns() -%}
    {#- ICU stay columns (unit, in, out for stays 1..5): any of them filled = an ICU stay. -#}
    {%- set cols = [] -%}
    {%- for i in range(1, 6) -%}
        {%- for part in ['unit', 'in', 'out'] -%}{%- do cols.append('icu' ~ i ~ '_' ~ part) -%}{%- endfor -%}
    {%- endfor -%}
    {{ return(cols) }}
{%- endmacro %}

{% macro age_band(age_years) -%}
    {#- The surveillance age groups of the flu and fever marts (same cut points as the ingest's
        birth_date_age_band), for rows where only the age in years is known. -#}
    case
        when {{ age_years }} between 0 and 4 then '0-4'
        when {{ age_years }} between 5 and 14 then '5-14'
        when {{ age_years }} between 15 and 24 then '15-24'
        when {{ age_years }} between 25 and 59 then '25-59'
        when {{ age_years }} >= 60 then '60+'
    end
{%- endmacro %}

{% macro age_band_counts(band_column, condition='true') -%}
    {#- age_0_4 ... age_60_plus, age_unknown: rows of each age band (among rows meeting condition). -#}
    {%- set bands = [('0-4', 'age_0_4'), ('5-14', 'age_5_14'), ('15-24', 'age_15_24'),
                     ('25-59', 'age_25_59'), ('60+', 'age_60_plus')] -%}
    {%- for label, name in bands %}
    {{ hqms.count_if(condition ~ " and " ~ band_column ~ " = '" ~ label ~ "'") }} as {{ name }},
    {%- endfor %}
    {{ hqms.count_if(condition ~ " and " ~ band_column ~ " is null") }} as age_unknown
{%- endmacro %}

{% macro count_if(condition) -%}
    {#- Rows meeting a condition, as BIGINT (a bare SUM is HUGEINT in DuckDB, which Parquet lacks). -#}
    {{ hqms.sum_int('case when ' ~ condition ~ ' then 1 else 0 end') }}
{%- endmacro %}

{% macro sum_int(expr) -%}
    cast(coalesce(sum({{ expr }}), 0) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro flu_visit_columns() -%}
    {#- What every record of a flu visit (flu_, lis_, pdr_) starts with in staging: its lineage and
        the visit it belongs to — (org, visit type, card, visit time) is how they are linked. -#}
    _org_code as org_code,
    _nk as record_key,
    _received_at as received_at,
    _loaded_at,
    visit_type,
    visit_card_no_pid as visit_card_pid,
    visit_time,
    cast(visit_time as date) as visit_date
{%- endmacro %}
