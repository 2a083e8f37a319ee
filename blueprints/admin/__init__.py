"""The admin pages: functions (list, editor, import and export), their valves, and users."""
