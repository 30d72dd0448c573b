//! What the database's migration history says about this binary, read
//! before refinery runs.
//!
//! refinery alone knows two answers to a database that has migrations this
//! binary does not embed: refuse (its default, which makes rolling back a
//! release impossible) or, with `set_abort_missing(false)`, go on, which
//! also skips an embedded migration that was never applied but is older
//! than the newest applied one, saying so only through the `log` crate.
//! [`plan`] tells the cases apart: a newer release ran here (refused unless
//! `database.accept_newer_schema`), or the history has a hole or a
//! stranger in it (always refused).

use std::fmt;

use super::DbError;

/// refinery's history table (its default name, which keyward keeps).
const HISTORY_TABLE: &str = "refinery_schema_history";

/// A migration as refinery's history table records it, or as this binary
/// embeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    /// refinery's checksum (of name, version and SQL), as the history
    /// table keeps it: the decimal digits of a `u64`.
    pub checksum: String,
}

impl Migration {
    pub fn new(version: i64, name: &str, checksum: &str) -> Self {
        Self {
            version,
            name: name.to_owned(),
            checksum: checksum.to_owned(),
        }
    }
}

impl From<&refinery::Migration> for Migration {
    fn from(m: &refinery::Migration) -> Self {
        Self::new(m.version().into(), m.name(), &m.checksum().to_string())
    }
}

/// `V14__inbound_batch`: the name of its file in `sql/`.
impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}__{}", self.version, self.name)
    }
}

/// `V14__inbound_batch, V15__…`
pub fn list(migrations: &[Migration]) -> String {
    let names: Vec<String> = migrations.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// What `migrate` does.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Let refinery apply the embedded migrations not applied yet (perhaps
    /// none).
    Apply,
    /// A newer release migrated this database, and that is accepted: apply
    /// nothing. These are its migrations, which this binary does not know.
    RunOnNewer(Vec<Migration>),
}

/// Why `migrate` refuses the database.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "this keyward is older than the database's schema: the database has {} from a newer \
         release, which this binary does not have. Run the newer release, or, if those \
         migrations are backward compatible (README, \"Rolling back a release\"), set \
         database.accept_newer_schema = true (KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA=true) to \
         run this one on it",
        list(.0)
    )]
    Newer(Vec<Migration>),
    #[error(
        "the database records {} as applied, which this keyward does not have although they \
         are older than its newest migration: {HISTORY_TABLE} was changed by hand, or this is \
         not a keyward database; refused whatever database.accept_newer_schema says",
        list(.0)
    )]
    Unknown(Vec<Migration>),
    #[error(
        "{} of this keyward {} never applied to the database, yet later ones are (up to V{}): \
         a hole in {HISTORY_TABLE} (changed by hand?) that migrating would skip; refused \
         whatever database.accept_newer_schema says",
        list(.missing),
        if .missing.len() == 1 { "was" } else { "were" },
        .newest_applied
    )]
    Hole {
        missing: Vec<Migration>,
        newest_applied: i64,
    },
    #[error(
        "the database applied {} under the same version{} as this keyward's {} but with another \
         name or content: a migration was changed after it was applied; refused whatever \
         database.accept_newer_schema says",
        list(&.0.iter().map(|(applied, _)| applied.clone()).collect::<Vec<_>>()),
        if .0.len() == 1 { "" } else { "s" },
        list(&.0.iter().map(|(_, embedded)| embedded.clone()).collect::<Vec<_>>())
    )]
    Divergent(Vec<(Migration, Migration)>),
}

/// Decides from the migrations the database has `applied` and those this
/// binary `embedded` what `migrate` does, or why it refuses.
///
/// - Applied migrations newer than every embedded one, with every embedded
///   one applied: a newer release migrated this database (a rollback).
///   Refused, unless `accept_newer` ([`Plan::RunOnNewer`]).
/// - An applied migration this binary does not have that is not newer than
///   its newest, an embedded one not applied that is older than the newest
///   applied (a hole), or one both know that differs: refused, always.
/// - Otherwise [`Plan::Apply`], refinery's usual run.
pub fn plan(
    applied: &[Migration],
    embedded: &[Migration],
    accept_newer: bool,
) -> Result<Plan, Mismatch> {
    let find = |list: &[Migration], version| list.iter().find(|m| m.version == version).cloned();
    let divergent: Vec<(Migration, Migration)> = applied
        .iter()
        .filter_map(|a| find(embedded, a.version).map(|e| (a.clone(), e)))
        .filter(|(a, e)| a != e)
        .collect();
    if !divergent.is_empty() {
        return Err(Mismatch::Divergent(divergent));
    }
    let newest_embedded = embedded.iter().map(|m| m.version).max();
    let (newer, unknown): (Vec<Migration>, Vec<Migration>) = applied
        .iter()
        .filter(|a| find(embedded, a.version).is_none())
        .cloned()
        .partition(|a| newest_embedded.is_none_or(|newest| a.version > newest));
    if !unknown.is_empty() {
        return Err(Mismatch::Unknown(unknown));
    }
    if let Some(newest_applied) = applied.iter().map(|m| m.version).max() {
        let missing: Vec<Migration> = embedded
            .iter()
            .filter(|e| e.version < newest_applied && find(applied, e.version).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Mismatch::Hole {
                missing,
                newest_applied,
            });
        }
    }
    match (newer.is_empty(), accept_newer) {
        (true, _) => Ok(Plan::Apply),
        (false, true) => Ok(Plan::RunOnNewer(newer)),
        (false, false) => Err(Mismatch::Newer(newer)),
    }
}

