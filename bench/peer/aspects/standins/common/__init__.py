"""Stand-in for edx-platform's `common` package (only what platform-plugin-aspects' enrollment path needs)."""
