{% macro latest_version(relation) -%}
    {#- The newest version of each record (org, record_key) of a staging model: the warehouse
        merge already keeps one row per natural key; this guards the marts if a source ever
        holds more (e.g. a replayed older upload). Portable SQL (no QUALIFY) for the
        dbt-trino/spark scale-out path. -#}
    select * from (
        select
            r.*,
            row_number() over (
                partition by org_code, record_key
                order by received_at desc, _loaded_at desc
            ) as version_rank
        from {{ relation }} as r
    ) as ranked
    where version_rank = 1
{%- endmacro %}
