//! gleaner's pipeline: configuration, planning, local execution, reports and the CLI verbs.

pub mod ablate;
pub mod attention_influence;
pub mod clusters;
pub mod commands;
pub mod config;
pub mod distributed;
pub mod evaluate;
pub mod features;
pub mod kneser_ney;
pub mod layout;
pub mod quad;
pub mod quad_report;
pub mod report;
pub mod run;
pub mod split;
pub mod stages;
pub mod stats;
pub mod training;
