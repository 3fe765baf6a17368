"""Reporting: terminal tables, figures and the HTML report of a run or a study."""
