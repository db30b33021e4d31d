{#- Epidemiological weeks (ISO 8601) and China's influenza surveillance year, one definition for
    dim_date, dim_epi_week and the published aggregates (docs/marts.md, "Epidemiological weeks").
    The Python side (hqms.bulletin.weeks) implements the same rule; tests compare the two. -#}

{#- First week of the surveillance year: week 14 (early April) to week 13 of the next year. -#}
{% macro flu_season_first_week() -%}14{%- endmacro %}

{% macro epi_week_label(iso_year, iso_week) -%}
    (cast({{ iso_year }} as varchar) || '-W' || lpad(cast({{ iso_week }} as varchar), 2, '0'))
{%- endmacro %}

{% macro flu_season_start(iso_year, iso_week) -%}
    cast(case when {{ iso_week }} >= {{ hqms.flu_season_first_week() }} then {{ iso_year }}
              else {{ iso_year }} - 1 end as integer)
{%- endmacro %}

{% macro flu_season_label(iso_year, iso_week) -%}
    (cast({{ hqms.flu_season_start(iso_year, iso_week) }} as varchar) || '-'
     || cast({{ hqms.flu_season_start(iso_year, iso_week) }} + 1 as varchar))
{%- endmacro %}
