{#- Visit times written as a date only.

    The interface standard writes 就诊日期 P7506 (flu_, lis_, pdr_) and JZSJ (mzsy_) as
    yyyy-MM-dd HH:mm:ss, but yyyy-MM-dd is accepted too and stored as a TIMESTAMP at exactly
    00:00:00. Two rules of the marts (docs/marts.md, "Date-only visit times") follow from that,
    each written once here:

    * same_visit_time: linking lis_ / pdr_ rows to their flu_ visit;
    * drop_precision_switches: de-duplicating visits (and the lis_ / pdr_ records linked to them,
      whose natural keys hold P7506 too) across uploads when a hospital's exporter switched
      between date-time and date-only.

    Known limitation of both: a visit genuinely recorded at exactly 00:00:00 is taken for a
    date-only one. -#}

{% macro is_date_only(ts) -%}
    {#- The time part is 00:00:00 (the value was written as a date only). NULL when ts is NULL. -#}
    ({{ dbt.date_trunc('day', ts) }} = {{ ts }})
{%- endmacro %}

{% macro same_visit_time(a, b) -%}
    {#- Two visit times denote the same visit: equal, or either one is a date only (midnight) and
        both fall on the same date. Use it next to equality conditions on the other link columns
        (org, visit type, card): the date equality is a top-level conjunct, so the join stays a
        hash join on (org, type, card, date) and the rest is a filter on the few matches. -#}
    (cast({{ a }} as date) = cast({{ b }} as date)
     and ({{ a }} = {{ b }} or {{ hqms.is_date_only(a) }} or {{ hqms.is_date_only(b) }}))
{%- endmacro %}

{% macro links_to_visit(row, visit) -%}
    {#- ON clause linking a lis_ / pdr_ row (alias row) to its flu_ visit (alias visit): same org,
        visit type and card, and the same visit time by same_visit_time. -#}
    {{ row }}.org_code = {{ visit }}.org_code and {{ row }}.visit_type = {{ visit }}.visit_type
        and {{ row }}.visit_card_pid = {{ visit }}.visit_card_pid
        and {{ hqms.same_visit_time(row ~ '.visit_time', visit ~ '.visit_time') }}
{%- endmacro %}

{% macro drop_precision_switches(relation, key_columns, time_column='visit_time') -%}
    {#- Rows of relation (one row per record, i.e. after latest_version; needs org_code,
        received_at, _loaded_at and the given columns) minus those superseded by a change of
        precision: a row is dropped when a NEWER upload sent a row of the same org_code +
        key_columns on the same date of time_column in the OTHER precision (one date-only, the
        other with a time). Uploads are ordered by received_at, then _loaded_at (NULL oldest);
        rows with equal (received_at, _loaded_at) come from the same upload and never drop each
        other (two genuine visits of one day). Rows with a NULL key or time are never dropped.

        One pass of window functions partitioned by (org_code, key_columns, date): no self-join.
        The helper columns all start with _precision_. -#}
    {%- set partition = (['org_code'] + key_columns + ['cast(' ~ time_column ~ ' as date)']) | join(', ') %}
    select * from (
        select
            ranked.*,
            max(case when not _precision_date_only then _precision_upload_rank end) over (
                partition by {{ partition }}
            ) as _precision_newest_timed,
            max(case when _precision_date_only then _precision_upload_rank end) over (
                partition by {{ partition }}
            ) as _precision_newest_date_only
        from (
            select
                r.*,
                {{ hqms.is_date_only('r.' ~ time_column) }} as _precision_date_only,
                dense_rank() over (
                    partition by {{ partition }}
                    order by received_at asc nulls first, _loaded_at asc nulls first
                ) as _precision_upload_rank
            from {{ relation }} as r
        ) as ranked
    ) as precision_ranked
    where {% for col in key_columns + [time_column] %}{{ col }} is null or {% endfor %}not coalesce(
        case
            when _precision_date_only then _precision_newest_timed > _precision_upload_rank
            else _precision_newest_date_only > _precision_upload_rank
        end, false)
{%- endmacro %}
