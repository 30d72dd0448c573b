//! The typed boundary with PostgreSQL: keyward's enums go in and come out
//! as themselves, never as free text that each caller parses again.
//!
//! Each type is written as its label (PostgreSQL's binary form of an enum
//! is its label, so one encoding serves a `text` column, a `text` domain
//! and the enum type alike). A label the type does not know is an error
//! ([`DbError::Decode`], a bug: 500), never a silent default — rows are
//! read with [`get`], not `Row::get`, which would panic.

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

use super::DbError;
use crate::core::MessageKind;
use crate::core::{Action, Language, Outcome, ReplyKind, State};
use crate::gateways::Delivery;
use crate::staff::view::{Cause, ReplyStatus, SentKind};
use crate::staff::Role;

/// A value stored as one of a fixed set of labels.
pub trait Label: Sized {
    /// The PostgreSQL enum type it is stored as (besides `text`).
    const SQL_TYPE: &'static str;
    fn label(&self) -> &'static str;
    fn from_label(label: &str) -> Option<Self>;
}

fn accepts_label(ty: &Type, sql_type: &str) -> bool {
    ty.name() == sql_type || matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME)
}

macro_rules! label {
    ($ty:ty, $sql:literal, $all:expr) => {
        impl Label for $ty {
            const SQL_TYPE: &'static str = $sql;
            fn label(&self) -> &'static str {
                self.as_str()
            }
            fn from_label(label: &str) -> Option<Self> {
                $all.into_iter().find(|v: &$ty| v.as_str() == label)
            }
        }

        impl ToSql for $ty {
            fn to_sql(
                &self,
                _: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
                out.extend_from_slice(self.label().as_bytes());
                Ok(IsNull::No)
            }

            fn accepts(ty: &Type) -> bool {
                accepts_label(ty, $sql)
            }

            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
                let label = std::str::from_utf8(raw)?;
                <$ty as Label>::from_label(label).ok_or_else(|| {
                    format!(
                        "`{}` is not a {}",
                        crate::telemetry::clip(label, 40),
                        stringify!($ty)
                    )
                    .into()
                })
            }

            fn accepts(ty: &Type) -> bool {
                accepts_label(ty, $sql)
            }
        }
    };
}

label!(State, "subscription_state", State::ALL);
label!(Action, "message_action", Action::ALL);
label!(ReplyKind, "reply_kind", ReplyKind::ALL);
label!(MessageKind, "reply_kind", MessageKind::ALL);
label!(Delivery, "outbox_status", Delivery::ALL);
label!(Language, "text", Language::ALL);
label!(Outcome, "text", Outcome::ALL);
label!(Role, "api_role", Role::ALL);
label!(Cause, "event_cause", Cause::ALL);
label!(ReplyStatus, "outbox_status", ReplyStatus::ALL);
label!(
    SentKind,
    "reply_kind",
    ReplyKind::ALL
        .map(SentKind::Reply)
        .into_iter()
        .chain(MessageKind::ALL.map(SentKind::Broadcast))
);

/// Column `idx` of `row` as a `T`, or [`DbError::Decode`] naming the column.
pub fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, DbError> {
    row.try_get(idx).map_err(|e| {
        let column = row.columns().get(idx).map_or("?", |c| c.name());
        DbError::Decode(format!("column {idx} ({column}): {}", super::describe(&e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Label + PartialEq + std::fmt::Debug + Copy>(all: &[T]) {
        for v in all {
            assert_eq!(T::from_label(v.label()), Some(*v));
        }
        assert_eq!(T::from_label("no such label"), None);
    }

    #[test]
    fn every_label_reads_back_as_itself() {
        round_trip(&State::ALL);
        round_trip(&Action::ALL);
        round_trip(&ReplyKind::ALL);
        round_trip(&Delivery::ALL);
        round_trip(&Language::ALL);
        round_trip(&Outcome::ALL);
        round_trip(&Role::ALL);
        round_trip(&Cause::ALL);
        round_trip(&ReplyStatus::ALL);
    }

    #[test]
    fn an_unknown_label_is_an_error_not_a_default() {
        let err = <State as FromSql>::from_sql(&Type::TEXT, b"subscribd").unwrap_err();
        assert!(err.to_string().contains("subscribd"), "{err}");
        assert!(<State as FromSql>::from_sql(&Type::TEXT, &[0xff]).is_err());
    }

    #[test]
    fn labels_are_written_for_text_and_their_enum_type_only() {
        assert!(<State as ToSql>::accepts(&Type::TEXT));
        assert!(!<State as ToSql>::accepts(&Type::INT4));
    }
}
