{% macro contains_ci(haystack, needle) -%}
    {#- Case-insensitive substring test in standard SQL (drug and test names are free text). -#}
    (lower({{ haystack }}) like '%' || lower({{ needle }}) || '%')
{%- endmacro %}

{% macro starts_with_ci(value, prefix) -%}
    (upper({{ value }}) like upper({{ prefix }}) || '%')
{%- endmacro %}
