//! Events written by a statement that learns some of their values only as it runs: the
//! challenge a link opens, the user a sign-in finds or creates, the organization it joins.
//!
//! Each event is still built by its one constructor in `latchkey_core::event`, as on every
//! engine, with a stand-in ([`late`]) for each value the statement learns. [`select_list`] turns
//! the event into the `SELECT` list that writes it: a bound parameter for each value the event
//! was given, the column named by its stand-in for each late one. Kind, detail and which value
//! goes where come from the constructor; the SQL only says where the statement's rows hold them.

use crate::pool::Query;
use latchkey_core::event::Event;
use latchkey_store::rows::millis;

/// Stands for the value of `column` (an expression over the statement's rows, e.g. `c.app_id`)
/// in an event built before the statement runs. PostgreSQL refuses a NUL in text, so a stand-in
/// bound by mistake fails the statement instead of writing a wrong row.
pub(crate) fn late(column: &str) -> String {
    format!("\0{column}")
}

fn column_of(value: Option<&str>) -> Option<&str> {
    value.and_then(|v| v.strip_prefix('\0'))
}

/// The late-or-bound fields of an event, in the order of the `events` columns they fill.
fn fields(e: &Event) -> [Option<&str>; 4] {
    [
        e.app_id.as_ref().map(|a| a.as_str()),
        e.user_id.as_ref().map(|u| u.as_str()),
        e.subject.as_deref(),
        e.detail.as_deref(),
    ]
}

/// The `SELECT` list writing `event` into `events (id, kind, app_id, user_id, subject, detail,
/// created_at)`, its parameters numbered from `first`; with the number of the next parameter.
pub(crate) fn select_list(event: &Event, first: usize) -> (String, usize) {
    let mut next = first;
    let mut param = || {
        next += 1;
        format!("${}", next - 1)
    };
    let mut list = vec![param(), param()];
    for field in fields(event) {
        list.push(column_of(field).map_or_else(&mut param, str::to_owned));
    }
    list.push(param());
    (list.join(", "), next)
}

/// Binds the parameters of [`select_list`] for `event`, in its order.
pub(crate) fn bind<'q>(q: Query<'q>, event: &'q Event) -> Query<'q> {
    let mut q = q.bind(event.id.as_str()).bind(event.kind.as_str());
    for field in fields(event) {
        if column_of(field).is_none() {
            q = q.bind(field);
        }
    }
    q.bind(millis(event.created_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::challenge::AuthMethod;
    use latchkey_core::id::{AppId, ChallengeId, UserId};
    use time::OffsetDateTime;

    #[test]
    fn late_values_are_columns_and_the_rest_parameters() {
        let app = AppId::from_trusted(late("c.app_id"));
        let challenge = ChallengeId::from_trusted(late("c.id"));
        let user = UserId::generate(time::OffsetDateTime::UNIX_EPOCH);
        let event =
            Event::challenge_consumed(&app, &challenge, &user, AuthMethod::Otp, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(select_list(&event, 5), ("$5, $6, c.app_id, $7, c.id, $8, $9".to_owned(), 10));
    }
}
