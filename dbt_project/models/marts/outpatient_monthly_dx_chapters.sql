-- depends_on: {{ ref('stg_outpatient') }}
-- depends_on: {{ ref('int_file_versions') }}
{{ config(materialized='incremental', unique_key=['month'], tags=['monthly']) }}
{#- One row per (month, org_code, ICD-10 chapter of the principal diagnosis): visits and rank
    (1 = the hospital's most frequent chapter that month; ties broken by chapter order).
    Incremental like outpatient_monthly (months replaced whole, tombstones: macros/incremental.sql). -#}
with
{% if is_incremental() %}
touched as (
    -- months of pages loaded since the last build, and every month of the files they re-send
    -- (the pages an older version of a file loses may lie in another month)
    {{ hqms.periods_of_files_loaded_since(ref('stg_outpatient'), 'visit_month', hqms.rebuild_since(),
                                          ref('int_file_versions'), 'mzsy') }}
),
{% endif %}

counted as (
    select visit_month, org_code, dx_chapter, count(*) as visits
    from {{ ref('int_outpatient_visits') }}
    {% if is_incremental() %}
    where visit_month in (select visit_month from touched)
    {% endif %}
    group by visit_month, org_code, dx_chapter
),

ranked as (
    select
        c.visit_month as month,
        c.org_code,
        c.dx_chapter,
        ch.name_zh as dx_chapter_name_zh,
        ch.name_en as dx_chapter_name_en,
        c.visits,
        -- real chapters only: 'unknown' (no code, not a code, or outside every chapter range)
        -- is counted in its own row but never ranked, so it cannot take a top-3 slot. Ties by
        -- chapter number (I .. XXII), not by first code: XXII (U00-U85) would sort before XX
        -- (V01) and XXI (Z00)
        case when ch.chapter is not null then
            row_number() over (
                partition by c.visit_month, c.org_code, ch.chapter is null
                order by c.visits desc, ch.chapter_number
            )
        end as chapter_rank,
        {{ hqms.build_timestamp() }} as _built_at
    from counted as c
    left join {{ ref('icd10_chapters') }} as ch on ch.chapter = c.dx_chapter
)

select * from ranked
{% if is_incremental() %}
{{ hqms.tombstones('ranked', 'month', 'select visit_month from touched') }}
{% endif %}
