"""The weekly influenza bulletin (流感监测周报 style): figures from the published marts, charts
drawn with Vega-Lite (altair + vl-convert), one self-contained HTML page and its PDF."""
