"""How much one micro-batch reads at most unless the command says otherwise.

Bounded for Kafka as for files: a stream that fell behind (an outage, a load above what it
sustains) works off its backlog in batches of a size it has run before, instead of reading all
of it in one. A plain module (no Spark import): the command line reads it for its help.
"""

MAX_FILES_PER_TRIGGER = 64
MAX_OFFSETS_PER_TRIGGER = 100_000
