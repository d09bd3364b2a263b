"""Every table the migrations manage, gathered on one metadata object.

Alembic's environment and the schema tests import this module; a module that defines
tables must be imported here, or its tables are invisible to both.
"""

from __future__ import annotations

from exposure import ratelimit as _ratelimit  # noqa: F401 - registers rate_limit_windows
from exposure.auditors import models as _auditors  # noqa: F401 - auditor API keys
from exposure.db import lease as _lease  # noqa: F401 - registers the leases table
from exposure.db.base import Base
from exposure.keys import models as _keys  # noqa: F401 - the sealed private keys and secrets
from exposure.retention import models as _retention  # noqa: F401 - the retention log tables

metadata = Base.metadata
