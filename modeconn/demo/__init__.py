"""The main job on the embedded default (``modeconn demo``): train, sweep, compare, and write report.html."""
