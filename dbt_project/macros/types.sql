{% macro type_double() -%}
    {#- 64-bit float for rates (dbt.type_float() is a 32-bit FLOAT on DuckDB). "double" is the
        name in DuckDB, Trino and Spark; Postgres would need "double precision". -#}
    {{ return(adapter.dispatch('type_double', 'hqms')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double
{%- endmacro %}
