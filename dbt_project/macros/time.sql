{#- Time helpers. Written in SQL that DuckDB, Trino, Spark and Postgres share where one exists;
    the few DuckDB-only functions are isolated here behind adapter.dispatch. -#}

{% macro local_timestamp(expr) -%}
    {#- A TIMESTAMP WITH TIME ZONE as wall-clock time in China Standard Time (deadlines are local). -#}
    cast(({{ expr }}) at time zone '{{ var("local_timezone") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro local_date(expr) -%}
    cast({{ hqms.local_timestamp(expr) }} as date)
{%- endmacro %}

{% macro build_timestamp() -%}
    {#- When this dbt invocation started (UTC); stamped on mart rows as _built_at. -#}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}+00:00' as timestamp with time zone)
{%- endmacro %}

{% macro rebuild_since() -%}
    {#- Incremental runs rebuild the periods of rows loaded after this instant: the previous build
        of this model, minus the lookback (re-sends of the 7-day window, late lab results). -#}
    (select {{ dbt.dateadd('day', -1 * var('lookback_days'), 'max(_built_at)') }} from {{ this }})
{%- endmacro %}

{% macro file_name_date(file_name) -%}
    {{ return(adapter.dispatch('file_name_date', 'hqms')(file_name)) }}
{%- endmacro %}

{% macro default__file_name_date(file_name) -%}
    {#- The day a package is for, from names like flu_20250106.csv / flu_20250106_2.csv, also with
        the marks a copy or a second download adds (flu_20250106(1).csv, "flu_20250106 - 副本.csv");
        a monthly name (mzsy_202501.csv) gives the first day of the month. Dates are also read
        with separators, as hospitals write them: a day as 2025-01-06 or 2025_01_06, a month as
        2025-01 or 2025_01 (the reference fixes only the prefix). The day is tried first, so
        flu_2025_01_06.csv is a day, not month 2025-01 split part 06. NULL otherwise (also for an
        impossible date, flu_20251399.csv). The patterns are hqms.spec.filenames', the ingest's
        too (macros/file_name_patterns.sql is generated from them). -#}
    {%- set day = hqms.file_name_pattern('day') -%}
    {%- set month = hqms.file_name_pattern('month') -%}
    {%- set separators = hqms.file_name_pattern('date_separators') %}
    case
        when regexp_matches({{ file_name }}, '{{ day }}')
            then cast(try_strptime(regexp_replace(regexp_extract({{ file_name }}, '{{ day }}', 1), '{{ separators }}', '', 'g'),
                                   '%Y%m%d') as date)
        when regexp_matches({{ file_name }}, '{{ month }}')
            then cast(try_strptime(regexp_replace(regexp_extract({{ file_name }}, '{{ month }}', 1), '{{ separators }}', '', 'g')
                                   || '01', '%Y%m%d') as date)
    end
{%- endmacro %}

{% macro period_series(lower, upper, step) -%}
    {{ return(adapter.dispatch('period_series', 'hqms')(lower, upper, step)) }}
{%- endmacro %}

{% macro default__period_series(lower, upper, step) -%}
    {#- FROM-clause item: one row per period start from lower to upper (inclusive), column "period".
        Correlated on columns of a preceding FROM item (lateral). -#}
    generate_series(cast({{ lower }} as {{ dbt.type_timestamp() }}), cast({{ upper }} as {{ dbt.type_timestamp() }}),
                    interval '1 {{ step }}') as series(period)
{%- endmacro %}
