"""Daily device and site rollups: partitioned assets, their schedule, change sensor and checks."""
