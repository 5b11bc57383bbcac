"""How much one micro-batch reads at most unless the command says otherwise.

Bounded for Kafka as for files: a stream that fell behind (an outage, a load above what it
sustains) works off its backlog in batches of a size it has run before, instead of reading all
of it in one. A plain module (no Spark import): the command line reads it for its help.
"""

MAX_FILES_PER_TRIGGER = 64
# In `make bench` a 2 GB driver ran a 558,000-record Kafka batch and stopped in a 720,000 one;
# gridlake's driver has 4 GB by default. Smaller caps lower the rate a stream sustains: each
# batch pays a fixed cost, so larger batches keep up with more (8,000 events/s on 2 cores,
# with batches of about 270,000 records).
MAX_OFFSETS_PER_TRIGGER = 500_000
