"""Attendance: the rules, the fold of events into aggregates, staff edits, reports and their exports."""
