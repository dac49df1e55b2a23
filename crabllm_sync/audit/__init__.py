"""The request log (audit): one record per request, and hourly/daily rollups
of usage that the console's charts read instead of scanning records."""
