{{ config(tags=['daily', 'monthly']) }}
{#- One row per epidemiological (ISO) week: its days, surveillance season, week of season, and
    the same week of the two earlier seasons (same ISO week number; week 53 compares with week
    52 of a year that has none) — what the weekly report's season curves are drawn against. -#}
with weeks as (
    select
        week_label,
        min(iso_year) as iso_year,
        min(iso_week) as iso_week,
        min(week_start) as week_start,
        min(week_end) as week_end,
        min(season) as season,
        min(season_start_year) as season_start_year
    from {{ ref('dim_date') }}
    group by week_label
),

weeks_per_year as (
    select iso_year, max(iso_week) as weeks_in_year from weeks group by iso_year
)

select
    w.week_label,
    w.iso_year,
    w.iso_week,
    w.week_start,
    w.week_end,
    w.season,
    w.season_start_year,
    cast(row_number() over (partition by w.season_start_year order by w.week_start) as integer) as season_week,
    lag(w.week_label) over (order by w.week_start) as previous_week,
    {{ hqms.epi_week_label('w.iso_year - 1', 'least(w.iso_week, p1.weeks_in_year)') }} as same_week_1_season_ago,
    {{ hqms.epi_week_label('w.iso_year - 2', 'least(w.iso_week, p2.weeks_in_year)') }} as same_week_2_seasons_ago
from weeks as w
left join weeks_per_year as p1 on p1.iso_year = w.iso_year - 1
left join weeks_per_year as p2 on p2.iso_year = w.iso_year - 2
