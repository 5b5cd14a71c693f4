//! Fan-out across instances (SPEC.md §10, `cluster.redis_url`): so far the
//! sans-IO codec of the Redis protocol that the loop's client will speak.

pub mod resp;
