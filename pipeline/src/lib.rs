//! gleaner's pipeline: configuration, planning, local execution, reports and the CLI verbs.

pub mod ablate;
pub mod clusters;
pub mod commands;
pub mod config;
pub mod distributed;
pub mod evaluate;
pub mod kneser_ney;
pub mod layout;
pub mod models;
pub mod quad_report;
pub mod remote;
pub mod report;
pub mod run;
pub mod split;
pub mod stages;
pub mod stats;
pub mod training;