/// The migrations refinery recorded as applied, by version; none when its
/// table does not exist yet (a fresh database).
pub async fn applied(client: &tokio_postgres::Client) -> Result<Vec<Migration>, DbError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[&HISTORY_TABLE],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version, name, checksum FROM {HISTORY_TABLE} ORDER BY version"),
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Migration {
                version: row.try_get::<_, i32>(0)?.into(),
                // Both columns may be NULL; refinery always writes them.
                name: row.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
                checksum: row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V1 to V`n`, each with a checksum of its own.
    fn upto(n: i64) -> Vec<Migration> {
        (1..=n)
            .map(|v| Migration::new(v, &format!("step{v}"), &format!("{}", v * 1000)))
            .collect()
    }

    fn without(mut list: Vec<Migration>, version: i64) -> Vec<Migration> {
        list.retain(|m| m.version != version);
        list
    }

    fn later(version: i64) -> Migration {
        Migration::new(version, "from_a_later_release", "42")
    }

    fn with(mut list: Vec<Migration>, m: Migration) -> Vec<Migration> {
        list.push(m);
        list
    }

    #[test]
    fn a_fresh_database_a_partly_migrated_one_and_an_up_to_date_one_are_migrated() {
        for accept in [false, true] {
            for applied in [vec![], upto(5), upto(14)] {
                assert_eq!(plan(&applied, &upto(14), accept), Ok(Plan::Apply));
            }
        }
    }

    #[test]
    fn a_database_a_newer_release_migrated_is_refused_by_default_naming_its_migrations() {
        let applied = with(with(upto(14), later(15)), later(16));
        let err = plan(&applied, &upto(14), false).unwrap_err();
        assert_eq!(err, Mismatch::Newer(vec![later(15), later(16)]));
        let text = err.to_string();
        for needle in [
            "V15__from_a_later_release, V16__from_a_later_release",
            "older than the database's schema",
            "database.accept_newer_schema = true",
            "KEYWARD_DATABASE__ACCEPT_NEWER_SCHEMA",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
    }

    #[test]
    fn a_database_a_newer_release_migrated_is_run_on_without_migrating_when_accepted() {
        let applied = with(upto(14), later(15));
        assert_eq!(
            plan(&applied, &upto(14), true),
            Ok(Plan::RunOnNewer(vec![later(15)]))
        );
    }

    #[test]
    fn an_embedded_migration_never_applied_below_the_newest_applied_is_a_hole() {
        let applied = without(upto(14), 3);
        for accept in [false, true] {
            let err = plan(&applied, &upto(14), accept).unwrap_err();
            assert_eq!(
                err,
                Mismatch::Hole {
                    missing: vec![Migration::new(3, "step3", "3000")],
                    newest_applied: 14
                }
            );
            let text = err.to_string();
            assert!(
                text.contains("V3__step3 of this keyward was never applied"),
                "{text}"
            );
            assert!(text.contains("up to V14"), "{text}");
        }
    }

    /// Rolling back onto a database with a hole: the hole wins, the flag
    /// does not hide it.
    #[test]
    fn a_hole_is_refused_even_beside_accepted_newer_migrations() {
        let applied = with(without(upto(14), 3), later(15));
        let err = plan(&applied, &upto(14), true).unwrap_err();
        assert!(
            matches!(
                err,
                Mismatch::Hole {
                    newest_applied: 15,
                    ..
                }
            ),
            "{err:?}"
        );
        // The newest embedded migration not applied, newer ones applied:
        // a hole too (never a rollback).
        let applied = with(upto(13), later(15));
        let err = plan(&applied, &upto(14), true).unwrap_err();
        assert_eq!(
            err,
            Mismatch::Hole {
                missing: vec![Migration::new(14, "step14", "14000")],
                newest_applied: 15
            }
        );
    }

    #[test]
    fn an_applied_migration_unknown_here_but_not_newer_is_refused_whatever_the_setting() {
        let embedded = without(upto(14), 7);
        for accept in [false, true] {
            let err = plan(&upto(14), &embedded, accept).unwrap_err();
            assert_eq!(
                err,
                Mismatch::Unknown(vec![Migration::new(7, "step7", "7000")])
            );
            assert!(
                err.to_string().contains("records V7__step7 as applied"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_migration_changed_after_it_was_applied_is_refused_whatever_the_setting() {
        let mut changed = upto(14);
        changed[4].checksum = "999".into();
        let mut renamed = upto(14);
        renamed[5].name = "other".into();
        for accept in [false, true] {
            // Beside newer migrations too: the flag accepts those, not this.
            let applied = with(changed.clone(), later(15));
            let err = plan(&applied, &upto(14), accept).unwrap_err();
            assert_eq!(
                err,
                Mismatch::Divergent(vec![(changed[4].clone(), upto(14)[4].clone())])
            );
            assert!(err.to_string().contains("applied V5__step5"), "{err}");
            let err = plan(&renamed, &upto(14), accept).unwrap_err();
            assert!(
                err.to_string().contains(
                    "applied V6__other under the same version as this keyward's V6__step6"
                ),
                "{err}"
            );
        }
    }
}
