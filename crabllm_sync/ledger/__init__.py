"""The usage ledger at scale: hourly and daily rollups, retention."""
