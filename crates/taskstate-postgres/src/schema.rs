//! The schema: created and migrated under an advisory lock, its version
//! checked before anything is read or written.

use postgres::Transaction;
use taskstate_core::{Error, Result};

use crate::sql::{DDL_V1, DDL_V2, DDL_V3, DDL_V4};
use crate::{PostgresBackend, SCHEMA_VERSION};

impl PostgresBackend {
    /// `Incompatible` for a schema version newer than this engine knows.
    pub(crate) fn refuse_newer(&self, version: i64) -> Result<()> {
        if version > SCHEMA_VERSION {
            return Err(Error::Incompatible {
                location: self.location.clone(),
                reason: format!(
                    "schema version {version} is newer than this taskstate-postgres knows ({SCHEMA_VERSION}); upgrade taskstate"
                ),
            });
        }
        Ok(())
    }

    /// For a read-only open: the schema exists at a version this engine
    /// reads. Runs one query and no DDL.
    pub(crate) fn verify_schema(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let rows = conn
            .client
            .query(
                "SELECT to_regclass(format('%I.taskstate_schema', $1::text)) IS NOT NULL",
                &[&self.schema],
            )
            .map_err(|e| self.pg_err("read schema", e))?;
        let exists = rows
            .first()
            .and_then(|r| r.try_get::<_, bool>(0).ok())
            .unwrap_or(false);
        if !exists {
            return Err(Error::invalid(format!(
                "no such store: {} has no taskstate tables",
                self.location
            )));
        }
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT max(version) FROM \"{}\".taskstate_schema",
                    self.schema
                ),
                &[],
            )
            .map_err(|e| self.pg_err("read schema version", e))?;
        let version = rows
            .first()
            .and_then(|r| r.try_get::<_, Option<i64>>(0).ok())
            .flatten()
            .unwrap_or(0);
        self.refuse_newer(version)?;
        if version < 1 {
            return Err(Error::invalid(format!(
                "no such store: {} was never migrated",
                self.location
            )));
        }
        Ok(())
    }

    pub(crate) fn migrate(&self) -> Result<()> {
        let s = format!("\"{}\"", self.schema);
        let lock_key = schema_lock_key(&self.schema);
        let mut conn = self.conn()?;
        let mut tx = conn
            .client
            .transaction()
            .map_err(|e| self.pg_err("begin migration", e))?;
        let step = |tx: &mut Transaction<'_>, sql: &str| tx.batch_execute(sql);
        let run = (|| -> std::result::Result<Option<i64>, postgres::Error> {
            // Serialises every process migrating this schema. An index on
            // a big table may take longer than the statement timeout.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])?;
            step(&mut tx, "SET LOCAL statement_timeout = 0")?;
            step(&mut tx, &format!("CREATE SCHEMA IF NOT EXISTS {s}"))?;
            step(
                &mut tx,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {s}.taskstate_schema (version bigint NOT NULL)"
                ),
            )?;
            let rows = tx.query(&format!("SELECT version FROM {s}.taskstate_schema"), &[])?;
            let version: i64 = match rows.first() {
                Some(r) => r.try_get(0)?,
                None => 0,
            };
            if version > SCHEMA_VERSION {
                return Ok(Some(version));
            }
            if version < 1 {
                step(&mut tx, &DDL_V1.replace("{s}", &s))?;
            }
            if version < 2 {
                step(&mut tx, &DDL_V2.replace("{s}", &s))?;
            }
            if version < 3 {
                step(&mut tx, &DDL_V3.replace("{s}", &s))?;
            }
            if version < 4 {
                step(&mut tx, &DDL_V4.replace("{s}", &s))?;
                step(&mut tx, &format!("DELETE FROM {s}.taskstate_schema"))?;
                tx.execute(
                    &format!("INSERT INTO {s}.taskstate_schema (version) VALUES ($1)"),
                    &[&SCHEMA_VERSION],
                )?;
            }
            Ok(None)
        })();
        match run {
            Ok(Some(newer)) => self.refuse_newer(newer),
            Ok(None) => tx.commit().map_err(|e| self.pg_err("commit migration", e)),
            Err(e) => Err(self.pg_err("migrate schema", e)),
        }
    }
    /// Drops this engine's schema and everything in it (used by tests to
    /// clean up; irreversible).
    pub fn drop_schema(&self) -> Result<()> {
        let mut conn = self.conn()?;
        conn.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .map_err(|e| self.pg_err("drop schema", e))
    }
}

/// Only plain identifiers are accepted as schema names, so splicing them
/// into SQL (quoted) is safe.
pub(crate) fn valid_schema_name(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "schema name {s:?}: use 1 to 63 letters, digits or '_', not starting with a digit"
        )))
    }
}

/// A stable advisory-lock key per schema (FNV-1a of the name).
pub(crate) fn schema_lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "taskstate-migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("taskstate").is_ok());
        assert!(valid_schema_name("t_1").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "x; DROP SCHEMA public",
            &"a".repeat(64),
        ] {
            assert!(valid_schema_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lock_keys_differ_per_schema() {
        assert_ne!(schema_lock_key("a"), schema_lock_key("b"));
        assert_eq!(schema_lock_key("a"), schema_lock_key("a"));
    }
}
