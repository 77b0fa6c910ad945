"""Campaigns: training runs longer than one session, their compact state kept in the repository
(``campaigns/NAME``), their working run in ``runs/NAME`` (``infinitygan campaign ...``)."""
