{#- The reporting calendar of the submission marts (docs/marts.md, "Reporting"): which period a
    date falls in, and the moment that decides which periods are due yet. -#}

{% macro reporting_cadence(stream) -%}
    {#- 'month' for the monthly streams (vars.monthly_streams), else 'day'. -#}
    case when {{ stream }} in ({{ "'" ~ var('monthly_streams') | join("', '") ~ "'" }}) then 'month' else 'day' end
{%- endmacro %}

{% macro reporting_period(cadence, day) -%}
    {#- The period a date falls in: the day itself (daily streams) or its month's first day. -#}
    case when {{ cadence }} = 'month' then cast({{ dbt.date_trunc('month', day) }} as date) else cast({{ day }} as date) end
{%- endmacro %}

{% macro reporting_as_of() -%}
    {#- "Now" for the reporting calendar, Asia/Shanghai wall clock (deadlines are local): the start
        of this dbt run — the instant stamped as _built_at, so a row tells what was due when it was
        built — or vars.as_of, a local 'YYYY-MM-DD HH:MM:SS' (tests; re-stating a past day). -#}
    {%- if var('as_of', none) -%}
        cast('{{ var("as_of") }}' as {{ dbt.type_timestamp() }})
    {%- else -%}
        {{ hqms.local_timestamp(hqms.build_timestamp()) }}
    {%- endif -%}
{%- endmacro %}
