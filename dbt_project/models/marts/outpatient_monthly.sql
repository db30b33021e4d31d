-- depends_on: {{ ref('stg_outpatient') }}
-- depends_on: {{ ref('int_file_versions') }}
{{ config(materialized='incremental', unique_key=['month'], tags=['monthly']) }}
{#- One row per (month, org_code): the hospital's outpatient information pages of the month.
    Incremental: months touched by mzsy_ rows loaded since the last build (minus the lookback) and
    the months of the earlier versions of the files they re-send (macros/resent_files.sql),
    replaced whole (a touched month left without rows gets a tombstone: macros/incremental.sql). -#}
with
{% if is_incremental() %}
touched as (
    -- months of pages loaded since the last build, and every month of the files they re-send
    -- (the pages an older version of a file loses may lie in another month)
    {{ hqms.periods_of_files_loaded_since(ref('stg_outpatient'), 'visit_month', hqms.rebuild_since(),
                                          ref('int_file_versions'), 'mzsy') }}
),
{% endif %}

visits as (
    select * from {{ ref('int_outpatient_visits') }}
    {% if is_incremental() %}
    where visit_month in (select visit_month from touched)
    {% endif %}
),

monthly as (
    select
        visit_month,
        org_code,
        count(*) as visits,
        {{ hqms.outpatient_page_counts() }},
        {{ hqms.count_if("dx_chapter = 'unknown'") }} as dx_unknown_visits,
        -- money: the exact sum (DECIMAL(18,4) values) rounded to cents, half away from zero.
        -- ZFY and ZFJE are required (every conforming page has them); KJYWF is optional: NULL
        -- when no page of the month reports it (absent, not 0.00), with the pages that do
        {{ hqms.cents('sum(total_cost)') }} as total_cost,
        {{ hqms.cents('sum(self_pay)') }} as self_pay_cost,
        {{ hqms.cents('sum(antibacterial_fee)') }} as antibiotic_cost,
        {{ hqms.count_if('antibacterial_fee is not null') }} as antibiotic_cost_pages,
        sum(total_cost) as exact_total_cost
    from visits
    group by visit_month, org_code
),

top_chapters as (
    select
        month,
        org_code,
        {%- for rank in range(1, 4) %}
        max(case when chapter_rank = {{ rank }} then dx_chapter end) as top_dx_chapter_{{ rank }},
        max(case when chapter_rank = {{ rank }} then visits end) as top_dx_chapter_{{ rank }}_visits{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('outpatient_monthly_dx_chapters') }}
    where chapter_rank <= 3
    {% if is_incremental() %}
      and month in (select visit_month from touched)
    {% endif %}
    group by month, org_code
),

pages as (
    select
        m.visit_month as month,
        m.org_code,
        h.province_code,
        h.city_code,
        m.visits,
        m.emergency_visits,
        m.revisits,
        m.infusion_visits,
        cast(m.infusion_visits as {{ hqms.type_double() }}) / m.visits as infusion_rate,
        m.chronic_special_visits,
        m.triage_level_1,
        m.triage_level_2,
        m.triage_level_3,
        m.triage_level_4,
        m.total_cost,
        m.self_pay_cost,
        m.antibiotic_cost,
        m.antibiotic_cost_pages,
        -- the exact mean (total_cost before rounding / visits) rounded to cents
        {{ hqms.cents_quotient('m.exact_total_cost', 'm.visits') }} as avg_cost_per_visit,
        t.top_dx_chapter_1,
        t.top_dx_chapter_1_visits,
        t.top_dx_chapter_2,
        t.top_dx_chapter_2_visits,
        t.top_dx_chapter_3,
        t.top_dx_chapter_3_visits,
        m.dx_unknown_visits,
        {{ hqms.build_timestamp() }} as _built_at
    from monthly as m
    left join top_chapters as t on t.month = m.visit_month and t.org_code = m.org_code
    left join {{ ref('stg_hospitals') }} as h on h.org_code = m.org_code
)

select * from pages
{% if is_incremental() %}
{{ hqms.tombstones('pages', 'month', 'select visit_month from touched') }}
{% endif %}
