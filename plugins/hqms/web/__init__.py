"""The hospital service: the upload web page, the upload records and error lists, 资料下载, the
administrators' pages and the JSON API, on the accounts of :mod:`hqms.accounts`."""
