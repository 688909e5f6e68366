"""The lake domain: extract (+ Great Expectations checks), lake partitions, marts, and their automation."""
