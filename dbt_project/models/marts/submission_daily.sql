-- depends_on: {{ ref('int_upload_periods') }}
{{ config(materialized='incremental', unique_key=['report_date'], tags=['daily']) }}
{#- Daily streams (flu, fever): one row per (registry hospital, report_date, stream).
    Incremental: report dates of uploads processed since the last build (minus the lookback),
    every day of a stream's range the mart does not have yet, and every day that was not yet due
    at the last build (its on_time was left open). -#}
with status as (
    select * from {{ ref('int_submission_status') }} where cadence = 'day'
)
{% if is_incremental() %}
, touched as (
    select period from {{ ref('int_upload_periods') }}
    where cadence = 'day' and processed_at > {{ hqms.rebuild_since() }}
    union
    -- (stream, day) of the range not built yet: not only days after the newest built one, but
    -- also days before or between when the range grew backwards (a late package for an earlier
    -- day extends the range; the days in between, which nobody reported, have no upload)
    select missing.period from (
        select stream, period from status
        except
        select stream, report_date from {{ this }}
    ) as missing
    union
    -- days not yet due at the previous build: due (or still not) now, with no upload to touch
    -- them, they must still get their on_time decided (a handful of days: the last two or so)
    select period from status
    where deadline_local > (select {{ hqms.local_timestamp('max(_built_at)') }} from {{ this }})
    union
    -- built days that left the range (an upload re-processed with another period): a tombstone
    select gone.period from (
        select report_date from {{ this }}
        except
        select period from status
    ) as gone (period)
)
{% endif %}

, daily as (
    select
        period as report_date,
        org_code,
        province_code,
        city_code,
        stream,
        received,
        first_received_at,
        first_received_local,
        deadline_local,
        due,
        on_time,
        uploads,
        records,
        conforming_records,
        conformance_rate,
        {{ hqms.build_timestamp() }} as _built_at
    from status
    {% if is_incremental() %}
    where period in (select period from touched)
    {% endif %}
)

select * from daily
{% if is_incremental() %}
{{ hqms.tombstones('daily', 'report_date', 'select period from touched') }}
{% endif %}
