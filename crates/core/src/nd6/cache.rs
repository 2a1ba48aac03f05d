//! A worker's private cache of resolved IPv6 next hops in front of the
//! neighbor cache (see the module docs of [`super`]): `neighcache`'s,
//! for IPv6 addresses.

/// A worker's direct-mapped cache of (interface, address) → MAC, valid
/// while the table's generation stays and until each slot's deadline.
pub type Nd6WorkerCache = crate::neighcache::NeighCache<std::net::Ipv6Addr>;
