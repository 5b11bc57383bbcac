"""The event contract of gridlake and everything derived from it (schemas, rules, tables)."""

from shared_schemas.contract import CURRENT, V1, VERSIONS, Contract, Field

__all__ = ["CURRENT", "V1", "VERSIONS", "Contract", "Field"]
