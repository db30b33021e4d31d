{{ config(tags=['daily', 'monthly']) }}
{#- One row per calendar day 2015-01-01 … 2035-12-31: its epidemiological week and month.

    Epidemiological week = ISO 8601 week: Monday to Sunday, week 1 is the week holding the
    year's first Thursday, so 2020-12-31 and 2021-01-03 are 2020-W53 and 2024-12-30 is 2025-W01
    (the week-year can differ from the calendar year). China's influenza surveillance year
    (流感监测年度) runs from week 14 of one year to week 13 of the next (docs/marts.md). -#}
with days as (
    select cast(d as date) as date_day
    from generate_series(date '2015-01-01', date '2035-12-31', interval 1 day) as t (d)
)

select
    date_day,
    cast(isoyear(date_day) as integer) as iso_year,
    cast(week(date_day) as integer) as iso_week,
    cast(isodow(date_day) as integer) as iso_weekday,
    {{ hqms.epi_week_label('isoyear(date_day)', 'week(date_day)') }} as week_label,
    cast(date_trunc('week', date_day) as date) as week_start,
    cast(date_trunc('week', date_day) as date) + 6 as week_end,
    cast(date_trunc('month', date_day) as date) as month_start,
    cast(last_day(date_day) as date) as month_end,
    strftime(date_day, '%Y-%m') as month_label,
    {{ hqms.flu_season_start('isoyear(date_day)', 'week(date_day)') }} as season_start_year,
    {{ hqms.flu_season_label('isoyear(date_day)', 'week(date_day)') }} as season
from days
