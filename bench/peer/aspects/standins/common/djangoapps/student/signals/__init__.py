"""edx-platform's student signals package (stand-in)."""
