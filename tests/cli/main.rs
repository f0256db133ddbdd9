//! End-to-end tests of the `promote` binary: real processes, real files, real SIGKILL.

mod batch;
mod commands;
mod config;
mod crash;
mod daily;
mod escape;
mod local;
mod put;
mod race;
mod run;
mod s3;
mod support;
