"""Fixtures of the fault drills: servers and filesystems that a drill may break."""

from tests.support.postgres import private_postgres  # noqa: F401 - a fixture
from tests.support.tmpfs import small_disk  # noqa: F401 - a fixture
