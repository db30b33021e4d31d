{#- Money in the marts is yuan rounded to cents, half away from zero, computed from the exact
    values (the warehouse keeps DECIMAL(18,4)): a sum is summed exactly and then rounded, a mean is
    the exact quotient rounded — never a sum of rounded values, nor a binary floating-point
    division (DuckDB divides decimals as DOUBLE: 1234.565 / 1 would round to 1234.56). docs/marts.md,
    "Conventions". -#}

{% macro cents(decimal_expr) -%}
    {#- An exact DECIMAL value (or a sum of them) rounded to cents; NULL stays NULL. -#}
    cast({{ decimal_expr }} as decimal(18, 2))
{%- endmacro %}

{% macro cents_quotient(decimal_expr, count_expr) -%}
    {#- decimal_expr / count_expr (a positive whole number) rounded to cents, in integer
        arithmetic on ten-thousandths of a yuan (exact for DECIMAL(18,4) inputs). -#}
    {%- set t = 'cast((' ~ decimal_expr ~ ') * 10000 as ' ~ dbt.type_bigint() ~ ')' -%}
    {%- set n = 'cast(' ~ count_expr ~ ' as ' ~ dbt.type_bigint() ~ ')' -%}
    cast(
        cast(sign({{ t }}) * ((abs({{ t }}) * 2 + 100 * {{ n }}) // (200 * {{ n }})) as decimal(20, 0)) * 0.01
        as decimal(18, 2))
{%- endmacro %}
