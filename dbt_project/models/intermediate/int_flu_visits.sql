{#- One row per flu_ visit (after de-duplication by natural key) with the case definition applied.

    Baseline definition (docs/marts.md):
    * a visit is a flu case when any diagnosis code starts with a prefix in the flu_icd10 seed
      (J09, J10, J11), or a linked lis_ record is positive (P8004 = 1) for a flu lab item
      (flu_lab_items seed: 35 = A, 36 = B);
    * antiviral: a linked pdr_ drug whose name contains a baseline pattern (generic or brand name, or
      the English name) of the flu_antivirals seed;
      within 48 h when the earliest such drug started no later than 48 h after the visit time;
    * severe: an ICU stay recorded, a flu pneumonia code (is_pneumonia in flu_icd10), or death.

    Date-only visit times (docs/marts.md; macros/visit_time.sql). P7506 may be written as a date
    only, stored at 00:00:00:
    * linked = same org, visit type (P7501) and card (P7502 pseudonym), and hqms.same_visit_time:
      equal P7506, or either side at exactly 00:00:00 and both on the same date. The lab and drug
      flags are aggregated per visit after the join, so a visit is never duplicated;
    * de-duplication: after the latest version per natural key, hqms.drop_precision_switches drops
      a visit when a newer upload (received_at, then _loaded_at) sent a row of the same org +
      visit type + card on the same date in the other precision (date-only vs with a time).
      Rows of one upload never drop each other. lis_ and pdr_ records get the same rule before
      they are linked, per their natural key with P7506 read as its date (lis_: P8000 specimen,
      pdr_: P7500 order line), so a re-sent, corrected record replaces the old one.
    Known limitation: a visit genuinely recorded at exactly 00:00:00 counts as date-only. -#}
with latest as (
    {{ hqms.latest_version(ref('stg_flu')) }}
),

visits as (
    {{ hqms.drop_precision_switches('latest', ['visit_type', 'visit_card_pid']) }}
),

-- lis_ / pdr_ records minus those a newer upload re-sent with P7506 in the other precision.
-- P7506 is part of their natural key, so the re-send is a new record and the old one stays in
-- dw: a stale timed positive would still link to the visit next to its corrected date-only
-- re-send. Partitioned by the natural key without P7506 (plus its date); dw keeps one row per
-- natural key, as the macro needs.
lab_records as (
    {{ hqms.drop_precision_switches(ref('stg_lis'), ['visit_type', 'visit_card_pid', 'test_record_pid']) }}
),

drug_records as (
    {{ hqms.drop_precision_switches(ref('stg_pdr'), ['visit_type', 'visit_card_pid', 'order_line_pid']) }}
),

diagnoses as (
    {%- for col in hqms.flu_dx_columns() %}
    select org_code, record_key, {{ col }} as dx_code from visits where {{ col }} is not null
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

dx_flags as (
    select
        d.org_code,
        d.record_key,
        {{ dbt.bool_or('i.code_prefix is not null') }} as has_flu_dx,
        {{ dbt.bool_or('coalesce(i.is_pneumonia, false)') }} as has_flu_pneumonia_dx
    from diagnoses as d
    left join {{ ref('flu_icd10') }} as i
        on {{ hqms.starts_with_ci('d.dx_code', 'i.code_prefix') }}
    group by d.org_code, d.record_key
),

lab_by_time as (
    select
        l.org_code,
        l.visit_type,
        l.visit_card_pid,
        l.visit_time,
        {{ dbt.bool_or("items.flu_type = 'A'") }} as lab_positive_a,
        {{ dbt.bool_or("items.flu_type = 'B'") }} as lab_positive_b
    from lab_records as l
    inner join {{ ref('flu_lab_items') }} as items on items.item_code = l.item_code
    where l.is_positive
    group by l.org_code, l.visit_type, l.visit_card_pid, l.visit_time
),

-- Linked per visit: equality on org / type / card (the hash-join keys), the time rule as a
-- filter, then one row per visit again.
lab_flags as (
    select
        v.org_code,
        v.record_key,
        {{ dbt.bool_or('lab.lab_positive_a') }} as lab_positive_a,
        {{ dbt.bool_or('lab.lab_positive_b') }} as lab_positive_b
    from visits as v
    inner join lab_by_time as lab
        on {{ hqms.links_to_visit('lab', 'v') }}
    group by v.org_code, v.record_key
),

antiviral_by_time as (
    select
        p.org_code,
        p.visit_type,
        p.visit_card_pid,
        p.visit_time,
        min(p.start_time) as first_antiviral_start
    from drug_records as p
    where exists (
        select 1 from {{ ref('flu_antivirals') }} as a
        where a.in_baseline
          and ({{ hqms.contains_ci('p.drug_name', 'a.pattern') }} or {{ hqms.contains_ci('p.drug_name', 'a.name_en') }})
    )
    group by p.org_code, p.visit_type, p.visit_card_pid, p.visit_time
),

antiviral_flags as (
    select
        v.org_code,
        v.record_key,
        min(av.first_antiviral_start) as first_antiviral_start
    from visits as v
    inner join antiviral_by_time as av
        on {{ hqms.links_to_visit('av', 'v') }}
    group by v.org_code, v.record_key
),

flagged as (
    select
        v.org_code,
        v.record_key,
        v.visit_type,
        v.visit_time,
        v.visit_date,
        v.age_band,
        v.sex,
        coalesce(dx.has_flu_dx, false) as has_flu_dx,
        coalesce(lab.lab_positive_a, false) as lab_confirmed_a,
        coalesce(lab.lab_positive_b, false) as lab_confirmed_b,
        av.org_code is not null as antiviral_treated,
        coalesce(av.first_antiviral_start <= {{ dbt.dateadd('hour', 48, 'v.visit_time') }}, false)
            as antiviral_within_48h,
        v.had_icu_stay,
        coalesce(dx.has_flu_pneumonia_dx, false) as has_flu_pneumonia_dx,
        coalesce(v.died, false) as died,
        v.received_at,
        v._loaded_at
    from visits as v
    left join dx_flags as dx
        on dx.org_code = v.org_code and dx.record_key = v.record_key
    left join lab_flags as lab
        on lab.org_code = v.org_code and lab.record_key = v.record_key
    left join antiviral_flags as av
        on av.org_code = v.org_code and av.record_key = v.record_key
)

select
    flagged.*,
    (has_flu_dx or lab_confirmed_a or lab_confirmed_b) as is_case,
    (had_icu_stay or has_flu_pneumonia_dx or died) as is_severe
from flagged
