//! qumulo-audit-broker: turns Qumulo audit logs into security events and delivers them
//! losslessly behind rsyslog's omprog.
//!
//! Data flows one way: [`input`] (line shapes and the three Qumulo formats) -> [`event`] (the one
//! model) -> [`classify`] -> [`format`] (one module per output format) -> `batch` -> `sink` (one
//! module per destination) -> `omprog` (the protocol state machine that owns acknowledgement); `consume` reads the same
//! envelopes from Kafka (the processing tier) with the same stages.

pub mod batch;
pub mod broker;
pub mod classify;
pub mod config;
pub mod consume;
pub mod convert;
pub mod deadletter;
pub mod event;
pub mod filter;
pub mod flock;
pub mod format;
pub mod input;
pub mod journal;
pub mod lines;
pub mod omprog;
pub mod sink;
pub mod state;
pub mod stats;
pub mod status;
pub mod time;
