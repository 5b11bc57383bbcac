"""The stream's tables (bronze, quarantine, silver): external assets, observed, and checked."""
