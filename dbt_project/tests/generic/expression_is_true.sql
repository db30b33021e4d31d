{#- Every row satisfies a SQL condition (internal consistency of a mart's counts). -#}
{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
