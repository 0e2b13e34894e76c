"""The management commands: options, answers, exit statuses, what they write to a terminal."""
