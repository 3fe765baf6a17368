"""Reporting: terminal tables and figures."""
