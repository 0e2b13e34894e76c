"""Stand-in package path of edx-platform (bench/peer/aspects/README.txt)."""
