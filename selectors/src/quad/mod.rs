//! Quad (docs/METHODS.md): the pieces that need no model. Document windows
//! ([`windows`]), (EK-)FAC preconditioning of per-layer gradients ([`curvature`]), the seeded
//! Rademacher projection of gradients ([`projection`]) and the UCB bandit over clusters with
//! neighbour reward propagation ([`bandit`]), and the selection that runs the bandit over
//! k-means clusters of the pool with a caller-supplied probe scorer ([`select`]).

pub mod bandit;
pub mod curvature;
pub mod projection;
pub mod select;
pub mod windows;
