//! The PostgreSQL engine runs the whole conformance suite, each case in a
//! fresh schema its guard drops. Needs `TASKSTATE_POSTGRES_URL`.

use taskstate_conformance::Factory;
use taskstate_postgres::PostgresBackend;
use taskstate_postgres::testing::{SchemaGuard, fresh_backend};

struct Postgres;

impl Factory for Postgres {
    type Backend = PostgresBackend;
    type Guard = SchemaGuard;

    fn create() -> Option<(PostgresBackend, SchemaGuard)> {
        fresh_backend("ts_conf")
    }
}

taskstate_conformance::suite!(Postgres);
