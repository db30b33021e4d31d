{#- Incremental marts replace whole periods (days, months): a run recomputes the periods it
    "touched" and swaps them in. dbt's delete+insert deletes only the periods that have a row in
    the new batch, so a touched period left with no row at all (a re-sent fever visit moved to
    another date, and it was the date's only one) would keep its old rows forever.

    Hence, in incremental runs, each model appends a tombstone for every touched period without a
    row (hqms.tombstones), and the replace_periods strategy deletes every period of the batch,
    tombstones included, then inserts the batch's real rows only. A full refresh has no
    tombstones (nothing to replace). -#}

{% macro tombstones(rows, period_column, touched) -%}
    {#- Rows to UNION onto the model's rows (the CTE named `rows`): one per period of the query
        `touched` (one column: the periods this run recomputes) that `rows` has no row for; only the
        period column is set, everything else (_built_at included) is NULL. UNION ALL BY NAME
        (DuckDB) fills the other columns, so models keep their column list in one place. -#}
    union all by name
    select emptied.period as {{ period_column }}
    from (
        {{ touched }}
        except
        select {{ period_column }} from {{ rows }}
    ) as emptied (period)
{%- endmacro %}

{% macro get_incremental_replace_periods_sql(arg_dict) -%}
    {#- Custom incremental strategy (incremental_strategy='replace_periods', unique_key = the period
        column): delete every target row whose period is in the batch, then insert the batch's rows
        except the tombstones. Every mart row has _built_at; a tombstone has it NULL. -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set batch = arg_dict['temp_relation'] -%}
    {%- set keys = arg_dict['unique_key'] -%}
    {%- if not keys -%}
        {{ exceptions.raise_compiler_error("replace_periods needs unique_key (the period column)") }}
    {%- endif -%}
    {%- set keys = [keys] if keys is string else keys -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }} as dbt_target
    where exists (
        select 1 from {{ batch }} as dbt_batch
        where {% for key in keys %}dbt_batch.{{ key }} = dbt_target.{{ key }}{{ ' and ' if not loop.last }}{% endfor %}
    );

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ batch }}
    where _built_at is not null
{%- endmacro %}

{% macro rollup_touched(base, period_column) -%}
    {#- Periods a roll-up of `base` (a per-hospital mart) recomputes: those the base rebuilt since
        the roll-up's last build, and those the roll-up still has but the base no longer does
        (emptied there: cleared here by a tombstone). -#}
    select {{ period_column }} from {{ base }}
    where _built_at > (select max(_built_at) from {{ this }})
    union
    select gone.period from (
        select {{ period_column }} from {{ this }}
        except
        select {{ period_column }} from {{ base }}
    ) as gone (period)
{%- endmacro %}
