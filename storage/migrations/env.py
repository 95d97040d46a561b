"""Alembic environment: the engine is handed in by storage.db, never read from a file."""

from alembic import context

from storage.models import Base
from storage.search import include_object

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,  # the search indexes are the migrations' own
        render_as_batch=engine.url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
