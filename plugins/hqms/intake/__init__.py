"""Intake: what happens between a hospital pressing "upload" and the zip waiting in landing.

``zipcheck`` applies the upload page's rules, ``submit`` records and lands an upload (the one
code path for the web page and the front-end machine), ``cli`` gives ``hqms submit``,
``hqms uploads`` and ``hqms errors``, ``policy`` renders the per-hospital S3 policy.
"""
