use std::error::Error as StdError;

type Cause = Box<dyn StdError + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time; worth retrying later.
    #[error("the database is unavailable")]
    Unavailable(#[source] Cause),
    /// A uniqueness rule was broken; names the rule.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A stored row could not be read back into its type.
    #[error("a stored {0} could not be read")]
    Corrupt(&'static str),
    #[error("database error")]
    Other(#[source] Cause),
}
