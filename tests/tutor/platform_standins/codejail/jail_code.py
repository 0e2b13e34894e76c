"""Stand-in for codejail.jail_code."""

CONFIGS = {}


def configure(command, bin_path, user=None):
    CONFIGS[command] = {"bin_path": bin_path, "user": user}
