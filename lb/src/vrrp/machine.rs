//! The RFC 5798 §6 state machine (being written).
