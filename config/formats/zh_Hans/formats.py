"""Simplified Chinese formats: Django's, with numbers grouped by thousands with a comma.

Django's zh_Hans leaves large numbers ungrouped ("1234567"); Chinese cloud consoles, which our
users know, write "1,234,567". Dates stay Django's ("2026年12月1日").
"""

from django.conf.locale.zh_Hans.formats import *  # noqa: F403

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
