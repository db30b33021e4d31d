{#- Schemas are the names given in dbt_project.yml (marts, staging, intermediate, ref), not
    "<target schema>_<name>": analysts and dashboards query marts.flu_daily by that name. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
