//! qumulo-audit-broker: turns Qumulo audit logs into security events and delivers them
//! losslessly behind rsyslog's omprog.
//!
//! Data flows one way: [`input`] (line shapes and the three Qumulo formats) -> [`event`] (the one
//! model) -> [`classify`] -> [`format`] (one module per output format) -> `batch` -> `sink` (one
//! module per destination) -> `omprog` (the protocol state machine that owns acknowledgement).

pub mod classify;
pub mod convert;
pub mod event;
pub mod format;
pub mod input;
pub mod time;
