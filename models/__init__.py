"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from models.audit import AuditEntry
from models.base import Base, new_id, now
from models.function import FUNCTION_TYPES, ID_PATTERN, Function, FunctionVersion, UserValves
from models.sign_in import SignInFailures
from models.staged_import import StagedImport
from models.user import ROLES, ApiKey, User

__all__ = [
    "Base",
    "new_id",
    "now",
    "FUNCTION_TYPES",
    "ID_PATTERN",
    "Function",
    "FunctionVersion",
    "UserValves",
    "ROLES",
    "ApiKey",
    "User",
    "SignInFailures",
    "StagedImport",
    "AuditEntry",
]
