{#- CSV files of ingested uploads, with the day / month a file is for (from its name, e.g.
    flu_20250106.csv, mzsy_202501.csv) next to the event dates its rows cover. -#}
select
    upload_id,
    file_name,
    dataset,
    stream,
    coalesce(record_count, 0) as record_count,
    coalesce(conforming_count, 0) as conforming_count,
    period_start,
    period_end,
    {{ hqms.file_name_date('file_name') }} as file_date
from {{ source('ops', 'upload_files') }}
