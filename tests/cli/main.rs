//! End-to-end tests of the `promote` binary: real processes, real files, real SIGKILL.

mod config;
mod crash;
mod escape;
mod put;
mod race;
mod run;
mod s3;
mod support;
