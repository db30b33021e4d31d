{#- One row per fever-clinic visit (fever_, de-duplicated by natural key = P7000 within the org)
    with its influenza testing from linked lab_ rows (same org and P7000).

    A lab_ row is an influenza test when one of its item names (P7624 detail, P7616 in-hospital,
    P7614 standard) matches a pattern of the fever_flu_tests seed (case-insensitive regular
    expressions). Its result reads positive, negative, undetermined or pending (no result yet:
    ordered, not tested) by hqms.lab_result_status (macros/lab_results.sql): the qualitative text
    P7621, else the abnormal flag P7625 and the numeric value P7620 against its range P7618.
    A visit's outcome is its most telling test: positive if any test is, else undetermined if
    any is, else negative if any is, else pending.

    Its type (A / B) is read from the most specific name that names one: the detail name when it
    names a type, else the two item names together. The item names often name a whole panel
    (甲乙型流感病毒抗原) that has one detail row per virus, so they must not type the detail rows.
    A name, or the two item names together, naming both types (a combined panel, flu_type AB)
    gives no type: the row is then an untyped influenza test (tested / positive, neither A nor B).
    A positive visit is A only, B only, both, or untyped (positive, but by no typed test): the four
    add up to flu_positive, so shares of A and B can be taken over the typed positives. -#}
with visits as (
    {{ hqms.latest_version(ref('stg_fever')) }}
),

-- Each name of a lab_ row on its own row; is_detail marks the most specific one.
lab_names as (
    {%- for col in ['detail_name', 'local_item_name', 'item_name'] %}
    select org_code, visit_serial_pid, record_key, result_text, result_value, reference_range, abnormal_flag,
        {{ 'true' if col == 'detail_name' else 'false' }} as is_detail,
        {{ col }} as item_text
    from {{ ref('stg_lab') }}
    where {{ col }} is not null
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

-- The types each distinct name names. Matched once per distinct name, not per lab_ row: a
-- pattern read from a column is compiled for every row it is matched against, and lab_ holds
-- every result of the visit (blood counts …) but few distinct names.
name_types as (
    select
        n.item_text,
        {{ dbt.bool_or("t.flu_type in ('A', 'AB')") }} as names_a,
        {{ dbt.bool_or("t.flu_type in ('B', 'AB')") }} as names_b
    from (select distinct item_text from lab_names) as n
    inner join {{ ref('fever_flu_tests') }} as t
        -- RE2 syntax, case-insensitive; DuckDB's function (a dbt-trino port: regexp_like)
        on regexp_matches(n.item_text, '(?i)' || t.pattern)
    group by n.item_text
),

-- One row per influenza test (lab_ row with a matching name): the types named by its detail
-- name and by its item names.
flu_tests as (
    select
        l.org_code,
        l.visit_serial_pid,
        l.record_key,
        {{ hqms.lab_result_status('l.result_text', 'l.result_value', 'l.reference_range', 'l.abnormal_flag') }}
            as result_status,
        {{ dbt.bool_or('l.is_detail and nt.names_a') }} as detail_names_a,
        {{ dbt.bool_or('l.is_detail and nt.names_b') }} as detail_names_b,
        {{ dbt.bool_or('not l.is_detail and nt.names_a') }} as item_names_a,
        {{ dbt.bool_or('not l.is_detail and nt.names_b') }} as item_names_b
    from lab_names as l
    inner join name_types as nt on nt.item_text = l.item_text
    group by l.org_code, l.visit_serial_pid, l.record_key, l.result_text, l.result_value, l.reference_range,
        l.abnormal_flag
),

-- The most specific level naming a type decides; naming both types is no single type.
typed_tests as (
    select
        org_code,
        visit_serial_pid,
        result_status,
        result_status = 'positive' as is_positive,
        case when detail_names_a or detail_names_b then detail_names_a and not detail_names_b
             else item_names_a and not item_names_b end as is_flu_a,
        case when detail_names_a or detail_names_b then detail_names_b and not detail_names_a
             else item_names_b and not item_names_a end as is_flu_b
    from flu_tests
),

test_flags as (
    select
        org_code,
        visit_serial_pid,
        {{ dbt.bool_or("result_status <> 'pending'") }} as flu_tested,
        {{ dbt.bool_or('is_positive') }} as flu_positive,
        {{ dbt.bool_or("result_status = 'undetermined'") }} as any_undetermined,
        {{ dbt.bool_or('is_positive and is_flu_a') }} as flu_a_positive,
        {{ dbt.bool_or('is_positive and is_flu_b') }} as flu_b_positive
    from typed_tests
    group by org_code, visit_serial_pid
)

select
    v.org_code,
    v.record_key,
    v.visit_time,
    v.visit_date,
    v.sex,
    v.age_band,
    v.is_first_visit,
    v.is_referral,
    v.is_observation_stay,
    coalesce(not t.flu_tested, false) as flu_pending,
    coalesce(t.flu_tested, false) as flu_tested,
    coalesce(t.flu_positive, false) as flu_positive,
    coalesce(t.flu_tested and not t.flu_positive and t.any_undetermined, false) as flu_undetermined,
    coalesce(t.flu_a_positive, false) as flu_a_positive,
    coalesce(t.flu_b_positive, false) as flu_b_positive,
    coalesce(t.flu_a_positive and not t.flu_b_positive, false) as flu_a_only,
    coalesce(t.flu_b_positive and not t.flu_a_positive, false) as flu_b_only,
    coalesce(t.flu_a_positive and t.flu_b_positive, false) as flu_ab_both,
    coalesce(t.flu_positive and not t.flu_a_positive and not t.flu_b_positive, false) as flu_untyped_positive,
    v.total_cost,
    v.received_at,
    v._loaded_at
from visits as v
left join test_flags as t
    on t.org_code = v.org_code and t.visit_serial_pid = v.visit_serial_pid
