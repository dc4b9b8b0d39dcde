"""The HTML report of a run or a sweep folder: one self-contained page a researcher can open offline.

`write_report(folder)` writes `<folder>/report.html` with the config, the figures (embedded), the
tables and a browser over every evaluated sample.
"""

from transferlab.report.page import write_report

__all__ = ["write_report"]
