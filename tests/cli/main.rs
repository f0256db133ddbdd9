//! End-to-end tests of the `promote` binary: real processes, real files, real SIGKILL.

mod bad_settings;
mod batch;
mod commands;
mod config;
mod crash;
mod daily;
mod daily2;
mod deploy;
mod doctor;
mod escape;
mod help;
mod jobs;
mod json;
mod kernel_copy;
mod local;
mod opendal;
mod progress;
mod put;
mod race;
mod readonly;
mod run;
mod s3;
mod sizes;
mod stall;
mod support;
mod threads;
