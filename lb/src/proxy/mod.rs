//! Byte moving and wire formats at the edge of the balancer.
//!
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers, encode (the balancer
//!   sends them to backends) and decode (the API service reads them).
pub mod proxy_protocol;
