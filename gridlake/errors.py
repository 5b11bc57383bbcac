"""Named errors: each carries one sentence a person can act on; the CLI prints it and exits 1."""


class GridlakeError(Exception):
    """Base of every error gridlake reports to a person as one sentence."""


class SetupError(GridlakeError):
    """Something the installation should have provided is missing (jars, venv, ...)."""


class NotALakeError(GridlakeError):
    """A folder given as the lake root is not a gridlake lake."""


class BadArgumentError(GridlakeError):
    """A command-line value (date, path, source, id) is not acceptable."""


class ContractError(GridlakeError):
    """The event contract cannot be applied to an existing table (incompatible change)."""


class CheckpointError(GridlakeError):
    """A streaming checkpoint is damaged or belongs to another source."""


class DataLossError(GridlakeError):
    """A source no longer holds records the stream has not read (Kafka retention)."""
